#include "ctl/gc.h"

#include <sys/stat.h>

#include <algorithm>

#include "common/files.h"
#include "ctl/state.h"

namespace slacker::ctl {

namespace sb = storage_backend;

GcPlan PlanGc(const std::vector<std::string>& snapshots, const std::set<std::string>& host_refs,
              const std::set<std::string>* registry) {
  GcPlan plan;
  for (const auto& s : snapshots) {
    if (host_refs.count(s)) {
      plan.kept_by_refs.push_back(s);
    } else if (registry != nullptr && registry->count(s)) {
      plan.kept_by_registry.push_back(s);
    } else {
      plan.deletable.push_back(s);
    }
  }
  return plan;
}

namespace {
void ScanDir(const std::string& dir, time_t cutoff, bool companions, std::vector<Debris>* out) {
  auto names = ListDir(dir);
  if (!names.ok()) return;  // a missing dir has no debris
  std::sort(names->begin(), names->end());
  for (const auto& n : *names) {
    std::string path = JoinPath(dir, n);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_mtime > cutoff) continue;
    if (n.ends_with(sb::kGcTombstoneSuffix)) continue;  // a gc's, lifted at its next start
    bool debris = sb::IsTempName(n);
    if (!debris && companions && !n.ends_with(sb::kImageSuffix)) {
      std::string snap = sb::SnapshotPrefixOf(n);
      debris = !snap.empty() && !PathExists(JoinPath(dir, snap + sb::kImageSuffix));
    }
    if (debris) out->push_back({path, static_cast<uint64_t>(st.st_blocks) * 512});
  }
}
}  // namespace

Result<std::vector<Debris>> FindDebris(const std::string& store_root, time_t now, time_t min_age_sec,
                                       const std::function<bool(const std::string&)>& host_is_live) {
  std::vector<Debris> out;
  time_t cutoff = now - std::max(min_age_sec, kDebrisMinAgeSec);
  ScanDir(JoinPath(store_root, sb::kSnapshotsDir), cutoff, true, &out);
  ScanDir(JoinPath(store_root, sb::kTemplatesDir), cutoff, false, &out);
  std::string volumes = JoinPath(store_root, sb::kVolumesDir);
  auto hosts = ListDir(volumes);
  if (hosts.ok()) {
    std::sort(hosts->begin(), hosts->end());
    for (const auto& h : *hosts) {
      // A host's clone temp files are its own until its lease goes stale.
      if (host_is_live == nullptr || host_is_live(h)) continue;
      ScanDir(JoinPath(store_root, sb::HostVolumesDir(h)), cutoff, false, &out);
    }
  }
  return out;
}

namespace {

std::string TombstonePath(const storage_backend::Backend& store, const std::string& snap) {
  return store.SnapshotFilePath(snap, sb::kGcTombstoneSuffix);
}

Result<std::set<std::string>> AllRefs(const std::string& store_root) {
  SLACKER_ASSIGN_OR_RETURN(auto refs, ReadAllRefs(store_root));
  std::set<std::string> out;
  for (const auto& hr : refs) out.insert(hr.snapshots.begin(), hr.snapshots.end());
  return out;
}



}  // namespace

Result<SweepResult> SweepSnapshots(storage_backend::Backend& store, const std::vector<std::string>& candidates,
                                   const std::function<void()>& wait_grace) {
  SweepResult out;
  std::vector<std::string> doomed;
  for (const auto& snap : candidates) {
    Status s = AtomicWriteFile(TombstonePath(store, snap), "");
    if (s.ok()) {
      doomed.push_back(snap);
    } else {
      out.failed.emplace_back(snap, s.message());
    }
  }
  if (doomed.empty()) return out;
  wait_grace();
  // A worker marks a snapshot before it checks for a tombstone; any claim that saw no
  // tombstone is in refs/ now.
  auto marked = AllRefs(store.root());
  if (!marked.ok()) {
    for (const auto& snap : doomed) {
      Status s = RemoveFileIfExists(TombstonePath(store, snap));
      if (!s.ok()) out.failed.emplace_back(snap, s.message());
    }
    return marked.status().Context("re-read refs before deleting (nothing deleted)");
  }
  for (const auto& snap : doomed) {
    if (marked->count(snap)) {
      Status s = RemoveFileIfExists(TombstonePath(store, snap));
      if (s.ok()) {
        out.restored.push_back(snap);
      } else {
        out.failed.emplace_back(snap, s.message());
      }
      continue;
    }
    Status s = store.RemoveSnapshot(snap);  // image first, then .json, .skel, .gc
    if (s.ok()) {
      out.deleted.push_back(snap);
    } else {
      out.failed.emplace_back(snap, s.message());
    }
  }
  return out;
}

Result<std::vector<std::string>> LiftTombstones(const std::string& store_root) {
  std::string dir = JoinPath(store_root, sb::kSnapshotsDir);
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDir(dir));
  std::vector<std::string> out;
  for (const auto& n : names) {
    auto snap = sb::SnapshotIdOf(n, sb::kGcTombstoneSuffix);
    if (!snap) continue;
    SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(JoinPath(dir, n)));
    out.push_back(*snap);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<StaleIndexEntry>> PruneIndexes(storage_backend::Backend& store, bool remove) {
  std::vector<StaleIndexEntry> out;
  // Each removal re-reads its entry (Remove*): a worker may have published a new
  // snapshot under the key meanwhile, and then the entry stays.
  auto note = [&](const std::string& rel, const std::string& snap, const std::function<Result<bool>()>& rm) {
    StaleIndexEntry e{JoinPath(store.root(), rel), snap, ""};
    if (remove) {
      auto removed = rm();
      if (!removed.ok()) {
        e.error = removed.status().message();
      } else if (!*removed) {
        return;
      }
    }
    out.push_back(std::move(e));
  };
  SLACKER_ASSIGN_OR_RETURN(auto chains, store.ListChains());
  for (const auto& c : chains) {
    if (store.SnapshotExists(c.snapshot)) continue;
    note(sb::ChainFile(c.key), c.snapshot, [&] { return store.RemoveChain(c.key, c.snapshot); });
  }
  SLACKER_ASSIGN_OR_RETURN(auto names, store.ListNames());
  for (const auto& n : names) {
    if (store.SnapshotExists(n.snapshot)) continue;
    note(sb::NameFile(n.ns, n.name), n.snapshot, [&] { return store.RemoveName(n.ns, n.name, n.snapshot); });
  }
  return out;
}

}  // namespace slacker::ctl
