// Errors as values. Every fallible call in TenPak returns Status or Result<T>;
// the mapping to errno or to a process exit code happens in one place each
// (fs/ and tools/cli_util), never scattered through the libraries.
#pragma once
#include <optional>
#include <string>
#include <utility>

namespace tenpak {

// One code per meaning, so that callers never guess from a message. The
// numbers are stable (logs, stats and scripts may record them): a new code
// takes the next number, none is ever renumbered or reused.
enum class Errc : int {
  ok = 0,
  io = 1,            // the OS refused a read/write/open, or a transfer failed
  corrupt = 2,       // bytes that do not parse or do not match their hash
  invalid = 3,       // a bad argument or an input the user gave that cannot be used
  mismatch = 4,      // a base that is not the one the delta was built against
  no_space = 5,      // ENOSPC / EDQUOT while writing
  exists = 6,        // output already present
  unsupported = 7,   // understood but refused (e.g. pickle asking for code)
  unavailable = 8,   // an origin that cannot be reached or does not serve now (refused, 5xx): retry later
  not_found = 9,     // what was named is not there: a missing local file or directory, an HTTP 4xx
  cancelled = 10,    // the operation was cancelled (shutting down): nothing is wrong with the data
};

// "io", "not_found"... (the enumerator's name).
const char* errc_name(Errc e);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string msg) : code_(code), msg_(std::move(msg)) {}
  static Status Ok() { return {}; }
  bool ok() const { return code_ == Errc::ok; }
  Errc code() const { return code_; }
  const std::string& message() const { return msg_; }
  std::string to_string() const;
  // For a caller that has nothing to do with an error (best effort), so
  // that dropping it is visible: `cleanup().ignore();`.
  void ignore() const {}

 private:
  Errc code_ = Errc::ok;
  std::string msg_;
};

// Result<T>: a value or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : value_(std::move(v)) {}
  Result(Status s) : status_(std::move(s)) {}
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
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

// TP_ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (a Result<T>); on error
// returns its Status from the enclosing function, else moves the value
// into `lhs` (a declaration such as `auto x` or an existing variable).
#define TP_CONCAT_INNER_(a, b) a##b
#define TP_CONCAT_(a, b) TP_CONCAT_INNER_(a, b)
#define TP_ASSIGN_OR_RETURN(lhs, expr) TP_ASSIGN_OR_RETURN_IMPL_(TP_CONCAT_(_tp_result_, __LINE__), lhs, expr)
#define TP_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp.value())

}  // namespace tenpak
