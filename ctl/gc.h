// `slackerctl gc` (DESIGN.md §5): which snapshots may be deleted, and the store's debris.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage_backend/backend.h"

namespace slacker::ctl {

struct GcPlan {
  std::vector<std::string> deletable;         // no host's refs/ and no registry manifest use it
  std::vector<std::string> kept_by_refs;      // some host's refs/ marks it
  std::vector<std::string> kept_by_registry;  // only a registry manifest references it
};

// Decides over the published `snapshots`. `registry` is null when the registry was not
// consulted: then refs alone decide (the caller must warn and refuse to delete).
GcPlan PlanGc(const std::vector<std::string>& snapshots, const std::set<std::string>& host_refs,
              const std::set<std::string>* registry);

// Interrupted-operation leftovers on the store, older than `min_age_sec` at `now`:
// "*.tmp*" files under snapshots/, volumes/<host>/ and templates/, and snapshot companions
// (<snap>.json, .skel) whose <snap>.img was never published. Files under volumes/<host>/
// are left alone while `host_is_live(host)` (that host's lease is held: its clones may
// be in flight); a null `host_is_live` treats every host as live.
struct Debris {
  std::string path;
  uint64_t bytes = 0;
};
// Temp files and unpublished companions younger than this are never debris, whatever
// `min_age_sec` says: a snapshot being published has them for as long as its clone takes,
// and its tmp name carries no host whose lease could tell (`gc --min-age 0` deleted one
// in flight: e2e_lease_gc, CI run 8).
inline constexpr time_t kDebrisMinAgeSec = 600;
Result<std::vector<Debris>> FindDebris(const std::string& store_root, time_t now, time_t min_age_sec,
                                       const std::function<bool(const std::string&)>& host_is_live);

// The delete phase of the gc protocol (storage_backend/STORE.md). REQUIRES the store's gc
// lock held.
// Writes each candidate's tombstone (snapshots/<snap>.gc: a worker's claim check now
// fails; layers already using it are not disturbed), calls `wait_grace`, re-reads every
// host's refs/, then lifts the tombstones of the candidates some host marked meanwhile
// and deletes the others.
struct SweepResult {
  std::vector<std::string> deleted;
  std::vector<std::string> restored;  // claimed by a worker during the run
  std::vector<std::pair<std::string, std::string>> failed;  // snapshot, error
};
Result<SweepResult> SweepSnapshots(storage_backend::Backend& store, const std::vector<std::string>& candidates,
                                   const std::function<void()>& wait_grace);

// Removes the tombstones a crashed gc left; returns their snapshot ids. REQUIRES the gc
// lock.
Result<std::vector<std::string>> LiftTombstones(const std::string& store_root);

// Index entries on the store whose snapshot is gone: chains/<key> (the driver's dedup
// index) and containerd/names/<key>.json (the snapshotter's name index). With `remove`
// they are deleted (each re-read just before, so an entry rewritten meanwhile stays).
struct StaleIndexEntry {
  std::string path;
  std::string snapshot;
  std::string error;  // why removing it failed
};
Result<std::vector<StaleIndexEntry>> PruneIndexes(storage_backend::Backend& store, bool remove);

}  // namespace slacker::ctl
