// The one seam for privileged and kernel-facing calls: mount, umount2, loop ioctls,
// FICLONE, copy_file_range, FIFREEZE/FITHAW, syncfs, statfs, and reads of kernel tables
// (/proc/self/mountinfo, /sys/block). Code above this layer takes an `Os&` in its
// constructor, so unit tests substitute FakeOs and run without root.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace slacker::os {

struct LoopConfig {
  bool read_only = false;
  bool autoclear = true;   // detach when the last user (mount) goes away
  bool direct_io = true;   // LO_FLAGS_DIRECT_IO; attach retries without it if refused
  uint32_t block_size = 4096;
};

struct FsStats {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;   // available to unprivileged users
  uint64_t total_inodes = 0;
  uint64_t free_inodes = 0;
  int64_t fs_type = 0;       // f_type magic
};

class Os {
 public:
  virtual ~Os() = default;

  // mount(2). `data` is the fs-specific option string.
  virtual Status Mount(const std::string& source, const std::string& target,
                       const std::string& fstype, unsigned long flags, const std::string& data) = 0;
  // umount2(2).
  virtual Status Unmount(const std::string& target, int flags) = 0;

  // LOOP_CTL_GET_FREE on /dev/loop-control: the index of a free loop device
  // (the kernel creates its node on demand).
  virtual Result<int> LoopGetFree() = 0;
  // Binds `backing_file` to /dev/loop<index> with LOOP_CONFIGURE. Returns the open loop
  // device fd: with autoclear the binding lasts while this fd or a mount holds it.
  // EBUSY means another attacher won the race for this index: ask LoopGetFree again.
  virtual Result<UniqueFd> LoopConfigure(int index, const std::string& backing_file,
                                         const LoopConfig& config) = 0;
  // LOOP_CLR_FD on /dev/loop<index>.
  virtual Status LoopClear(int index) = 0;

  // ioctl(dst, FICLONE, src): share all of src's extents into dst.
  virtual Status Ficlone(int dst_fd, int src_fd) = 0;
  // copy_file_range(2) of `len` bytes from offset 0 (the kernel may reflink or copy
  // server-side). Returns bytes copied.
  virtual Result<uint64_t> CopyFileRange(int src_fd, int dst_fd, uint64_t len) = 0;

  // FIFREEZE / FITHAW on the mounted file system at `mountpoint`.
  virtual Status Freeze(const std::string& mountpoint) = 0;
  virtual Status Thaw(const std::string& mountpoint) = 0;
  // EXT4_IOC_SHUTDOWN with EXT4_GOING_FLAGS_NOLOGFLUSH on the ext4 mounted at
  // `mountpoint`: every later write is dropped (EIO) and nothing more is written back, so
  // its unmount costs no flush. Only for a file system whose file is about to be deleted.
  virtual Status Shutdown(const std::string& mountpoint) = 0;
  // syncfs(2) on the file system holding `path`.
  virtual Status SyncFs(const std::string& path) = 0;
  // statfs(2).
  virtual Result<FsStats> StatFs(const std::string& path) = 0;
  // EXT4_IOC_RESIZE_FS on a mounted ext4: grow to `blocks` file system blocks.
  virtual Status Ext4GrowTo(const std::string& mountpoint, uint64_t blocks) = 0;

  // Reads a kernel table (/proc/self/mountinfo, /sys/block/loopN/...).
  virtual Result<std::string> ReadKernelFile(const std::string& path) = 0;
  // Lists a kernel directory (e.g. /sys/block). ENOENT when absent.
  virtual Result<std::vector<std::string>> ListKernelDir(const std::string& path) = 0;
};

// The real implementation (root needed for most calls).
std::unique_ptr<Os> NewRealOs();

}  // namespace slacker::os
