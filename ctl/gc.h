// `slackerctl gc` (DESIGN.md §5): which snapshots may be deleted, and the store's debris.
#pragma once

#include <cstdint>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

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
// (<snap>.json, .skel) whose <snap>.img was never published.
struct Debris {
  std::string path;
  uint64_t bytes = 0;
};
Result<std::vector<Debris>> FindDebris(const std::string& store_root, time_t now, time_t min_age_sec);

}  // namespace slacker::ctl
