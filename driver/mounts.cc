// Get and Put: a layer's refcounted mount (its volume rw, or an image layer's snapshot
// ro), lazy cloning at the first Get, and read views of a layer's tree.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/layer_view.h"
#include "driver/slacker_driver.h"
#include "loopdev/ext4_read.h"
#include "loopdev/freeze.h"
#include "loopdev/loop_device.h"

namespace slacker::driver {

using common::MutexLock;

std::unique_ptr<LayerView> LayerView::OfLayer(GraphDriver& driver, std::string path, std::string layer_id) {
  std::unique_ptr<LayerView> v(new LayerView());
  v->driver_ = &driver;
  v->path_ = std::move(path);
  v->layer_id_ = std::move(layer_id);
  return v;
}

std::unique_ptr<LayerView> LayerView::OfMount(loopdev::MountedImage mount) {
  std::unique_ptr<LayerView> v(new LayerView());
  v->path_ = mount.target();
  v->mount_.emplace(std::move(mount));
  return v;
}

std::unique_ptr<LayerView> LayerView::OfDirectory(std::string path) {
  std::unique_ptr<LayerView> v(new LayerView());
  v->path_ = std::move(path);
  return v;
}

LayerView::~LayerView() {
  if (mount_) {
    Status s = mount_->Unmount(loopdev::BusyPolicy::kDetach);
    if (!s.ok()) {
      log::Error("view_unmount_failed", {{"path", path_}, {"err", s.message()}});
      mount_->Release();  // already reported; the next start unmounts stale views
    }
    ::rmdir(path_.c_str());
  } else if (driver_ != nullptr) {
    Status s = driver_->Put(layer_id_);
    if (!s.ok()) log::Error("view_put_failed", {{"layer", layer_id_}, {"err", s.message()}});
  }
}

Result<std::string> SlackerDriver::Get(const std::string& id, const std::string& /*mount_label*/) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "get layer {}: no such layer", id);
  MutexLock l(layer->mu);
  if (layer->removed) return Errorf(ENOENT, "get layer {}: no such layer", id);
  return GetLocked(*layer);
}

Result<std::string> SlackerDriver::GetLocked(Layer& layer) {
  SLACKER_RETURN_IF_ERROR(MountLocked(layer));
  if (!layer.rec.lower.empty() && !layer.overlaid) {
    Status s = AttachOverlay(layer);
    if (!s.ok()) {
      if (--layer.refs <= 0) IgnoreError(UnmountLocked(layer), "the overlay error is what the caller must see");
      return s;
    }
  }
  return LayerPath(layer);
}

Status SlackerDriver::MountLocked(Layer& layer) {
  std::string mnt = MountPath(layer.rec.id);
  if (layer.refs > 0) {
    ++layer.refs;
    return Status::Ok();
  }
  if (layer.parked) {
    // The mount its last Put left parked: the same file system, nothing to do.
    Unpark(layer);
    layer.refs = 1;
    Count(&Counters::parked_reuses);
    return Status::Ok();
  }
  SLACKER_RETURN_IF_ERROR(MakeDirs(mnt, 0755));
  if (!layer.rec.has_volume && !layer.rec.snapshot.empty() && layer.rec.kind == LayerKind::kImage) {
    return MountSnapshot(layer);
  }
  bool fresh = false;  // the volume file is made by this Get: no loop device can hold it
  if (!layer.rec.has_volume) {
    SLACKER_ASSIGN_OR_RETURN(bool taken, TakeOverParentMount(layer));
    bool mounted = taken;
    if (!taken && !layer.rec.has_volume) {
      SLACKER_ASSIGN_OR_RETURN(mounted, MaterializeVolume(layer));
      fresh = true;
    }
    if (mounted) {
      StartPrefetch(layer);
      return Status::Ok();
    }
  }
  SLACKER_RETURN_IF_ERROR(MountVolume(layer, fresh));
  StartPrefetch(layer);
  return Status::Ok();
}

bool SlackerDriver::WantsPrefetch(const Layer& layer) const {
  return prefetch_->enabled() && layer.mounted_rw && layer.rec.size_bytes == 0 && !layer.rec.id.ends_with("-init");
}

void SlackerDriver::StartPrefetch(Layer& layer) {
  if (!WantsPrefetch(layer)) return;
  // Overlay form: what the container reads and did not write comes from the image's
  // shared lower, not from its volume (AttachOverlay: StartLowerPrefetch).
  if (!layer.rec.lower.empty()) return;
  std::string snap = ImageOrigin(layer.rec.parent);
  if (!snap.empty()) prefetch_->Start(layer.rec.id, snap, MountPath(layer.rec.id), layer.loop_index());
}

std::string SlackerDriver::ImageOrigin(const std::string& parent) {
  auto p = layers_.Find(parent);
  if (!p) return "";
  MutexLock l(p->mu);  // child → parent order
  if (p->rec.kind == LayerKind::kImage) return p->rec.snapshot;
  if (!p->rec.id.ends_with("-init") || !p->rec.snapshot.empty() || p->rec.parent.empty()) return "";
  auto image = layers_.Find(p->rec.parent);
  if (!image) return "";
  MutexLock g(image->mu);
  return image->rec.kind == LayerKind::kImage ? image->rec.snapshot : "";
}

// An image layer: its snapshot mounted read-only where it lives. Never cloned.
Status SlackerDriver::MountSnapshot(Layer& layer) {
  loopdev::MountedImage::Options ro;
  ro.read_only = true;
  auto mount = MountFile(backend_.SnapshotPath(layer.rec.snapshot), MountPath(layer.rec.id), ro);
  if (!mount.ok())
    return mount.status().Context(fmt::format("mount snapshot {} of layer {}", layer.rec.snapshot, layer.rec.id));
  layer.mount.emplace(std::move(mount).value());
  layer.mounted_rw = false;
  layer.refs = 1;
  Count(&Counters::ro_mounts);
  return Status::Ok();
}

// Lazy cloning: the layer's volume is cloned from its parent's content snapshot at the
// first Get (or at an ApplyDiff of a standard tar), never at Create.
Result<bool> SlackerDriver::MaterializeVolume(Layer& layer) {
  const std::string& id = layer.rec.id;
  std::string base;
  bool from_parent_volume = false;
  std::string lower;  // overlay form: the snapshot the volume's root is a clone of
  if (!layer.rec.snapshot.empty()) {
    base = layer.rec.snapshot;
  } else if (!layer.rec.parent.empty()) {
    SLACKER_ASSIGN_OR_RETURN(auto parent_lower, CloneIdleParentVolume(layer));
    from_parent_volume = parent_lower.has_value();
    if (from_parent_volume) lower = *parent_lower;
    if (!from_parent_volume) {
      SLACKER_ASSIGN_OR_RETURN(base, ContentSnapshot(layer.rec.parent));
    }
  }
  if (!from_parent_volume && WantsOverlay(layer.rec, base) && LowerCanHoldOverlay(base)) lower = base;
  if (!from_parent_volume && !base.empty()) {
    SLACKER_ASSIGN_OR_RETURN(SpareUse spare, AdoptSpare(layer, base, lower));
    if (spare != SpareUse::kNone) {
      QueueSpareFill(layer.rec, base);
      return spare == SpareUse::kMounted;
    }
  }
  if (!from_parent_volume) {
    SLACKER_RETURN_IF_ERROR(CloneBase(base, id, layer.rec.size_bytes)
                                .Context(fmt::format("clone {} for layer {}", base.empty() ? "empty file system" : "snapshot " + base, id)));
  }
  SLACKER_FAULT_POINT("get.after_clone");
  LayerRecord next = layer.rec;
  next.has_volume = true;
  next.dirty = from_parent_volume || base.empty() || base != layer.rec.snapshot;
  next.lower = lower;
  Status s = Persist(next);
  if (!s.ok()) {
    IgnoreError(backend_.RemoveVolume(id), "rollback: the Persist error is what the caller must see; a stray volume is removed at the next start");
    return s;
  }
  layer.rec = next;
  Count(&Counters::clones);
  QueueSpareFill(layer.rec, base);  // the next init layer on this image takes it
  return false;
}

// dockerd's `<id>-init` layer: written, Put, and at once the parent of the container
// layer's first Get. Its content snapshot would cost a FIFREEZE (the first after a mount
// checkpoints the whole journal: ~50 ms measured on this machine's store) and a published
// snapshot nobody else needs. When nobody holds the parent (refs == 0: parked or
// unmounted, so nothing writes it), a syncfs makes its file a consistent ext4 image
// (committed journal; the child's rw mount replays it) and its file is cloned directly.
// Returns false (use the parent's content snapshot) when the parent is held, has no
// volume, has a current snapshot anyway, or the child wants its own size.
Result<std::optional<std::string>> SlackerDriver::CloneIdleParentVolume(Layer& child) {
  if (child.rec.size_bytes != 0) return std::optional<std::string>();  // quota: resized from a snapshot (quota.cc)
  auto parent = layers_.Find(child.rec.parent);
  if (!parent) return std::optional<std::string>();
  MutexLock l(parent->mu);  // child → parent order
  if (!parent->rec.has_volume || parent->refs > 0 || parent->removed) return std::optional<std::string>();
  if (!parent->rec.dirty && !parent->rec.snapshot.empty()) return std::optional<std::string>();  // cloning that costs no freeze
  const std::string& pid = parent->rec.id;
  if (parent->parked && parent->mounted_rw) {
    SLACKER_RETURN_IF_ERROR(os_.SyncFs(MountPath(pid)).Context("sync layer " + pid + " before cloning it"));
  }
  SLACKER_RETURN_IF_ERROR(SyncVolumeFile(pid).Context("sync layer " + pid + " before cloning it"));
  SLACKER_RETURN_IF_ERROR(backend_.CloneFile(backend_.VolumePath(pid), backend_.VolumePath(child.rec.id))
                              .Context(fmt::format("clone the volume of layer {} for layer {}", pid, child.rec.id)));
  log::Debug("clone_parent_volume", {{"layer", child.rec.id}, {"parent", pid}});
  return std::optional<std::string>(parent->rec.lower);  // the clone is in the parent's form, on the parent's lower
}

// dockerd's container layer: its first Get comes right after its `-init` layer's Put
// (parked). A clone of the parent's synced file has a committed, not checkpointed,
// journal that its mount replays (17-76 ms measured on this machine's store, most of
// what `docker create` cost beyond overlay2). Instead the child takes the parent's live
// file system over: the store renames the parent's file to the child's volume and gives
// the parent a clone of it (Backend::HandOverVolume), the parent's mount is bound at the
// child's mount point and the parent's own mount point unmounted (the super block lives
// on: nothing is written). The parent's clone has a committed, not checkpointed journal
// (ext4's needs_recovery): ReplayJournalLocked mounts it rw before anything reads or
// snapshots it without a mount (dockerd normally removes it unread). Same
// conditions as CloneIdleParentVolume, plus: the parent is parked read-write and the
// store can rename volumes.
Result<bool> SlackerDriver::TakeOverParentMount(Layer& child) {
  if (child.rec.size_bytes != 0 || !child.rec.snapshot.empty() || child.rec.parent.empty()) return false;
  if (!backend_.CanHandOverVolumes()) return false;
  auto parent = layers_.Find(child.rec.parent);
  if (!parent) return false;
  MutexLock l(parent->mu);  // child → parent order
  if (!parent->parked || !parent->mounted_rw || parent->refs != 0 || parent->removed || !parent->rec.has_volume ||
      !parent->mount || parent->loop_index() < 0)
    return false;
  if (!parent->rec.dirty && !parent->rec.snapshot.empty()) return false;  // its snapshot is clean: clone that
  const std::string pid = parent->rec.id;
  if (parent->handover_prepared) {
    // The preparer synced it and cloned its file after its Put (parking.cc).
    parent->handover_prepared = false;
    SLACKER_RETURN_IF_ERROR(backend_.CompleteHandOver(pid, child.rec.id)
                                .Context(fmt::format("hand layer {}'s volume over to layer {}", pid, child.rec.id)));
    Count(&Counters::prepared_handovers_used);
  } else {
    SLACKER_RETURN_IF_ERROR(os_.SyncFs(MountPath(pid)).Context("sync layer " + pid + " before handing it over"));
    SLACKER_RETURN_IF_ERROR(backend_.HandOverVolume(pid, child.rec.id)
                                .Context(fmt::format("hand layer {}'s volume over to layer {}", pid, child.rec.id)));
  }
  SLACKER_FAULT_POINT("handover.after_files");
  LayerRecord cnext = child.rec;
  cnext.has_volume = true;
  cnext.dirty = true;
  cnext.lower = parent->rec.lower;  // the same volume, in the same form
  if (Status s = Persist(cnext); !s.ok()) {
    // The parent's mount is now the file system of a file no record claims: flush and
    // unmount it, delete that file. The parent keeps its clone.
    IgnoreError(UnmountLocked(*parent), "rollback: the Persist error is what the caller must see");
    IgnoreError(backend_.RemoveVolume(child.rec.id), "rollback: a stray volume is removed at the next start");
    return s;
  }
  child.rec = cnext;
  Count(&Counters::clones);
  if (Status s = MoveParentMount(*parent, child); !s.ok()) {
    // The child's volume is its file; the parent's mount of it is flushed and unmounted,
    // and the caller mounts the child's volume as any other.
    log::Warn("handover_mount_failed", {{"layer", child.rec.id}, {"err", s.message()}});
    SLACKER_RETURN_IF_ERROR(UnmountLocked(*parent).Context("unmount layer " + pid + " after a failed hand-over"));
    return false;
  }
  Count(&Counters::handovers);
  log::Debug("handover", {{"layer", child.rec.id}, {"parent", pid}});
  return true;
}

// The parent's mount (of the file that is now the child's volume) becomes the child's.
Status SlackerDriver::MoveParentMount(Layer& parent, Layer& child) {
  std::string pmnt = MountPath(parent.rec.id), cmnt = MountPath(child.rec.id);
  SLACKER_RETURN_IF_ERROR(os_.Mount(pmnt, cmnt, "", MS_BIND, "").Context("bind " + pmnt + " at " + cmnt));
  std::string device = parent.mount->device();
  int loop = parent.mount->loop_index();
  Status u = loopdev::UnmountPath(os_, pmnt, loopdev::BusyPolicy::kDetach);
  if (!u.ok()) {
    IgnoreError(os_.Unmount(cmnt, 0), "rollback of the bind; the caller reports the unmount error");
    return u;
  }
  parent.mount->Release();
  parent.mount.reset();
  Unpark(parent);
  parent.mounted_rw = false;
  child.mount.emplace(loopdev::MountedImage::Adopt(os_, cmnt, device, loop));
  child.mounted_rw = true;
  child.refs = 1;
  child.current.Mounted(child.rec, SampleWrites(loop, cmnt));
  Count(&Counters::rw_mounts);
  if (Status o = MoveOverlay(parent, child); !o.ok()) {
    // The child's Get mounts an overlay of its own (GetLocked), the parent's goes.
    log::Warn("handover_overlay_move_failed", {{"layer", child.rec.id}, {"err", o.message()}});
    IgnoreError(DetachOverlay(child), "GetLocked mounts the child's overlay");
    IgnoreError(DetachOverlay(parent), "a parent's overlay left mounted is unmounted at the next start");
  }
  return Status::Ok();
}

Status SlackerDriver::ReplayJournalLocked(Layer& layer) {
  if (!layer.rec.has_volume || layer.mounted()) return Status::Ok();
  auto pending = loopdev::Ext4NeedsRecovery(backend_.VolumePath(layer.rec.id));
  if (!pending.ok()) return pending.status().Context("check the journal of layer " + layer.rec.id);
  if (!*pending) return Status::Ok();
  log::Info("replay_journal", {{"layer", layer.rec.id}});
  Count(&Counters::journal_replays);
  SLACKER_RETURN_IF_ERROR(MakeDirs(MountPath(layer.rec.id), 0755));
  SLACKER_RETURN_IF_ERROR(MountVolume(layer).Context("replay the journal of layer " + layer.rec.id));
  return UnmountLocked(layer);
}

Status SlackerDriver::MountVolume(Layer& layer, bool fresh) {
  const std::string& id = layer.rec.id;
  std::string mnt = MountPath(id);
  loopdev::MountedImage::Options rw;
  rw.after_attach = [] { SLACKER_FAULT_POINT("get.after_attach"); };
  auto mount = MountFile(backend_.VolumePath(id), mnt, rw, fresh);
  if (!mount.ok()) return mount.status().Context(fmt::format("mount volume of layer {}", id));
  SLACKER_FAULT_POINT("get.after_mount");
  layer.mount.emplace(std::move(mount).value());
  layer.mounted_rw = true;
  layer.refs = 1;
  layer.current.Mounted(layer.rec, SampleWrites(layer.loop_index(), mnt));
  if (!layer.rec.dirty) {
    // Persist "may be written" before anyone can write, so a crash never leaves a
    // record that claims the snapshot still matches.
    LayerRecord next = layer.rec;
    next.dirty = true;
    SLACKER_RETURN_IF_ERROR(Persist(next));
    layer.rec = next;
  }
  Count(&Counters::rw_mounts);
  return Status::Ok();
}

Result<uint64_t> SlackerDriver::SampleWrites(int loop_index, const std::string& mountpoint) {
  if (loop_index < 0) return Errorf(EINVAL, "no loop device");
  SLACKER_RETURN_IF_ERROR(os_.SyncFs(mountpoint));
  return loopdev::WriteSectors(os_, loop_index);
}

Status SlackerDriver::Put(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "put layer {}: no such layer", id);
  MutexLock l(layer->mu);
  return PutLocked(*layer, false);
}

Status SlackerDriver::PutLocked(Layer& layer, bool force) {
  const std::string& id = layer.rec.id;
  if (layer.refs <= 0) {
    log::Debug("put_not_mounted", {{"layer", id}});
    return Status::Ok();  // dockerd may Put twice; never underflow
  }
  if (--layer.refs > 0 && !force) return Status::Ok();
  layer.refs = 0;
  // Only a rw mount is parked: its unmount is what flushes. A read-only mount of an image
  // layer (a read view for Changes or DiffSize, `docker cp`) has nothing to write back and
  // goes at once.
  if (!force && opts_.park_time.count() > 0 && layer.mounted_rw) {
    Park(layer);
    QueueHandOverPrep(layer);
    return Status::Ok();
  }
  return UnmountLocked(layer);
}

Status SlackerDriver::UnmountLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  prefetch_->Settle(id);  // its pins must not keep the file system alive past the unmount
  layer.refs = 0;
  std::string mnt = MountPath(id);
  if (Status o = DetachOverlay(layer); !o.ok()) {
    if (!layer.parked) layer.refs = 1;  // still held, as before the Put
    return o.Context("put layer " + id);
  }
  bool clean = false;
  if (layer.mounted_rw) {
    // "Clean" is decided while frozen, after the flush: a write that lands between a
    // sample and the unmount would otherwise be recorded as clean (and the next Diff
    // would reuse the stale snapshot for good).
    auto frozen_at = FlushBeforeUnmount(os_, id, mnt, layer.loop_index());
    clean = layer.current.CleanWhenFrozen(frozen_at);
    if (clean) clean = SnapshotCurrency::CleanAfterThaw(*frozen_at, SampleWrites(layer.loop_index(), mnt));
  }
  Status s = layer.mount ? layer.mount->Unmount(loopdev::BusyPolicy::kDetach)
                         : loopdev::UnmountPath(os_, mnt, loopdev::BusyPolicy::kDetach);
  if (!s.ok()) {
    // Still mounted: parked again (the reaper retries) or held again, as before the Put.
    if (layer.parked) {
      Park(layer);
    } else {
      layer.refs = 1;
    }
    return s.Context("put layer " + id);
  }
  Unpark(layer);
  layer.mount.reset();
  if (clean && !LoopsBacking(backend_.VolumePath(id), loopdev::Deleted::kNo).empty()) {
    // The file system outlives our unmount (a busy mount detached lazily, or a copy of the
    // mount in another mount namespace): it can still be written.
    log::Warn("put_file_system_still_alive", {{"layer", id}});
    clean = false;
  }
  if (layer.mounted_rw && clean && layer.rec.dirty) {
    LayerRecord next = layer.rec;
    next.dirty = false;
    if (Persist(next).ok()) layer.rec = next;
  }
  layer.mounted_rw = false;
  return Status::Ok();
}

Status SlackerDriver::DiscardMount(const std::string& id, bool rw, std::optional<loopdev::MountedImage>& mount) {
  std::string mnt = MountPath(id);
  prefetch_->Settle(id);
  if (rw) {
    // Its file is deleted next: nothing it holds is needed, so nothing is written back.
    // Without this the unmount flushes the file system and its journal (syncs that made a
    // container's removal slow, issue 17).
    Status s = os_.Shutdown(mnt);
    if (!s.ok()) log::Warn("discard_shutdown_failed", {{"layer", id}, {"err", s.message()}});
  }
  return mount ? mount->Unmount(loopdev::BusyPolicy::kDetach) : loopdev::UnmountPath(os_, mnt, loopdev::BusyPolicy::kDetach);
}

Status SlackerDriver::DiscardMountLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  SLACKER_RETURN_IF_ERROR(DetachOverlay(layer).Context("unmount layer " + id));
  Status s = DiscardMount(id, layer.mounted_rw, layer.mount);
  if (!s.ok()) return s.Context("unmount layer " + id);
  Unpark(layer);
  layer.mount.reset();
  layer.refs = 0;
  layer.mounted_rw = false;
  return Status::Ok();
}

Result<std::unique_ptr<LayerView>> SlackerDriver::OpenView(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "layer {} does not exist", id);
  {
    MutexLock l(layer->mu);
    if (layer->refs > 0 || layer->rec.has_volume ||
        (!layer->rec.snapshot.empty() && layer->rec.kind == LayerKind::kImage)) {
      SLACKER_ASSIGN_OR_RETURN(std::string path, GetLocked(*layer));
      return LayerView::OfLayer(*this, path, id);
    }
  }
  SLACKER_ASSIGN_OR_RETURN(std::string snap, ContentSnapshot(id));
  if (snap.empty()) return LayerView::OfDirectory(common::EmptyDir(opts_.state_dir));
  std::string dir = JoinPath(common::ViewsDir(opts_.state_dir), RandomHex(8));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  loopdev::MountedImage::Options ro;
  ro.read_only = true;
  auto mount = loopdev::MountedImage::Mount(os_, backend_.SnapshotPath(snap), dir, ro);
  if (!mount.ok()) {
    ::rmdir(dir.c_str());
    return mount.status().Context(fmt::format("mount snapshot {} of layer {}", snap, id));
  }
  return LayerView::OfMount(std::move(mount).value());
}

}  // namespace slacker::driver
