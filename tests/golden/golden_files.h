// Writing the golden files, shared by the generators (gen_golden.cc,
// gen_golden_snappy.cc): a file written whole or the generator exits 1
// naming it, and a delta directory replaced as a whole.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tenpak/format.h"

namespace golden {

// PATH.tmp, closed and checked, then renamed to PATH: a full disk is often
// reported only by the flush in close(), and must leave no short file under
// the name the tests read.
inline void write(const std::string& path, const std::string& s) {
  // A directory that cannot be made shows as the open's failure below.
  std::error_code dir_ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), dir_ec);
  const std::string tmp = path + ".tmp";
  errno = 0;  // before the open, whose failure (a write then makes no call) is the reason to name
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  const bool opened = f.is_open();  // else tmp is not ours to remove (a directory of that name)
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
  f.close();
  std::error_code ec;
  if (f) std::filesystem::rename(tmp, path, ec);
  if (!f || ec) {
    const std::string why = ec ? ec.message() : errno ? std::strerror(errno) : "write failed";
    if (opened) std::filesystem::remove(tmp, ec);
    std::fprintf(stderr, "cannot write %s: %s\n", path.c_str(), why.c_str());
    std::exit(1);
  }
}

// DIR/tenpak.idx, DIR/tenpak.dat and DIR/expected.txt (what a reader must
// report), after removing whatever DIR held.
inline void write_delta(const std::string& dir, const std::string& idx, const std::string& dat,
                        const std::string& expected) {
  std::filesystem::remove_all(dir);
  write(dir + "/" + tenpak::kIndexFile, idx);
  write(dir + "/" + tenpak::kDataFile, dat);
  write(dir + "/expected.txt", expected);
}

}  // namespace golden
