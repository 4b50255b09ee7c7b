#include "loopdev/embedded_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include <fmt/format.h>

#include "common/fd.h"
#include "common/files.h"
#include "common/log.h"
#include "common/state_layout.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"
#include "loopdev/run_tool.h"

namespace slacker::loopdev {

Status CreateXfsImage(const std::string& image_path, uint64_t size_bytes) {
  std::string tmp = image_path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::FromErrno(errno, "create " + tmp);
    if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) {
      int err = errno;
      IgnoreError(RemoveFileIfExists(tmp), "rollback: the ftruncate error is what the caller must see");
      return Status::FromErrno(err, fmt::format("extend {} to {} bytes", tmp, size_bytes));
    }
  }
  // 4 KiB sectors: the loop device is attached with 4 KiB logical blocks, and XFS refuses
  // to mount on a device whose sector size exceeds its own.
  Status s = RunToolChecked({"mkfs.xfs", "-q", "-m", "reflink=1", "-s", "size=4096", tmp});
  if (!s.ok()) {
    IgnoreError(RemoveFileIfExists(tmp), "rollback: the mkfs error is what the caller must see");
    return s.Context("format " + image_path);
  }
  if (::rename(tmp.c_str(), image_path.c_str()) != 0) {
    int err = errno;
    IgnoreError(RemoveFileIfExists(tmp), "rollback: the rename error is what the caller must see");
    return Status::FromErrno(err, "publish " + image_path);
  }
  return Status::Ok();
}

Result<std::string> EnsureEmbeddedStore(os::Os& os, const std::string& state_dir, uint64_t size_bytes) {
  std::string dir = common::EmbeddedStoreDir(state_dir);
  std::string image = common::EmbeddedStoreImage(state_dir);
  auto ctx = [&](const Status& s) { return s.Context("embedded store " + image); };

  SLACKER_RETURN_IF_ERROR(ctx(MakeDirs(dir, 0700)));
  // Root only: the image holds every layer, and the mount point's own mode (the XFS root
  // directory once mounted, 0755 from mkfs) would let local users in. An older release
  // left both open; tightened on every start.
  char canon[PATH_MAX];
  std::string mount_point = ::realpath(dir.c_str(), canon) ? canon : dir;

  auto mounts = ReadMountInfo(os);
  if (!mounts.ok()) return ctx(mounts.status());
  if (const MountInfoEntry* m = FindMount(*mounts, mount_point)) {
    int index = -1;
    bool ours = false;
    if (std::sscanf(m->source.c_str(), "/dev/loop%d", &index) == 1 && PathExists(image)) {
      auto loops = FindLoopsBacking(os, image);
      ours = loops.ok() && std::find(loops->begin(), loops->end(), index) != loops->end();
    }
    if (!ours) {
      return Errorf(EBUSY, "embedded store {}: {} is already a mount point of {} ({}); unmount it or pass --store",
                    image, mount_point, m->source, m->fstype);
    }
    log::Info("embedded_store_reused", {{"dir", mount_point}, {"device", m->source}});
    SLACKER_RETURN_IF_ERROR(ctx(CloseToOthers(image)));
    SLACKER_RETURN_IF_ERROR(ctx(CloseToOthers(mount_point)));
    return mount_point;
  }

  if (!PathExists(image)) {
    SLACKER_RETURN_IF_ERROR(CreateXfsImage(image, size_bytes));
    log::Info("embedded_store_created", {{"image", image}, {"bytes", std::to_string(size_bytes)}});
  } else {
    // Loops left bound to the image without a mount (a crash between attach and mount,
    // or a non-autoclear attach by hand) would make a second writer: release them.
    auto loops = FindLoopsBacking(os, image);
    if (loops.ok()) {
      for (int index : *loops) {
        for (const auto& m : *mounts) {
          if (m.source == LoopPath(index)) {
            return Errorf(EBUSY, "embedded store {}: already mounted through {} at {}; unmount it there first",
                          image, m.source, m.mount_point);
          }
        }
        log::Warn("embedded_store_stale_loop", {{"device", LoopPath(index)}, {"image", image}});
        IgnoreError(os.LoopClear(index), "a stale loop device that is busy is detached by autoclear when its last user closes it");
      }
    }
  }
  SLACKER_RETURN_IF_ERROR(ctx(CloseToOthers(image)));
  SLACKER_RETURN_IF_ERROR(ctx(CloseToOthers(mount_point)));
  MountedImage::Options opts;
  opts.fstype = "xfs";
  SLACKER_ASSIGN_OR_RETURN(MountedImage mounted, MountedImage::Mount(os, image, mount_point, opts));
  SLACKER_RETURN_IF_ERROR(ctx(CloseToOthers(mount_point)));  // now the XFS root
  log::Info("embedded_store_mounted", {{"dir", mount_point}, {"device", mounted.device()}});
  return mounted.Release();
}

}  // namespace slacker::loopdev
