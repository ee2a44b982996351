#include "io_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <set>
#include <string_view>

namespace fs = std::filesystem;

namespace tenpak {

OutFileWriter::~OutFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Status OutFileWriter::error(const char* what, int err) {
  Errc c = (err == ENOSPC || err == EDQUOT) ? Errc::no_space : Errc::io;
  return {c, path_ + ": " + what + ": " + std::strerror(err)};
}

Status OutFileWriter::open(const std::string& path, unsigned mode) {
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd_ < 0) return error("cannot create", errno);
  return Status::Ok();
}

Status OutFileWriter::write(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t r = ::write(fd_, c, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return error("write failed", errno);
    }
    if (r == 0) return error("write failed", ENOSPC);
    c += r;
    n -= static_cast<size_t>(r);
    written_ += static_cast<uint64_t>(r);
  }
  // Start writing back each completed stretch now, so the fsync in close()
  // finds little left to do: the disk works while we compute the rest.
  // (Advisory: an error here is not one; close() reports what fsync says.)
  constexpr uint64_t kWriteback = 8u << 20;
  if (written_ - synced_ >= kWriteback) {
    ::sync_file_range(fd_, static_cast<off_t>(synced_), static_cast<off_t>(written_ - synced_), SYNC_FILE_RANGE_WRITE);
    synced_ = written_;
  }
  return Status::Ok();
}

Status OutFileWriter::close() {
  if (fd_ < 0) return Status::Ok();
  int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0 && errno != EINVAL) {
    int e = errno;
    ::close(fd);
    return error("fsync failed", e);
  }
  if (::close(fd) != 0) return error("close failed", errno);
  return Status::Ok();
}

Status make_parent_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return {Errc::io, path + ": cannot create parent directory: " + ec.message()};
  return Status::Ok();
}

StagingDir::~StagingDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

Status StagingDir::create(const std::string& final_dir) {
  std::error_code ec;
  final_ = fs::path(final_dir).lexically_normal().string();
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  if (fs::exists(final_, ec)) {
    if (!fs::is_directory(final_, ec) || !fs::is_empty(final_, ec))
      return {Errc::exists, final_ + ": already exists and is not an empty directory (refusing to overwrite)"};
  }
  path_ = final_ + ".tenpak-tmp-" + std::to_string(::getpid());
  fs::remove_all(path_, ec);
  fs::create_directories(path_, ec);
  if (ec) return {Errc::io, path_ + ": cannot create: " + ec.message()};
  committed_ = false;
  return Status::Ok();
}

Status StagingDir::commit() {
  std::error_code ec;
  if (fs::exists(final_, ec)) fs::remove(final_, ec);  // empty directory, checked in create()
  if (::rename(path_.c_str(), final_.c_str()) != 0)
    return {Errc::io, final_ + ": cannot rename the staged output into place: " + std::strerror(errno)};
  committed_ = true;
  return Status::Ok();
}

Status write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts) {
  const std::string tmp = path + ".tenpak-tmp-" + std::to_string(::getpid());
  OutFileWriter w;
  Status st = w.open(tmp);
  for (auto& [p, n] : parts)
    if (st.ok()) st = w.write(p, n);
  if (st.ok()) st = w.close();
  std::error_code ec;
  if (st.ok()) {
    std::filesystem::rename(tmp, path, ec);
    if (ec) st = {Errc::io, path + ": cannot rename from " + tmp + ": " + ec.message()};
  }
  if (!st.ok()) std::filesystem::remove(tmp, ec);
  return st;
}

Status write_safetensors_file(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  std::set<std::string_view> names;
  for (const SafetensorsTensor& t : tensors) {
    // The header is a JSON object keyed by name: a second tensor of a name
    // would replace the first's entry and leave its bytes a hole, which
    // the safetensors library refuses (its offsets must tile the data), and
    // "__metadata__" is not a tensor to it.
    auto bad = [&](const std::string& why) { return Status{Errc::invalid, path + ": tensor '" + t.name + "': " + why}; };
    if (t.name == "__metadata__") return bad("the name safetensors keeps for the metadata");
    if (!names.insert(t.name).second) return bad("named twice");
    if (dtype_size(t.dtype) == 0) return bad("no safetensors dtype");
    TensorInfo ti;
    ti.name = t.name;
    ti.dtype = t.dtype;
    ti.shape = t.shape;
    uint64_t n = dtype_size(t.dtype);
    for (uint64_t d : t.shape)
      if (__builtin_mul_overflow(n, d, &n)) return bad("byte length over 2^64");
    if (n > 0 && t.data == nullptr) return bad("no data");
    ti.end = n;
    infos.push_back(std::move(ti));
  }
  std::string header;
  try {
    header = make_safetensors_header(infos, metadata);
  } catch (const std::exception& e) {  // nlohmann's dump: a name or metadata that is not UTF-8
    return {Errc::invalid, path + ": cannot make the safetensors header: " + e.what()};
  }
  std::vector<std::pair<const void*, size_t>> parts{{header.data(), header.size()}};
  for (size_t i = 0; i < tensors.size(); ++i) parts.emplace_back(tensors[i].data, infos[i].nbytes());
  return write_file_atomic(path, parts);
}

}  // namespace tenpak
