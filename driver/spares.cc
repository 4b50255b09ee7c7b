// Spare volumes (issue 17): dockerd's `docker create` Gets a new `<id>-init` layer, whose
// volume is a clone of the image's snapshot, attached and mounted (~3-4 ms of the
// create). After such a Get the preparer thread makes the next one ahead: a clone of the
// same snapshot, attached and mounted at its own mount point, kept for
// DriverOptions::park_time. The next init layer on that image takes it over: its file is
// renamed to the layer's volume (the loop device follows the rename), the record written,
// the mount bound at the layer's mount point. Why that is the same as a clone made then:
// driver/README.md "Start and stop".
#include <sys/mount.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/slacker_driver.h"
#include "storage_backend/store_layout.h"

namespace slacker::driver {

using common::MutexLock;

namespace {
bool WantsSpare(const LayerRecord& rec) { return rec.size_bytes == 0 && rec.id.ends_with("-init"); }
}  // namespace

void SlackerDriver::QueueSpareFill(const LayerRecord& rec, const std::string& base) {
  if (!prepare_handovers_ || base.empty() || !WantsSpare(rec)) return;
  {
    MutexLock l(park_mu_);
    if (stop_reaper_ || spares_.count(base) != 0 || !spare_fills_.insert(base).second) return;
    prepares_.push_back(PrepJob{PrepJob::kFillSpare, base});
  }
  prepare_cv_.notify_one();
}

void SlackerDriver::FillSpare(const std::string& base) {
  Spare spare;
  spare.id = storage_backend::NewSpareVolumeName();
  std::string mnt = MountPath(spare.id);
  Status s = backend_.CloneSnapshot(base, spare.id);
  if (s.ok()) s = MakeDirs(mnt, 0755);
  if (s.ok()) {
    auto m = MountFile(backend_.VolumePath(spare.id), mnt, loopdev::MountedImage::Options{}, /*fresh=*/true);
    if (m.ok()) spare.mount.emplace(std::move(m).value());
    else s = m.status();
  }
  if (!s.ok()) {
    log::Warn("spare_fill_failed", {{"snapshot", base}, {"err", s.message()}});
    DiscardSpare(spare);
  }
  {
    MutexLock l(park_mu_);
    spare_fills_.erase(base);
    if (s.ok() && !stop_reaper_ && spares_.count(base) == 0) {
      spare.expires = std::chrono::steady_clock::now() + opts_.park_time;
      spares_.emplace(base, std::move(spare));
      Count(&Counters::spares_made);
      return;
    }
  }
  if (s.ok()) DiscardSpare(spare);  // one was made meanwhile, or the driver is stopping
}

std::optional<SlackerDriver::Spare> SlackerDriver::TakeSpare(const std::string& base) {
  MutexLock l(park_mu_);
  auto it = spares_.find(base);
  if (it == spares_.end()) return std::nullopt;
  Spare s = std::move(it->second);
  spares_.erase(it);
  return s;
}

// Nothing was ever written to it: shut down (no write-back), unmount, delete the file.
void SlackerDriver::DiscardSpare(Spare& spare) {
  if (spare.mount) {
    Status s = DiscardMount(spare.id, /*rw=*/true, spare.mount);
    if (!s.ok()) {
      log::Warn("spare_unmount_failed", {{"volume", spare.id}, {"err", s.message()}});
      spare.mount->Release();
      return;  // the volume stays while mounted; start-up removes both
    }
    spare.mount.reset();
  }
  IgnoreError(backend_.RemoveVolume(spare.id), "a spare volume no record claims is removed at the next start");
  ::rmdir(MountPath(spare.id).c_str());  // last: while it exists, the spare may still have a file
}

// Under the preparer's lock: the spares whose time is up (all when stopping), removed
// from the table; the caller discards them without the lock.
std::vector<SlackerDriver::Spare> SlackerDriver::ExpiredSparesLocked(bool all) {
  std::vector<Spare> out;
  auto now = std::chrono::steady_clock::now();
  for (auto it = spares_.begin(); it != spares_.end();) {
    if (all || it->second.expires <= now) {
      out.push_back(std::move(it->second));
      it = spares_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

void SlackerDriver::DiscardAllSpares() {
  std::vector<Spare> gone;
  {
    MutexLock l(park_mu_);
    gone = ExpiredSparesLocked(/*all=*/true);
  }
  for (auto& s : gone) DiscardSpare(s);
}

// The layer's first Get would clone `base`: take the spare of it instead. kNone: no
// spare, or it could not be used (the caller clones); kVolume: the spare's file is the
// layer's volume, recorded, but its mount could not be moved (the caller mounts it).
Result<SlackerDriver::SpareUse> SlackerDriver::AdoptSpare(Layer& layer, const std::string& base,
                                                          const std::string& lower) {
  if (!WantsSpare(layer.rec)) return SpareUse::kNone;
  auto spare = TakeSpare(base);
  if (!spare) return SpareUse::kNone;
  const std::string id = layer.rec.id;
  Status s = backend_.RenameVolume(spare->id, id);
  if (!s.ok()) {
    bool renamed = !PathExists(backend_.VolumePath(spare->id));
    log::Warn("spare_rename_failed", {{"layer", id}, {"volume", spare->id}, {"err", s.message()}});
    if (!renamed) {
      DiscardSpare(*spare);
      return SpareUse::kNone;
    }
    // Renamed, then the directory's fsync failed: the file is the layer's; drop it.
    IgnoreError(DiscardMount(spare->id, true, spare->mount), "rollback; start-up unmounts what is left");
    IgnoreError(backend_.RemoveVolume(id), "rollback: the rename error is what the caller must see");
    return s.Context("take spare volume " + spare->id + " for layer " + id);
  }
  SLACKER_FAULT_POINT("spare.after_rename");
  LayerRecord next = layer.rec;
  next.has_volume = true;
  next.dirty = true;
  next.lower = lower;
  if (Status p = Persist(next); !p.ok()) {
    IgnoreError(DiscardMount(spare->id, true, spare->mount), "rollback; start-up unmounts what is left");
    ::rmdir(MountPath(spare->id).c_str());
    IgnoreError(backend_.RemoveVolume(id), "rollback: the Persist error is what the caller must see");
    return p;
  }
  layer.rec = next;
  Count(&Counters::clones);
  SLACKER_FAULT_POINT("spare.after_record");
  std::string smnt = MountPath(spare->id), mnt = MountPath(id);
  std::string device = spare->mount->device();
  int loop = spare->mount->loop_index();
  Status b = os_.Mount(smnt, mnt, "", MS_BIND, "");
  if (b.ok()) b = loopdev::UnmountPath(os_, smnt, loopdev::BusyPolicy::kDetach);
  if (!b.ok()) {
    // The file is the layer's volume now: write it back and unmount it the ordinary way;
    // the caller mounts it as any volume.
    log::Warn("spare_mount_move_failed", {{"layer", id}, {"err", b.message()}});
    IgnoreError(os_.Unmount(mnt, 0), "the bind may not exist");
    SLACKER_RETURN_IF_ERROR(spare->mount->Unmount(loopdev::BusyPolicy::kDetach).Context("unmount spare " + smnt));
    ::rmdir(smnt.c_str());
    return SpareUse::kVolume;
  }
  spare->mount->Release();
  ::rmdir(smnt.c_str());
  layer.mount.emplace(loopdev::MountedImage::Adopt(os_, mnt, device, loop));
  layer.mounted_rw = true;
  layer.refs = 1;
  layer.current.Mounted(layer.rec, SampleWrites(loop, mnt));
  Count(&Counters::rw_mounts);
  Count(&Counters::spare_hits);
  log::Debug("spare_taken", {{"layer", id}, {"snapshot", base}});
  return SpareUse::kMounted;
}

}  // namespace slacker::driver
