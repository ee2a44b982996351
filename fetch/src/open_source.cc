#include "tenpak/open_source.h"

namespace tenpak {

bool is_remote_location(const std::string& location) {
  return location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0;
}

Result<std::unique_ptr<BlockSource>> open_source(const std::string& location) {
  if (is_remote_location(location)) return Status{Errc::unsupported, location + ": remote origins are not supported yet"};
  return open_local_file(location);
}

std::string join_location(const std::string& dir_location, const std::string& name) {
  if (dir_location.empty()) return name;
  if (dir_location.back() == '/') return dir_location + name;
  return dir_location + "/" + name;
}

}  // namespace tenpak
