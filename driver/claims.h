// Claims (storage_backend/STORE.md "Ref markers"): which layers of this host use each
// snapshot. refs/<host>/<snap> exists while a snapshot has claims: the first claim
// creates the marker, the last release deletes it.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "storage_backend/backend.h"

namespace slacker::driver {

class ClaimSet {
 public:
  // REQUIRES: `backend` outlives the set.
  explicit ClaimSet(storage_backend::Backend& backend) : backend_(backend) {}

  // Adds `layer_id`'s claim, creating the marker (durably) if it is the first.
  Status Claim(const std::string& snap, const std::string& layer_id) EXCLUDES(mu_);
  // As Claim, for a snapshot the backend just published (and marked) for this layer.
  void NoteClaim(const std::string& snap, const std::string& layer_id) EXCLUDES(mu_);
  // Drops `layer_id`'s claim; the last one deletes the marker.
  void Release(const std::string& snap, const std::string& layer_id) EXCLUDES(mu_);
  // Releases `old_snap` if a layer's record moved from it to another snapshot.
  void ReleaseReplaced(const std::string& old_snap, const std::string& new_snap, const std::string& layer_id)
      EXCLUDES(mu_);
  // After Claim: whether the snapshot may be used (its image exists and no gc tombstoned
  // it; a claim made before the tombstone is seen by that gc's re-check).
  bool Claimable(const std::string& snap) const;
  // Start-up (under the host id's lease): the claims are exactly `uses` (snapshot, layer
  // id) of the records; deletes the markers no record names and re-creates missing ones.
  Status Reconcile(const std::vector<std::pair<std::string, std::string>>& uses) EXCLUDES(mu_);

 private:
  storage_backend::Backend& backend_;
  // A leaf lock, held across marker file operations so that a Release that deletes a
  // marker never races a Claim that found it present: no other lock is taken under it.
  common::Mutex mu_;
  std::map<std::string, std::set<std::string>> claims_ GUARDED_BY(mu_);  // snapshot -> layer ids
};

}  // namespace slacker::driver
