#include "loopdev/freeze.h"

#include <utility>

#include "common/log.h"

namespace slacker::loopdev {

Status FreezeFs(os::Os& os, const std::string& mountpoint) { return os.Freeze(mountpoint); }
Status ThawFs(os::Os& os, const std::string& mountpoint) { return os.Thaw(mountpoint); }

Result<FrozenFs> FrozenFs::Freeze(os::Os& os, const std::string& mountpoint) {
  SLACKER_RETURN_IF_ERROR(os.Freeze(mountpoint));
  return FrozenFs(&os, mountpoint);
}

FrozenFs::FrozenFs(FrozenFs&& other) noexcept
    : os_(other.os_), mountpoint_(std::exchange(other.mountpoint_, std::string())) {}

FrozenFs& FrozenFs::operator=(FrozenFs&& other) noexcept {
  if (this != &other) {
    IgnoreError(Thaw(), "a move assignment cannot fail; a failed thaw is logged and the fs stays frozen");
    os_ = other.os_;
    mountpoint_ = std::exchange(other.mountpoint_, std::string());
  }
  return *this;
}

FrozenFs::~FrozenFs() {
  if (mountpoint_.empty()) return;
  Status s = Thaw();
  if (!s.ok()) {
    log::Error("thaw_failed", {{"err", s.message()},
                               {"action", "run fsfreeze --unfreeze on the mount point"}});
  }
}

Status FrozenFs::Thaw() {
  if (mountpoint_.empty()) return Status::Ok();
  std::string mp = std::exchange(mountpoint_, std::string());
  return os_->Thaw(mp);
}

}  // namespace slacker::loopdev
