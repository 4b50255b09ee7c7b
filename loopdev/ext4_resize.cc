// GrowExt4 and ResizeExt4Offline (declared in ext4_format.h).
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/log.h"
#include "loopdev/ext4_format.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"
#include "loopdev/run_tool.h"

namespace slacker::loopdev {
namespace {

constexpr uint64_t kBlockSize = 4096;

Result<uint64_t> FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  return static_cast<uint64_t>(st.st_size);
}

Status Truncate(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0)
    return Status::FromErrno(errno, fmt::format("truncate {} to {} bytes", path, size));
  return Status::Ok();
}

}  // namespace

Status GrowExt4(os::Os& os, const std::string& mountpoint, const std::string& image_file,
                uint64_t new_size_bytes) {
  std::string what = fmt::format("grow {} mounted at {} to {} bytes", image_file, mountpoint, new_size_bytes);
  uint64_t size = new_size_bytes / kBlockSize * kBlockSize;
  SLACKER_ASSIGN_OR_RETURN(uint64_t cur, FileSize(image_file));
  if (size < cur) return Errorf(EINVAL, "{}: the file is already {} bytes; shrink offline", what, cur);
  if (size > cur) SLACKER_RETURN_IF_ERROR(Truncate(image_file, size).Context(what));

  SLACKER_ASSIGN_OR_RETURN(auto mounts, ReadMountInfo(os));
  const MountInfoEntry* m = FindMount(mounts, mountpoint);
  if (m == nullptr) return Errorf(EINVAL, "{}: not a mount point", what);
  int index = -1;
  if (std::sscanf(m->source.c_str(), "/dev/loop%d", &index) != 1)
    return Errorf(EINVAL, "{}: mounted from {}, not a loop device", what, m->source);
  SLACKER_ASSIGN_OR_RETURN(uint64_t dev_size, LoopSizeBytes(os, index));
  if (dev_size < size) {
    return Errorf(ENOTSUP,
                  "{}: {} still has {} bytes (the loop device needs LOOP_SET_CAPACITY, which the Os "
                  "seam lacks); remount the layer to pick up the new size",
                  what, m->source, dev_size);
  }
  return os.Ext4GrowTo(mountpoint, size / kBlockSize).Context(what);
}

Status ResizeExt4Offline(const std::string& image_file, uint64_t new_size_bytes) {
  std::string what = fmt::format("resize {} to {} bytes", image_file, new_size_bytes);
  uint64_t size = new_size_bytes / kBlockSize * kBlockSize;
  if (size == 0) return Errorf(EINVAL, "{}: size below one block", what);
  SLACKER_ASSIGN_OR_RETURN(uint64_t cur, FileSize(image_file));
  if (size > cur) SLACKER_RETURN_IF_ERROR(Truncate(image_file, size).Context(what));
  // -f: the image is not mounted and may not have been checked recently (a clone of a
  // frozen snapshot); resize2fs still refuses a file system that needs journal recovery.
  Status s = RunToolChecked({"resize2fs", "-f", image_file, fmt::format("{}K", size / 1024)});
  if (!s.ok()) {
    return s.Context(what);
  }
  if (size < cur) SLACKER_RETURN_IF_ERROR(Truncate(image_file, size).Context(what));
  log::Info("ext4_resized", {{"file", image_file}, {"from", std::to_string(cur)}, {"to", std::to_string(size)}});
  return Status::Ok();
}

}  // namespace slacker::loopdev
