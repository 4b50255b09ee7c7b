// Freezing a mounted file system so that a reflink of its image file is a consistent,
// journal-clean snapshot (ext4's freeze flushes the journal and clears needs_recovery).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "os/os.h"

namespace slacker::loopdev {

// Sectors ext4 (4 KiB blocks, as slacker formats them) writes to its device at FIFREEZE of
// an idle, synced file system, and at FITHAW: its superblock block each time (512-byte
// sectors, as /sys/block/loopN/stat counts them). FITHAW writes before any writer the
// freeze blocked resumes, so "counter while frozen + kThawWriteSectors" is the counter of
// the snapshot's content after the thaw. LoopdevRootTest.FreezeAndThawEachWriteOneBlock
// checks these on the running kernel; a kernel writing more only costs cache misses.
inline constexpr uint64_t kFreezeWriteSectors = 8;
inline constexpr uint64_t kThawWriteSectors = 8;

// FIFREEZE: blocks new writes and flushes the file system at `mountpoint` to its device.
Status FreezeFs(os::Os& os, const std::string& mountpoint);
// FITHAW.
Status ThawFs(os::Os& os, const std::string& mountpoint);

// A frozen file system; thawed by Thaw() or the destructor (which logs a failure).
// Keep the frozen window short: every writer to it blocks meanwhile.
class FrozenFs {
 public:
  static Result<FrozenFs> Freeze(os::Os& os, const std::string& mountpoint);

  FrozenFs(FrozenFs&& other) noexcept;
  FrozenFs& operator=(FrozenFs&& other) noexcept;
  FrozenFs(const FrozenFs&) = delete;
  FrozenFs& operator=(const FrozenFs&) = delete;
  ~FrozenFs();

  const std::string& mountpoint() const { return mountpoint_; }
  // Thaws now; the object is empty afterwards (even if the thaw failed).
  Status Thaw();

 private:
  FrozenFs(os::Os* os, std::string mountpoint) : os_(os), mountpoint_(std::move(mountpoint)) {}
  os::Os* os_ = nullptr;
  std::string mountpoint_;  // empty: nothing frozen
};

}  // namespace slacker::loopdev
