#include "common/status.h"

#include <cstring>

#include "common/log.h"

namespace slacker {

Status Status::FromErrno(int err, std::string_view what) {
  return Status(err == 0 ? EIO : err, fmt::format("{}: {}", what, std::strerror(err)));
}

Status Status::Context(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", context, message_));
}

void IgnoreError(const Status& status, std::string_view why) {
  if (status.ok()) return;
  log::Warn("error_ignored", {{"err", status.message()}, {"why", std::string(why)}});
}

}  // namespace slacker
