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

// Where a training text's held-out part starts: the first byte after the
// first newline at or after 90% of the bytes (90% of the bytes when there is
// no such newline). `tenpak fixture stories-ft` trains on [0, cut) and
// evaluates on [cut, end); the lossy build's default evaluation and
// calibration texts are the same two parts, so all three cut here.
inline size_t held_out_cut(const std::string& text) {
  const size_t at = text.size() * 9 / 10;
  const size_t nl = text.find('\n', at);
  return nl == std::string::npos ? at : nl + 1;
}

}  // namespace tenpak::ml
