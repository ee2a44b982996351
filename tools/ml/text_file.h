// A whole text file (calibration, evaluation, training text) as one string,
// for tenpak-ml's commands: a missing file is Errc::invalid (exit 2), a
// failed read Errc::io, each naming the file.
#pragma once
#include <fstream>
#include <sstream>
#include <string>

#include "tenpak/status.h"

namespace tenpak::ml {

inline Result<std::string> read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status{Errc::invalid, path + ": cannot open"};
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status{Errc::io, path + ": read failed"};
  return ss.str();
}

}  // namespace tenpak::ml
