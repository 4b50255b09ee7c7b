#include "driver/slacker_driver.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <openssl/evp.h>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/changes.h"
#include "loopdev/ext4_format.h"
#include "loopdev/ext4_read.h"
#include "loopdev/freeze.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"
#include "loopdev/run_tool.h"
#include "registry_shim/apply.h"
#include "registry_shim/reference.h"
#include "registry_shim/skeleton.h"

namespace slacker::driver {

using storage_backend::Backend;

struct SlackerDriver::Layer {
  std::mutex mu;
  LayerRecord rec;
  int refs = 0;             // Get minus Put (plus internal views)
  bool mounted_rw = false;  // the mount at MountPath is the volume (else a snapshot, ro)
  int loop_index = -1;
  uint64_t baseline = 0;           // loop write sectors when content last equalled rec.snapshot
  bool clean_at_baseline = false;  // whether content at `baseline` equals rec.snapshot
  bool removed = false;
};

namespace {

constexpr size_t kMaxReferenceTar = 64 * 1024;

bool ValidLayerId(const std::string& id) {
  if (id.empty() || id.size() > 255 || id[0] == '.') return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}

Status Unmount(os::Os& os, const std::string& target) {
  return loopdev::UnmountPath(os, target, loopdev::BusyPolicy::kDetach);
}

// Makes a rw-mounted volume file complete before its unmount. A mount namespace made
// while the layer was mounted (a container starting at the same time: runc unshares,
// then detaches the old root) can keep the file system alive past our umount; nothing is
// written back or checkpointed until it goes, and a snapshot of the file taken then
// (docker commit, the next build step) misses the writes. Seen with 10 parallel builds
// (test/e2e/load_e2e.sh). FIFREEZE writes everything back and checkpoints the journal;
// on an idle file system it costs milliseconds. Returns the loop device's write counter
// sampled while frozen (nothing can write between the flush and the sample), when known.
std::optional<uint64_t> FlushBeforeUnmount(os::Os& os, const std::string& id, const std::string& mnt,
                                           int loop_index) {
  Status f = os.Freeze(mnt);
  std::optional<uint64_t> frozen_at;
  if (f.ok() && loop_index >= 0) {
    auto w = loopdev::WriteSectors(os, loop_index);
    if (w.ok()) frozen_at = *w;
  }
  Status t = f.ok() ? os.Thaw(mnt) : Status::Ok();
  if (!f.ok() || !t.ok()) {
    log::Warn("flush_before_unmount_failed", {{"layer", id}, {"err", !f.ok() ? f.message() : t.message()}});
    return std::nullopt;
  }
  return frozen_at;
}

// A tar stream that holds a read view until it is destroyed.
class ViewSource : public ByteSource {
 public:
  ViewSource(std::unique_ptr<ByteSource> inner, std::shared_ptr<void> keep)
      : keep_(std::move(keep)), inner_(std::move(inner)) {}
  Result<size_t> Read(void* buf, size_t n) override { return inner_->Read(buf, n); }

 private:
  // Declared first, destroyed last: the stream's open files go before the unmount.
  std::shared_ptr<void> keep_;
  std::unique_ptr<ByteSource> inner_;
};

// Passes a stream through; fires fault point `point` once `after` bytes went by (a crash
// in the middle of an extraction).
class FaultAfterBytes : public ByteSource {
 public:
  FaultAfterBytes(ByteSource& inner, const char* point, uint64_t after) : inner_(inner), point_(point), after_(after) {}
  Result<size_t> Read(void* buf, size_t n) override {
    auto r = inner_.Read(buf, n);
    if (r.ok() && (seen_ += *r) >= after_) SLACKER_FAULT_POINT(point_);
    return r;
  }

 private:
  ByteSource& inner_;
  const char* point_;
  uint64_t after_;
  uint64_t seen_ = 0;
};

}  // namespace

// "sha256:<hex>" of the bytes (a DiffID). Defined beside SpoolFile.
std::string Sha256Digest(std::string_view bytes);
Result<std::string> Sha256Digest(ByteSource& src);

// A read-only view of a layer's tree: the layer's own mount (held by a reference) or a
// read-only mount of its content snapshot at <state>/views/<random>.
class SlackerDriver::View {
 public:
  View(SlackerDriver* d, std::string path, std::string layer_id, bool temp_mount)
      : d_(d), path_(std::move(path)), layer_id_(std::move(layer_id)), temp_mount_(temp_mount) {}
  ~View() {
    if (temp_mount_) {
      Status s = Unmount(d_->os_, path_);
      if (!s.ok()) log::Error("view_unmount_failed", {{"path", path_}, {"err", s.message()}});
      ::rmdir(path_.c_str());
    } else if (!layer_id_.empty()) {
      Status s = d_->Put(layer_id_);
      if (!s.ok()) log::Error("view_put_failed", {{"layer", layer_id_}, {"err", s.message()}});
    }
  }
  const std::string& path() const { return path_; }

 private:
  SlackerDriver* d_;
  std::string path_;
  std::string layer_id_;  // held with a Get reference when !temp_mount_
  bool temp_mount_;
};

SlackerDriver::SlackerDriver(os::Os& os, Backend& backend, DriverOptions options)
    : os_(os), backend_(backend), opts_(std::move(options)) {}

SlackerDriver::~SlackerDriver() = default;

Result<std::unique_ptr<SlackerDriver>> SlackerDriver::Open(os::Os& os, Backend& backend,
                                                           DriverOptions options) {
  if (options.host_id.empty()) return Errorf(EINVAL, "host id must not be empty");
  for (const char* sub : {"layers", "mnt", "views", "empty", "spool"}) {
    SLACKER_RETURN_IF_ERROR(MakeDirs(JoinPath(options.state_dir, sub), 0700));
    // The parents of mount points are root's alone (an older release made them 0755):
    // a mounted layer's root is 0755 for the container, so only its parent keeps others out.
    if (std::string_view(sub) != "empty") SLACKER_RETURN_IF_ERROR(CloseToOthers(JoinPath(options.state_dir, sub)));
  }
  ::chmod(JoinPath(options.state_dir, "empty").c_str(), 0755);
  std::unique_ptr<SlackerDriver> d(new SlackerDriver(os, backend, std::move(options)));
  d->default_size_at_start_ = d->opts_.default_size;
  SLACKER_RETURN_IF_ERROR(d->Recover());
  // dockerd does not resend Init when the plugin restarts: re-apply the last one.
  auto plugin = ReadFileToString(JoinPath(d->opts_.state_dir, "plugin.json"));
  if (plugin.ok()) {
    auto j = nlohmann::json::parse(*plugin, nullptr, false);
    if (j.is_object() && j.contains("options") && j["options"].is_array()) {
      d->home_ = j.value("home", "");
      std::vector<std::string> options;
      for (const auto& o : j["options"]) {
        if (o.is_string()) options.push_back(o.get<std::string>());
      }
      SLACKER_ASSIGN_OR_RETURN(d->opts_.default_size, ParseDriverOptions(options, d->opts_.default_size));
    } else {
      log::Warn("plugin_json_unreadable", {{"file", JoinPath(d->opts_.state_dir, "plugin.json")}});
    }
  }
  return d;
}

std::string SlackerDriver::MountPath(const std::string& id) const {
  return JoinPath(opts_.state_dir, "mnt/" + id);
}

Status SlackerDriver::Persist(const LayerRecord& rec) {
  return AtomicWriteFile(JoinPath(opts_.state_dir, "layers/" + rec.id + ".json"), rec.ToJson());
}

std::shared_ptr<SlackerDriver::Layer> SlackerDriver::Find(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = layers_.find(id);
  return it == layers_.end() ? nullptr : it->second;
}

SlackerDriver::Counters SlackerDriver::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  return counters_;
}

// Start-up: reload layer records, re-sync with the kernel's mounts and loops, and finish
// or roll back half-done work (DESIGN.md §6).
Status SlackerDriver::Recover() {
  std::string layers_dir = JoinPath(opts_.state_dir, "layers");
  SLACKER_RETURN_IF_ERROR(MakeDirs(JoinPath(backend_.root(), "chains"), 0700));
  SLACKER_ASSIGN_OR_RETURN(auto spooled, ListDir(JoinPath(opts_.state_dir, "spool")));
  for (const auto& f : spooled) {
    IgnoreError(RemoveFileIfExists(JoinPath(opts_.state_dir, "spool/" + f)), "a leftover spool file only wastes space; the next start removes it");
  }
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDir(layers_dir));
  for (const auto& name : names) {
    std::string path = JoinPath(layers_dir, name);
    if (name.find(".tmp-") != std::string::npos || name.ends_with(".skel.tmp")) {
      IgnoreError(RemoveFileIfExists(path), "an interrupted write's temp file is never read; the next start removes it");
      continue;
    }
    if (!name.ends_with(".json")) continue;
    SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    auto rec = LayerRecord::FromJson(text);
    if (!rec.ok()) {
      log::Error("layer_record_unreadable", {{"file", path}, {"err", rec.status().message()}});
      continue;
    }
    auto layer = std::make_shared<Layer>();
    layer->rec = std::move(rec).value();
    layers_[layer->rec.id] = layer;
  }

  SLACKER_ASSIGN_OR_RETURN(auto mounts, loopdev::ReadMountInfo(os_));
  std::string mnt_prefix = JoinPath(opts_.state_dir, "mnt") + "/";
  std::string views_prefix = JoinPath(opts_.state_dir, "views") + "/";
  std::set<std::string> mounted_sources;
  for (const auto& m : mounts) {
    if (m.mount_point.starts_with(views_prefix)) {
      IgnoreError(Unmount(os_, m.mount_point), "recovery goes on; a view left mounted is reported by slackerctl verify");
      ::rmdir(m.mount_point.c_str());
      continue;
    }
    if (!m.mount_point.starts_with(mnt_prefix)) continue;
    std::string id = m.mount_point.substr(mnt_prefix.size());
    auto it = layers_.find(id);
    if (it == layers_.end()) {
      log::Warn("recover_unmount_orphan", {{"path", m.mount_point}});
      IgnoreError(Unmount(os_, m.mount_point), "recovery goes on; an orphan mount left is reported by slackerctl verify");
      continue;
    }
    Layer& layer = *it->second;
    if (m.options.find("ro") != 0 && !layer.rec.has_volume) {
      // A rw mount of a layer without a volume is the staging mount of an interrupted
      // ApplyDiff: nobody holds it, and kept it would refuse dockerd's retry ("mounted").
      log::Warn("recover_unmount_interrupted_apply", {{"layer", id}, {"path", m.mount_point}});
      IgnoreError(Unmount(os_, m.mount_point), "recovery goes on; the retried ApplyDiff reports the mount if it is still there");
      continue;
    }
    // dockerd still holds its Get of a mounted layer (e.g. a running container); it
    // will Put it once. The content may have changed while we were down.
    layer.refs = 1;
    layer.mounted_rw = m.options.find("ro") != 0;
    int index = -1;
    if (std::sscanf(m.source.c_str(), "/dev/loop%d", &index) == 1) layer.loop_index = index;
    layer.clean_at_baseline = false;
    if (layer.mounted_rw) {
      // A crash between FIFREEZE and FITHAW (Diff of a running container) leaves the
      // file system frozen: every write in the container would hang forever.
      Status thaw = os_.Thaw(m.mount_point);
      if (thaw.ok()) log::Warn("recover_thawed", {{"layer", id}, {"path", m.mount_point}});
      else if (thaw.code() != EINVAL) log::Error("recover_thaw_failed", {{"layer", id}, {"err", thaw.message()}});
    }
    mounted_sources.insert(m.source);
    log::Info("recover_mounted_layer", {{"layer", id}, {"device", m.source}});
  }

  // Clone temp files (<layer>.img.tmp-XXXX) in this host's volume dir: a crash between
  // the clone and its rename. The dir is this host's alone, so none is in progress.
  std::string volumes_dir = backend_.VolumePath("x");
  volumes_dir.resize(volumes_dir.rfind('/'));
  if (auto names = ListDir(volumes_dir); names.ok()) {
    for (const auto& f : *names) {
      if (f.find(".img.tmp-") == std::string::npos) continue;
      log::Warn("recover_remove_stray_clone", {{"file", JoinPath(volumes_dir, f)}});
      IgnoreError(RemoveFileIfExists(JoinPath(volumes_dir, f)), "a stray clone only wastes space; gc and the next start remove it");
    }
  }
  // Volumes: a volume file without has_volume is a half-done clone or ApplyDiff.
  auto volumes = backend_.ListVolumes();
  if (volumes.ok()) {
    for (const auto& v : *volumes) {
      auto it = layers_.find(v);
      bool keep = it != layers_.end() && it->second->rec.has_volume;
      if (!keep) {
        for (int idx : LoopsBacking(backend_.VolumePath(v))) {
          if (!mounted_sources.count("/dev/loop" + std::to_string(idx))) IgnoreError(os_.LoopClear(idx), "a busy loop device is cleared by autoclear when its last user closes it");
        }
        log::Warn("recover_remove_stray_volume", {{"layer", v}});
        IgnoreError(backend_.RemoveVolume(v), "a stray volume only wastes space; the next start removes it");
      }
    }
  }
  // Loops of our volumes that no mount holds (a crash between attach and mount).
  for (auto& [id, layer] : layers_) {
    if (!layer->rec.has_volume || layer->refs > 0) continue;
    for (int idx : LoopsBacking(backend_.VolumePath(id))) {
      if (!mounted_sources.count("/dev/loop" + std::to_string(idx))) {
        log::Warn("recover_detach_loop", {{"layer", id}, {"loop", std::to_string(idx)}});
        IgnoreError(os_.LoopClear(idx), "a busy loop device is cleared by autoclear when its last user closes it");
      }
    }
  }
  // dockerd creates <id>-init, Gets it, writes its stubs, Puts it and then creates <id>,
  // all in one call (moby's CreateRWLayer), and never removes an init layer whose Get
  // failed. An <id>-init without <id> is therefore the leftover of a creation interrupted
  // by our crash: nobody will Put or Remove it. Remove it, with its mount and volume.
  std::vector<std::string> orphans;
  for (const auto& [id, layer] : layers_) {
    if (id.ends_with("-init") && !layers_.count(id.substr(0, id.size() - 5))) orphans.push_back(id);
  }
  for (const auto& id : orphans) {
    log::Warn("recover_remove_orphan_init_layer", {{"layer", id}});
    Status s = Remove(id);
    if (!s.ok()) log::Error("recover_remove_orphan_failed", {{"layer", id}, {"err", s.message()}});
  }
  SLACKER_RETURN_IF_ERROR(ReconcileMarkers());
  log::Info("recovered", {{"layers", std::to_string(layers_.size())}});
  return Status::Ok();
}

Status SlackerDriver::Claim(const std::string& snap, const std::string& layer_id) {
  std::lock_guard<std::mutex> l(claims_mu_);
  auto& holders = claims_[snap];
  if (holders.empty()) {
    Status s = backend_.AddRef(snap);
    if (!s.ok()) {
      claims_.erase(snap);
      return s;
    }
  }
  holders.insert(layer_id);
  return Status::Ok();
}

void SlackerDriver::NoteClaim(const std::string& snap, const std::string& layer_id) {
  std::lock_guard<std::mutex> l(claims_mu_);
  claims_[snap].insert(layer_id);
}

void SlackerDriver::Release(const std::string& snap, const std::string& layer_id) {
  std::lock_guard<std::mutex> l(claims_mu_);
  auto it = claims_.find(snap);
  if (it == claims_.end()) return;
  it->second.erase(layer_id);
  if (!it->second.empty()) return;
  claims_.erase(it);
  Status s = backend_.DropRef(snap);
  // A marker left behind only keeps the snapshot from gc; the next start removes it.
  if (!s.ok()) log::Warn("drop_ref_failed", {{"snapshot", snap}, {"err", s.message()}});
}

bool SlackerDriver::ClaimableSnapshot(const std::string& snap) const {
  return backend_.SnapshotExists(snap) &&
         !PathExists(backend_.SnapshotFilePath(snap, storage_backend::kGcTombstoneSuffix));
}

void SlackerDriver::ReleaseReplaced(const std::string& old_snap, const std::string& new_snap,
                                    const std::string& layer_id) {
  if (!old_snap.empty() && old_snap != new_snap) Release(old_snap, layer_id);
}

Status SlackerDriver::ReconcileMarkers() {
  std::lock_guard<std::mutex> l(claims_mu_);
  claims_.clear();
  for (const auto& [id, layer] : layers_) {
    if (!layer->rec.snapshot.empty()) claims_[layer->rec.snapshot].insert(id);
  }
  SLACKER_ASSIGN_OR_RETURN(auto marked, backend_.ListRefs());
  std::set<std::string> have(marked.begin(), marked.end());
  for (const auto& snap : marked) {
    if (claims_.count(snap)) continue;
    // Published, then the record was never written (a crash), or an older release's
    // marker of a replaced snapshot: no layer of this host uses it.
    log::Info("recover_drop_unclaimed_ref", {{"snapshot", snap}});
    SLACKER_RETURN_IF_ERROR(backend_.DropRef(snap).Context("recover: drop unclaimed ref marker"));
  }
  for (const auto& [snap, holders] : claims_) {
    if (have.count(snap)) continue;
    log::Warn("recover_add_missing_ref", {{"snapshot", snap}});
    SLACKER_RETURN_IF_ERROR(backend_.AddRef(snap).Context("recover: re-create ref marker"));
  }
  return Status::Ok();
}

std::vector<int> SlackerDriver::LoopsBacking(const std::string& file) {
  auto loops = loopdev::FindLoopsBacking(os_, file);
  if (!loops.ok()) {
    log::Warn("find_loops_failed", {{"file", file}, {"err", loops.status().message()}});
    return {};
  }
  return *loops;
}

// dockerd --storage-opt values. Returns the default layer size.
Result<uint64_t> SlackerDriver::ParseDriverOptions(const std::vector<std::string>& options,
                                                   uint64_t default_size) {
  uint64_t size = default_size;
  for (const auto& o : options) {
    auto eq = o.find('=');
    std::string key = o.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : o.substr(eq + 1);
    if (key == "size" || key == "slacker.size") {
      SLACKER_ASSIGN_OR_RETURN(size, ParseSize(value));
      if (size < (16ull << 20)) return Errorf(EINVAL, "storage option {:?}: slacker needs at least 16M", o);
    } else {
      return Errorf(EINVAL, "unknown storage option {:?} (slacker knows: size)", o);
    }
  }
  return size;
}

Status SlackerDriver::Init(const std::string& home, const std::vector<std::string>& options) {
  SLACKER_ASSIGN_OR_RETURN(uint64_t size, ParseDriverOptions(options, default_size_at_start_));
  if (!home.empty()) SLACKER_RETURN_IF_ERROR(MakeDirs(home, 0700));
  nlohmann::json j = {{"home", home}, {"options", options}};
  SLACKER_RETURN_IF_ERROR(AtomicWriteFile(JoinPath(opts_.state_dir, "plugin.json"), j.dump() + "\n"));
  {
    std::lock_guard<std::mutex> l(mu_);
    home_ = home;
    opts_.default_size = size;
  }
  log::Info("init", {{"home", home}, {"default_size", std::to_string(size)}});
  return Status::Ok();
}

std::vector<std::pair<std::string, std::string>> SlackerDriver::StatusRows() {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t mounted = 0, volumes = 0;
  std::set<std::string> snaps;
  std::vector<std::shared_ptr<Layer>> all;
  {
    std::lock_guard<std::mutex> l(mu_);  // a leaf lock: copy, then lock layers without it
    for (auto& [id, layer] : layers_) all.push_back(layer);
  }
  size_t n = all.size(), busy = 0;
  for (auto& layer : all) {
    // try_lock: an ApplyDiff holds the layer's mutex for minutes; docker info must not wait.
    std::unique_lock<std::mutex> ll(layer->mu, std::try_to_lock);
    if (!ll.owns_lock()) {
      ++busy;
      continue;
    }
    if (layer->refs > 0) ++mounted;
    if (layer->rec.has_volume) ++volumes;
    if (!layer->rec.snapshot.empty()) snaps.insert(layer->rec.snapshot);
  }
  rows.push_back({"Backing Store", backend_.Describe()});
  rows.push_back({"Store UUID", backend_.info().uuid});
  rows.push_back({"Host ID", opts_.host_id});
  rows.push_back({"Layers", std::to_string(n)});
  rows.push_back({"Busy Layers (not counted below)", std::to_string(busy)});
  rows.push_back({"Mounted Layers", std::to_string(mounted)});
  rows.push_back({"Volumes (this host)", std::to_string(volumes)});
  rows.push_back({"Snapshots Referenced", std::to_string(snaps.size())});
  auto space = backend_.Space();
  if (space.ok()) {
    rows.push_back({"Store Space Used", fmt::format("{:.1f} GiB", (space->total_bytes - space->free_bytes) / 1073741824.0)});
    rows.push_back({"Store Space Available", fmt::format("{:.1f} GiB", space->free_bytes / 1073741824.0)});
  }
  auto c = counters();
  rows.push_back({"Clones", std::to_string(c.clones)});
  rows.push_back({"Snapshots Taken", std::to_string(c.snapshots)});
  rows.push_back({"Snapshot Cache Hits", std::to_string(c.snapshot_cache_hits)});
  return rows;
}

Result<std::map<std::string, std::string>> SlackerDriver::GetMetadata(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "layer {} does not exist", id);
  std::lock_guard<std::mutex> l(layer->mu);
  std::map<std::string, std::string> m = {
      {"Kind", KindName(layer->rec.kind)},
      {"Origin", OriginName(layer->rec.origin)},
      {"Snapshot", layer->rec.snapshot},
      {"Store", backend_.info().uuid},
  };
  if (layer->rec.has_volume) m["Volume"] = backend_.VolumePath(id);
  if (!layer->rec.snapshot.empty()) m["SnapshotFile"] = backend_.SnapshotPath(layer->rec.snapshot);
  if (layer->refs > 0) m["MergedDir"] = MountPath(id);
  return m;
}

Status SlackerDriver::Create(const CreateRequest& req) { return CreateLayer(req, LayerKind::kImage); }
Status SlackerDriver::CreateReadWrite(const CreateRequest& req) {
  return CreateLayer(req, LayerKind::kReadWrite);
}

Status SlackerDriver::CreateLayer(const CreateRequest& req, LayerKind kind) {
  if (!ValidLayerId(req.id)) return Errorf(EINVAL, "invalid layer id {:?}", req.id);
  LayerRecord rec;
  rec.id = req.id;
  rec.parent = req.parent;
  rec.kind = kind;
  for (const auto& [key, value] : req.storage_opt) {
    if (key == "size") {
      SLACKER_ASSIGN_OR_RETURN(rec.size_bytes, ParseSize(value));
      if (rec.size_bytes < (16ull << 20))
        return Errorf(EINVAL, "storage-opt size={} is too small: slacker needs at least 16M", value);
    } else {
      return Errorf(EINVAL, "unknown storage option {:?} for layer {} (slacker knows: size)", key, req.id);
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  if (layers_.count(req.id)) return Errorf(EEXIST, "layer {} already exists", req.id);
  if (!req.parent.empty() && !layers_.count(req.parent))
    return Errorf(ENOENT, "create layer {}: parent layer {} does not exist", req.id, req.parent);
  SLACKER_RETURN_IF_ERROR(Persist(rec).Context("create layer " + req.id));
  SLACKER_FAULT_POINT("create.after_record");
  auto layer = std::make_shared<Layer>();
  layer->rec = rec;
  layers_[req.id] = layer;
  log::Debug("create", {{"layer", req.id}, {"parent", req.parent}, {"kind", KindName(kind)}});
  return Status::Ok();
}

Status SlackerDriver::Remove(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Status::Ok();  // idempotent, as dockerd retries removals
  std::lock_guard<std::mutex> l(layer->mu);
  if (layer->refs > 0) {
    log::Warn("remove_mounted_layer", {{"layer", id}, {"refs", std::to_string(layer->refs)}});
    SLACKER_RETURN_IF_ERROR(PutLocked(*layer, /*force=*/true).Context("remove layer " + id));
  }
  if (layer->rec.has_volume) SLACKER_RETURN_IF_ERROR(backend_.RemoveVolume(id).Context("remove layer " + id));
  SLACKER_FAULT_POINT("remove.after_volume");
  std::string snap = layer->rec.snapshot;
  SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(JoinPath(opts_.state_dir, "layers/" + id + ".json")));
  SLACKER_FAULT_POINT("remove.after_record");
  IgnoreError(RemoveFileIfExists(JoinPath(opts_.state_dir, "layers/" + id + ".ref")), "the layer is gone (its record is removed); a stray .ref file is never read again");
  ::rmdir(MountPath(id).c_str());
  layer->removed = true;
  {
    std::lock_guard<std::mutex> ml(mu_);
    layers_.erase(id);
  }
  if (!snap.empty()) Release(snap, id);
  log::Debug("remove", {{"layer", id}});
  return Status::Ok();
}

bool SlackerDriver::Exists(const std::string& id) { return Find(id) != nullptr; }

Result<std::string> SlackerDriver::Get(const std::string& id, const std::string& /*mount_label*/) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "get layer {}: no such layer", id);
  std::lock_guard<std::mutex> l(layer->mu);
  if (layer->removed) return Errorf(ENOENT, "get layer {}: no such layer", id);
  return GetLocked(*layer);
}

Result<std::string> SlackerDriver::GetLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  std::string mnt = MountPath(id);
  if (layer.refs > 0) {
    ++layer.refs;
    return mnt;
  }
  SLACKER_RETURN_IF_ERROR(MakeDirs(mnt, 0755));
  if (!layer.rec.has_volume && !layer.rec.snapshot.empty() && layer.rec.kind == LayerKind::kImage) {
    // An image layer: mount its snapshot read-only where it lives. Never cloned.
    SLACKER_ASSIGN_OR_RETURN(auto loop, loopdev::LoopDevice::Attach(
                                            os_, backend_.SnapshotPath(layer.rec.snapshot),
                                            os::LoopConfig{.read_only = true}));
    SLACKER_RETURN_IF_ERROR(loopdev::MountExt4(os_, loop.path(), mnt, /*read_only=*/true)
                                .Context(fmt::format("mount snapshot {} of layer {}", layer.rec.snapshot, id)));
    layer.loop_index = loop.index();
    layer.mounted_rw = false;
    layer.refs = 1;
    std::lock_guard<std::mutex> ml(mu_);
    counters_.ro_mounts++;
    return mnt;
  }
  if (!layer.rec.has_volume) SLACKER_RETURN_IF_ERROR(MaterializeVolume(layer));
  SLACKER_RETURN_IF_ERROR(MountVolume(layer));
  return mnt;
}

// Lazy cloning: the layer's volume is cloned from its parent's content snapshot at the
// first Get (or at an ApplyDiff of a standard tar), never at Create.
Status SlackerDriver::MaterializeVolume(Layer& layer) {
  const std::string& id = layer.rec.id;
  std::string base;
  if (!layer.rec.snapshot.empty()) {
    base = layer.rec.snapshot;
  } else if (!layer.rec.parent.empty()) {
    SLACKER_ASSIGN_OR_RETURN(base, ContentSnapshot(layer.rec.parent));
  }
  SLACKER_RETURN_IF_ERROR(CloneBase(base, id, layer.rec.size_bytes)
                              .Context(fmt::format("clone {} for layer {}", base.empty() ? "empty file system" : "snapshot " + base, id)));
  SLACKER_FAULT_POINT("get.after_clone");
  LayerRecord next = layer.rec;
  next.has_volume = true;
  next.dirty = base.empty() || base != layer.rec.snapshot;
  Status s = Persist(next);
  if (!s.ok()) {
    IgnoreError(backend_.RemoveVolume(id), "rollback: the Persist error is what the caller must see; a stray volume is removed at the next start");
    return s;
  }
  layer.rec = next;
  std::lock_guard<std::mutex> ml(mu_);
  counters_.clones++;
  return Status::Ok();
}

Status SlackerDriver::CloneBase(const std::string& snap, const std::string& layer_id, uint64_t size_bytes) {
  if (snap.empty()) {
    uint64_t size = size_bytes ? size_bytes : opts_.default_size;
    SLACKER_ASSIGN_OR_RETURN(std::string tmpl, EnsureTemplate(size));
    return backend_.CloneFile(tmpl, backend_.VolumePath(layer_id));
  }
  SLACKER_RETURN_IF_ERROR(backend_.CloneSnapshot(snap, layer_id));
  if (size_bytes == 0) return Status::Ok();
  std::string vol = backend_.VolumePath(layer_id);
  struct stat st;
  if (::stat(vol.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + vol);
  uint64_t cur = static_cast<uint64_t>(st.st_size);
  if (size_bytes / 4096 == cur / 4096) return Status::Ok();
  // A per-container quota that differs from the image's file system: resize the clone
  // offline, before it is attached (online growth needs CAP_SYS_RESOURCE). resize2fs
  // cannot always shrink far (data of top-level directories sits in high block groups);
  // then the tree is copied into a fresh file system of the requested size.
  Status s = loopdev::ResizeExt4Offline(vol, size_bytes);
  if (s.ok()) return Status::Ok();
  if (size_bytes > cur) {
    IgnoreError(backend_.RemoveVolume(layer_id), "rollback: the resize error is what the caller must see; a stray volume is removed at the next start");
    return s.Context(fmt::format("grow layer file system to {} bytes", size_bytes));
  }
  log::Info("quota_copy_fallback", {{"layer", layer_id}, {"bytes", std::to_string(size_bytes)},
                                     {"resize_error", s.message()}});
  s = CopyTreeIntoNewFs(snap, layer_id, size_bytes);
  if (!s.ok()) IgnoreError(backend_.RemoveVolume(layer_id), "rollback: the copy error is what the caller must see; a stray volume is removed at the next start");
  return s;
}

Status SlackerDriver::CopyTreeIntoNewFs(const std::string& snap, const std::string& layer_id,
                                        uint64_t size_bytes) {
  SLACKER_ASSIGN_OR_RETURN(std::string tmpl, EnsureTemplate(size_bytes));
  std::string vol = backend_.VolumePath(layer_id);
  SLACKER_RETURN_IF_ERROR(backend_.CloneFile(tmpl, vol));
  std::string src_dir = JoinPath(opts_.state_dir, "views/" + RandomHex(8));
  std::string dst_dir = JoinPath(opts_.state_dir, "views/" + RandomHex(8));
  SLACKER_RETURN_IF_ERROR(MakeDirs(src_dir, 0700));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dst_dir, 0700));
  Status result;
  {
    loopdev::MountedImage::Options ro;
    ro.read_only = true;
    auto src = loopdev::MountedImage::Mount(os_, backend_.SnapshotPath(snap), src_dir, ro);
    auto dst = src.ok() ? loopdev::MountedImage::Mount(os_, vol, dst_dir) : Result<loopdev::MountedImage>(src.status());
    if (!dst.ok()) {
      result = dst.status();
    } else {
      result = loopdev::RunToolChecked({"cp", "-a", "--", src_dir + "/.", dst_dir + "/"});
      if (!result.ok()) {
        result = Errorf(ENOSPC, "the image's files do not fit into storage-opt size={} bytes: {}", size_bytes,
                        result.message());
      }
    }
  }
  ::rmdir(src_dir.c_str());
  ::rmdir(dst_dir.c_str());
  return result;
}

Result<std::string> SlackerDriver::EnsureTemplate(uint64_t size_bytes) {
  std::lock_guard<std::mutex> l(template_mu_);
  std::string path = backend_.TemplatePath(size_bytes);
  if (PathExists(path)) return path;
  std::string tmp = fmt::format("{}.tmp-{}-{}", path, opts_.host_id, getpid());
  Status s = loopdev::FormatExt4(tmp, size_bytes);
  if (!s.ok()) {
    IgnoreError(RemoveFileIfExists(tmp), "rollback: the format error is what the caller must see");
    return s.Context("format template");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    IgnoreError(RemoveFileIfExists(tmp), "rollback: the rename error is what the caller must see");
    return Status::FromErrno(err, "publish template " + path);
  }
  log::Info("template_created", {{"path", path}, {"bytes", std::to_string(size_bytes)}});
  return path;
}

Status SlackerDriver::MountVolume(Layer& layer) {
  const std::string& id = layer.rec.id;
  std::string mnt = MountPath(id);
  std::string vol = backend_.VolumePath(id);
  SLACKER_ASSIGN_OR_RETURN(auto loop, loopdev::LoopDevice::Attach(os_, vol, os::LoopConfig{}));
  SLACKER_FAULT_POINT("get.after_attach");
  SLACKER_RETURN_IF_ERROR(loopdev::MountExt4(os_, loop.path(), mnt, /*read_only=*/false)
                              .Context(fmt::format("mount volume of layer {}", id)));
  SLACKER_FAULT_POINT("get.after_mount");
  layer.loop_index = loop.index();
  layer.mounted_rw = true;
  layer.refs = 1;
  auto w = SampleWrites(layer.loop_index, mnt);
  layer.baseline = w.ok() ? *w : 0;
  layer.clean_at_baseline = w.ok() && !layer.rec.dirty && !layer.rec.snapshot.empty();
  if (!layer.rec.dirty) {
    // Persist "may be written" before anyone can write, so a crash never leaves a
    // record that claims the snapshot still matches.
    LayerRecord next = layer.rec;
    next.dirty = true;
    SLACKER_RETURN_IF_ERROR(Persist(next));
    layer.rec = next;
  }
  std::lock_guard<std::mutex> ml(mu_);
  counters_.rw_mounts++;
  return Status::Ok();
}

Result<uint64_t> SlackerDriver::SampleWrites(int loop_index, const std::string& mountpoint) {
  if (loop_index < 0) return Errorf(EINVAL, "no loop device");
  SLACKER_RETURN_IF_ERROR(os_.SyncFs(mountpoint));
  return loopdev::WriteSectors(os_, loop_index);
}

Status SlackerDriver::Put(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "put layer {}: no such layer", id);
  std::lock_guard<std::mutex> l(layer->mu);
  return PutLocked(*layer, false);
}

Status SlackerDriver::PutLocked(Layer& layer, bool force) {
  const std::string& id = layer.rec.id;
  if (layer.refs <= 0) {
    log::Debug("put_not_mounted", {{"layer", id}});
    return Status::Ok();  // dockerd may Put twice; never underflow
  }
  if (--layer.refs > 0 && !force) return Status::Ok();
  layer.refs = 0;
  std::string mnt = MountPath(id);
  bool clean = false;
  if (layer.mounted_rw) {
    // "Clean" is decided while frozen, after the flush: a write that lands between a
    // sample and the unmount would otherwise be recorded as clean (and the next Diff
    // would reuse the stale snapshot for good).
    auto frozen_at = FlushBeforeUnmount(os_, id, mnt, layer.loop_index);
    clean = layer.clean_at_baseline && frozen_at && *frozen_at == layer.baseline + loopdev::kFreezeWriteSectors;
    if (clean) {
      // And nothing since the thaw (a writer the flush blocked resumes there).
      auto w = SampleWrites(layer.loop_index, mnt);
      clean = w.ok() && *w == *frozen_at + loopdev::kThawWriteSectors;
    }
  }
  Status s = Unmount(os_, mnt);
  if (!s.ok()) {
    layer.refs = 1;
    return s.Context("put layer " + id);
  }
  layer.loop_index = -1;
  if (clean && !LoopsBacking(backend_.VolumePath(id)).empty()) {
    // The file system outlives our unmount (a busy mount detached lazily, or a copy of the
    // mount in another mount namespace): it can still be written.
    log::Warn("put_file_system_still_alive", {{"layer", id}});
    clean = false;
  }
  if (layer.mounted_rw && clean && layer.rec.dirty) {
    LayerRecord next = layer.rec;
    next.dirty = false;
    if (Persist(next).ok()) layer.rec = next;
  }
  layer.mounted_rw = false;
  return Status::Ok();
}

// REQUIRES layer.mu held and layer.rec.has_volume. Returns a snapshot equal to the
// volume's current content, reusing the last one when nothing was written since.
Result<std::string> SlackerDriver::SnapshotLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  bool mounted = layer.refs > 0 && layer.mounted_rw;
  std::string mnt = MountPath(id);
  if (mounted) {
    auto w = SampleWrites(layer.loop_index, mnt);
    if (w.ok() && layer.clean_at_baseline && *w == layer.baseline && !layer.rec.snapshot.empty()) {
      std::lock_guard<std::mutex> ml(mu_);
      counters_.snapshot_cache_hits++;
      return layer.rec.snapshot;
    }
  } else if (!layer.rec.dirty && !layer.rec.snapshot.empty()) {
    std::lock_guard<std::mutex> ml(mu_);
    counters_.snapshot_cache_hits++;
    return layer.rec.snapshot;
  }
  nlohmann::json meta = {{"parent_layer", layer.rec.parent}, {"source", "commit"},
                         {"layer", id}, {"host", opts_.host_id}};
  std::string snap;
  if (mounted) {
    SLACKER_RETURN_IF_ERROR(os_.Freeze(mnt).Context("freeze layer " + id + " for snapshot"));
    SLACKER_FAULT_POINT("diff.while_frozen");
    // The baseline is sampled while frozen: writers the freeze blocked resume at the thaw,
    // and their writes are not in the snapshot, so they must count as changes.
    auto frozen_at = loopdev::WriteSectors(os_, layer.loop_index);
    Status synced = SyncVolumeFile(id);
    auto r = synced.ok() ? backend_.SnapshotVolume(id, meta) : Result<std::string>(synced);
    Status thaw = os_.Thaw(mnt);
    if (!r.ok()) return r.status().Context("snapshot layer " + id);
    if (!thaw.ok()) log::Error("thaw_failed", {{"layer", id}, {"err", thaw.message()}});
    snap = *r;
    layer.baseline = frozen_at.ok() ? *frozen_at + loopdev::kThawWriteSectors : 0;
    layer.clean_at_baseline = frozen_at.ok() && thaw.ok();
  } else {
    if (!LoopsBacking(backend_.VolumePath(id)).empty()) {
      // Our mount is gone but the file system lives on (a copy of the mount in another
      // mount namespace): it was flushed at our Put, later writes may be missing.
      log::Warn("snapshot_of_volume_still_in_use", {{"layer", id},
                {"note", "a process in another mount namespace still holds the layer's file system"}});
    }
    SLACKER_RETURN_IF_ERROR(SyncVolumeFile(id).Context("snapshot layer " + id));
    auto r = backend_.SnapshotVolume(id, meta);
    if (!r.ok()) return r.status().Context("snapshot layer " + id);
    snap = *r;
  }
  NoteClaim(snap, id);
  SLACKER_FAULT_POINT("diff.after_snapshot");
  LayerRecord next = layer.rec;
  next.snapshot = snap;
  next.origin = Origin::kVolume;
  next.dirty = mounted;  // still mounted rw: settled at Put
  if (Status p = Persist(next); !p.ok()) {
    Release(snap, id);
    return p;
  }
  // The replaced snapshot stays on the store (a registry may name it: gc decides).
  ReleaseReplaced(layer.rec.snapshot, snap, id);
  layer.rec = next;
  {
    std::lock_guard<std::mutex> ml(mu_);
    counters_.snapshots++;
  }
  log::Info("snapshot", {{"layer", id}, {"snapshot", snap}});
  return snap;
}

// fsync of the volume file: what the loop device wrote through the page cache of the
// backing file reaches the store before the store clones it (a REST or NFS store clones
// on the server, which never sees this host's dirty pages).
Status SlackerDriver::SyncVolumeFile(const std::string& id) {
  std::string vol = backend_.VolumePath(id);
  UniqueFd fd(::open(vol.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + vol + " to sync it");
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync " + vol);
  return Status::Ok();
}

// The size of what `snap` (the layer's current snapshot) changed against the layer's
// parent, recorded once in the snapshot's metadata so every Diff of it yields the same
// reference bytes, and a worker applying the reference returns it as the layer's size.
// REQUIRES layer.mu held.
Result<uint64_t> SlackerDriver::SnapshotDiffBytes(Layer& layer, const std::string& snap) {
  SLACKER_ASSIGN_OR_RETURN(auto meta, backend_.ReadSnapshotMeta(snap));
  if (meta.contains("bytes") && meta["bytes"].is_number_unsigned()) return meta["bytes"].get<uint64_t>();
  SLACKER_ASSIGN_OR_RETURN(std::string root, GetLocked(layer));
  auto bytes = DiffBytesAgainstParent(layer, root);
  Status put = PutLocked(layer, false);
  if (!bytes.ok()) return bytes.status();
  SLACKER_RETURN_IF_ERROR(put);
  meta["bytes"] = static_cast<uint64_t>(*bytes);
  SLACKER_RETURN_IF_ERROR(AtomicWriteFile(backend_.SnapshotMetaPath(snap), meta.dump() + "\n"));
  return static_cast<uint64_t>(*bytes);
}

Result<int64_t> SlackerDriver::DiffBytesAgainstParent(Layer& layer, const std::string& layer_root) {
  SLACKER_ASSIGN_OR_RETURN(auto changes, ChangesAgainst(layer_root, layer.rec.parent));
  return ChangesSize(layer_root, changes);
}

Result<std::string> SlackerDriver::ContentSnapshot(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "layer {} does not exist", id);
  std::unique_lock<std::mutex> l(layer->mu);
  if (layer->rec.has_volume) return SnapshotLocked(*layer);
  if (!layer->rec.snapshot.empty()) return layer->rec.snapshot;
  std::string parent = layer->rec.parent;
  l.unlock();
  if (parent.empty()) return std::string();
  return ContentSnapshot(parent);
}

Result<std::unique_ptr<SlackerDriver::View>> SlackerDriver::OpenView(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "layer {} does not exist", id);
  {
    std::lock_guard<std::mutex> l(layer->mu);
    if (layer->refs > 0 || layer->rec.has_volume ||
        (!layer->rec.snapshot.empty() && layer->rec.kind == LayerKind::kImage)) {
      SLACKER_ASSIGN_OR_RETURN(std::string path, GetLocked(*layer));
      return std::make_unique<View>(this, path, id, false);
    }
  }
  SLACKER_ASSIGN_OR_RETURN(std::string snap, ContentSnapshot(id));
  if (snap.empty()) return std::make_unique<View>(this, JoinPath(opts_.state_dir, "empty"), "", false);
  std::string dir = JoinPath(opts_.state_dir, "views/" + RandomHex(8));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  auto loop = loopdev::LoopDevice::Attach(os_, backend_.SnapshotPath(snap), os::LoopConfig{.read_only = true});
  Status s = loop.ok() ? loopdev::MountExt4(os_, loop->path(), dir, true) : loop.status();
  if (!s.ok()) {
    ::rmdir(dir.c_str());
    return s.Context(fmt::format("mount snapshot {} of layer {}", snap, id));
  }
  return std::make_unique<View>(this, dir, "", true);
}

Result<DiffStream> SlackerDriver::Diff(const std::string& id, const std::string& /*parent*/) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "diff layer {}: no such layer", id);
  std::unique_lock<std::mutex> l(layer->mu);
  if (layer->rec.has_volume) {
    SLACKER_ASSIGN_OR_RETURN(std::string snap, SnapshotLocked(*layer));
    registry_shim::Reference ref;
    ref.store = backend_.info().uuid;
    ref.snapshot = snap;
    SLACKER_ASSIGN_OR_RETURN(ref.parent, ReferenceParent(layer->rec));
    SLACKER_ASSIGN_OR_RETURN(ref.bytes, SnapshotDiffBytes(*layer, snap));
    return DiffStream(std::make_unique<StringSource>(registry_shim::EncodeReferenceTar(ref, Trust().signing_key())));
  }
  switch (layer->rec.origin) {
    case Origin::kReference: {
      SLACKER_ASSIGN_OR_RETURN(std::string bytes,
                               ReadFileToString(JoinPath(opts_.state_dir, "layers/" + id + ".ref")));
      return DiffStream(std::make_unique<StringSource>(std::move(bytes)));
    }
    case Origin::kTar: {
      std::string skel = backend_.SnapshotFilePath(layer->rec.snapshot, ".skel");
      l.unlock();
      SLACKER_ASSIGN_OR_RETURN(auto view, OpenView(id));
      SLACKER_ASSIGN_OR_RETURN(auto stream, registry_shim::OpenSkeletonStream(skel, view->path()));
      std::shared_ptr<View> keep(std::move(view));
      return DiffStream(std::make_unique<ViewSource>(std::move(stream), keep));
    }
    case Origin::kVolume:
    case Origin::kNone:
      break;
  }
  if (!layer->rec.snapshot.empty()) {
    // A snapshot of a volume that has since been promoted away (not reachable today).
    registry_shim::Reference ref;
    ref.store = backend_.info().uuid;
    ref.snapshot = layer->rec.snapshot;
    SLACKER_ASSIGN_OR_RETURN(ref.parent, ReferenceParent(layer->rec));
    return DiffStream(std::make_unique<StringSource>(registry_shim::EncodeReferenceTar(ref, Trust().signing_key())));
  }
  // Never written: same content as the parent, an empty tar.
  return DiffStream(std::make_unique<StringSource>(std::string(1024, '\0')));
}

// `parent` as given, or the layer's own parent when empty (as overlay2 does).
Result<std::string> SlackerDriver::BaseOf(const std::string& id, const std::string& parent, const char* what) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "{} of layer {}: no such layer", what, id);
  if (!parent.empty()) return parent;
  std::lock_guard<std::mutex> l(layer->mu);
  return layer->rec.parent;
}

Result<std::vector<Change>> SlackerDriver::ChangesAgainst(const std::string& root, const std::string& base_id) {
  if (base_id.empty()) return ComputeChanges(root, "");
  SLACKER_ASSIGN_OR_RETURN(auto base_view, OpenView(base_id));
  return ComputeChanges(root, base_view->path());
}

Result<std::vector<Change>> SlackerDriver::Changes(const std::string& id, const std::string& parent) {
  SLACKER_ASSIGN_OR_RETURN(std::string base, BaseOf(id, parent, "changes"));
  SLACKER_ASSIGN_OR_RETURN(auto view, OpenView(id));
  return ChangesAgainst(view->path(), base);
}

Result<int64_t> SlackerDriver::DiffSize(const std::string& id, const std::string& parent) {
  SLACKER_ASSIGN_OR_RETURN(std::string base, BaseOf(id, parent, "diff size"));
  SLACKER_ASSIGN_OR_RETURN(auto view, OpenView(id));
  SLACKER_ASSIGN_OR_RETURN(auto changes, ChangesAgainst(view->path(), base));
  return ChangesSize(view->path(), changes);
}

Result<int64_t> SlackerDriver::ApplyDiff(const std::string& id, const std::string& /*parent*/, ByteSource& tar) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "apply diff to layer {}: no such layer", id);
  std::lock_guard<std::mutex> l(layer->mu);
  if (layer->refs > 0) return Errorf(EBUSY, "apply diff to layer {}: the layer is mounted", id);
  std::string head(512, '\0');
  size_t got = 0;
  while (got < head.size()) {
    SLACKER_ASSIGN_OR_RETURN(size_t n, tar.Read(head.data() + got, head.size() - got));
    if (n == 0) break;
    got += n;
  }
  head.resize(got);
  if (got == 0) {
    // Not a tar: every tar, even an empty layer's, has its 1024-byte end marker. dockerd's
    // plugin client sends exactly this when it retries an ApplyDiff whose connection broke
    // (slackerd killed during it) with the already consumed stream; taking it as an empty
    // layer would register the image with content that does not match its DiffID.
    return Errorf(EINVAL,
                  "apply diff to layer {}: the layer stream is empty (not even a tar end marker); dockerd "
                  "sends this when it retries an ApplyDiff after the plugin restarted during it: run the "
                  "docker command again",
                  id);
  }
  if (got == 512 && registry_shim::IsReferenceTarHeader(head.data())) {
    std::string bytes = head;
    char buf[4096];
    for (;;) {
      SLACKER_ASSIGN_OR_RETURN(size_t n, tar.Read(buf, sizeof buf));
      if (n == 0) break;
      bytes.append(buf, n);
      if (bytes.size() > kMaxReferenceTar)
        return Errorf(EINVAL, "apply diff to layer {}: reference tar is larger than {} bytes", id, kMaxReferenceTar);
    }
    return ApplyReference(*layer, bytes);
  }
  registry_shim::PrefixedSource full(head, tar);
  return ApplyStandard(*layer, full);
}

Result<int64_t> SlackerDriver::ApplyReference(Layer& layer, const std::string& bytes) {
  const std::string& id = layer.rec.id;
  auto ref = registry_shim::ParseReferenceTar(bytes);
  if (!ref.ok()) return ref.status().Context("apply reference to layer " + id);
  SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ReferenceParent(layer.rec));
  SLACKER_RETURN_IF_ERROR(VerifyReference(*ref, parent_chain).Context("apply reference to layer " + id));
  if (ref->store != backend_.info().uuid) {
    return Errorf(EINVAL,
                  "apply reference to layer {}: snapshot {} lives on store {}, but this worker's store is {} "
                  "(pull it on a worker that shares that store, or export the image with `slackerctl export`)",
                  id, ref->snapshot, ref->store, backend_.info().uuid);
  }
  if (!backend_.SnapshotExists(ref->snapshot)) {
    return Errorf(ENOENT, "apply reference to layer {}: snapshot {} does not exist on store {} (deleted by gc?)",
                  id, ref->snapshot, ref->store);
  }
  // Mark first, then check the image: a gc hides an image before it re-reads the
  // markers (storage_backend/STORE.md), so one of the two sees the other.
  SLACKER_RETURN_IF_ERROR(Claim(ref->snapshot, id).Context("apply reference to layer " + id));
  if (!ClaimableSnapshot(ref->snapshot)) {
    Release(ref->snapshot, id);
    return Errorf(ENOENT, "apply reference to layer {}: snapshot {} was just deleted from store {} (by gc?)", id,
                  ref->snapshot, ref->store);
  }
  LayerRecord next = layer.rec;
  next.snapshot = ref->snapshot;
  next.origin = Origin::kReference;
  next.has_volume = false;
  next.dirty = false;
  next.diff_size = static_cast<int64_t>(ref->bytes);
  next.chain_id = registry_shim::NextChainId(parent_chain, Sha256Digest(bytes));
  Status written = AtomicWriteFile(JoinPath(opts_.state_dir, "layers/" + id + ".ref"), bytes);
  if (written.ok()) written = Persist(next);
  if (!written.ok()) {
    if (ref->snapshot != layer.rec.snapshot) Release(ref->snapshot, id);
    return written;
  }
  if (layer.rec.has_volume) IgnoreError(backend_.RemoveVolume(id), "the reference replaces the volume; a stray volume is removed at the next start");
  ReleaseReplaced(layer.rec.snapshot, next.snapshot, id);
  layer.rec = next;
  log::Info("apply_reference", {{"layer", id}, {"snapshot", ref->snapshot}});
  return next.diff_size;
}

// Reads a whole stream into a file while hashing it (SHA-256: the layer's DiffID).
class SpoolFile {
 public:
  ~SpoolFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  // Fails with EFBIG, the partial file removed, once the stream exceeds `limit` bytes.
  Status Fill(const std::string& path, ByteSource& src, uint64_t limit) {
    path_ = path;
    fd_.Reset(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd_.valid()) return Status::FromErrno(errno, "create spool " + path);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 20);
    Status result;
    for (;;) {
      auto n = src.Read(buf.data(), buf.size());
      if (!n.ok()) {
        result = n.status();
        break;
      }
      if (*n == 0) break;
      SLACKER_FAULT_POINT("apply.mid_spool");
      if (size_ + *n > limit) {
        result = Errorf(EFBIG,
                        "the layer's tar is larger than the spool limit of {} bytes (slackerd --max-spool); "
                        "raise the limit or make sure <state>/spool has room for the layer",
                        limit);
        break;
      }
      EVP_DigestUpdate(ctx, buf.data(), *n);
      size_ += *n;
      size_t done = 0;
      while (done < *n) {
        ssize_t w = ::write(fd_.get(), buf.data() + done, *n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          result = Status::FromErrno(errno, "write spool " + path);
          break;
        }
        done += static_cast<size_t>(w);
      }
      if (!result.ok()) break;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    digest_ = "sha256:" + Hex(md, len);
    if (result.ok() && ::lseek(fd_.get(), 0, SEEK_SET) != 0) result = Status::FromErrno(errno, "rewind spool");
    if (!result.ok()) {
      fd_.Reset(-1);
      ::unlink(path_.c_str());
      path_.clear();
    }
    return result;
  }
  const std::string& digest() const { return digest_; }
  uint64_t size() const { return size_; }
  Result<size_t> Read(void* buf, size_t n) {
    for (;;) {
      ssize_t r = ::read(fd_.get(), buf, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) return Status::FromErrno(errno, "read spool " + path_);
    }
  }
  static std::string Hex(const unsigned char* p, size_t n) {
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      out += kHex[p[i] >> 4];
      out += kHex[p[i] & 15];
    }
    return out;
  }

 private:
  std::string path_;
  UniqueFd fd_;
  std::string digest_;
  uint64_t size_ = 0;
};

class SpoolSource : public ByteSource {
 public:
  explicit SpoolSource(SpoolFile& f) : f_(f) {}
  Result<size_t> Read(void* buf, size_t n) override { return f_.Read(buf, n); }

 private:
  SpoolFile& f_;
};

std::string Sha256Digest(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return "sha256:" + SpoolFile::Hex(md, len);
}

Result<std::string> Sha256Digest(ByteSource& src) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  for (;;) {
    auto n = src.Read(buf.data(), buf.size());
    if (!n.ok()) {
      EVP_MD_CTX_free(ctx);
      return n.status();
    }
    if (*n == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), *n);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return "sha256:" + SpoolFile::Hex(md, len);
}

std::string ChainKey(const std::string& base_snapshot, const std::string& diff_id) {
  std::string in = base_snapshot + " " + diff_id;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(in.data(), in.size(), md, &len, EVP_sha256(), nullptr);
  return SpoolFile::Hex(md, len);
}

std::string SlackerDriver::ChainPath(const std::string& key) const {
  return JoinPath(backend_.root(), "chains/" + key);
}

// Dedup across the cluster: a standard layer whose chain (the parent's content snapshot
// + its DiffID) any worker already applied is the same tree, and its skeleton reproduces
// the same bytes. The chain index lives on the shared store: chains/<sha256(base+" "+diffid)>
// holds the snapshot id. REQUIRES layer.mu held.
Result<int64_t> SlackerDriver::ApplyStandard(Layer& layer, ByteSource& tar) {
  const std::string& id = layer.rec.id;
  if (layer.rec.has_volume) return ApplyStandardInto(layer, tar, "");  // written through Get first
  std::string base = layer.rec.snapshot;
  if (base.empty() && !layer.rec.parent.empty()) {
    SLACKER_ASSIGN_OR_RETURN(base, ContentSnapshot(layer.rec.parent));
  }
  SpoolFile spool;
  SLACKER_RETURN_IF_ERROR(spool.Fill(JoinPath(opts_.state_dir, "spool/" + id + ".tar"), tar, opts_.max_spool_bytes)
                              .Context("apply diff to layer " + id));
  std::string key = ChainKey(base, spool.digest());
  // Not needed to apply a standard layer: a parent whose chain id cannot be computed
  // (its skeleton lost) only keeps references from being made on top of this layer.
  std::string chain_id;
  auto parent_chain = ReferenceParent(layer.rec);
  if (parent_chain.ok()) {
    chain_id = registry_shim::NextChainId(*parent_chain, spool.digest());
  } else {
    log::Warn("chain_id_unknown", {{"layer", id}, {"err", parent_chain.status().message()}});
  }
  auto known = ReadFileToString(ChainPath(key));
  if (known.ok()) {
    std::string snap = known->substr(0, known->find('\n'));
    // Mark first, then check the image (the gc protocol); a snapshot gone meanwhile is a
    // miss: unpack the tar again.
    bool claimed = backend_.SnapshotExists(snap) && Claim(snap, id).ok();
    bool usable = claimed && ClaimableSnapshot(snap) && PathExists(backend_.SnapshotFilePath(snap, ".skel"));
    if (claimed && !usable) Release(snap, id);
    if (usable) {
      auto meta = backend_.ReadSnapshotMeta(snap);
      int64_t size = meta.ok() ? meta->value("bytes", int64_t{0}) : 0;
      LayerRecord next = layer.rec;
      next.snapshot = snap;
      next.origin = Origin::kTar;
      next.dirty = false;
      next.diff_size = size;
      next.chain_id = chain_id;
      Status persisted = Persist(next);
      if (!persisted.ok()) {
        if (snap != layer.rec.snapshot) Release(snap, id);
        return persisted;
      }
      ReleaseReplaced(layer.rec.snapshot, snap, id);
      layer.rec = next;
      {
        std::lock_guard<std::mutex> ml(mu_);
        counters_.dedup_hits++;
      }
      log::Info("apply_tar_dedup", {{"layer", id}, {"snapshot", snap}, {"diff_id", spool.digest()}});
      return size;
    }
  }
  SLACKER_RETURN_IF_ERROR(CheckStoreSpace(spool.size(), "apply diff to layer " + id));
  SLACKER_RETURN_IF_ERROR(CloneBase(base, id, layer.rec.size_bytes).Context("apply diff to layer " + id));
  SpoolSource src(spool);
  layer.rec.chain_id = chain_id;  // persisted with the applied record
  auto applied = ApplyStandardInto(layer, src, key);
  if (!applied.ok()) layer.rec.chain_id.clear();
  return applied;
}

// Unpacks `tar` into the layer's volume (cloned already) and promotes it to a snapshot.
// `chain_key` non-empty: publish the result in the chain index.
Result<int64_t> SlackerDriver::ApplyStandardInto(Layer& layer, ByteSource& tar, const std::string& chain_key) {
  const std::string& id = layer.rec.id;
  bool had_volume = chain_key.empty();
  // Any failure from here on discards the staging volume (an interrupted ApplyDiff
  // leaves no layer content behind; dockerd retries).
  auto discard = [&](const Status& s) -> Status {
    if (!had_volume) IgnoreError(backend_.RemoveVolume(id), "rollback: the apply error is what the caller must see; a stray volume is removed at the next start");
    return s.Context("apply diff to layer " + id);
  };
  std::string mnt = MountPath(id);
  SLACKER_RETURN_IF_ERROR(MakeDirs(mnt, 0755));
  auto loop = loopdev::LoopDevice::Attach(os_, backend_.VolumePath(id), os::LoopConfig{});
  if (!loop.ok()) return discard(loop.status());
  Status ms = loopdev::MountExt4(os_, loop->path(), mnt, false);
  if (!ms.ok()) return discard(ms);
  std::string skel_tmp = backend_.SnapshotFilePath("staging-" + opts_.host_id + "-" + id, ".skel");
  registry_shim::SkeletonWriter skel;
  Status so = skel.Open(skel_tmp);
  FaultAfterBytes counted(tar, "apply.mid_extract", 64 * 1024);
  Result<registry_shim::ApplyStats> stats = so.ok() ? registry_shim::ApplyTar(counted, mnt, &skel) : Result<registry_shim::ApplyStats>(so);
  Status close = stats.ok() ? skel.Close() : Status::Ok();
  if (stats.ok()) FlushBeforeUnmount(os_, id, mnt, -1);  // the volume becomes a snapshot next
  Status um = Unmount(os_, mnt);
  if (!stats.ok() || !close.ok() || !um.ok()) {
    IgnoreError(RemoveFileIfExists(skel_tmp), "rollback: the apply error is what the caller must see");
    Status err = !stats.ok() ? stats.status() : !close.ok() ? close : um;
    // The layer's ext4 image is sparse on the store: a full store shows up inside it as
    // EIO, not ENOSPC. Say what it is.
    Status full = CheckStoreSpace(0, "apply diff to layer " + id);
    return discard(full.ok() ? err : Errorf(ENOSPC, "{} ({})", full.message(), err.message()));
  }
  nlohmann::json meta = {{"parent_layer", layer.rec.parent}, {"source", "apply"}, {"layer", id},
                         {"host", opts_.host_id}, {"bytes", stats->size}};
  auto snap = backend_.PromoteVolume(id, meta);
  if (!snap.ok()) {
    IgnoreError(RemoveFileIfExists(skel_tmp), "rollback: the promote error is what the caller must see");
    return discard(snap.status());
  }
  NoteClaim(*snap, id);
  std::string skel_path = backend_.SnapshotFilePath(*snap, ".skel");
  if (::rename(skel_tmp.c_str(), skel_path.c_str()) != 0) {
    int err = errno;
    IgnoreError(RemoveFileIfExists(skel_tmp), "rollback: the rename error is what the caller must see");
    return Status::FromErrno(err, "publish skeleton " + skel_path);
  }
  SLACKER_FAULT_POINT("apply.before_record");
  LayerRecord next = layer.rec;
  next.snapshot = *snap;
  next.origin = Origin::kTar;
  next.has_volume = false;
  next.dirty = false;
  next.diff_size = stats->size;
  if (Status p = Persist(next); !p.ok()) {
    Release(*snap, id);  // no record names it: let gc take it
    return p;
  }
  ReleaseReplaced(layer.rec.snapshot, next.snapshot, id);
  layer.rec = next;
  {
    std::lock_guard<std::mutex> ml(mu_);
    counters_.snapshots++;
  }
  if (!chain_key.empty()) {
    Status cs = AtomicWriteFile(ChainPath(chain_key), *snap + "\n", true, 0600);
    if (!cs.ok()) log::Warn("chain_index_write_failed", {{"layer", id}, {"err", cs.message()}});
  }
  log::Info("apply_tar", {{"layer", id}, {"snapshot", *snap}, {"entries", std::to_string(stats->entries)},
                          {"bytes", std::to_string(stats->size)}});
  return stats->size;
}

// ENOSPC, naming the store and the numbers, unless the store has `need` bytes free plus
// kStoreHeadroom (what metadata, journals and skeletons take besides file data).
Status SlackerDriver::CheckStoreSpace(uint64_t need, const std::string& what) {
  constexpr uint64_t kStoreHeadroom = 32ull << 20;
  auto space = backend_.Space();
  if (!space.ok() || space->free_bytes >= need + kStoreHeadroom) return Status::Ok();
  return Errorf(ENOSPC,
                "{}: the store {} is full: {} bytes free, {} needed (the layer plus {} bytes of headroom); free "
                "space on the store (docker rmi / docker system prune, then slackerctl gc) and retry",
                what, backend_.root(), space->free_bytes, need + kStoreHeadroom, kStoreHeadroom);
}

// The keys are read again each time a reference is signed or verified (two small files
// on the store): a key another worker rotated to is used at once, and a retired key stops
// verifying at once.
registry_shim::ReferenceTrust SlackerDriver::Trust() {
  if (opts_.reload_keys) {
    auto keys = opts_.reload_keys();
    if (keys.ok() && !keys->empty()) {
      std::lock_guard<std::mutex> l(trust_mu_);
      opts_.trust.keys = *keys;
    } else {
      log::Warn("cluster_key_reload_failed",
                {{"err", keys.ok() ? "no keys" : keys.status().message()},
                 {"action", "using the keys read before"}});
    }
  }
  std::lock_guard<std::mutex> l(trust_mu_);
  return opts_.trust;
}

Status SlackerDriver::VerifyReference(const registry_shim::Reference& ref, const std::string& parent_chain) {
  return registry_shim::VerifyReference(ref, Trust(), parent_chain);
}

Result<std::string> SlackerDriver::ReadReferenceFile(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "read the reference file of layer {}: no such layer", id);
  std::lock_guard<std::mutex> l(layer->mu);
  auto read = [&](const std::string& image) {
    return loopdev::ReadExt4RegularFile(image, registry_shim::kReferenceTarEntryName,
                                        registry_shim::kMaxReferenceBody);
  };
  if (!layer->rec.has_volume) {
    if (layer->rec.snapshot.empty())
      return Errorf(ENOENT, "layer {} has no content of its own (no volume, no snapshot)", id);
    return read(backend_.SnapshotPath(layer->rec.snapshot));
  }
  if (layer->refs == 0 || !layer->mounted_rw) return read(backend_.VolumePath(id));
  std::string mnt = MountPath(id);
  SLACKER_RETURN_IF_ERROR(os_.Freeze(mnt).Context("freeze layer " + id + " to read its reference file"));
  auto body = read(backend_.VolumePath(id));
  Status thaw = os_.Thaw(mnt);
  if (!thaw.ok()) return thaw.Context("thaw layer " + id);
  return body;
}

Result<std::string> SlackerDriver::ReferenceParent(const LayerRecord& rec) {
  if (rec.parent.empty()) return std::string();
  return ChainId(rec.parent);
}

Result<std::string> SlackerDriver::ChainId(const std::string& id) {
  auto layer = Find(id);
  if (!layer) return Errorf(ENOENT, "chain id of layer {}: no such layer", id);
  LayerRecord rec;
  {
    std::lock_guard<std::mutex> l(layer->mu);
    if (!layer->rec.chain_id.empty()) return layer->rec.chain_id;
    rec = layer->rec;
  }
  // A read-write layer (a container, dockerd's -init layer) is not part of any image:
  // what is committed from it goes on top of its nearest image ancestor.
  if (rec.kind == LayerKind::kReadWrite) return ReferenceParent(rec);
  // An image layer applied by an earlier release: its DiffID is the hash of what Diff
  // reproduces (the exact bytes applied), computed once and recorded.
  SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ReferenceParent(rec));
  SLACKER_ASSIGN_OR_RETURN(auto stream, Diff(id, rec.parent));
  auto diff_id = Sha256Digest(*stream);
  stream.reset();
  if (!diff_id.ok()) return diff_id.status().Context("chain id of layer " + id + ": hash its diff");
  std::string chain = registry_shim::NextChainId(parent_chain, *diff_id);
  std::lock_guard<std::mutex> l(layer->mu);
  if (layer->rec.chain_id.empty() && !layer->removed) {
    LayerRecord next = layer->rec;
    next.chain_id = chain;
    Status s = Persist(next);
    if (s.ok()) {
      layer->rec = next;
    } else {
      log::Warn("chain_id_persist_failed", {{"layer", id}, {"err", s.message()}});
    }
  }
  log::Info("chain_id_computed", {{"layer", id}, {"chain_id", chain}});
  return chain;
}

Status SlackerDriver::Cleanup() {
  std::vector<std::shared_ptr<Layer>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, layer] : layers_) all.push_back(layer);
  }
  Status first;
  for (auto& layer : all) {
    std::lock_guard<std::mutex> l(layer->mu);
    if (layer->refs == 0) continue;
    log::Warn("cleanup_unmount_held_layer", {{"layer", layer->rec.id}, {"refs", std::to_string(layer->refs)}});
    Status s = PutLocked(*layer, true);
    if (!s.ok() && first.ok()) first = s;
  }
  log::Info("cleanup");
  return first;
}

std::vector<std::pair<std::string, double>> SlackerDriver::Metrics() {
  std::vector<std::shared_ptr<Layer>> all;
  Counters c;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, layer] : layers_) all.push_back(layer);
    c = counters_;
  }
  size_t mounted = 0;
  for (auto& layer : all) {
    // try_lock: an ApplyDiff holds the layer's mutex for minutes, a scrape must not wait.
    std::unique_lock<std::mutex> l(layer->mu, std::try_to_lock);
    if (l.owns_lock() && layer->refs > 0) ++mounted;
  }
  std::vector<std::pair<std::string, double>> out = {
      {"slacker_clones_total", c.clones},
      {"slacker_snapshots_total", c.snapshots},
      {"slacker_snapshot_cache_hits_total", c.snapshot_cache_hits},
      {"slacker_dedup_hits_total", c.dedup_hits},
      {"slacker_mounts_rw_total", c.rw_mounts},
      {"slacker_mounts_ro_total", c.ro_mounts},
      {"slacker_layers", all.size()},
      {"slacker_layers_mounted", mounted},
  };
  auto space = backend_.Space();
  if (space.ok()) {
    out.push_back({"slacker_store_size_bytes", space->total_bytes});
    out.push_back({"slacker_store_bytes_free", space->free_bytes});
  } else {
    log::Warn("metrics_store_space_failed", {{"err", space.status().message()}});
  }
  return out;
}

}  // namespace slacker::driver
