// Parked mounts (issue 17): a Put that releases a layer's last reference leaves the mount
// for DriverOptions::park_time; the reaper thread unmounts it then. And MountFile: never a
// second file system on one file. Why: driver/README.md "Start and stop".
#include <stdio.h>

#include <algorithm>
#include <cerrno>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/slacker_driver.h"

namespace slacker::driver {

using common::MutexLock;

void SlackerDriver::Park(Layer& layer) {
  layer.parked = true;
  layer.park_until = std::chrono::steady_clock::now() + opts_.park_time;
  {
    MutexLock l(park_mu_);
    parked_[layer.rec.id] = layer.park_until;
  }
  park_cv_.notify_one();
}

void SlackerDriver::Unpark(Layer& layer) {
  if (!layer.parked) return;
  layer.parked = false;
  DropPreparedHandOver(layer);  // held, unmounted or removed from now on: it may change
  MutexLock l(park_mu_);
  parked_.erase(layer.rec.id);
}

void SlackerDriver::QueueHandOverPrep(Layer& layer) {
  if (!prepare_handovers_ || !layer.rec.id.ends_with("-init")) return;
  {
    MutexLock l(park_mu_);
    prepares_.push_back(PrepJob{PrepJob::kHandOver, layer.rec.id});
  }
  prepare_cv_.notify_one();
}

// The preparer thread: hand-over clones and spare volumes (spares.cc), and the expiry of
// unused spares. Discards every spare when it stops.
void SlackerDriver::PrepareHandOvers() {
  park_mu_.Lock();
  for (;;) {
    if (stop_reaper_) break;
    if (!prepares_.empty()) {
      PrepJob job = std::move(prepares_.front());
      prepares_.pop_front();
      park_mu_.Unlock();  // a leaf lock: never held while taking a layer's mutex or doing I/O
      if (job.kind == PrepJob::kFillSpare) {
        FillSpare(job.arg);
      } else if (auto layer = layers_.Find(job.arg)) {
        MutexLock l(layer->mu);
        PrepareHandOverLocked(*layer);
      }
      park_mu_.Lock();
      continue;
    }
    std::vector<Spare> expired = ExpiredSparesLocked(/*all=*/false);
    if (!expired.empty()) {
      park_mu_.Unlock();
      for (auto& s : expired) DiscardSpare(s);
      park_mu_.Lock();
      continue;
    }
    if (spares_.empty()) {
      prepare_cv_.wait(park_mu_);
      continue;
    }
    auto next = std::min_element(spares_.begin(), spares_.end(), [](const auto& a, const auto& b) {
      return a.second.expires < b.second.expires;
    });
    const auto deadline = next->second.expires;  // a copy: the wait releases park_mu_
    prepare_cv_.wait_until(park_mu_, deadline);
  }
  park_mu_.Unlock();
  DiscardAllSpares();
}

// The conditions are TakeOverParentMount's for the parent. Nobody holds the layer
// (parked), so nothing writes its file system between the syncfs and the clone, nor
// after them until a Get, an unmount or a Remove Unparks it (which drops the clone).
void SlackerDriver::PrepareHandOverLocked(Layer& layer) {
  if (!layer.parked || !layer.mounted_rw || layer.refs != 0 || layer.removed || !layer.rec.has_volume ||
      !layer.mount || layer.loop_index() < 0 || layer.handover_prepared)
    return;
  if (!layer.rec.dirty && !layer.rec.snapshot.empty()) return;  // its child clones the snapshot
  const std::string& id = layer.rec.id;
  Status s = os_.SyncFs(MountPath(id)).Context("sync layer " + id);
  if (s.ok()) s = backend_.PrepareHandOver(id);
  if (!s.ok()) {
    // The child's Get does the whole hand-over itself, as without a preparer.
    log::Warn("handover_prepare_failed", {{"layer", id}, {"err", s.message()}});
    IgnoreError(backend_.DiscardHandOver(id), "start-up deletes a clone left beside its volume");
    return;
  }
  layer.handover_prepared = true;
  Count(&Counters::handovers_prepared);
  log::Debug("handover_prepared", {{"layer", id}});
}

void SlackerDriver::DropPreparedHandOver(Layer& layer) {
  if (!layer.handover_prepared) return;
  layer.handover_prepared = false;
  IgnoreError(backend_.DiscardHandOver(layer.rec.id), "start-up deletes a clone left beside its volume");
}

void SlackerDriver::ReapParked() {
  park_mu_.Lock();
  for (;;) {
    if (!teardowns_.empty()) {
      // First: a removed layer's mount and file (Remove returned already).
      Teardown t = std::move(teardowns_.front());
      teardowns_.pop_front();
      park_mu_.Unlock();
      TearDown(t);
      park_mu_.Lock();
      tearing_down_.erase(t.id);
      teardown_done_cv_.notify_all();
      continue;
    }
    if (stop_reaper_) break;
    if (parked_.empty()) {
      park_cv_.wait(park_mu_);
      continue;
    }
    auto next = std::min_element(parked_.begin(), parked_.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    // A copy: the wait releases park_mu_, and an Unpark meanwhile erases the entry (the
    // wait reads its deadline again when it wakes).
    const auto deadline = next->second;
    if (std::chrono::steady_clock::now() < deadline) {
      park_cv_.wait_until(park_mu_, deadline);
      continue;
    }
    std::string id = next->first;
    parked_.erase(next);
    park_mu_.Unlock();  // a leaf lock: never held while taking a layer's mutex
    ReapOne(id);
    park_mu_.Lock();
  }
  park_mu_.Unlock();
}

void SlackerDriver::ReapOne(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return;
  MutexLock l(layer->mu);
  // Re-checked under the layer's mutex: a Get may have taken it back, or a later Put
  // parked it again with a later time.
  if (!layer->parked || layer->refs != 0 || layer->removed) return;
  if (std::chrono::steady_clock::now() >= layer->park_until) {
    Status s = UnmountLocked(*layer);
    if (!s.ok()) log::Warn("parked_unmount_failed", {{"layer", id}, {"err", s.message()}});
  } else {
    MutexLock pl(park_mu_);
    parked_[id] = layer->park_until;
  }
}

// Remove with the teardown deferred: the record is renamed to `<id>.removing` (from then
// on the layer does not exist, for us and after a crash: start-up unmounts a mount
// without a record and deletes a volume no record claims), then the reaper discards the
// mount, deletes the file and last the `.removing` record. dockerd's `docker rm` does
// not wait for the teardown; slackerctl verify does not call the volume an orphan.
Status SlackerDriver::RemoveDeferred(Layer& layer) {
  const std::string id = layer.rec.id;
  std::string record = common::LayerRecordFile(opts_.state_dir, id);
  if (::rename(record.c_str(), RemovingPath(id).c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "remove layer " + id + ": rename " + record);
  }
  SLACKER_FAULT_POINT("remove.after_record");
  IgnoreError(RemoveFileIfExists(common::LayerReferenceFile(opts_.state_dir, id)), "the layer is gone (its record is removed); a stray .ref file is never read again");
  Teardown t;
  t.id = id;
  t.mounted = layer.mounted();
  t.rw = layer.mounted_rw;
  t.volume = layer.rec.has_volume;
  if (layer.overlaid) t.overlay_lower = layer.lower_held;
  layer.overlaid = false;
  layer.lower_held.clear();
  if (layer.mount) t.mount.emplace(std::move(*layer.mount));
  Unpark(layer);
  layer.mount.reset();
  layer.refs = 0;
  layer.mounted_rw = false;
  layer.removed = true;
  std::string snap = layer.rec.snapshot;
  layers_.Erase(id);
  if (!snap.empty()) claims_.Release(snap, id);
  {
    MutexLock l(park_mu_);
    tearing_down_.insert(id);
    teardowns_.push_back(std::move(t));
  }
  park_cv_.notify_one();
  log::Debug("remove", {{"layer", id}, {"teardown", "deferred"}});
  return Status::Ok();
}

// The reaper's half of RemoveDeferred. A failure is logged: the record is gone, so the
// next start-up unmounts and deletes what is left (and slackerctl verify reports it).
void SlackerDriver::TearDown(Teardown& t) {
  std::string mnt = MountPath(t.id);
  if (!t.overlay_lower.empty()) {
    std::string point = common::OverlayPoint(opts_.state_dir, t.id);
    Status s = loopdev::UnmountPath(os_, point, loopdev::BusyPolicy::kDetach);
    if (!s.ok()) log::Error("teardown_overlay_unmount_failed", {{"layer", t.id}, {"err", s.message()}});
    ::rmdir(point.c_str());
    ReleaseLower(t.overlay_lower);
  }
  if (t.mounted) {
    Status s = DiscardMount(t.id, t.rw, t.mount);
    if (!s.ok()) {
      log::Error("teardown_unmount_failed", {{"layer", t.id}, {"err", s.message()}});
      if (t.mount) t.mount->Release();
      return;  // the volume stays while mounted; start-up deletes it
    }
  }
  if (t.volume) {
    Status s = backend_.RemoveVolume(t.id);
    if (!s.ok()) log::Error("teardown_remove_volume_failed", {{"layer", t.id}, {"err", s.message()}});
  }
  SLACKER_FAULT_POINT("remove.after_volume");
  ::rmdir(mnt.c_str());
  IgnoreError(RemoveFileIfExists(RemovingPath(t.id)), "start-up deletes a leftover .removing record");
}

std::string SlackerDriver::RemovingPath(const std::string& id) const {
  return common::LayerRemovingFile(opts_.state_dir, id);
}

void SlackerDriver::AwaitTeardown(const std::string& id) {
  MutexLock l(park_mu_);
  while (tearing_down_.count(id) != 0) teardown_done_cv_.wait(park_mu_);
}

void SlackerDriver::AwaitTeardowns() {
  MutexLock l(park_mu_);
  while (!tearing_down_.empty()) teardown_done_cv_.wait(park_mu_);
}

// A loop device that already backs `file` carries a file system of it that may still be
// alive (the mount of a container whose mount namespace outlived our unmount, a lazily
// detached one, a parked mount adopted after a crash). Mounting that device joins the
// same file system (the kernel finds its super block by the device); a second loop
// device would start a second ext4 on the same blocks, each overwriting the other's
// metadata. The kernel refuses to join when the modes differ (a read-only mount of a
// file system alive read-write: EBUSY), and so do we, naming the device.
Result<loopdev::MountedImage> SlackerDriver::MountFile(const std::string& file, const std::string& target,
                                                       const loopdev::MountedImage::Options& options, bool fresh) {
  // A file this call made is a new inode: a loop device listing its path backs an older,
  // deleted file of that name, not this one. The scan reads every loop device's sysfs
  // entry (~3 ms with 50 of them, on each container's first Get).
  if (fresh) return loopdev::MountedImage::Mount(os_, file, target, options);
  std::vector<int> live = LoopsBacking(file, loopdev::Deleted::kNo);
  if (live.empty()) return loopdev::MountedImage::Mount(os_, file, target, options);
  std::string dev = fmt::format("/dev/loop{}", live.front());
  log::Warn("mount_joins_live_loop", {{"file", file}, {"device", dev}});
  Status s = loopdev::MountExt4(os_, dev, target, options.read_only);
  if (!s.ok()) {
    return Errorf(s.code() ? s.code() : EBUSY,
                  "{} is still in use through {} (a file system of it is alive, e.g. a mount in another "
                  "mount namespace) and joining it failed: {}; refusing to start a second file system on it",
                  file, dev, s.message());
  }
  return loopdev::MountedImage::Adopt(os_, target, dev, live.front());
}

}  // namespace slacker::driver
