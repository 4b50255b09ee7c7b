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

namespace slacker::snapshotter {

using nlohmann::json;

struct SnapshotService::Entry {
  std::string name;
  Kind kind = Kind::kActive;
  std::string parent;
  std::string layer;  // driver layer id ("" for a view: it uses its parent's layer)
  Labels labels;
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
  uint64_t bytes = 0;  // committed: size of the change against the parent
  // committed: inodes the change added (known when this host committed it from an active
  // snapshot, or from the store's index; 0 for a reference layer's snapshot)
  uint64_t inodes = 0;
  // active: the file system's use when it was prepared (the parent's tree), so Usage
  // reports what the snapshot itself added, as containerd's contract asks.
  int64_t base_bytes = 0;
  int64_t base_inodes = 0;
};

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

Kind KindFromName(const std::string& s) {
  if (s == "view") return Kind::kView;
  if (s == "committed") return Kind::kCommitted;
  return Kind::kActive;
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
  auto rest = SplitBackendKey(key).second;
  return rest.starts_with("extract-");
}

}  // namespace

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kView:
      return "view";
    case Kind::kActive:
      return "active";
    case Kind::kCommitted:
      return "committed";
  }
  return "unknown";
}

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

SnapshotService::SnapshotService(driver::GraphDriver& driver, ServiceOptions opts)
    : driver_(driver), opts_(std::move(opts)) {
  if (!opts_.fs_use) opts_.fs_use = FsUse;
}

Result<std::unique_ptr<SnapshotService>> SnapshotService::Open(driver::GraphDriver& driver, ServiceOptions opts) {
  SLACKER_RETURN_IF_ERROR(MakeDirs(opts.state_dir, 0700));
  std::unique_ptr<SnapshotService> s(new SnapshotService(driver, std::move(opts)));
  SLACKER_RETURN_IF_ERROR(MakeDirs(s->EmptyDir(), 0755));
  SLACKER_RETURN_IF_ERROR(s->Load());
  // Nobody else holds the service yet; the helpers take the locks they need.
  for (const auto& [name, e] : s->entries_) {
    if (e->kind == Kind::kActive) {
      auto m = s->EnsureMounted(e->layer);
      if (!m.ok()) log::Error("remount_active_failed", {{"snapshot", name}, {"err", m.status().message()}});
    } else if (e->kind == Kind::kView && !e->layer.empty()) {
      if (s->view_refs_[e->layer]++ == 0) {
        auto m = s->EnsureMounted(e->layer);
        if (!m.ok()) log::Error("remount_view_failed", {{"snapshot", name}, {"err", m.status().message()}});
      }
    }
  }
  log::Info("catalog_loaded", {{"snapshots", std::to_string(s->entries_.size())}});
  return s;
}

std::string SnapshotService::EmptyDir() const { return common::EmptyDir(opts_.state_dir); }

Status SnapshotService::Load() {
  std::string path = common::SnapshotterCatalog(opts_.state_dir);
  if (!PathExists(path)) return Status::Ok();
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("snapshots") || !j["snapshots"].is_array())
    return Errorf(EIO, "catalog {} is damaged (not the expected JSON); move it away to start empty", path);
  for (const auto& s : j["snapshots"]) {
    auto e = std::make_shared<Entry>();
    e->name = s.value("name", "");
    e->kind = KindFromName(s.value("kind", ""));
    e->parent = s.value("parent", "");
    e->layer = s.value("layer", "");
    e->created_ns = s.value("created", int64_t{0});
    e->updated_ns = s.value("updated", int64_t{0});
    e->bytes = s.value("bytes", uint64_t{0});
    e->inodes = s.value("inodes", uint64_t{0});
    e->base_bytes = s.value("base_bytes", int64_t{0});
    e->base_inodes = s.value("base_inodes", int64_t{0});
    if (s.contains("labels") && s["labels"].is_object()) {
      for (auto& [k, v] : s["labels"].items()) {
        if (v.is_string()) e->labels[k] = v.get<std::string>();
      }
    }
    if (e->name.empty()) return Errorf(EIO, "catalog {} has an entry without a name", path);
    entries_[e->name] = e;
  }
  return Status::Ok();
}

Status SnapshotService::Save() {
  json arr = json::array();
  for (const auto& [name, e] : entries_) {
    arr.push_back({{"name", e->name}, {"kind", KindName(e->kind)}, {"parent", e->parent}, {"layer", e->layer},
                   {"labels", e->labels}, {"created", e->created_ns}, {"updated", e->updated_ns},
                   {"bytes", e->bytes}, {"inodes", e->inodes}, {"base_bytes", e->base_bytes},
                   {"base_inodes", e->base_inodes}});
  }
  json j = {{"format", 1}, {"snapshots", arr}};
  return AtomicWriteFile(common::SnapshotterCatalog(opts_.state_dir), j.dump() + "\n").Context("save catalog");
}

// Released when the call that took it returns: by then a name it created is in the
// catalog or free again, and a layer it created is in the catalog or removed.
class SnapshotService::Reservation {
 public:
  explicit Reservation(SnapshotService& s) : s_(s) {}
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() {
    std::lock_guard<std::mutex> l(s_.mu_);
    for (const auto& n : names_) s_.creating_.erase(n);
    for (const auto& k : busy_) s_.busy_.erase(k);
    for (const auto& id : layers_) s_.inflight_layers_.erase(id);
  }
  // REQUIRES s_.mu_: `name` is being created on `parent` (Remove of the parent refuses).
  void NameLocked(const std::string& name, const std::string& parent) {
    s_.creating_[name] = parent;
    names_.push_back(name);
  }
  // REQUIRES s_.mu_: `key` is being committed (Remove and another Commit of it refuse).
  void BusyLocked(const std::string& key) {
    s_.busy_.insert(key);
    busy_.push_back(key);
  }
  // Layer `id` is about to be created in the driver (Cleanup leaves it alone).
  void Layer(const std::string& id) {
    std::lock_guard<std::mutex> l(s_.mu_);
    s_.inflight_layers_.insert(id);
    layers_.push_back(id);
  }

 private:
  SnapshotService& s_;
  std::vector<std::string> names_, busy_, layers_;
};

std::shared_ptr<std::mutex> SnapshotService::LayerMutex(const std::string& layer) {
  std::lock_guard<std::mutex> l(mu_);
  auto& m = layer_mu_[layer];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

Result<std::string> SnapshotService::EnsureMounted(const std::string& layer) {
  auto lm = LayerMutex(layer);
  std::lock_guard<std::mutex> ll(*lm);
  return MountLayerLocked(layer);
}

Result<std::string> SnapshotService::MountLayerLocked(const std::string& layer) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = mounts_.find(layer);
    if (it != mounts_.end()) return it->second;
  }
  // A mount the driver adopted at start-up (we held a Get when we stopped) is reused.
  std::string dir;
  auto meta = driver_.GetMetadata(layer);
  if (meta.ok() && meta->count("MergedDir")) {
    dir = (*meta)["MergedDir"];
  } else {
    SLACKER_ASSIGN_OR_RETURN(dir, driver_.Get(layer, ""));
  }
  std::lock_guard<std::mutex> l(mu_);
  mounts_[layer] = dir;
  return dir;
}

Result<std::string> SnapshotService::AcquireView(const std::string& layer) {
  if (layer.empty()) return EmptyDir();
  auto lm = LayerMutex(layer);
  std::lock_guard<std::mutex> ll(*lm);
  SLACKER_ASSIGN_OR_RETURN(std::string dir, MountLayerLocked(layer));
  std::lock_guard<std::mutex> l(mu_);
  view_refs_[layer]++;
  return dir;
}

Status SnapshotService::ReleaseView(const std::string& layer) {
  if (layer.empty()) return Status::Ok();
  auto lm = LayerMutex(layer);
  std::lock_guard<std::mutex> ll(*lm);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (--view_refs_[layer] > 0) return Status::Ok();
    view_refs_.erase(layer);
    if (!mounts_.erase(layer)) return Status::Ok();  // never mounted (it failed at start)
  }
  return driver_.Put(layer);
}

Status SnapshotService::DropLayer(const std::string& layer) {
  auto lm = LayerMutex(layer);
  std::lock_guard<std::mutex> ll(*lm);
  bool held;
  {
    std::lock_guard<std::mutex> l(mu_);
    held = mounts_.erase(layer) > 0;
  }
  if (held) {
    Status put = driver_.Put(layer);
    if (!put.ok()) log::Warn("put_before_remove_failed", {{"layer", layer}, {"err", put.message()}});
  }
  Status s = driver_.Remove(layer);
  std::lock_guard<std::mutex> l(mu_);
  layer_mu_.erase(layer);
  return s;
}

void SnapshotService::RollBackLayer(const std::string& layer) {
  Status s = DropLayer(layer);
  if (!s.ok()) log::Warn("rollback_layer_failed", {{"layer", layer}, {"err", s.message()}});
}

Status SnapshotService::AddToCatalog(const std::shared_ptr<Entry>& e, const std::string& replaced,
                                     const std::shared_ptr<Entry>& expected) {
  std::lock_guard<std::mutex> l(mu_);
  if (entries_.count(e->name)) return Errorf(EEXIST, "snapshot {} already exists", e->name);
  if (!e->parent.empty() && !entries_.count(e->parent))
    return Errorf(ENOENT, "parent snapshot {} was removed meanwhile", e->parent);
  std::shared_ptr<Entry> old;
  if (!replaced.empty()) {
    auto it = entries_.find(replaced);
    if (it == entries_.end() || it->second != expected)
      return Errorf(ENOENT, "snapshot {} was removed or replaced meanwhile", replaced);
    old = it->second;
    entries_.erase(it);
  }
  entries_[e->name] = e;
  Status s = Save();
  if (!s.ok()) {
    entries_.erase(e->name);
    if (old) entries_[replaced] = old;
  }
  return s;
}

Result<std::vector<Mount>> SnapshotService::Prepare(const std::string& key, const std::string& parent,
                                                    const Labels& labels) {
  return Create(key, parent, labels, Kind::kActive);
}

Result<std::vector<Mount>> SnapshotService::View(const std::string& key, const std::string& parent,
                                                 const Labels& labels) {
  return Create(key, parent, labels, Kind::kView);
}

registry_shim::ReferenceTrust SnapshotService::Trust() const {
  return opts_.trust ? opts_.trust() : registry_shim::ReferenceTrust{};
}

Result<std::string> SnapshotService::SignedReference(const std::string& parent_layer, const std::string& snapshot,
                                                     uint64_t bytes) {
  registry_shim::Reference ref;
  ref.store = opts_.store_uuid;
  ref.snapshot = snapshot;
  ref.bytes = bytes;
  if (!parent_layer.empty()) {
    SLACKER_ASSIGN_OR_RETURN(ref.parent, driver_.ChainId(parent_layer));
  }
  return registry_shim::EncodeReferenceTar(ref, Trust().signing_key());
}

Result<std::string> SnapshotService::ReferenceFromExtraction(const std::string& key, const std::string& parent,
                                                             const std::string& parent_layer,
                                                             const std::string& body) {
  auto ref = registry_shim::ParseReferenceBody(body);
  if (!ref.ok()) {
    return Errorf(EINVAL, "commit {}: {} in the layer is not a slacker reference: {}", key, kRefFile,
                  ref.status().message());
  }
  // containerd commits an unpacked layer under its chain id: the parent's name ends in it.
  std::string parent_chain;
  if (!parent.empty()) {
    std::string name = SplitBackendKey(parent).second;
    parent_chain = name.substr(name.find_last_of('/') + 1);
    if (!registry_shim::IsChainId(parent_chain)) parent_chain = "(snapshot " + parent + ", not a chain id)";
  }
  Status v = registry_shim::VerifyReference(*ref, Trust(), parent_chain);
  if (!v.ok()) return Status::Error(v.code(), "commit " + key + ": " + v.message());
  log::Info("commit_reference", {{"key", key}, {"snapshot", ref->snapshot}, {"store", ref->store}});
  return SignedReference(parent_layer, ref->snapshot, ref->bytes);
}

Status SnapshotService::CommitLayerFromReference(const std::string& id, const std::string& parent_layer,
                                                 const std::string& ref_tar) {
  SLACKER_RETURN_IF_ERROR(driver_.Create(LayerRequest(id, parent_layer)));
  StringSource src(ref_tar);
  auto applied = driver_.ApplyDiff(id, parent_layer, src);
  if (!applied.ok()) {
    RollBackLayer(id);
    return applied.status();
  }
  return Status::Ok();
}

Result<std::vector<Mount>> SnapshotService::Create(const std::string& key, const std::string& parent,
                                                   const Labels& labels, Kind kind) {
  if (key.empty()) return Errorf(EINVAL, "snapshot key must not be empty");
  Reservation res(*this);
  std::string parent_layer;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (entries_.count(key) || creating_.count(key)) return Errorf(EEXIST, "snapshot {} already exists", key);
    if (!parent.empty()) {
      auto it = entries_.find(parent);
      if (it == entries_.end()) return Errorf(ENOENT, "parent snapshot {} does not exist", parent);
      if (it->second->kind != Kind::kCommitted)
        return Errorf(EINVAL, "parent {} is not a committed snapshot (it is {})", parent, KindName(it->second->kind));
      parent_layer = it->second->layer;
    }
    res.NameLocked(key, parent);
  }

  // Remote snapshot: the target is already on the shared store; commit it here and tell
  // containerd it exists, so the layer is neither downloaded nor unpacked.
  auto target_it = labels.find(kLabelSnapshotRef);
  if (kind == Kind::kActive && target_it != labels.end() && !target_it->second.empty() && opts_.index) {
    const std::string& target = target_it->second;
    auto [ns, rest] = SplitBackendKey(key);
    auto published = opts_.index->Lookup(ns, target);
    if (published.ok()) {
      std::string id = RandomHex(16);
      res.Layer(id);
      auto ref_tar = SignedReference(parent_layer, published->snapshot, published->bytes);
      Status made = ref_tar.ok() ? CommitLayerFromReference(id, parent_layer, *ref_tar) : ref_tar.status();
      if (made.ok()) {
        auto e = std::make_shared<Entry>();
        // A unique backend name in the caller's namespace; containerd finds it by the label.
        e->name = key.substr(0, key.size() - rest.size()) + "remote-" + RandomHex(4) + "/" + target;
        e->kind = Kind::kCommitted;
        e->parent = parent;
        e->layer = id;
        e->labels = labels;
        e->created_ns = e->updated_ns = NowNs();
        e->bytes = published->bytes;
        e->inodes = published->inodes;
        Status s = AddToCatalog(e);
        if (!s.ok()) {
          RollBackLayer(id);
          return s;
        }
        log::Info("remote_snapshot", {{"key", key}, {"target", target}, {"name", e->name},
                                      {"snapshot", published->snapshot}, {"published_by", published->host}});
        return Errorf(EEXIST, "target snapshot {} exists on the shared store (snapshot {})", target,
                      published->snapshot);
      }
      // A stale index entry (snapshot deleted by gc, foreign store): unpack normally.
      log::Warn("remote_snapshot_unusable", {{"target", target}, {"snapshot", published->snapshot},
                                             {"err", made.message()}});
    } else if (published.status().code() != ENOENT) {
      log::Warn("index_lookup_failed", {{"target", target}, {"err", published.status().message()}});
    }
  }

  auto e = std::make_shared<Entry>();
  e->name = key;
  e->kind = kind;
  e->parent = parent;
  e->labels = labels;
  e->created_ns = e->updated_ns = NowNs();
  if (kind == Kind::kView) {
    // A view shares its parent's read-only mount (never cloned).
    e->layer = parent_layer;
    SLACKER_ASSIGN_OR_RETURN(std::string dir, AcquireView(parent_layer));
    Status s = AddToCatalog(e);
    if (!s.ok()) {
      Status r = ReleaseView(parent_layer);
      if (!r.ok()) log::Warn("rollback_view_failed", {{"layer", parent_layer}, {"err", r.message()}});
      return s;
    }
    return std::vector<Mount>{{"bind", dir, {"rbind", "ro"}}};
  }
  e->layer = RandomHex(16);
  res.Layer(e->layer);
  SLACKER_RETURN_IF_ERROR(
      driver_.CreateReadWrite(LayerRequest(e->layer, parent_layer)).Context("prepare " + key));
  auto dir = EnsureMounted(e->layer);
  Status s = dir.ok() ? Status::Ok() : dir.status();
  if (s.ok()) {
    auto base = opts_.fs_use(*dir);
    if (base.ok()) {
      e->base_bytes = base->size;
      e->base_inodes = base->inodes;
    }
    s = AddToCatalog(e);
  }
  if (!s.ok()) {
    RollBackLayer(e->layer);
    return s.Context("prepare " + key);
  }
  log::Debug("prepare", {{"key", key}, {"parent", parent}, {"layer", e->layer}});
  return std::vector<Mount>{{"bind", *dir, {"rbind", "rw"}}};
}

Result<std::vector<Mount>> SnapshotService::Mounts(const std::string& key) {
  std::string layer;
  Kind kind = Kind::kActive;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return Errorf(ENOENT, "snapshot {} does not exist", key);
    layer = it->second->layer;
    kind = it->second->kind;
  }
  if (kind == Kind::kCommitted) return Errorf(EINVAL, "snapshot {} is committed: prepare or view it to mount", key);
  if (kind == Kind::kView && layer.empty()) return std::vector<Mount>{{"bind", EmptyDir(), {"rbind", "ro"}}};
  SLACKER_ASSIGN_OR_RETURN(std::string dir, EnsureMounted(layer));
  return std::vector<Mount>{{"bind", dir, {"rbind", kind == Kind::kView ? "ro" : "rw"}}};
}

Status SnapshotService::Commit(const std::string& name, const std::string& key, const Labels& labels) {
  if (name.empty()) return Errorf(EINVAL, "commit name must not be empty");
  Reservation res(*this);
  std::shared_ptr<Entry> active;
  std::string parent_layer;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return Errorf(ENOENT, "active snapshot {} does not exist", key);
    if (entries_.count(name) || creating_.count(name)) return Errorf(EEXIST, "snapshot {} already exists", name);
    active = it->second;
    if (active->kind != Kind::kActive)
      return Errorf(EBUSY, "snapshot {} is {}, not active: only active snapshots can be committed", key,
                    KindName(active->kind));
    if (busy_.count(key)) return Errorf(EBUSY, "snapshot {} is being committed already", key);
    if (!active->parent.empty()) {
      auto p = entries_.find(active->parent);
      if (p == entries_.end()) return Errorf(ENOENT, "parent {} of {} is gone", active->parent, key);
      parent_layer = p->second->layer;
    }
    res.NameLocked(name, active->parent);
    res.BusyLocked(key);
  }

  // An extraction snapshot that received a slacker reference tar: commit to the snapshot
  // it names (verified here against containerd's parent chain id, then by the driver:
  // store uuid, existence, MAC). The clone is dropped. The file is read by the driver from
  // the layer's image: a FIFO or a link there is refused, never opened.
  std::string ref_tar;
  SLACKER_ASSIGN_OR_RETURN(std::string active_dir, EnsureMounted(active->layer));
  if (IsExtractionKey(key)) {
    auto body = driver_.ReadReferenceFile(active->layer);
    if (body.ok()) {
      SLACKER_ASSIGN_OR_RETURN(ref_tar, ReferenceFromExtraction(key, active->parent, parent_layer, *body));
    } else if (body.status().code() != ENOENT && body.status().code() != ENOTSUP) {
      return Status::Error(body.status().code(),
                           fmt::format("commit {}: {} in the layer: {}", key, kRefFile, body.status().message()));
    }
  }
  uint64_t inodes = 0;
  if (ref_tar.empty()) {
    // The inodes this layer added (Usage reports them; kubelet's image fs accounting).
    if (auto use = opts_.fs_use(active_dir); use.ok()) {
      inodes = static_cast<uint64_t>(std::max<int64_t>(0, use->inodes - active->base_inodes));
    }
    // Snapshot while still mounted: the driver freezes the file system, so every write
    // is in the file even if another mount namespace still holds a copy of the mount
    // (an unmount here would then leave dirty data in that superblock's cache).
    auto diff = driver_.Diff(active->layer, parent_layer);
    Status s = diff.ok() ? Status::Ok() : diff.status();
    if (s.ok()) {
      // A driver Diff of a volume is a reference tar.
      auto tar = ReadAtMost(**diff, registry_shim::kMaxReferenceTar, "the layer's Diff");
      s = tar.ok() ? Status::Ok() : tar.status();
      if (s.ok()) ref_tar = std::move(*tar);
    }
    if (!s.ok()) {
      return s.Context("commit " + key + ": snapshot its layer");
    }
  }
  auto ref = registry_shim::ParseReferenceTar(ref_tar);
  if (!ref.ok()) return ref.status().Context("commit " + key);
  std::string id = RandomHex(16);
  res.Layer(id);
  Status made = CommitLayerFromReference(id, parent_layer, ref_tar);
  if (!made.ok()) {
    int code = made.code() == ENOENT ? EBUSY : made.code();
    return Status::Error(code, "commit " + key + ": " + made.message());
  }
  auto e = std::make_shared<Entry>();
  e->name = name;
  e->kind = Kind::kCommitted;
  e->parent = active->parent;
  e->layer = id;
  e->labels = labels.empty() ? active->labels : labels;
  e->created_ns = e->updated_ns = NowNs();
  e->bytes = ref->bytes;
  e->inodes = inodes;
  Status s = AddToCatalog(e, key, active);
  if (!s.ok()) {
    RollBackLayer(id);
    return s.Context("commit " + key);
  }
  // After the catalog no longer names it: a crash here leaves an orphan for Cleanup.
  Status rm = DropLayer(active->layer);
  if (!rm.ok()) log::Warn("commit_remove_active_failed", {{"layer", active->layer}, {"err", rm.message()}});
  if (opts_.index) {
    auto [ns, portable] = SplitBackendKey(name);
    Status p = opts_.index->Publish(ns, StoreIndex::Entry{portable, ref->snapshot, ref->bytes, opts_.host_id, inodes});
    if (!p.ok()) log::Warn("publish_failed", {{"name", name}, {"err", p.message()}});
  }
  log::Info("commit", {{"name", name}, {"key", key}, {"snapshot", ref->snapshot}, {"layer", id}});
  return Status::Ok();
}

Status SnapshotService::Remove(const std::string& key) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return Errorf(ENOENT, "snapshot {} does not exist", key);
    if (busy_.count(key)) return Errorf(EBUSY, "cannot remove snapshot {}: it is being committed", key);
    for (const auto& [name, other] : entries_) {
      if (other->parent == key)
        return Errorf(EBUSY, "cannot remove snapshot {}: snapshot {} is based on it", key, name);
    }
    for (const auto& [name, parent] : creating_) {
      if (parent == key)
        return Errorf(EBUSY, "cannot remove snapshot {}: snapshot {} is being created on it", key, name);
    }
    e = it->second;
    entries_.erase(it);
    Status s = Save();
    if (!s.ok()) {
      entries_[key] = e;
      return s;
    }
    if (e->kind != Kind::kView) view_refs_.erase(e->layer);
  }
  if (e->kind == Kind::kView) return ReleaseView(e->layer);
  Status s = DropLayer(e->layer);
  if (!s.ok()) log::Warn("remove_layer_failed", {{"snapshot", key}, {"layer", e->layer}, {"err", s.message()}});
  log::Debug("remove", {{"key", key}, {"layer", e->layer}});
  return Status::Ok();
}

static Info ToInfo(const SnapshotService::Entry& e) {
  return Info{e.name, e.parent, e.kind, e.labels, e.created_ns, e.updated_ns};
}

Result<Info> SnapshotService::Stat(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return Errorf(ENOENT, "snapshot {} does not exist", key);
  return ToInfo(*it->second);
}

Result<Info> SnapshotService::Update(const Info& info, const std::vector<std::string>& paths) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(info.name);
  if (it == entries_.end()) return Errorf(ENOENT, "snapshot {} does not exist", info.name);
  Labels labels = it->second->labels;
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
  Entry saved = *it->second;
  it->second->labels = labels;
  it->second->updated_ns = NowNs();
  Status s = Save();
  if (!s.ok()) {
    *it->second = saved;
    return s;
  }
  return ToInfo(*it->second);
}

std::vector<Info> SnapshotService::Walk() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Info> out;
  for (const auto& [name, e] : entries_) out.push_back(ToInfo(*e));
  return out;
}

Result<Usage> SnapshotService::GetUsage(const std::string& key) {
  Entry e;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return Errorf(ENOENT, "snapshot {} does not exist", key);
    e = *it->second;
  }
  if (e.kind == Kind::kCommitted) return Usage{static_cast<int64_t>(e.bytes), static_cast<int64_t>(e.inodes)};
  if (e.kind == Kind::kView) return Usage{};
  // An active snapshot: what its file system holds now beyond its parent's tree.
  SLACKER_ASSIGN_OR_RETURN(std::string dir, EnsureMounted(e.layer));
  SLACKER_ASSIGN_OR_RETURN(Usage now, opts_.fs_use(dir));
  return Usage{std::max<int64_t>(0, now.size - e.base_bytes), std::max<int64_t>(0, now.inodes - e.base_inodes)};
}

Status SnapshotService::Cleanup() {
  if (opts_.driver_layers_dir.empty()) return Status::Ok();
  SLACKER_ASSIGN_OR_RETURN(auto files, ListDir(opts_.driver_layers_dir));
  for (const auto& f : files) {
    auto id = common::LayerIdOfRecordName(f);
    if (!id) continue;
    const std::string& layer = *id;
    {
      // Checked per layer, under the lock: a call may have created it since the listing.
      std::lock_guard<std::mutex> l(mu_);
      if (inflight_layers_.count(layer)) continue;
      bool known = std::any_of(entries_.begin(), entries_.end(),
                               [&](const auto& kv) { return kv.second->layer == layer; });
      if (known) continue;
    }
    log::Info("cleanup_orphan_layer", {{"layer", layer}});
    SLACKER_RETURN_IF_ERROR(driver_.Remove(layer));
  }
  return Status::Ok();
}

}  // namespace slacker::snapshotter
