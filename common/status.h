// Errors as values. A Status is OK or carries an errno-style code plus a message with
// context ("clone snapshot 3fa… for layer c0ffee…: No space left on device").
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace slacker {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  // REQUIRES: code != 0. `code` is an errno value (EINVAL, ENOENT, ENOSPC, ...).
  static Status Error(int code, std::string message) { return Status(code, std::move(message)); }
  // An error from a failed syscall: appends strerror(err) to `what`.
  static Status FromErrno(int err, std::string_view what);

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  // Prefixes the message with "context: " (no-op when OK).
  Status Context(std::string_view context) const;
  std::string ToString() const { return ok() ? std::string("OK") : message_; }

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}
  int code_ = 0;
  std::string message_;
};

// A value or an error. Access value() only when ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: REQUIRES !status.ok()
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

// `r`, with "context: " prefixed to its error.
template <typename T>
Result<T> WithContext(std::string_view context, Result<T> r) {
  if (!r.ok()) return r.status().Context(context);
  return r;
}

// Drops `status` on purpose: `why` says why the caller can do nothing better with it
// (best-effort cleanup after an earlier error, a rollback whose own failure must not hide
// the error being returned). A non-OK status is still logged at warn level with `why`,
// so nothing fails silently.
void IgnoreError(const Status& status, std::string_view why);

template <typename... Args>
Status Errorf(int code, fmt::format_string<Args...> f, Args&&... args) {
  return Status::Error(code, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace slacker

// Returns early from the enclosing function when `expr` (a Status) is an error.
#define SLACKER_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::slacker::Status _st = (expr);            \
    if (!_st.ok()) return _st;                 \
  } while (0)

#define SLACKER_CONCAT_INNER(a, b) a##b
#define SLACKER_CONCAT(a, b) SLACKER_CONCAT_INNER(a, b)
// `lhs = value of expr` (a Result<T>), or return its error.
#define SLACKER_ASSIGN_OR_RETURN(lhs, expr)                          \
  auto SLACKER_CONCAT(_res_, __LINE__) = (expr);                     \
  if (!SLACKER_CONCAT(_res_, __LINE__).ok())                         \
    return SLACKER_CONCAT(_res_, __LINE__).status();                 \
  lhs = std::move(SLACKER_CONCAT(_res_, __LINE__)).value()
