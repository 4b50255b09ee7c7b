// How a process reaches the files of an NFS export (DESIGN.md §7): this host's kernel NFS
// mount of it when one exists (found in /proc/self/mountinfo), else a slacker-nfs-fuse
// bridge that the process starts, supervises and unmounts on exit. slackerd and
// slacker-snapshotter mount their bridge at <state>/nfs; slackerctl mounts a private one
// of its own (open_store.h), so it never disturbs a running daemon's.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "loopdev/mount.h"
#include "os/os.h"

namespace slacker::storage_backend {


// The mount point of a kernel NFS mount (fstype nfs or nfs4) of HOST:/PATH, or "".
std::string FindKernelNfsMount(const std::vector<loopdev::MountInfoEntry>& mounts, const std::string& host,
                               const std::string& path);

class NfsView {
 public:
  struct Options {
    std::string url;          // nfs://HOST/EXPORT
    // The bridge mounts at <state>/nfs and writes <state>/nfs-bridge.log and
    // <state>/nfs-stats.json. A bridge mount found at <state>/nfs is taken for a crashed
    // run's and detached: each process needs a state directory of its own.
    std::string state_dir;
    std::string bridge_path;  // the slacker-nfs-fuse binary
  };

  // Finds a kernel mount or starts the bridge and waits (up to 30 s) until it is mounted.
  static Result<std::unique_ptr<NfsView>> Open(os::Os& os, Options opts);
  ~NfsView();  // Close()

  // The directory that shows the export's root.
  const std::string& dir() const { return dir_; }
  // "kernel NFS mount at X" / "slacker-nfs-fuse bridge (pid N) at X".
  std::string Describe() const;
  // Stops supervising, unmounts the bridge (lazily if still busy) and waits for it to exit.
  void Close();

 private:
  NfsView(os::Os& os, Options opts) : os_(os), opts_(std::move(opts)) {}
  Status StartBridge();
  void Supervise();

  os::Os& os_;
  const Options opts_;
  std::string dir_;
  bool kernel_ = false;
  std::mutex mu_;
  pid_t pid_ = -1;
  std::atomic<bool> closing_{false};
  std::thread supervisor_;
};

}  // namespace slacker::storage_backend
