#include "ctl/gc.h"

#include <sys/stat.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "ctl/state.h"

namespace slacker::ctl {

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
    if (n.ends_with(storage_backend::kGcTombstoneSuffix)) continue;  // a gc's, lifted at its next start
    bool debris = n.find(".tmp") != std::string::npos;
    if (!debris && companions && !n.ends_with(".img")) {
      size_t dot = n.find('.');
      std::string img = dot == std::string::npos ? "" : JoinPath(dir, n.substr(0, dot) + ".img");
      debris = !img.empty() && !PathExists(img);
    }
    if (debris) out->push_back({path, static_cast<uint64_t>(st.st_blocks) * 512});
  }
}
}  // namespace

Result<std::vector<Debris>> FindDebris(const std::string& store_root, time_t now, time_t min_age_sec,
                                       const std::function<bool(const std::string&)>& host_is_live) {
  std::vector<Debris> out;
  time_t cutoff = now - min_age_sec;
  ScanDir(JoinPath(store_root, "snapshots"), cutoff, true, &out);
  ScanDir(JoinPath(store_root, "templates"), cutoff, false, &out);
  std::string volumes = JoinPath(store_root, "volumes");
  auto hosts = ListDir(volumes);
  if (hosts.ok()) {
    std::sort(hosts->begin(), hosts->end());
    for (const auto& h : *hosts) {
      // A host's clone temp files are its own until its lease goes stale.
      if (host_is_live == nullptr || host_is_live(h)) continue;
      ScanDir(JoinPath(volumes, h), cutoff, false, &out);
    }
  }
  return out;
}

namespace {

std::string TombstonePath(const storage_backend::Backend& store, const std::string& snap) {
  return store.SnapshotFilePath(snap, storage_backend::kGcTombstoneSuffix);
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
  std::string dir = JoinPath(store_root, "snapshots");
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDir(dir));
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (!n.ends_with(storage_backend::kGcTombstoneSuffix)) continue;
    std::string snap = n.substr(0, n.size() - std::string_view(storage_backend::kGcTombstoneSuffix).size());
    if (!storage_backend::IsValidSnapshotId(snap)) continue;
    SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(JoinPath(dir, n)));
    out.push_back(snap);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// The snapshot an index file names: chains/ files hold "<snap>\n", name files JSON.
std::string IndexedSnapshot(const std::string& text, bool is_json) {
  if (!is_json) return text.substr(0, text.find('\n'));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("snapshot") || !j["snapshot"].is_string()) return "";
  return j["snapshot"].get<std::string>();
}

}  // namespace

Result<std::vector<StaleIndexEntry>> PruneIndexes(storage_backend::Backend& store, bool remove) {
  std::vector<StaleIndexEntry> out;
  for (auto [sub, is_json] : {std::pair{"chains", false}, std::pair{"containerd/names", true}}) {
    std::string dir = JoinPath(store.root(), sub);
    auto names = ListDir(dir);
    if (!names.ok()) {
      if (names.status().code() == ENOENT) continue;
      return names.status().Context("prune " + dir);
    }
    std::sort(names->begin(), names->end());
    for (const auto& n : *names) {
      if (n.find(".tmp") != std::string::npos) continue;  // an index write in flight
      std::string path = JoinPath(dir, n);
      auto text = ReadFileToString(path);
      if (!text.ok()) continue;
      std::string snap = IndexedSnapshot(*text, is_json);
      if (snap.empty() || store.SnapshotExists(snap)) continue;
      StaleIndexEntry e{path, snap, ""};
      if (remove) {
        // Re-read: a worker may have published a new snapshot under this key meanwhile.
        auto again = ReadFileToString(path);
        if (!again.ok() || *again != *text) continue;
        Status s = RemoveFileIfExists(path);
        if (!s.ok()) e.error = s.message();
      }
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace slacker::ctl
