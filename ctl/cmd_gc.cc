// slackerctl gc: the protocol is in storage_backend/STORE.md.
#include "ctl/cli.h"

#include <sys/stat.h>

#include "ctl/gc.h"
#include "ctl/registry.h"
#include "ctl/state.h"
#include "storage_backend/lease.h"

namespace slacker::ctl {

using nlohmann::json;

namespace {

// Whether `host`'s lease on the store is held now (its temp files may be in flight).
bool HostLeaseLive(const std::string& store_root, const std::string& host) {
  auto h = storage_backend::ReadLease(JoinPath(store_root, storage_backend::kLeasesDir), host);
  return h.ok() && storage_backend::LeaseIsLive(*h, ::time(nullptr));
}

}  // namespace

// The gc protocol: storage_backend/STORE.md.
int CmdGc(Flags& f) {
  if (f.registry.empty() && !f.no_registry && f.do_delete) {
    return Usage("gc --delete needs --registry URL (or --no-registry, if no registry can hold references "
                 "to this store)");
  }
  auto w = OpenWorker(f);
  if (!w.ok()) return Fail(f, w.status());
  const std::string root = w->store->root();
  // One gc at a time per store, held (and refreshed) for the whole run.
  std::atomic<bool> lock_lost{false};  // declared first: the refresher writes it until gc_lock goes
  std::unique_ptr<storage_backend::Lease> gc_lock;
  if (f.do_delete) {
    auto l = storage_backend::Lease::Acquire(JoinPath(root, storage_backend::kLocksDir), storage_backend::kGcLockName,
                                             {.program = "slackerctl gc"});
    if (!l.ok()) return Fail(f, l.status().Context("take the store's gc lock"));
    gc_lock = std::move(*l);
    gc_lock->StartRefresher([&](const Status&) { lock_lost = true; });
    auto restored = ctl::LiftTombstones(root);
    if (!restored.ok()) return Fail(f, restored.status().Context("lift the tombstones of a crashed gc"));
    for (const auto& s : *restored) std::fprintf(stderr, "lifted the tombstone of snapshot %s (an interrupted gc)\n", s.c_str());
  }
  // Refs read before the registry walk: a snapshot marked now and pushed during the walk
  // is kept even if its layer is removed before the walk ends. Snapshots made after this
  // moment are never candidates of this run (a commit pushed and removed during the walk).
  time_t now = ::time(nullptr);
  auto refs = ctl::ReadAllRefs(root);
  if (!refs.ok()) return Fail(f, refs.status());
  std::set<std::string> host_refs;
  for (const auto& hr : *refs) host_refs.insert(hr.snapshots.begin(), hr.snapshots.end());
  auto snaps = w->store->ListSnapshots();
  if (!snaps.ok()) return Fail(f, snaps.status());

  std::optional<ctl::RegistryScan> scan;
  bool can_delete = true;
  if (!f.registry.empty()) {
    auto s = ctl::ScanRegistry(f.registry);
    if (!s.ok()) return Fail(f, s.status().Context("walk the registry (nothing deleted)"));
    scan = std::move(*s);
    for (const auto& u : scan->unreadable) {
      std::fprintf(stderr, "WARNING: could not check registry blob %s\n", u.c_str());
    }
    if (!scan->unreadable.empty()) {
      std::fprintf(stderr, "WARNING: %zu registry blobs could not be read; refusing to delete snapshots\n",
                   scan->unreadable.size());
      can_delete = false;
    }
  } else {
    std::fprintf(stderr,
                 "WARNING: REGISTRY REFERENCES WERE NOT CHECKED (no --registry): a snapshot listed below may "
                 "still be named by an image in a registry, and deleting it breaks every pull of that image.\n");
  }

  // Young snapshots may be between publishing and their first use: never touch them.
  std::vector<std::string> old_enough;
  std::vector<std::string> recent;
  for (const auto& s : *snaps) {
    struct stat st;
    bool young = ::stat(w->store->SnapshotPath(s).c_str(), &st) == 0 && st.st_mtime >= now - f.min_age_sec;
    (young ? recent : old_enough).push_back(s);
  }
  ctl::GcPlan plan = ctl::PlanGc(old_enough, host_refs, scan ? &scan->snapshots : nullptr);
  auto debris = ctl::FindDebris(root, now, f.min_age_sec,
                                [&](const std::string& host) { return HostLeaseLive(root, host); });
  if (!debris.ok()) return Fail(f, debris.status());

  bool deleting = f.do_delete && can_delete;
  if (deleting && lock_lost) return Fail(f, Errorf(ESTALE, "lost the store's gc lock during the walk (nothing deleted)"));
  ctl::SweepResult sweep;
  if (deleting) {
    auto r = ctl::SweepSnapshots(*w->store, plan.deletable, [&] {
      if (f.grace_sec > 0) {
        Progress(fmt::format("{} snapshots tombstoned; waiting {} s for workers' claims (--grace)", plan.deletable.size(),
                             f.grace_sec));
        ::sleep(static_cast<unsigned>(f.grace_sec));
      }
    });
    if (!r.ok()) return Fail(f, r.status());
    sweep = std::move(*r);
  }
  std::set<std::string> restored(sweep.restored.begin(), sweep.restored.end());
  std::map<std::string, std::string> failed(sweep.failed.begin(), sweep.failed.end());
  json deleted = json::array(), debris_out = json::array();
  uint64_t total = 0;
  int failures = static_cast<int>(failed.size());
  for (const auto& s : plan.deletable) {
    if (restored.count(s)) {
      if (!f.json) std::printf("kept snapshot %s: a worker claimed it during the gc\n", s.c_str());
      continue;
    }
    uint64_t bytes = AllocatedBytes(w->store->SnapshotPath(s)) +
                     AllocatedBytes(w->store->SnapshotFilePath(s, storage_backend::kSkeletonSuffix));
    total += bytes;
    std::string error = failed.count(s) ? failed[s] : "";
    deleted.push_back({{"snapshot", s}, {"bytes", bytes}, {"error", error}});
    if (!f.json) {
      std::printf("%s snapshot %s (%s)%s\n", deleting ? "deleted" : "would delete", s.c_str(),
                  HumanBytes(bytes).c_str(), error.empty() ? "" : (": FAILED: " + error).c_str());
    }
  }
  for (const auto& d : *debris) {
    total += d.bytes;
    std::string error;
    if (deleting) {
      Status st = RemoveFileIfExists(d.path);
      if (!st.ok()) error = st.message(), ++failures;
    }
    debris_out.push_back({{"path", d.path}, {"bytes", d.bytes}, {"error", error}});
    if (!f.json) {
      std::printf("%s debris %s (%s)%s\n", deleting ? "removed" : "would remove", d.path.c_str(),
                  HumanBytes(d.bytes).c_str(), error.empty() ? "" : (": FAILED: " + error).c_str());
    }
  }
  // Index entries whose snapshot is gone (after this run's deletions).
  auto stale = ctl::PruneIndexes(*w->store, deleting);
  if (!stale.ok()) return Fail(f, stale.status());
  json index_out = json::array();
  for (const auto& e : *stale) {
    if (!e.error.empty()) ++failures;
    index_out.push_back({{"path", e.path}, {"snapshot", e.snapshot}, {"error", e.error}});
    if (!f.json) {
      std::printf("%s index entry %s (snapshot %s is gone)%s\n", deleting ? "removed" : "would remove",
                  e.path.c_str(), e.snapshot.c_str(), e.error.empty() ? "" : (": FAILED: " + e.error).c_str());
    }
  }
  if (f.json) {
    json out = {{"dry_run", !deleting},
                {"registry_checked", scan.has_value()},
                {"snapshots", snaps->size()},
                {"kept_by_refs", plan.kept_by_refs},
                {"kept_by_registry", plan.kept_by_registry},
                {"kept_recent", recent},
                {"kept_claimed", sweep.restored},
                {"deletable", deleted},
                {"debris", debris_out},
                {"stale_index_entries", index_out},
                {"bytes", total}};
    if (scan) {
      out["registry"] = {{"url", f.registry}, {"repositories", scan->repositories}, {"manifests", scan->manifests},
                         {"reference_blobs", scan->reference_blobs}, {"untagged", scan->untagged},
                         {"unreadable", scan->unreadable}};
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%zu snapshots: %zu kept by refs, %zu kept by the registry%s, %zu younger than %lds kept, "
                "%zu claimed during the gc kept; %zu %s, %zu debris files, %zu stale index entries; %s %s\n",
                snaps->size(), plan.kept_by_refs.size(), plan.kept_by_registry.size(),
                scan ? "" : " (NOT CHECKED)", recent.size(), f.min_age_sec, sweep.restored.size(),
                plan.deletable.size() - sweep.restored.size(), deleting ? "deleted" : "deletable", debris->size(),
                stale->size(), HumanBytes(total).c_str(),
                deleting ? "freed" : "would be freed (dry run; --delete to delete)");
  }
  if (f.do_delete && !can_delete) return kExitError;
  return failures == 0 ? kExitOk : kExitError;
}

}  // namespace slacker::ctl
