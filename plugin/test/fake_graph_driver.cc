#include "plugin/test/fake_graph_driver.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>

#include "common/files.h"
#include "common/hash.h"
#include "registry_shim/reference.h"
#include "registry_shim/tar.h"

namespace slacker::plugin {
namespace {

// Serves `data`, then fails with EIO at `fail_after` (when >= 0) instead of ending.
class ScriptedSource : public ByteSource {
 public:
  ScriptedSource(std::string data, int64_t fail_after)
      : data_(std::move(data)), fail_after_(fail_after) {}
  Result<size_t> Read(void* buf, size_t n) override {
    size_t end = fail_after_ >= 0 ? std::min<size_t>(fail_after_, data_.size()) : data_.size();
    if (pos_ == end && fail_after_ >= 0) return Errorf(EIO, "scripted diff failure");
    size_t k = std::min(n, end - pos_);
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  int64_t fail_after_;
  size_t pos_ = 0;
};

// SlackerDriver's rule for a layer id (it names files): 1-128 (driver::kMaxLayerIdLength) of [A-Za-z0-9._-], not
// starting with a dot.
bool ValidLayerId(const std::string& id) {
  if (id.empty() || id.size() > driver::kMaxLayerIdLength || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// A size option's value: at least 16M, as SlackerDriver needs.
Status CheckSizeOption(const std::string& what, const std::string& value) {
  auto size = ParseSize(value);
  if (!size.ok()) return size.status();
  if (*size < (16ull << 20))
    return Errorf(EINVAL, "{} {:?} is too small: slacker needs at least 16M", what, value);
  return Status::Ok();
}

// "./etc/motd", "/etc/", "etc" → "/etc/motd", "/etc", "/etc"; "" for the root itself.
std::string CleanPath(std::string name) {
  while (name.starts_with("./")) name.erase(0, 2);
  while (name.starts_with("/")) name.erase(0, 1);
  while (name.ends_with("/")) name.pop_back();
  return name.empty() || name == "." ? "" : "/" + name;
}

// What a layer tar adds and deletes, and the sizes of its regular files, as SlackerDriver's
// Changes and DiffSize report them for a base layer: every entry and every directory it
// implies is added. A whiteout `.wh.NAME` is listed as deleting NAME (SlackerDriver lists
// that only when the parent has NAME); an opaque marker lists nothing.
struct TarSummary {
  std::vector<driver::Change> changes;
  int64_t size = 0;
};

Result<TarSummary> SummarizeTar(const std::string& id, const std::string& bytes) {
  StringSource src(bytes);
  registry_shim::TarReader reader(src);
  std::map<std::string, driver::ChangeKind> kinds;
  TarSummary out;
  registry_shim::TarEntry e;
  for (;;) {
    auto more = reader.Next(&e);
    if (!more.ok()) return more.status().Context("apply diff to layer " + id);
    if (!*more) break;
    std::string path = CleanPath(e.name);
    if (path.empty()) continue;
    for (size_t p = path.find('/', 1); p != std::string::npos; p = path.find('/', p + 1))
      kinds.emplace(path.substr(0, p), driver::ChangeKind::kAdd);  // the directories it implies
    size_t slash = path.rfind('/');
    std::string dir = path.substr(0, slash), base = path.substr(slash + 1);
    if (base.starts_with(".wh.")) {
      if (!base.starts_with(".wh..wh."))
        kinds[dir + "/" + base.substr(4)] = driver::ChangeKind::kDelete;
      continue;
    }
    kinds[path] = driver::ChangeKind::kAdd;
    if (e.IsRegular()) out.size += static_cast<int64_t>(e.size);
  }
  for (const auto& [path, kind] : kinds) out.changes.push_back({path, kind});
  return out;
}

}  // namespace

void FakeGraphDriver::AddLayer(const std::string& id, const std::string& parent, bool read_write) {
  std::lock_guard<std::mutex> lock(mu_);
  layers_[id] = Layer{.parent = parent, .read_write = read_write};
}

std::vector<FakeGraphDriver::Call> FakeGraphDriver::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::string FakeGraphDriver::applied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

int FakeGraphDriver::apply_reads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return apply_reads_;
}

void FakeGraphDriver::BlockApplyDiff() {
  std::lock_guard<std::mutex> lock(mu_);
  apply_blocked_ = true;
}

void FakeGraphDriver::WaitApplyDiffEntered() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return apply_entered_; });
}

void FakeGraphDriver::ReleaseApplyDiff() {
  std::lock_guard<std::mutex> lock(mu_);
  apply_blocked_ = false;
  cv_.notify_all();
}

void FakeGraphDriver::WaitApplyDiffReturned() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return apply_returned_; });
}

Status FakeGraphDriver::Record(Call call) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = errors.find(call.method);
  calls_.push_back(std::move(call));
  return it == errors.end() ? Status::Ok() : it->second;
}

Status FakeGraphDriver::Init(const std::string& home, const std::vector<std::string>& options) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Init", .home = home, .options = options}));
  for (const auto& o : options) {
    auto eq = o.find('=');
    std::string key = o.substr(0, eq);
    if (key != "size" && key != "slacker.size")
      return Errorf(EINVAL, "unknown storage option {:?} (slacker knows: size)", o);
    SLACKER_RETURN_IF_ERROR(
        CheckSizeOption("storage option", eq == std::string::npos ? "" : o.substr(eq + 1)));
  }
  return Status::Ok();
}

driver::Capabilities FakeGraphDriver::GetCapabilities() {
  IgnoreError(Record({.method = "Capabilities"}),
              "Capabilities cannot fail in the driver interface: only recorded");
  return capabilities;
}

std::vector<std::pair<std::string, std::string>> FakeGraphDriver::StatusRows() {
  IgnoreError(Record({.method = "Status"}),
              "Status cannot fail in the driver interface: only recorded");
  return status_rows;
}

Result<std::map<std::string, std::string>> FakeGraphDriver::GetMetadata(const std::string& id) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "GetMetadata", .id = id}));
  if (metadata) return *metadata;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "layer {} does not exist", id);
  return std::map<std::string, std::string>{
      {"Kind", it->second.read_write ? "read-write" : "image"}};
}

Status FakeGraphDriver::Create(const driver::CreateRequest& req) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Create",
                                  .id = req.id,
                                  .parent = req.parent,
                                  .mount_label = req.mount_label,
                                  .storage_opt = req.storage_opt}));
  return CreateLayer(req, false);
}

Status FakeGraphDriver::CreateReadWrite(const driver::CreateRequest& req) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "CreateReadWrite",
                                  .id = req.id,
                                  .parent = req.parent,
                                  .mount_label = req.mount_label,
                                  .storage_opt = req.storage_opt}));
  return CreateLayer(req, true);
}

Status FakeGraphDriver::CreateLayer(const driver::CreateRequest& req, bool read_write) {
  if (!ValidLayerId(req.id)) return Errorf(EINVAL, "invalid layer id {:?}: 1-{} of [A-Za-z0-9._-], not starting with '.'", req.id, driver::kMaxLayerIdLength);
  for (const auto& [key, value] : req.storage_opt) {
    if (key != "size")
      return Errorf(EINVAL, "unknown storage option {:?} for layer {} (slacker knows: size)", key,
                    req.id);
    SLACKER_RETURN_IF_ERROR(CheckSizeOption("storage-opt size", value));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (layers_.count(req.id)) return Errorf(EEXIST, "layer {} already exists", req.id);
  if (!req.parent.empty() && !layers_.count(req.parent))
    return Errorf(ENOENT, "create layer {}: parent layer {} does not exist", req.id, req.parent);
  layers_[req.id] = Layer{.parent = req.parent, .read_write = read_write};
  return Status::Ok();
}

Status FakeGraphDriver::Remove(const std::string& id) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Remove", .id = id}));
  std::lock_guard<std::mutex> lock(mu_);
  if (layers_.erase(id) == 0) return Status::Ok();  // idempotent, as dockerd retries removals
  if (!state_dir.empty()) ::rmdir(JoinPath(state_dir, "mnt/" + id).c_str());
  return Status::Ok();
}

Result<std::string> FakeGraphDriver::Get(const std::string& id, const std::string& mount_label) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Get", .id = id, .mount_label = mount_label}));
  if (dir) return *dir;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "get layer {}: no such layer", id);
  if (state_dir.empty())
    return Errorf(EINVAL, "get layer {}: the fake driver has no state_dir", id);
  std::string mnt = JoinPath(state_dir, "mnt/" + id);
  SLACKER_RETURN_IF_ERROR(MakeDirs(mnt, 0755));
  ++it->second.refs;
  // As SlackerDriver: a layer without a snapshot (or a container's) gets a volume of
  // its own; an image layer with one is mounted read-only.
  if (it->second.read_write || it->second.snapshot.empty()) it->second.volume = true;
  return mnt;
}

Status FakeGraphDriver::Put(const std::string& id) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Put", .id = id}));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "put layer {}: no such layer", id);
  if (it->second.refs > 0) --it->second.refs;  // dockerd may Put twice; never underflow
  return Status::Ok();
}

bool FakeGraphDriver::Exists(const std::string& id) {
  IgnoreError(Record({.method = "Exists", .id = id}),
              "Exists cannot fail in the driver interface: only recorded");
  if (exists) return *exists;
  std::lock_guard<std::mutex> lock(mu_);
  return layers_.count(id) != 0;
}

Result<driver::DiffStream> FakeGraphDriver::Diff(const std::string& id, const std::string& parent) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Diff", .id = id, .parent = parent}));
  if (diff_data)
    return driver::DiffStream(std::make_unique<ScriptedSource>(*diff_data, diff_fail_after));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "diff layer {}: no such layer", id);
  // The exact bytes applied; a layer nothing was applied to is the empty tar (its end marker).
  std::string bytes = it->second.applied ? it->second.tar : std::string(1024, '\0');
  return driver::DiffStream(std::make_unique<StringSource>(std::move(bytes)));
}

Result<std::vector<driver::Change>> FakeGraphDriver::Changes(const std::string& id,
                                                             const std::string& parent) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Changes", .id = id, .parent = parent}));
  if (changes) return *changes;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "changes of layer {}: no such layer", id);
  return it->second.changes;
}

Result<int64_t> FakeGraphDriver::ApplyDiff(const std::string& id, const std::string& parent,
                                           ByteSource& tar) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "ApplyDiff", .id = id, .parent = parent}));
  struct ReturnSignal {
    FakeGraphDriver* fake;
    ~ReturnSignal() {
      std::lock_guard<std::mutex> lock(fake->mu_);
      fake->apply_returned_ = true;
      fake->cv_.notify_all();
    }
  } signal{this};
  {
    std::unique_lock<std::mutex> lock(mu_);
    apply_entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !apply_blocked_; });
  }
  if (apply_size) {
    SLACKER_RETURN_IF_ERROR(ReadApplyStream(id, tar).status());
    return *apply_size;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = layers_.find(id);
    if (it == layers_.end()) return Errorf(ENOENT, "apply diff to layer {}: no such layer", id);
    if (it->second.refs > 0)
      return Errorf(EBUSY, "apply diff to layer {}: the layer is mounted", id);
  }
  SLACKER_ASSIGN_OR_RETURN(std::string bytes, ReadApplyStream(id, tar));
  if (bytes.empty())
    return Errorf(EINVAL,
                  "apply diff to layer {}: the layer stream is empty (not even a tar end marker)",
                  id);
  SLACKER_ASSIGN_OR_RETURN(TarSummary summary, SummarizeTar(id, bytes));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end())
    return Errorf(ENOENT, "apply diff to layer {}: removed while applied", id);
  it->second.applied = true;
  it->second.tar = std::move(bytes);
  it->second.changes = std::move(summary.changes);
  it->second.size = summary.size;
  it->second.snapshot = RandomHex(16);  // SlackerDriver promotes the unpacked volume
  it->second.volume = it->second.written = false;
  snapshots_[it->second.snapshot] = static_cast<uint64_t>(summary.size);
  return summary.size;
}

Result<std::string> FakeGraphDriver::ReadApplyStream(const std::string& id, ByteSource& tar) {
  std::string all;
  std::string buf(apply_read_size, '\0');
  for (;;) {
    size_t want = buf.size();
    if (apply_fail_after >= 0) {
      int64_t left = apply_fail_after - static_cast<int64_t>(applied().size());
      if (left <= 0) return Errorf(EIO, "scripted apply failure for layer {}", id);
      want = std::min<size_t>(want, left);
    }
    auto n = tar.Read(buf.data(), want);
    if (!n.ok()) return n.status();
    if (*n == 0) return all;
    all.append(buf.data(), *n);
    std::lock_guard<std::mutex> lock(mu_);
    applied_.append(buf.data(), *n);
    ++apply_reads_;
  }
}

Result<int64_t> FakeGraphDriver::DiffSize(const std::string& id, const std::string& parent) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "DiffSize", .id = id, .parent = parent}));
  if (diff_size) return *diff_size;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "diff size of layer {}: no such layer", id);
  return it->second.size;
}

Status FakeGraphDriver::Cleanup() {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Cleanup"}));
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, layer] : layers_) layer.refs = 0;  // dockerd is stopping: everything is unmounted
  return Status::Ok();
}

Result<std::string> FakeGraphDriver::ChainId(const std::string& id) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "ChainId", .id = id}));
  std::lock_guard<std::mutex> lock(mu_);
  return ChainOfLocked(id);
}

Result<std::string> FakeGraphDriver::ChainOfLocked(const std::string& id) {
  if (id.empty()) return std::string();
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "chain id of layer {}: no such layer", id);
  SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ChainOfLocked(it->second.parent));
  if (it->second.read_write) return parent_chain;  // a container's commit goes on its image
  std::string diff = it->second.applied ? it->second.tar : std::string(1024, '\0');
  return registry_shim::NextChainId(parent_chain, Sha256Digest(diff));
}

void FakeGraphDriver::MarkWritten(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it != layers_.end()) it->second.written = true;
}

Result<driver::CommittedSnapshot> FakeGraphDriver::CommitSnapshot(const std::string& id) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "CommitSnapshot", .id = id}));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(id);
  if (it == layers_.end()) return Errorf(ENOENT, "commit layer {} to a snapshot: no such layer", id);
  Layer& l = it->second;
  if (!l.volume && l.snapshot.empty())
    return Errorf(EINVAL, "commit layer {} to a snapshot: it has no content of its own", id);
  if (l.volume && (l.snapshot.empty() || l.written)) {  // else: snapshot caching
    l.snapshot = RandomHex(16);
    l.written = false;
    snapshots_[l.snapshot] = static_cast<uint64_t>(l.size);
  }
  SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ChainOfLocked(l.parent));
  // A layer without a volume holds what was applied or created: its size is the layer's.
  uint64_t bytes = l.volume ? snapshots_[l.snapshot] : static_cast<uint64_t>(l.size);
  return driver::CommittedSnapshot{l.snapshot, bytes, parent_chain};
}

Result<int64_t> FakeGraphDriver::CreateFromSnapshot(const driver::SnapshotLayerRequest& req) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "CreateFromSnapshot", .id = req.id}));
  std::string what = "create layer " + req.id + " from snapshot " + req.snapshot;
  bool hex = req.snapshot.size() == 32 && std::all_of(req.snapshot.begin(), req.snapshot.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
             });
  if (!hex) return Errorf(EINVAL, "{}: invalid snapshot id", what);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = layers_.find(req.id);
  if (it == layers_.end()) return Errorf(ENOENT, "{}: no such layer", what);
  Layer& l = it->second;
  if (l.refs > 0) return Errorf(EBUSY, "{}: the layer is mounted", what);
  SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ChainOfLocked(l.parent));
  if (req.parent_chain && *req.parent_chain != parent_chain)
    return Errorf(EACCES, "{}: the snapshot was made on top of another parent", what);
  if (!snapshots_.count(req.snapshot)) return Errorf(ENOENT, "{}: no such snapshot on the store", what);
  registry_shim::Reference ref;
  ref.store = std::string(32, '0');
  ref.snapshot = req.snapshot;
  ref.parent = parent_chain;
  ref.bytes = req.bytes;
  l.applied = true;
  l.tar = registry_shim::EncodeReferenceTar(ref, "");
  l.changes.clear();
  l.size = static_cast<int64_t>(req.bytes);
  l.snapshot = req.snapshot;
  l.volume = l.written = false;
  return l.size;
}

Result<std::vector<driver::LayerSnapshot>> FakeGraphDriver::ListLayers() {
  SLACKER_RETURN_IF_ERROR(Record({.method = "ListLayers"}));
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<driver::LayerSnapshot> out;
  for (const auto& [id, l] : layers_) out.push_back({id, l.parent, l.read_write, l.snapshot});
  return out;
}

}  // namespace slacker::plugin
