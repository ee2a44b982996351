// Errors as values. Every fallible call in TenPak returns Status or Result<T>;
// the mapping to errno or to a process exit code happens in one place each
// (fs/ and tools/), never scattered through the libraries.
#pragma once
#include <optional>
#include <string>
#include <utility>

namespace tenpak {

enum class Errc {
  ok = 0,
  io,             // the OS refused a read/write/open
  corrupt,        // bytes that do not parse or do not match their hash
  invalid,        // bad argument or unsupported input given by the user
  mismatch,       // a base that is not the one the delta was built against
  no_space,       // ENOSPC / EDQUOT while writing
  exists,         // output already present
  unsupported,    // understood but refused (e.g. pickle asking for code)
  unavailable,    // an origin that cannot be reached or does not serve (refused, 404, 503): retry later
};

const char* errc_name(Errc e);

class Status {
 public:
  Status() = default;
  Status(Errc code, std::string msg) : code_(code), msg_(std::move(msg)) {}
  static Status Ok() { return {}; }
  bool ok() const { return code_ == Errc::ok; }
  Errc code() const { return code_; }
  const std::string& message() const { return msg_; }
  std::string to_string() const;

 private:
  Errc code_ = Errc::ok;
  std::string msg_;
};

// Result<T>: a value or a non-ok Status.
template <class T>
class Result {
 public:
  Result(T v) : value_(std::move(v)) {}
  Result(Status s) : status_(std::move(s)) {}
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

#define TP_RETURN_IF_ERROR(expr)          \
  do {                                    \
    ::tenpak::Status _st = (expr);        \
    if (!_st.ok()) return _st;            \
  } while (0)

}  // namespace tenpak
