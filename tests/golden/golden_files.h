// Writing the golden files, shared by the generators (gen_golden.cc,
// gen_golden_snappy.cc): a file written whole or the generator exits 1
// naming it, and a delta directory replaced as a whole.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tenpak/format.h"

namespace golden {

inline void write(const std::string& path, const std::string& s) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
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
