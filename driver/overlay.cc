// Overlay form (DriverOptions::share_page_cache; driver/README.md "Shared page cache"):
// a read-write layer cloned from snapshot S is mounted as an overlay whose lower is S,
// mounted read-only once per host and shared by every such layer, and whose upper is a
// directory in the layer's own volume (the clone of S, whose root is never written).
// Reads of what a container did not write go to S's one mount: one page cache per image
// per host, as overlay2 has. A snapshot of such a layer is a clone of its volume with the
// upper folded into the root (overlay_fold.h), so snapshots and references keep their
// format: every snapshot is a whole tree.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/overlay_fold.h"
#include "driver/slacker_driver.h"
#include "loopdev/loop_device.h"
#include "storage_backend/store_layout.h"

namespace slacker::driver {

using common::MutexLock;

bool SlackerDriver::WantsOverlay(const LayerRecord& rec, const std::string& base) const {
  return opts_.share_page_cache && rec.kind == LayerKind::kReadWrite && !base.empty();
}

std::string SlackerDriver::LayerPath(const Layer& layer) const {
  return layer.rec.lower.empty() ? MountPath(layer.rec.id) : common::OverlayPoint(opts_.state_dir, layer.rec.id);
}

Result<std::string> SlackerDriver::AcquireLower(const std::string& snap) {
  MutexLock l(lowers_mu_);
  Lower& lower = lowers_[snap];
  if (!lower.mount) {
    std::string point = common::LowerPoint(opts_.state_dir, snap);
    Status made = MakeDirs(point, 0755);
    Result<loopdev::MountedImage> mount = made;
    if (made.ok()) {
      loopdev::MountedImage::Options ro;
      ro.read_only = true;
      mount = MountFile(backend_.SnapshotPath(snap), point, ro);  // joins a mount of S that exists
    }
    if (!mount.ok()) {
      if (lower.refs == 0) lowers_.erase(snap);
      ::rmdir(point.c_str());
      return mount.status().Context("mount snapshot " + snap + " as a shared lower");
    }
    lower.mount.emplace(std::move(mount).value());
    Count(&Counters::lower_mounts);
    log::Info("lower_mounted", {{"snapshot", snap}, {"device", lower.mount->device()}});
  }
  ++lower.refs;
  return lower.mount->target();
}

// The lower stays mounted when its last overlay goes: the next container of the image
// finds its page cache warm. Cleanup and the driver's exit unmount idle lowers.
void SlackerDriver::ReleaseLower(const std::string& snap) {
  MutexLock l(lowers_mu_);
  auto it = lowers_.find(snap);
  if (it != lowers_.end() && it->second.refs > 0) --it->second.refs;
}

void SlackerDriver::UnmountIdleLowers(bool keep_held) {
  MutexLock l(lowers_mu_);
  for (auto it = lowers_.begin(); it != lowers_.end();) {
    Lower& lower = it->second;
    if (lower.refs > 0) {
      if (keep_held && lower.mount) lower.mount->Release();  // the next Open adopts it
      ++it;
      continue;
    }
    if (lower.mount) {
      log::Info("lower_unmount", {{"snapshot", it->first}});
      Status s = lower.mount->Unmount(loopdev::BusyPolicy::kDetach);
      if (!s.ok()) log::Warn("lower_unmount_failed", {{"snapshot", it->first}, {"err", s.message()}});
    }
    ::rmdir(common::LowerPoint(opts_.state_dir, it->first).c_str());
    it = lowers_.erase(it);
  }
}

size_t SlackerDriver::LowersMounted() {
  MutexLock l(lowers_mu_);
  return lowers_.size();
}

// A snapshot whose own root has a ".slacker-overlay" (an image can have any name) would
// give its clones' overlays the image's directory as their upper: such layers keep the
// plain form. Mounts the lower (the overlay that follows uses it).
bool SlackerDriver::LowerCanHoldOverlay(const std::string& snap) {
  auto dir = AcquireLower(snap);
  if (!dir.ok()) {
    log::Warn("lower_mount_failed", {{"snapshot", snap}, {"err", dir.status().message()}, {"form", "plain"}});
    return false;
  }
  bool clash = PathExists(JoinPath(*dir, kOverlayDirName));
  ReleaseLower(snap);
  if (clash) log::Warn("overlay_name_in_image", {{"snapshot", snap}, {"name", kOverlayDirName}, {"form", "plain"}});
  return !clash;
}

// REQUIRES the volume mounted read-write at MountPath. The upper directory is made with
// the snapshot root's owner, mode and times: overlayfs shows the upper's for "/".
Status SlackerDriver::AttachOverlay(Layer& layer) {
  const std::string& id = layer.rec.id;
  const std::string lower = layer.rec.lower;
  SLACKER_ASSIGN_OR_RETURN(std::string lowerdir, AcquireLower(lower));
  Status s = MountOverlay(id, lowerdir);
  if (!s.ok()) {
    ReleaseLower(lower);
    return s.Context(fmt::format("mount the overlay of layer {} on snapshot {}", id, lower));
  }
  layer.overlaid = true;
  layer.lower_held = lower;
  Count(&Counters::overlay_mounts);
  log::Debug("overlay_mounted", {{"layer", id}, {"lower", lower}});
  StartLowerPrefetch(layer);
  return Status::Ok();
}

void SlackerDriver::StartLowerPrefetch(Layer& layer) {
  if (!WantsPrefetch(layer)) return;
  std::string point;
  int loop = -1;
  {
    MutexLock l(lowers_mu_);
    auto it = lowers_.find(layer.lower_held);
    if (it == lowers_.end() || !it->second.mount) return;
    point = it->second.mount->target();
    loop = it->second.mount->loop_index();
  }
  // Held by this overlay until DetachOverlay, which Settle (UnmountLocked, DiscardMount)
  // precedes: the session's pins never outlive the hold.
  if (loop >= 0) prefetch_->Start(layer.rec.id, layer.lower_held, point, loop);
}

Status SlackerDriver::MountOverlay(const std::string& id, const std::string& lowerdir) {
  std::string vol = MountPath(id);
  UniqueFd root(::open(vol.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) return Status::FromErrno(errno, "open " + vol);
  SLACKER_ASSIGN_OR_RETURN(UniqueFd ovl, MakeDirsBeneath(root.get(), kOverlayDirName, 0700));
  struct stat st;
  if (::fstatat(ovl.get(), kOverlayUpperName, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) return Status::FromErrno(errno, "stat the upper directory");
    struct stat lst;
    if (::stat(lowerdir.c_str(), &lst) != 0) return Status::FromErrno(errno, "stat " + lowerdir);
    if (::mkdirat(ovl.get(), kOverlayUpperName, 0700) != 0) return Status::FromErrno(errno, "make the upper directory");
    SLACKER_ASSIGN_OR_RETURN(UniqueFd upper, OpenBeneath(ovl.get(), kOverlayUpperName, O_RDONLY | O_DIRECTORY));
    timespec ts[2] = {lst.st_atim, lst.st_mtim};
    if (::fchown(upper.get(), lst.st_uid, lst.st_gid) != 0 || ::fchmod(upper.get(), lst.st_mode & 07777) != 0 ||
        ::futimens(upper.get(), ts) != 0)
      return Status::FromErrno(errno, "give the upper directory the snapshot root's owner, mode and times");
  }
  if (::mkdirat(ovl.get(), kOverlayWorkName, 0700) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "make the work directory");
  std::string point = common::OverlayPoint(opts_.state_dir, id);
  SLACKER_RETURN_IF_ERROR(MakeDirs(point, 0755));
  std::string dir = JoinPath(vol, kOverlayDirName);
  // No index, redirects or metacopy: the upper stays in the format FoldOverlay reads.
  std::string data = fmt::format("lowerdir={},upperdir={}/{},workdir={}/{},index=off,redirect_dir=off,metacopy=off",
                                 lowerdir, dir, kOverlayUpperName, dir, kOverlayWorkName);
  return os_.Mount("overlay", point, "overlay", 0, data);
}

Status SlackerDriver::DetachOverlay(Layer& layer) {
  if (!layer.overlaid) return Status::Ok();
  std::string point = common::OverlayPoint(opts_.state_dir, layer.rec.id);
  SLACKER_RETURN_IF_ERROR(loopdev::UnmountPath(os_, point, loopdev::BusyPolicy::kDetach)
                              .Context("unmount the overlay of layer " + layer.rec.id));
  ::rmdir(point.c_str());
  layer.overlaid = false;
  prefetch_->Settle(layer.rec.id);  // its pins on the lower go before the hold does
  ReleaseLower(layer.lower_held);
  layer.lower_held.clear();
  return Status::Ok();
}

// The hand-over (mounts.cc MoveParentMount): the parent's overlay becomes the child's.
Status SlackerDriver::MoveOverlay(Layer& parent, Layer& child) {
  if (!parent.overlaid) return Status::Ok();
  std::string from = common::OverlayPoint(opts_.state_dir, parent.rec.id);
  std::string to = common::OverlayPoint(opts_.state_dir, child.rec.id);
  SLACKER_RETURN_IF_ERROR(MakeDirs(to, 0755));
  SLACKER_RETURN_IF_ERROR(os_.Mount(from, to, "", MS_BIND, "").Context("bind " + from + " at " + to));
  child.overlaid = true;
  child.lower_held = parent.lower_held;
  parent.overlaid = false;
  parent.lower_held.clear();
  Status u = loopdev::UnmountPath(os_, from, loopdev::BusyPolicy::kDetach);
  ::rmdir(from.c_str());
  if (u.ok()) StartLowerPrefetch(child);
  return u;
}

// A snapshot of an overlay-form layer: its volume cloned (frozen around the clone when
// mounted), the clone mounted privately and folded, then promoted to a snapshot. The
// layer keeps its volume and its overlay; a crash leaves only the clone, which no record
// claims (start-up deletes it).
Result<std::string> SlackerDriver::TakeFoldedSnapshot(Layer& layer, bool mounted, const nlohmann::json& meta) {
  const std::string& id = layer.rec.id;
  const std::string tmp = storage_backend::NewFoldVolumeName();
  const std::string clone = backend_.VolumePath(tmp);
  Result<uint64_t> frozen_at = Errorf(EINVAL, "not frozen");
  bool thawed = true;
  std::string mnt = MountPath(id);
  if (mounted) {
    SLACKER_RETURN_IF_ERROR(os_.Freeze(mnt).Context("freeze layer " + id + " for snapshot"));
    SLACKER_FAULT_POINT("diff.while_frozen");
    frozen_at = loopdev::WriteSectors(os_, layer.loop_index());  // see TakeSnapshot
  }
  Status c = SyncVolumeFile(id);
  if (c.ok()) c = backend_.CloneFile(backend_.VolumePath(id), clone);
  if (mounted) {
    Status thaw = os_.Thaw(mnt);
    if (!thaw.ok()) log::Error("thaw_failed", {{"layer", id}, {"err", thaw.message()}});
    thawed = thaw.ok();
  }
  if (!c.ok()) {
    IgnoreError(backend_.RemoveVolume(tmp), "a stray fold volume is removed at the next start");
    return c.Context("clone layer " + id + " to fold it");
  }
  auto snap = FoldAndPromote(tmp, meta);
  if (!snap.ok()) {
    IgnoreError(backend_.RemoveVolume(tmp), "a stray fold volume is removed at the next start");
    return snap.status().Context("snapshot layer " + id);
  }
  if (mounted) layer.current.SnapshotTaken(frozen_at, thawed);
  Count(&Counters::folds);
  return snap;
}

Result<std::string> SlackerDriver::FoldAndPromote(const std::string& tmp, const nlohmann::json& meta) {
  std::string dir = JoinPath(common::ViewsDir(opts_.state_dir), RandomHex(8));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  auto mount = loopdev::MountedImage::Mount(os_, backend_.VolumePath(tmp), dir, loopdev::MountedImage::Options{});
  if (!mount.ok()) {
    ::rmdir(dir.c_str());
    return mount.status().Context("mount the fold volume");
  }
  Status folded;
  {
    UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    folded = root.valid() ? FoldOverlay(root.get()) : Status::FromErrno(errno, "open " + dir);
  }
  SLACKER_FAULT_POINT("fold.after_fold");
  Status unmounted = mount->Unmount(loopdev::BusyPolicy::kDetach);
  ::rmdir(dir.c_str());
  SLACKER_RETURN_IF_ERROR(folded);
  SLACKER_RETURN_IF_ERROR(unmounted.Context("unmount the fold volume"));
  SLACKER_RETURN_IF_ERROR(SyncVolumeFile(tmp));
  return backend_.PromoteVolume(tmp, meta);
}

}  // namespace slacker::driver
