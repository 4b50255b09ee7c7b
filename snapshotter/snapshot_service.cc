#include "snapshotter/snapshot_service.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/io.h"
#include "common/log.h"
#include "common/state_layout.h"
#include "registry_shim/reference.h"
#include "snapshotter/catalog.h"
#include "snapshotter/layer_mounts.h"

namespace slacker::snapshotter {

using nlohmann::json;

namespace {

driver::CreateRequest LayerRequest(const std::string& id, const std::string& parent) {
  driver::CreateRequest r;
  r.id = id;
  r.parent = parent;
  return r;
}

constexpr std::string_view kRefFile = "/.slacker/ref.json";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Used bytes and inodes of the file system mounted at `dir`.
Result<Usage> FsUse(const std::string& dir) {
  struct statvfs st;
  if (::statvfs(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "statfs " + dir);
  return Usage{static_cast<int64_t>((st.f_blocks - st.f_bfree) * st.f_frsize),
               static_cast<int64_t>(st.f_files - st.f_ffree)};
}

// containerd's unpacker and rootfs.ApplyLayer name extraction snapshots
// "extract-<unique> <chain id>" (snapshots.UnpackKeyFormat).
bool IsExtractionKey(const std::string& key) {
  const std::string rest = SplitBackendKey(key).second;
  return rest.compare(0, 8, "extract-") == 0;
}

}  // namespace

std::pair<std::string, std::string> SplitBackendKey(const std::string& key) {
  auto a = key.find('/');
  if (a == std::string::npos || a == 0) return {"", key};
  auto b = key.find('/', a + 1);
  if (b == std::string::npos || b == a + 1) return {"", key};
  for (size_t i = a + 1; i < b; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(key[i]))) return {"", key};
  }
  return {key.substr(0, a), key.substr(b + 1)};
}

Status StoreIndex::Publish(const std::string& ns, const Entry& e) {
  return store_.PublishName({ns, e.name, e.snapshot, e.bytes, e.inodes, e.host});
}

Result<StoreIndex::Entry> StoreIndex::Lookup(const std::string& ns, const std::string& name) const {
  SLACKER_ASSIGN_OR_RETURN(storage_backend::NameEntry n, store_.LookupName(ns, name));
  return Entry{n.name, n.snapshot, n.bytes, n.host, n.inodes};
}

namespace {

Record NewRecord(std::string name, Kind kind, std::string parent, Labels labels) {
  Record r;
  r.name = std::move(name);
  r.kind = kind;
  r.parent = std::move(parent);
  r.labels = std::move(labels);
  r.created_ns = r.updated_ns = NowNs();
  return r;
}

Info ToInfo(const Record& e) { return Info{e.name, e.parent, e.kind, e.labels, e.created_ns, e.updated_ns}; }

}  // namespace

SnapshotService::SnapshotService(driver::GraphDriver& driver, driver::SnapshotDriver& snapshots, ServiceOptions opts,
                                 std::unique_ptr<Catalog> catalog)
    : driver_(driver), snapshots_(snapshots), opts_(std::move(opts)), catalog_(std::move(catalog)),
      mounts_(std::make_unique<LayerMounts>(driver)) {
  if (!opts_.fs_use) opts_.fs_use = FsUse;
}

Result<std::unique_ptr<SnapshotService>> SnapshotService::Open(driver::GraphDriver& driver, ServiceOptions opts) {
  auto* snapshots = dynamic_cast<driver::SnapshotDriver*>(&driver);
  if (snapshots == nullptr) return Errorf(EINVAL, "the snapshotter needs a driver with snapshot operations");
  SLACKER_RETURN_IF_ERROR(MakeDirs(opts.state_dir, 0700));
  SLACKER_ASSIGN_OR_RETURN(auto catalog, Catalog::Open(common::SnapshotterCatalog(opts.state_dir)));
  std::unique_ptr<SnapshotService> s(new SnapshotService(driver, *snapshots, std::move(opts), std::move(catalog)));
  SLACKER_RETURN_IF_ERROR(MakeDirs(s->EmptyDir(), 0755));
  std::vector<Record> all = s->catalog_->List();
  for (const auto& e : all) {
    if (e.kind == Kind::kActive) {
      auto m = s->mounts_->Ensure(e.layer);
      if (!m.ok()) log::Error("remount_active_failed", {{"snapshot", e.name}, {"err", m.status().message()}});
    } else if (e.kind == Kind::kView && !e.layer.empty()) {
      auto m = s->mounts_->AcquireView(e.layer);
      if (!m.ok()) log::Error("remount_view_failed", {{"snapshot", e.name}, {"err", m.status().message()}});
    }
  }
  log::Info("catalog_loaded", {{"snapshots", std::to_string(all.size())}});
  return s;
}

SnapshotService::~SnapshotService() = default;

std::string SnapshotService::EmptyDir() const { return common::EmptyDir(opts_.state_dir); }

Result<std::string> SnapshotService::AcquireView(const std::string& layer) {
  if (layer.empty()) return EmptyDir();
  return mounts_->AcquireView(layer);
}

Status SnapshotService::ReleaseView(const std::string& layer) {
  if (layer.empty()) return Status::Ok();
  return mounts_->ReleaseView(layer);
}

void SnapshotService::RollBackLayer(const std::string& layer) {
  Status s = mounts_->Drop(layer);
  if (!s.ok()) log::Warn("rollback_layer_failed", {{"layer", layer}, {"err", s.message()}});
}

Result<std::vector<Mount>> SnapshotService::Prepare(const std::string& key, const std::string& parent,
                                                    const Labels& labels) {
  return Create(key, parent, labels, Kind::kActive);
}

Result<std::vector<Mount>> SnapshotService::View(const std::string& key, const std::string& parent,
                                                 const Labels& labels) {
  return Create(key, parent, labels, Kind::kView);
}

Result<std::string> SnapshotService::ReserveName(CatalogTransaction& txn, const std::string& name,
                                                 const std::string& parent) {
  // A name another call holds is being created, committed to, or removed: taken either way.
  if (!txn.LockExclusive(name).ok() || catalog_->Find(name)) return Errorf(EEXIST, "snapshot {} already exists", name);
  if (parent.empty()) return std::string();
  if (!txn.LockShared(parent).ok())
    return Errorf(ENOENT, "parent snapshot {} does not exist (it is being created or removed)", parent);
  auto p = catalog_->Find(parent);
  if (!p) return Errorf(ENOENT, "parent snapshot {} does not exist", parent);
  if (p->kind != Kind::kCommitted)
    return Errorf(EINVAL, "parent {} is not a committed snapshot (it is {})", parent, KindName(p->kind));
  return p->layer;
}

Status SnapshotService::MakeCommittedLayer(CatalogTransaction& txn, Record& r, const std::string& parent_layer,
                                           const std::string& snapshot, std::optional<std::string> parent_chain) {
  r.layer = RandomHex(16);
  txn.AddLayer(r.layer);
  txn.OnRollback([this, id = r.layer] { RollBackLayer(id); });
  SLACKER_RETURN_IF_ERROR(driver_.Create(LayerRequest(r.layer, parent_layer)));
  return snapshots_.CreateFromSnapshot({r.layer, snapshot, r.bytes, std::move(parent_chain)}).status();
}

std::optional<Status> SnapshotService::AdoptPublished(const std::string& key, const std::string& parent,
                                                      const std::string& parent_layer, const Labels& labels) {
  auto target_it = labels.find(kLabelSnapshotRef);
  if (target_it == labels.end() || target_it->second.empty() || !opts_.index) return std::nullopt;
  const std::string& target = target_it->second;
  auto [ns, rest] = SplitBackendKey(key);
  auto published = opts_.index->Lookup(ns, target);
  if (!published.ok()) {
    if (published.status().code() != ENOENT)
      log::Warn("index_lookup_failed", {{"target", target}, {"err", published.status().message()}});
    return std::nullopt;
  }
  // A unique backend name in the caller's namespace; containerd finds it by the label.
  // Its own transaction: a stale entry rolls back at once, and the Prepare goes on.
  CatalogTransaction txn(*catalog_);
  Record e = NewRecord(key.substr(0, key.size() - rest.size()) + "remote-" + RandomHex(4) + "/" + target,
                       Kind::kCommitted, parent, labels);
  e.bytes = published->bytes;
  e.inodes = published->inodes;
  Status made = txn.LockExclusive(e.name);
  if (made.ok() && !parent.empty()) made = txn.LockShared(parent);
  // The index names the tree by what it continues: the caller vouches for the binding.
  if (made.ok()) made = MakeCommittedLayer(txn, e, parent_layer, published->snapshot, std::nullopt);
  if (made.ok()) {
    txn.Put(e);
    made = txn.Commit();
  }
  if (!made.ok()) {
    // A stale index entry (snapshot deleted by gc, foreign store): unpack normally.
    log::Warn("remote_snapshot_unusable",
              {{"target", target}, {"snapshot", published->snapshot}, {"err", made.message()}});
    return std::nullopt;
  }
  log::Info("remote_snapshot", {{"key", key}, {"target", target}, {"name", e.name},
                                {"snapshot", published->snapshot}, {"published_by", published->host}});
  return Errorf(EEXIST, "target snapshot {} exists on the shared store (snapshot {})", target, published->snapshot);
}

Result<std::vector<Mount>> SnapshotService::Create(const std::string& key, const std::string& parent,
                                                   const Labels& labels, Kind kind) {
  if (key.empty()) return Errorf(EINVAL, "snapshot key must not be empty");
  CatalogTransaction txn(*catalog_);
  SLACKER_ASSIGN_OR_RETURN(std::string parent_layer, ReserveName(txn, key, parent));
  // Remote snapshot: the target is already on the shared store; commit it here and tell
  // containerd it exists, so the layer is neither downloaded nor unpacked.
  if (kind == Kind::kActive) {
    if (auto adopted = AdoptPublished(key, parent, parent_layer, labels)) return *adopted;
  }
  Record e = NewRecord(key, kind, parent, labels);
  if (kind == Kind::kView) {
    // A view shares its parent's read-only mount (never cloned).
    e.layer = parent_layer;
    SLACKER_ASSIGN_OR_RETURN(std::string dir, AcquireView(parent_layer));
    txn.OnRollback([this, parent_layer] {
      Status r = ReleaseView(parent_layer);
      if (!r.ok()) log::Warn("rollback_view_failed", {{"layer", parent_layer}, {"err", r.message()}});
    });
    txn.Put(e);
    SLACKER_RETURN_IF_ERROR(txn.Commit());
    return std::vector<Mount>{{"bind", dir, {"rbind", "ro"}}};
  }
  e.layer = RandomHex(16);
  txn.AddLayer(e.layer);
  txn.OnRollback([this, id = e.layer] { RollBackLayer(id); });
  SLACKER_RETURN_IF_ERROR(driver_.CreateReadWrite(LayerRequest(e.layer, parent_layer)).Context("prepare " + key));
  auto dir = mounts_->Ensure(e.layer);
  if (!dir.ok()) return dir.status().Context("prepare " + key);
  if (auto base = opts_.fs_use(*dir); base.ok()) {
    e.base_bytes = base->size;
    e.base_inodes = base->inodes;
  }
  txn.Put(e);
  SLACKER_RETURN_IF_ERROR(txn.Commit().Context("prepare " + key));
  log::Debug("prepare", {{"key", key}, {"parent", parent}, {"layer", e.layer}});
  return std::vector<Mount>{{"bind", *dir, {"rbind", "rw"}}};
}

Result<std::vector<Mount>> SnapshotService::Mounts(const std::string& key) {
  auto e = catalog_->Find(key);
  if (!e) return Errorf(ENOENT, "snapshot {} does not exist", key);
  if (e->kind == Kind::kCommitted)
    return Errorf(EINVAL, "snapshot {} is committed: prepare or view it to mount", key);
  if (e->kind == Kind::kView && e->layer.empty()) return std::vector<Mount>{{"bind", EmptyDir(), {"rbind", "ro"}}};
  SLACKER_ASSIGN_OR_RETURN(std::string dir, mounts_->Ensure(e->layer));
  return std::vector<Mount>{{"bind", dir, {"rbind", e->kind == Kind::kView ? "ro" : "rw"}}};
}

Result<std::optional<registry_shim::Reference>> SnapshotService::ReferenceOfExtraction(const std::string& key,
                                                                                       const Record& active) {
  if (!IsExtractionKey(key)) return std::optional<registry_shim::Reference>();
  auto body = driver_.ReadReferenceFile(active.layer);
  if (!body.ok()) {
    int code = body.status().code();
    if (code == ENOENT || code == ENOTSUP) return std::optional<registry_shim::Reference>();
    return Status::Error(code, fmt::format("commit {}: {} in the layer: {}", key, kRefFile, body.status().message()));
  }
  auto ref = registry_shim::ParseReferenceBody(*body);
  if (!ref.ok()) {
    return Errorf(EINVAL, "commit {}: {} in the layer is not a slacker reference: {}", key, kRefFile,
                  ref.status().message());
  }
  // containerd commits an unpacked layer under its chain id: the parent's name ends in it.
  std::string parent_chain;
  if (!active.parent.empty()) {
    std::string name = SplitBackendKey(active.parent).second;
    parent_chain = name.substr(name.find_last_of('/') + 1);
    if (!registry_shim::IsChainId(parent_chain)) parent_chain = "(snapshot " + active.parent + ", not a chain id)";
  }
  registry_shim::ReferenceTrust trust = opts_.trust ? opts_.trust() : registry_shim::ReferenceTrust{};
  Status v = registry_shim::VerifyReference(*ref, trust, parent_chain);
  if (!v.ok()) return Status::Error(v.code(), "commit " + key + ": " + v.message());
  log::Info("commit_reference", {{"key", key}, {"snapshot", ref->snapshot}, {"store", ref->store}});
  return std::optional<registry_shim::Reference>(*ref);
}

Status SnapshotService::Commit(const std::string& name, const std::string& key, const Labels& labels) {
  if (name.empty()) return Errorf(EINVAL, "commit name must not be empty");
  CatalogTransaction txn(*catalog_);
  if (!catalog_->Find(key)) return Errorf(ENOENT, "active snapshot {} does not exist", key);
  if (!txn.LockExclusive(key).ok()) return Errorf(EBUSY, "snapshot {} is being committed or removed", key);
  auto active = catalog_->Find(key);
  if (!active) return Errorf(ENOENT, "active snapshot {} does not exist", key);
  SLACKER_ASSIGN_OR_RETURN(std::string parent_layer, ReserveName(txn, name, active->parent));
  if (active->kind != Kind::kActive)
    return Errorf(EBUSY, "snapshot {} is {}, not active: only active snapshots can be committed", key,
                  KindName(active->kind));
  Record e = NewRecord(name, Kind::kCommitted, active->parent, labels.empty() ? active->labels : labels);
  SLACKER_ASSIGN_OR_RETURN(std::string active_dir, mounts_->Ensure(active->layer));
  // An extraction snapshot that received a slacker reference tar: commit to the snapshot
  // it names (verified here against containerd's parent chain id; the driver checks it is
  // on the store). The clone is dropped.
  SLACKER_ASSIGN_OR_RETURN(auto ref, ReferenceOfExtraction(key, *active));
  std::string snapshot;
  std::optional<std::string> parent_chain;  // nullopt: the reference's binding was verified above
  if (ref) {
    snapshot = ref->snapshot;
    e.bytes = ref->bytes;
  } else {
    // The inodes this layer added (Usage reports them; kubelet's image fs accounting).
    if (auto use = opts_.fs_use(active_dir); use.ok())
      e.inodes = static_cast<uint64_t>(std::max<int64_t>(0, use->inodes - active->base_inodes));
    // Snapshot while still mounted: the driver freezes the file system, so every write
    // is in the file even if another mount namespace still holds a copy of the mount.
    auto committed = snapshots_.CommitSnapshot(active->layer);
    if (!committed.ok()) return committed.status().Context("commit " + key + ": snapshot its layer");
    snapshot = committed->snapshot;
    e.bytes = committed->bytes;
    parent_chain = committed->parent_chain;
  }
  Status made = MakeCommittedLayer(txn, e, parent_layer, snapshot, parent_chain);
  if (!made.ok()) return Status::Error(made.code() == ENOENT ? EBUSY : made.code(), "commit " + key + ": " + made.message());
  txn.Erase(key);
  txn.Put(e);
  SLACKER_RETURN_IF_ERROR(txn.Commit().Context("commit " + key));
  // After the catalog no longer names it: a crash here leaves an orphan for Cleanup.
  Status rm = mounts_->Drop(active->layer);
  if (!rm.ok()) log::Warn("commit_remove_active_failed", {{"layer", active->layer}, {"err", rm.message()}});
  if (opts_.index) {
    auto [ns, portable] = SplitBackendKey(name);
    Status p = opts_.index->Publish(ns, StoreIndex::Entry{portable, snapshot, e.bytes, opts_.host_id, e.inodes});
    if (!p.ok()) log::Warn("publish_failed", {{"name", name}, {"err", p.message()}});
  }
  log::Info("commit", {{"name", name}, {"key", key}, {"snapshot", snapshot}, {"layer", e.layer}});
  return Status::Ok();
}

Status SnapshotService::Remove(const std::string& key) {
  Record e;
  {
    CatalogTransaction txn(*catalog_);
    if (!catalog_->Find(key)) return Errorf(ENOENT, "snapshot {} does not exist", key);
    if (!txn.LockExclusive(key).ok())
      return Errorf(EBUSY, "cannot remove snapshot {}: it is being committed, or a snapshot is being created on it",
                    key);
    auto found = catalog_->Find(key);
    if (!found) return Errorf(ENOENT, "snapshot {} does not exist", key);
    e = *found;
    txn.Erase(key);
    SLACKER_RETURN_IF_ERROR(txn.Commit());
  }
  if (e.kind == Kind::kView) return ReleaseView(e.layer);
  Status s = mounts_->Drop(e.layer);
  if (!s.ok()) log::Warn("remove_layer_failed", {{"snapshot", key}, {"layer", e.layer}, {"err", s.message()}});
  log::Debug("remove", {{"key", key}, {"layer", e.layer}});
  return Status::Ok();
}

Result<Info> SnapshotService::Stat(const std::string& key) {
  auto e = catalog_->Find(key);
  if (!e) return Errorf(ENOENT, "snapshot {} does not exist", key);
  return ToInfo(*e);
}

Result<Info> SnapshotService::Update(const Info& info, const std::vector<std::string>& paths) {
  auto updated = catalog_->Modify(info.name, [&](Record& r) -> Status {
    Labels labels = r.labels;
    if (paths.empty()) labels = info.labels;
    for (const auto& p : paths) {
      if (p == "labels") {
        labels = info.labels;
      } else if (p.starts_with("labels.")) {
        std::string k = p.substr(7);
        auto v = info.labels.find(k);
        if (v == info.labels.end()) labels.erase(k);
        else labels[k] = v->second;
      } else {
        return Errorf(EINVAL, "cannot update field {:?} of snapshot {} (only labels)", p, info.name);
      }
    }
    r.labels = std::move(labels);
    r.updated_ns = NowNs();
    return Status::Ok();
  });
  if (!updated.ok()) return updated.status();
  return ToInfo(*updated);
}

std::vector<Info> SnapshotService::Walk() {
  std::vector<Info> out;
  for (const auto& e : catalog_->List()) out.push_back(ToInfo(e));
  return out;
}

Result<Usage> SnapshotService::GetUsage(const std::string& key) {
  auto e = catalog_->Find(key);
  if (!e) return Errorf(ENOENT, "snapshot {} does not exist", key);
  if (e->kind == Kind::kCommitted) return Usage{static_cast<int64_t>(e->bytes), static_cast<int64_t>(e->inodes)};
  if (e->kind == Kind::kView) return Usage{};
  // An active snapshot: what its file system holds now beyond its parent's tree.
  SLACKER_ASSIGN_OR_RETURN(std::string dir, mounts_->Ensure(e->layer));
  SLACKER_ASSIGN_OR_RETURN(Usage now, opts_.fs_use(dir));
  return Usage{std::max<int64_t>(0, now.size - e->base_bytes), std::max<int64_t>(0, now.inodes - e->base_inodes)};
}

Status SnapshotService::Cleanup() {
  SLACKER_ASSIGN_OR_RETURN(auto layers, snapshots_.ListLayers());
  for (const auto& l : layers) {
    // Checked per layer: a call may have created it since the listing.
    if (catalog_->UsesLayer(l.id)) continue;
    log::Info("cleanup_orphan_layer", {{"layer", l.id}});
    SLACKER_RETURN_IF_ERROR(driver_.Remove(l.id));
  }
  return Status::Ok();
}

}  // namespace slacker::snapshotter
