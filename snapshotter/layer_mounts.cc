#include "snapshotter/layer_mounts.h"

#include "common/log.h"

namespace slacker::snapshotter {

using common::MutexLock;

std::shared_ptr<common::Mutex> LayerMounts::LayerMutex(const std::string& layer) {
  MutexLock l(mu_);
  auto& m = layer_mu_[layer];
  if (!m) m = std::make_shared<common::Mutex>();
  return m;
}

Result<std::string> LayerMounts::Ensure(const std::string& layer) {
  auto lm = LayerMutex(layer);
  MutexLock ll(*lm);
  return MountLocked(layer);
}

Result<std::string> LayerMounts::MountLocked(const std::string& layer) {
  {
    MutexLock l(mu_);
    auto it = mounts_.find(layer);
    if (it != mounts_.end()) return it->second;
  }
  std::string dir;
  auto meta = driver_.GetMetadata(layer);
  if (meta.ok() && meta->count("MergedDir")) {
    dir = (*meta)["MergedDir"];
  } else {
    SLACKER_ASSIGN_OR_RETURN(dir, driver_.Get(layer, ""));
  }
  MutexLock l(mu_);
  mounts_[layer] = dir;
  return dir;
}

Result<std::string> LayerMounts::AcquireView(const std::string& layer) {
  auto lm = LayerMutex(layer);
  MutexLock ll(*lm);
  SLACKER_ASSIGN_OR_RETURN(std::string dir, MountLocked(layer));
  MutexLock l(mu_);
  view_refs_[layer]++;
  return dir;
}

Status LayerMounts::ReleaseView(const std::string& layer) {
  auto lm = LayerMutex(layer);
  MutexLock ll(*lm);
  {
    MutexLock l(mu_);
    if (--view_refs_[layer] > 0) return Status::Ok();
    view_refs_.erase(layer);
    if (!mounts_.erase(layer)) return Status::Ok();  // never mounted (it failed at start)
  }
  return driver_.Put(layer);
}

Status LayerMounts::Drop(const std::string& layer) {
  auto lm = LayerMutex(layer);
  MutexLock ll(*lm);
  bool held;
  {
    MutexLock l(mu_);
    held = mounts_.erase(layer) > 0;
    view_refs_.erase(layer);
  }
  if (held) {
    Status put = driver_.Put(layer);
    if (!put.ok()) log::Warn("put_before_remove_failed", {{"layer", layer}, {"err", put.message()}});
  }
  Status s = driver_.Remove(layer);
  MutexLock l(mu_);
  layer_mu_.erase(layer);
  return s;
}

}  // namespace slacker::snapshotter
