// Mounting images: ext4 layer file systems (rw, or ro with "noload" for snapshots),
// unmounting with bounded EBUSY retries, and a parser for /proc/self/mountinfo, which is
// the truth the driver re-syncs its refcounted mounts from after a restart.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "os/os.h"

namespace slacker::loopdev {

// Mounts the ext4 on `device` at `target` (an existing directory).
// rw: MS_NOATIME, no data. ro: MS_RDONLY with "noload" — a snapshot is immutable and
// shared, so its journal must never be replayed (a frozen-then-cloned ext4 has a flushed
// journal; noload also keeps a clone of a crashed volume mountable read-only).
Status MountExt4(os::Os& os, const std::string& device, const std::string& target, bool read_only);

enum class BusyPolicy {
  kFail,    // still EBUSY after the retries: return the EBUSY error
  kDetach,  // still EBUSY after the retries: lazy unmount (MNT_DETACH)
};

// Unmounts `target`, retrying EBUSY a few times briefly (a probe such as blkid may hold
// the device for a moment). Not mounted (EINVAL) or missing (ENOENT) is OK: the call is
// idempotent. With kDetach a mount that stays busy is detached lazily (its loop device is
// released when the last user goes away).
Status UnmountPath(os::Os& os, const std::string& target, BusyPolicy busy = BusyPolicy::kFail);

struct MountInfoEntry {
  int mount_id = 0;
  int parent_id = 0;
  int major = 0;
  int minor = 0;
  std::string root;           // the mounted subtree of the source file system
  std::string mount_point;    // octal escapes (\040 ...) decoded
  std::string options;        // per-mount options: "rw,noatime"
  std::string fstype;
  std::string source;         // "/dev/loop3"; escapes decoded
  std::string super_options;  // per-superblock options: "rw,noload"
};

// Parses the text of /proc/<pid>/mountinfo. EINVAL naming the line on a malformed line.
Result<std::vector<MountInfoEntry>> ParseMountInfo(std::string_view text);
// ReadKernelFile("/proc/self/mountinfo") + ParseMountInfo.
Result<std::vector<MountInfoEntry>> ReadMountInfo(os::Os& os);
// The last (topmost) entry mounted at `mount_point`, or nullptr.
const MountInfoEntry* FindMount(const std::vector<MountInfoEntry>& mounts, const std::string& mount_point);

// An image file attached to a loop device and mounted at a directory. The destructor
// unmounts (autoclear then releases the loop) unless Release() was called.
class MountedImage {
 public:
  struct Options {
    std::string fstype = "ext4";  // "ext4" uses MountExt4; others mount with MS_NOATIME
    bool read_only = false;
    os::LoopConfig loop;          // read_only is forced to match `read_only`
    // Runs between the attach and the mount (the driver's crash fault point there).
    std::function<void()> after_attach;
  };
  // Attach `image` and mount it at `target` (an existing directory). On failure nothing
  // stays attached or mounted.
  static Result<MountedImage> Mount(os::Os& os, const std::string& image, const std::string& target,
                                    const Options& options);
  static Result<MountedImage> Mount(os::Os& os, const std::string& image, const std::string& target) {
    return Mount(os, image, target, Options{});
  }

  // Takes ownership of a mount made earlier (found in /proc/self/mountinfo at start-up).
  static MountedImage Adopt(os::Os& os, std::string target, std::string device, int loop_index) {
    return MountedImage(&os, std::move(target), std::move(device), loop_index);
  }

  MountedImage(MountedImage&& other) noexcept;
  MountedImage& operator=(MountedImage&& other) noexcept;
  MountedImage(const MountedImage&) = delete;
  MountedImage& operator=(const MountedImage&) = delete;
  ~MountedImage();

  const std::string& target() const { return target_; }
  // "/dev/loopN" the image was attached to.
  const std::string& device() const { return device_; }
  int loop_index() const { return loop_index_; }
  // Unmounts now; the object is empty afterwards unless the unmount failed (then it still
  // owns the mount).
  Status Unmount(BusyPolicy busy = BusyPolicy::kFail);
  // Keeps the mount; the object forgets it. Returns the mount point.
  std::string Release();

 private:
  MountedImage(os::Os* os, std::string target, std::string device, int loop_index)
      : os_(os), target_(std::move(target)), device_(std::move(device)), loop_index_(loop_index) {}
  os::Os* os_ = nullptr;
  std::string target_;  // empty: nothing owned
  std::string device_;
  int loop_index_ = -1;
};

}  // namespace slacker::loopdev
