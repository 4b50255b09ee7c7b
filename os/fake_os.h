// An in-memory Os for unit tests: keeps a mount table and loop table, synthesises
// /proc/self/mountinfo and /sys/block/loopN/{loop/backing_file,stat} from them, copies
// bytes for FICLONE (so clones really carry data), counts a superblock write (8 sectors)
// at Freeze and at Thaw as ext4 does, and can inject a failure into any
// named call. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "os/os.h"

namespace slacker::os {

class FakeOs : public Os {
 public:
  struct MountEntry {
    std::string source, target, fstype, data;
    unsigned long flags = 0;
  };
  struct LoopEntry {
    std::string backing_file;
    LoopConfig config;
    uint64_t write_sectors = 0;
    int watch_fd = -1;  // read end of a pipe whose write end is the caller's loop fd
    // The backing file's inode: backing_file in sysfs follows a rename of the file (within
    // its directory here) and says " (deleted)" once it is unlinked, as the kernel's does.
    dev_t dev = 0;
    ino_t ino = 0;
  };

  FakeOs();
  ~FakeOs() override;

  Status Mount(const std::string& source, const std::string& target, const std::string& fstype,
               unsigned long flags, const std::string& data) override;
  Status Unmount(const std::string& target, int flags) override;
  Result<int> LoopGetFree() override;
  Result<UniqueFd> LoopConfigure(int index, const std::string& backing_file,
                                 const LoopConfig& config) override;
  Status LoopClear(int index) override;
  Status Ficlone(int dst_fd, int src_fd) override;
  Result<uint64_t> CopyFileRange(int src_fd, int dst_fd, uint64_t len) override;
  Status Freeze(const std::string& mountpoint) override;
  Status Thaw(const std::string& mountpoint) override;
  Status Shutdown(const std::string& mountpoint) override;
  Status SyncFs(const std::string& path) override;
  Result<FsStats> StatFs(const std::string& path) override;
  Status Ext4GrowTo(const std::string& mountpoint, uint64_t blocks) override;
  Result<std::string> ReadKernelFile(const std::string& path) override;
  Result<std::vector<std::string>> ListKernelDir(const std::string& path) override;

  // The next call named `op` ("Mount", "Ficlone", ...) fails with `err`.
  void FailNext(const std::string& op, int err);
  // The next Shutdown first runs `fn` (outside the fake's lock): a test can hold a
  // background caller there.
  void BeforeNextShutdown(std::function<void()> fn);
  // The same for the next Ficlone.
  void BeforeNextFiclone(std::function<void()> fn);
  // Simulates writes through a mounted loop device (bumps its write counter).
  void RecordWrite(const std::string& mountpoint, uint64_t sectors = 8);
  // What StatFs reports as free (default 50 GiB of 100 GiB): a full store.
  void SetFreeBytes(uint64_t bytes);
  // How many times `op` was called.
  int Calls(const std::string& op) const;
  std::vector<MountEntry> Mounts() const;
  std::map<int, LoopEntry> Loops() const;
  bool IsMounted(const std::string& target) const;
  bool IsFrozen(const std::string& mountpoint) const;
  bool IsShutDown(const std::string& mountpoint) const;  // since its last Mount

 private:
  Status Enter(const std::string& op);  // counts the call, returns an injected failure
  // Autoclear: drops loops whose fd was closed while no mount holds them. REQUIRES mu_.
  void ReapLocked();
  void RecordWriteLocked(const std::string& mountpoint, uint64_t sectors);  // REQUIRES mu_
  // Freeze and Thaw write the superblock (8 sectors), as ext4 does. REQUIRES mu_.
  void WriteSuperblockLocked(const std::string& mountpoint);
  // What sysfs says the loop's backing file is now (renamed, or " (deleted)").
  static std::string BackingFileNow(const LoopEntry& loop);
  mutable std::mutex mu_;
  std::map<std::string, int> calls_;
  std::map<std::string, int> fail_next_;
  std::function<void()> before_shutdown_;
  std::function<void()> before_ficlone_;
  std::vector<MountEntry> mounts_;
  std::map<int, LoopEntry> loops_;
  std::map<std::string, bool> frozen_;
  std::map<std::string, bool> shut_down_;
  uint64_t free_bytes_ = 50ull << 30;
};

}  // namespace slacker::os
