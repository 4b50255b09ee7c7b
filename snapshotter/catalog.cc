#include "snapshotter/catalog.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/files.h"

namespace slacker::snapshotter {

using common::MutexLock;
using nlohmann::json;

namespace {

Kind KindFromName(const std::string& s) {
  if (s == "view") return Kind::kView;
  if (s == "committed") return Kind::kCommitted;
  return Kind::kActive;
}

json ToJson(const Record& e) {
  return {{"name", e.name},     {"kind", KindName(e.kind)},  {"parent", e.parent},       {"layer", e.layer},
          {"labels", e.labels}, {"created", e.created_ns},   {"updated", e.updated_ns},  {"bytes", e.bytes},
          {"inodes", e.inodes}, {"base_bytes", e.base_bytes}, {"base_inodes", e.base_inodes}};
}

Record FromJson(const json& s) {
  Record e;
  e.name = s.value("name", "");
  e.kind = KindFromName(s.value("kind", ""));
  e.parent = s.value("parent", "");
  e.layer = s.value("layer", "");
  e.created_ns = s.value("created", int64_t{0});
  e.updated_ns = s.value("updated", int64_t{0});
  e.bytes = s.value("bytes", uint64_t{0});
  e.inodes = s.value("inodes", uint64_t{0});
  e.base_bytes = s.value("base_bytes", int64_t{0});
  e.base_inodes = s.value("base_inodes", int64_t{0});
  if (s.contains("labels") && s["labels"].is_object()) {
    for (auto& [k, v] : s["labels"].items()) {
      if (v.is_string()) e.labels[k] = v.get<std::string>();
    }
  }
  return e;
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

Result<std::unique_ptr<Catalog>> Catalog::Open(std::string path) {
  std::unique_ptr<Catalog> c(new Catalog(std::move(path)));
  MutexLock l(c->mu_);
  SLACKER_RETURN_IF_ERROR(c->LoadLocked());
  return c;
}

Status Catalog::LoadLocked() {
  if (!PathExists(path_)) return Status::Ok();
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path_));
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("snapshots") || !j["snapshots"].is_array())
    return Errorf(EIO, "catalog {} is damaged (not the expected JSON); move it away to start empty", path_);
  for (const auto& s : j["snapshots"]) {
    Record e = FromJson(s);
    if (e.name.empty()) return Errorf(EIO, "catalog {} has an entry without a name", path_);
    records_[e.name] = std::move(e);
  }
  return Status::Ok();
}

Status Catalog::SaveLocked() {
  json arr = json::array();
  for (const auto& [name, e] : records_) arr.push_back(ToJson(e));
  json j = {{"format", 1}, {"snapshots", arr}};
  return AtomicWriteFile(path_, j.dump() + "\n").Context("save catalog");
}

std::optional<Record> Catalog::Find(const std::string& name) const {
  MutexLock l(mu_);
  auto it = records_.find(name);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::vector<Record> Catalog::List() const {
  MutexLock l(mu_);
  std::vector<Record> out;
  out.reserve(records_.size());
  for (const auto& [name, e] : records_) out.push_back(e);
  return out;
}

bool Catalog::UsesLayer(const std::string& layer) const {
  MutexLock l(mu_);
  if (inflight_layers_.count(layer)) return true;
  return std::any_of(records_.begin(), records_.end(), [&](const auto& kv) { return kv.second.layer == layer; });
}

Result<Record> Catalog::Modify(const std::string& name, const std::function<Status(Record&)>& edit) {
  MutexLock l(mu_);
  auto it = records_.find(name);
  if (it == records_.end()) return Errorf(ENOENT, "snapshot {} does not exist", name);
  Record saved = it->second;
  Status s = edit(it->second);
  if (s.ok()) s = SaveLocked();
  if (!s.ok()) {
    it->second = std::move(saved);
    return s;
  }
  return it->second;
}

CatalogTransaction::~CatalogTransaction() {
  if (!committed_) {
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
  }
  MutexLock l(catalog_.mu_);
  for (const auto& [name, exclusive] : locks_) {
    auto h = catalog_.holds_.find(name);
    if (h == catalog_.holds_.end()) continue;
    if (exclusive) {
      h->second.exclusive = false;
    } else {
      --h->second.shared;
    }
    if (!h->second.exclusive && h->second.shared == 0) catalog_.holds_.erase(h);
  }
  for (const auto& id : layers_) {
    auto it = catalog_.inflight_layers_.find(id);
    if (it != catalog_.inflight_layers_.end()) catalog_.inflight_layers_.erase(it);
  }
}

Status CatalogTransaction::LockExclusive(const std::string& name) {
  auto mine = locks_.find(name);
  if (mine != locks_.end() && mine->second) return Status::Ok();
  MutexLock l(catalog_.mu_);
  Catalog::Hold& h = catalog_.holds_[name];
  // A shared hold of our own counts as another user: there is no upgrade.
  if (h.exclusive || h.shared > 0) return Errorf(EBUSY, "snapshot {} is in use by another call", name);
  h.exclusive = true;
  locks_[name] = true;
  return Status::Ok();
}

Status CatalogTransaction::LockShared(const std::string& name) {
  if (locks_.count(name)) return Status::Ok();  // held already, either way
  MutexLock l(catalog_.mu_);
  Catalog::Hold& h = catalog_.holds_[name];
  if (h.exclusive) return Errorf(EBUSY, "snapshot {} is being changed by another call", name);
  ++h.shared;
  locks_[name] = false;
  return Status::Ok();
}

void CatalogTransaction::AddLayer(const std::string& id) {
  MutexLock l(catalog_.mu_);
  catalog_.inflight_layers_.insert(id);
  layers_.push_back(id);
}

void CatalogTransaction::OnRollback(std::function<void()> undo) { undo_.push_back(std::move(undo)); }

void CatalogTransaction::Put(Record r) { puts_.push_back(std::move(r)); }

void CatalogTransaction::Erase(const std::string& name) { erases_.push_back(name); }

Status CatalogTransaction::Validate(const std::map<std::string, Record>& records) const {
  auto locked = [&](const std::string& name) {
    auto it = locks_.find(name);
    return it != locks_.end() && it->second;
  };
  auto erased = [&](const std::string& name) { return std::count(erases_.begin(), erases_.end(), name) > 0; };
  auto put = [&](const std::string& name) {
    return std::any_of(puts_.begin(), puts_.end(), [&](const Record& r) { return r.name == name; });
  };
  for (const auto& name : erases_) {
    if (!locked(name)) return Errorf(EINVAL, "catalog: erase of {} without its lock", name);
    if (!records.count(name)) return Errorf(ENOENT, "snapshot {} does not exist", name);
    for (const auto& [other, r] : records) {
      if (r.parent == name && !erased(other))
        return Errorf(EBUSY, "cannot remove snapshot {}: snapshot {} is based on it", name, other);
    }
  }
  for (const auto& r : puts_) {
    if (!locked(r.name)) return Errorf(EINVAL, "catalog: put of {} without its lock", r.name);
    if (records.count(r.name) && !erased(r.name)) return Errorf(EEXIST, "snapshot {} already exists", r.name);
    bool parent_there = r.parent.empty() || (records.count(r.parent) && !erased(r.parent)) || put(r.parent);
    if (!parent_there) return Errorf(ENOENT, "parent snapshot {} of {} does not exist", r.parent, r.name);
  }
  return Status::Ok();
}

Status CatalogTransaction::Commit() {
  if (committed_) return Errorf(EINVAL, "catalog: transaction committed twice");
  MutexLock l(catalog_.mu_);
  SLACKER_RETURN_IF_ERROR(Validate(catalog_.records_));
  std::map<std::string, Record> before = catalog_.records_;  // small: a host's snapshots
  for (const auto& name : erases_) catalog_.records_.erase(name);
  for (const auto& r : puts_) catalog_.records_[r.name] = r;
  Status s = catalog_.SaveLocked();
  if (!s.ok()) {
    catalog_.records_ = std::move(before);
    return s;
  }
  committed_ = true;
  undo_.clear();
  return Status::Ok();
}

}  // namespace slacker::snapshotter
