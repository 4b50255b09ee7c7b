// Start-up (DESIGN.md §6, driver/README.md "Crash safety"): reload the layer records,
// re-sync with the kernel's mounts and loop devices, and finish or roll back what a crash
// interrupted. Runs under <state>/lock and the host id's lease (cmd/daemon.cc) before any
// call: each phase says what crash it repairs.
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/files.h"
#include "common/log.h"
#include "driver/slacker_driver.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"

namespace slacker::driver {

using common::MutexLock;

Status SlackerDriver::Recover() {
  SLACKER_RETURN_IF_ERROR(RemoveLeftoverSpool());
  // A hand-over (mounts.cc TakeOverParentMount) interrupted between its renames: the
  // parent's clone goes back into place before anything looks at volumes.
  SLACKER_ASSIGN_OR_RETURN(auto restored, backend_.RecoverHandOvers());
  for (const auto& l : restored) log::Warn("recover_handover", {{"layer", l}});
  SLACKER_RETURN_IF_ERROR(LoadRecords());
  std::set<std::string> mounted_sources;  // "/dev/loopN" of the mounts kept
  SLACKER_RETURN_IF_ERROR(AdoptMounts(mounted_sources));
  SLACKER_RETURN_IF_ERROR(AdoptOverlays());
  RemoveStrayCloneTempFiles();
  RemoveStrayVolumes(mounted_sources);
  DetachIdleLoops(mounted_sources);
  RemoveOrphanInitLayers();
  RemoveFinishedRemovals();
  SLACKER_RETURN_IF_ERROR(ReconcileMarkers());
  log::Info("recovered", {{"layers", std::to_string(layers_.Ids().size())}});
  return Status::Ok();
}

// An ApplyDiff interrupted while it spooled its tar.
Status SlackerDriver::RemoveLeftoverSpool() {
  const std::string spool = common::SpoolDir(opts_.state_dir);
  SLACKER_ASSIGN_OR_RETURN(auto spooled, ListDir(spool));
  for (const auto& f : spooled) {
    IgnoreError(RemoveFileIfExists(JoinPath(spool, f)), "a leftover spool file only wastes space; the next start removes it");
  }
  return Status::Ok();
}

// A Remove whose deferred teardown a crash interrupted: its mount (no record) was
// unmounted and its volume (no record claims it) deleted by the phases above; what is
// left is the `.removing` record.
void SlackerDriver::RemoveFinishedRemovals() {
  auto names = ListDir(common::LayersDir(opts_.state_dir));
  if (!names.ok()) return;
  for (const auto& name : *names) {
    auto removing = common::LayerIdOfRemovingName(name);
    if (!removing) continue;
    const std::string& id = *removing;
    log::Info("recover_finish_removal", {{"layer", id}});
    ::rmdir(MountPath(id).c_str());
    IgnoreError(RemoveFileIfExists(RemovingPath(id)), "a leftover .removing record is deleted at the next start");
  }
}

// layers/<id>.json; the temp files of an interrupted atomic write are deleted.
Status SlackerDriver::LoadRecords() {
  std::string layers_dir = common::LayersDir(opts_.state_dir);
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDir(layers_dir));
  for (const auto& name : names) {
    std::string path = JoinPath(layers_dir, name);
    if (common::IsStateTempName(name)) {
      IgnoreError(RemoveFileIfExists(path), "an interrupted write's temp file is never read; the next start removes it");
      continue;
    }
    if (!common::LayerIdOfRecordName(name)) continue;
    SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    auto rec = LayerRecord::FromJson(text);
    if (!rec.ok()) {
      log::Error("layer_record_unreadable", {{"file", path}, {"err", rec.status().message()}});
      continue;
    }
    std::string id = rec->id;
    layers_.Insert(std::make_shared<Layer>(std::move(rec).value()), id);
  }
  return Status::Ok();
}

// Mounts under <state>/mnt/ are adopted: dockerd still holds its Get of a mounted layer
// (a running container) and will Put it once. Stale views and orphan mounts are
// unmounted. `mounted_sources` gets the devices of the mounts kept.
Status SlackerDriver::AdoptMounts(std::set<std::string>& mounted_sources) {
  SLACKER_ASSIGN_OR_RETURN(auto mounts, loopdev::ReadMountInfo(os_));
  std::string mnt_prefix = common::MountsDir(opts_.state_dir) + "/";
  std::string views_prefix = common::ViewsDir(opts_.state_dir) + "/";
  for (const auto& m : mounts) {
    if (m.mount_point.starts_with(views_prefix)) {
      IgnoreError(loopdev::UnmountPath(os_, m.mount_point, loopdev::BusyPolicy::kDetach), "recovery goes on; a view left mounted is reported by slackerctl verify");
      ::rmdir(m.mount_point.c_str());
      continue;
    }
    if (!m.mount_point.starts_with(mnt_prefix)) continue;
    std::string id = m.mount_point.substr(mnt_prefix.size());
    auto layer = layers_.Find(id);
    if (!layer) {
      log::Warn("recover_unmount_orphan", {{"path", m.mount_point}});
      IgnoreError(loopdev::UnmountPath(os_, m.mount_point, loopdev::BusyPolicy::kDetach), "recovery goes on; an orphan mount left is reported by slackerctl verify");
      continue;
    }
    MutexLock l(layer->mu);
    bool rw = m.options.find("ro") != 0;
    if (rw && !layer->rec.has_volume) {
      // A rw mount of a layer without a volume is the staging mount of an interrupted
      // ApplyDiff: nobody holds it, and kept it would refuse dockerd's retry ("mounted").
      log::Warn("recover_unmount_interrupted_apply", {{"layer", id}, {"path", m.mount_point}});
      IgnoreError(loopdev::UnmountPath(os_, m.mount_point, loopdev::BusyPolicy::kDetach), "recovery goes on; the retried ApplyDiff reports the mount if it is still there");
      continue;
    }
    int index = -1;
    if (std::sscanf(m.source.c_str(), "/dev/loop%d", &index) != 1) index = -1;
    if (rw && index >= 0) {
      // The file system of another file (a hand-over interrupted before the parent's
      // mount moved to the child): adopting it as this layer's would let a discard of
      // this layer shut down the other layer's file system.
      auto backing = LoopsBacking(backend_.VolumePath(id), loopdev::Deleted::kNo);
      if (std::find(backing.begin(), backing.end(), index) == backing.end()) {
        log::Warn("recover_unmount_foreign", {{"layer", id}, {"path", m.mount_point}, {"device", m.source}});
        IgnoreError(loopdev::UnmountPath(os_, m.mount_point, loopdev::BusyPolicy::kDetach), "recovery goes on; a mount left is reported by slackerctl verify");
        continue;
      }
    }
    // Mounted twice at one point (stacked): keep owning the topmost only, unmount none.
    if (layer->mount) layer->mount->Release();
    layer->mount.emplace(loopdev::MountedImage::Adopt(os_, m.mount_point, m.source, index));
    layer->refs = 1;
    layer->mounted_rw = rw;
    layer->current.Forget();  // the content may have changed while we were down
    if (rw) {
      // A crash between FIFREEZE and FITHAW (Diff of a running container) leaves the
      // file system frozen: every write in the container would hang forever.
      Status thaw = os_.Thaw(m.mount_point);
      if (thaw.ok()) log::Warn("recover_thawed", {{"layer", id}, {"path", m.mount_point}});
      else if (thaw.code() != EINVAL) log::Error("recover_thaw_failed", {{"layer", id}, {"err", thaw.message()}});
    }
    mounted_sources.insert(m.source);
    log::Info("recover_mounted_layer", {{"layer", id}, {"device", m.source}});
  }
  return Status::Ok();
}

// Overlay form: the shared lowers are adopted (idle ones stay mounted: a warm page
// cache, unmounted at Cleanup); an overlay is kept when its layer's volume mount was
// adopted (a running container uses it), else unmounted.
Status SlackerDriver::AdoptOverlays() {
  SLACKER_ASSIGN_OR_RETURN(auto mounts, loopdev::ReadMountInfo(os_));
  std::string lower_prefix = common::LowersDir(opts_.state_dir) + "/";
  std::string overlay_prefix = common::OverlaysDir(opts_.state_dir) + "/";
  for (const auto& m : mounts) {
    if (!m.mount_point.starts_with(lower_prefix)) continue;
    std::string snap = m.mount_point.substr(lower_prefix.size());
    int index = -1;
    if (std::sscanf(m.source.c_str(), "/dev/loop%d", &index) != 1) index = -1;
    MutexLock l(lowers_mu_);
    Lower& lower = lowers_[snap];
    if (lower.mount) lower.mount->Release();  // stacked: own the topmost
    lower.mount.emplace(loopdev::MountedImage::Adopt(os_, m.mount_point, m.source, index));
    log::Info("recover_lower", {{"snapshot", snap}, {"device", m.source}});
  }
  for (const auto& m : mounts) {
    if (!m.mount_point.starts_with(overlay_prefix)) continue;
    std::string id = m.mount_point.substr(overlay_prefix.size());
    auto layer = layers_.Find(id);
    bool keep = false;
    if (layer) {
      MutexLock l(layer->mu);
      if (layer->mount && layer->mounted_rw && !layer->rec.lower.empty() && !layer->overlaid) {
        MutexLock ll(lowers_mu_);
        auto it = lowers_.find(layer->rec.lower);
        if (it != lowers_.end() && it->second.mount) {
          ++it->second.refs;
          layer->overlaid = true;
          layer->lower_held = layer->rec.lower;
          keep = true;
        }
      }
    }
    if (keep) {
      log::Info("recover_overlay", {{"layer", id}});
      continue;
    }
    log::Warn("recover_unmount_overlay", {{"path", m.mount_point}});
    IgnoreError(loopdev::UnmountPath(os_, m.mount_point, loopdev::BusyPolicy::kDetach), "recovery goes on; an overlay left mounted is reported by slackerctl verify");
    ::rmdir(m.mount_point.c_str());
  }
  return Status::Ok();
}

// Clone temp files (<layer>.img.tmp-XXXX) in this host's volume dir: a crash between
// the clone and its rename. The dir is this host's alone, so none is in progress.
void SlackerDriver::RemoveStrayCloneTempFiles() {
  std::string volumes_dir = backend_.VolumePath("x");
  volumes_dir.resize(volumes_dir.rfind('/'));
  auto names = ListDir(volumes_dir);
  if (!names.ok()) return;
  for (const auto& f : *names) {
    if (!storage_backend::LayerOfVolumeCloneTemp(f)) continue;
    log::Warn("recover_remove_stray_clone", {{"file", JoinPath(volumes_dir, f)}});
    IgnoreError(RemoveFileIfExists(JoinPath(volumes_dir, f)), "a stray clone only wastes space; gc and the next start remove it");
  }
}

// A volume file whose record does not claim it: a half-done clone or ApplyDiff.
void SlackerDriver::RemoveStrayVolumes(const std::set<std::string>& mounted_sources) {
  auto volumes = backend_.ListVolumes();
  if (!volumes.ok()) return;
  for (const auto& v : *volumes) {
    auto layer = layers_.Find(v);
    bool keep = false;
    if (layer) {
      MutexLock l(layer->mu);
      keep = layer->rec.has_volume;
    }
    if (keep) continue;
    for (int idx : LoopsBacking(backend_.VolumePath(v))) {
      if (!mounted_sources.count(loopdev::LoopPath(idx))) IgnoreError(os_.LoopClear(idx), "a busy loop device is cleared by autoclear when its last user closes it");
    }
    log::Warn("recover_remove_stray_volume", {{"layer", v}});
    IgnoreError(backend_.RemoveVolume(v), "a stray volume only wastes space; the next start removes it");
  }
}

// Loops of our volumes that no mount holds (a crash between attach and mount).
void SlackerDriver::DetachIdleLoops(const std::set<std::string>& mounted_sources) {
  for (const auto& layer : layers_.All()) {
    std::string id;
    {
      MutexLock l(layer->mu);
      if (!layer->rec.has_volume || layer->refs > 0) continue;
      id = layer->rec.id;
    }
    for (int idx : LoopsBacking(backend_.VolumePath(id))) {
      if (!mounted_sources.count(loopdev::LoopPath(idx))) {
        log::Warn("recover_detach_loop", {{"layer", id}, {"loop", std::to_string(idx)}});
        IgnoreError(os_.LoopClear(idx), "a busy loop device is cleared by autoclear when its last user closes it");
      }
    }
  }
}

// dockerd creates <id>-init, Gets it, writes its stubs, Puts it and then creates <id>,
// all in one call (moby's CreateRWLayer), and never removes an init layer whose Get
// failed. An <id>-init without <id> is therefore the leftover of a creation interrupted
// by our crash: nobody will Put or Remove it. Remove it, with its mount and volume.
void SlackerDriver::RemoveOrphanInitLayers() {
  std::vector<std::string> orphans;
  for (const auto& id : layers_.Ids()) {
    if (id.ends_with("-init") && !layers_.Contains(id.substr(0, id.size() - 5))) orphans.push_back(id);
  }
  for (const auto& id : orphans) {
    log::Warn("recover_remove_orphan_init_layer", {{"layer", id}});
    Status s = Remove(id);
    if (!s.ok()) log::Error("recover_remove_orphan_failed", {{"layer", id}, {"err", s.message()}});
  }
}

// refs/<host>/ made to match the records (storage_backend/STORE.md "Ref markers").
Status SlackerDriver::ReconcileMarkers() {
  std::vector<std::pair<std::string, std::string>> uses;
  for (const auto& layer : layers_.All()) {
    MutexLock l(layer->mu);
    if (!layer->rec.snapshot.empty()) uses.emplace_back(layer->rec.snapshot, layer->rec.id);
  }
  return claims_.Reconcile(uses);
}

std::vector<int> SlackerDriver::LoopsBacking(const std::string& file, loopdev::Deleted deleted) {
  auto loops = loopdev::FindLoopsBacking(os_, file, deleted);
  if (!loops.ok()) {
    log::Warn("find_loops_failed", {{"file", file}, {"err", loops.status().message()}});
    return {};
  }
  return *loops;
}

}  // namespace slacker::driver
