// A loop device bound to an image file. Attach, mount, then drop the LoopDevice: with
// autoclear the kernel detaches the device when the last holder (this fd or a mount)
// goes away, so a mounted image needs no bookkeeping of its loop and an unmounted one
// never leaks a loop device, even if the process crashes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "os/os.h"

namespace slacker::loopdev {

class LoopDevice {
 public:
  // Binds `file` to a free loop device (LOOP_CTL_GET_FREE + LOOP_CONFIGURE), asking for a
  // new free index when another attacher wins the race for one (bounded retries).
  // `config` carries read-only/autoclear/direct-I/O/block size; Os falls back to buffered
  // I/O if the backing file system refuses direct I/O.
  static Result<LoopDevice> Attach(os::Os& os, const std::string& file, const os::LoopConfig& config);

  LoopDevice(LoopDevice&& other) noexcept;
  LoopDevice& operator=(LoopDevice&& other) noexcept;
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  // Closes the loop fd. With autoclear the kernel then detaches the device unless a
  // mount still holds it (intended). Never calls LOOP_CLR_FD.
  ~LoopDevice();

  // "/dev/loopN".
  std::string path() const;
  int index() const { return index_; }
  int fd() const { return fd_.get(); }
  // Explicit LOOP_CLR_FD, then closes the fd. The object is empty afterwards.
  // REQUIRES: attached (index() >= 0).
  Status Detach();

 private:
  LoopDevice(os::Os* os, int index, UniqueFd fd) : os_(os), index_(index), fd_(std::move(fd)) {}
  os::Os* os_ = nullptr;
  int index_ = -1;
  UniqueFd fd_;
};

// "/dev/loop<index>".
std::string LoopPath(int index);

// Indexes of the bound loop devices whose backing file is `file`, read from
// /sys/block/loop*/loop/backing_file and compared as canonical paths. A loop whose
// backing file was unlinked (the kernel appends " (deleted)") still matches its old path:
// it is an orphan of that path (e.g. a removed volume still mounted) and callers that look
// for loops to release want it too (Deleted::kToo). Callers that ask whether `file`
// itself is in use — to join its live file system, or to know whether it outlives an
// unmount — pass Deleted::kNo: a file made since at that path is another inode, and the
// orphan's file system is not its. Unbound devices are skipped.
enum class Deleted { kToo, kNo };
Result<std::vector<int>> FindLoopsBacking(os::Os& os, const std::string& file, Deleted deleted = Deleted::kToo);

// Sectors written through /dev/loop<index> since it was bound: field 7 of
// /sys/block/loopN/stat. Compare two samples to learn whether anything was written.
Result<uint64_t> WriteSectors(os::Os& os, int index);

// Size of /dev/loop<index> in bytes as the kernel sees it (/sys/block/loopN/size).
Result<uint64_t> LoopSizeBytes(os::Os& os, int index);

}  // namespace slacker::loopdev
