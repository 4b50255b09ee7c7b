#include "common/status.h"

#include <cstring>

namespace slacker {

Status Status::FromErrno(int err, std::string_view what) {
  return Status(err == 0 ? EIO : err, fmt::format("{}: {}", what, std::strerror(err)));
}

Status Status::Context(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", context, message_));
}

}  // namespace slacker
