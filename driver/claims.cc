#include "driver/claims.h"

#include "common/files.h"
#include "common/log.h"

namespace slacker::driver {

using common::MutexLock;

Status ClaimSet::Claim(const std::string& snap, const std::string& layer_id) {
  MutexLock l(mu_);
  auto& holders = claims_[snap];
  if (holders.empty()) {
    Status s = backend_.AddRef(snap);
    if (!s.ok()) {
      claims_.erase(snap);
      return s;
    }
  }
  holders.insert(layer_id);
  return Status::Ok();
}

void ClaimSet::NoteClaim(const std::string& snap, const std::string& layer_id) {
  MutexLock l(mu_);
  claims_[snap].insert(layer_id);
}

void ClaimSet::Release(const std::string& snap, const std::string& layer_id) {
  MutexLock l(mu_);
  auto it = claims_.find(snap);
  if (it == claims_.end()) return;
  it->second.erase(layer_id);
  if (!it->second.empty()) return;
  claims_.erase(it);
  Status s = backend_.DropRef(snap);
  // A marker left behind only keeps the snapshot from gc; the next start removes it.
  if (!s.ok()) log::Warn("drop_ref_failed", {{"snapshot", snap}, {"err", s.message()}});
}

void ClaimSet::ReleaseReplaced(const std::string& old_snap, const std::string& new_snap,
                               const std::string& layer_id) {
  if (!old_snap.empty() && old_snap != new_snap) Release(old_snap, layer_id);
}

bool ClaimSet::Claimable(const std::string& snap) const {
  return backend_.SnapshotExists(snap) &&
         !PathExists(backend_.SnapshotFilePath(snap, storage_backend::kGcTombstoneSuffix));
}

Status ClaimSet::Reconcile(const std::vector<std::pair<std::string, std::string>>& uses) {
  MutexLock l(mu_);
  claims_.clear();
  for (const auto& [snap, id] : uses) claims_[snap].insert(id);
  SLACKER_ASSIGN_OR_RETURN(auto marked, backend_.ListRefs());
  std::set<std::string> have(marked.begin(), marked.end());
  for (const auto& snap : marked) {
    if (claims_.count(snap)) continue;
    // Published, then the record was never written (a crash), or an older release's
    // marker of a replaced snapshot: no layer of this host uses it.
    log::Info("recover_drop_unclaimed_ref", {{"snapshot", snap}});
    SLACKER_RETURN_IF_ERROR(backend_.DropRef(snap).Context("recover: drop unclaimed ref marker"));
  }
  for (const auto& [snap, holders] : claims_) {
    if (have.count(snap)) continue;
    log::Warn("recover_add_missing_ref", {{"snapshot", snap}});
    SLACKER_RETURN_IF_ERROR(backend_.AddRef(snap).Context("recover: re-create ref marker"));
  }
  return Status::Ok();
}

}  // namespace slacker::driver
