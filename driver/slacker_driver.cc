// SlackerDriver: opening, the layer table's life cycle (Create, Remove), the rows and
// metrics that look at every layer, Changes/DiffSize. The rest is split by concern (the
// file map is in driver/README.md).
#include "driver/slacker_driver.h"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/changes.h"
#include "driver/layer_view.h"

namespace slacker::driver {

using common::MutexLock;
using storage_backend::Backend;

namespace {

bool ValidLayerId(const std::string& id) {
  if (id.empty() || id.size() > kMaxLayerIdLength || id[0] == '.') return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}

}  // namespace

SlackerDriver::SlackerDriver(os::Os& os, Backend& backend, DriverOptions options)
    : os_(os), backend_(backend), opts_(std::move(options)), claims_(backend),
      prefetch_(std::make_unique<Prefetcher>(backend, opts_.prefetch)) {
  default_size_at_start_ = opts_.default_size;
  MutexLock c(config_mu_);
  default_size_ = opts_.default_size;
  MutexLock t(trust_mu_);
  trust_ = opts_.trust;
}

SlackerDriver::~SlackerDriver() {
  {
    MutexLock l(park_mu_);
    stop_reaper_ = true;
  }
  park_cv_.notify_all();
  prepare_cv_.notify_all();
  if (preparer_.joinable()) preparer_.join();
  if (reaper_.joinable()) reaper_.join();
  for (const auto& layer : layers_.All()) {
    MutexLock l(layer->mu);
    if (layer->parked && layer->refs == 0) {
      // Nobody holds it: a clean exit leaves no parked mount behind (after a crash,
      // start-up adopts it as a held one).
      Status s = UnmountLocked(*layer);
      if (!s.ok()) log::Warn("parked_unmount_failed", {{"layer", layer->rec.id}, {"err", s.message()}});
    }
    // dockerd still holds its Gets of the mounted layers (running containers): the
    // mounts stay for the next Open to adopt.
    if (layer->mount) layer->mount->Release();
  }
  UnmountIdleLowers(/*keep_held=*/true);
}

Result<std::unique_ptr<SlackerDriver>> SlackerDriver::Open(os::Os& os, Backend& backend,
                                                           DriverOptions options) {
  if (options.host_id.empty()) return Errorf(EINVAL, "host id must not be empty");
  const std::string& state = options.state_dir;
  if (options.share_page_cache && state.find_first_of(",:\\") != std::string::npos) {
    return Errorf(EINVAL, "--share-page-cache: the state directory {:?} has a ',', ':' or '\\', which overlayfs "
                  "cannot take in its mount options", state);
  }
  for (const std::string& dir : {common::LayersDir(state), common::MountsDir(state), common::ViewsDir(state),
                                 common::SpoolDir(state), common::OverlaysDir(state), common::LowersDir(state)}) {
    SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    // The parents of mount points are root's alone (an older release made them 0755):
    // a mounted layer's root is 0755 for the container, so only its parent keeps others out.
    SLACKER_RETURN_IF_ERROR(CloseToOthers(dir));
  }
  SLACKER_RETURN_IF_ERROR(MakeDirs(common::EmptyDir(state), 0700));
  ::chmod(common::EmptyDir(state).c_str(), 0755);
  std::unique_ptr<SlackerDriver> d(new SlackerDriver(os, backend, std::move(options)));
  SLACKER_RETURN_IF_ERROR(d->Recover());
  if (d->opts_.park_time.count() > 0) d->reaper_ = std::thread([p = d.get()] { p->ReapParked(); });
  if (d->opts_.park_time.count() > 0 && backend.CanHandOverVolumes()) {
    d->prepare_handovers_ = true;
    d->preparer_ = std::thread([p = d.get()] { p->PrepareHandOvers(); });
  }
  // dockerd does not resend Init when the plugin restarts: re-apply the last one.
  auto plugin = ReadFileToString(common::PluginFile(d->opts_.state_dir));
  if (plugin.ok()) {
    auto j = nlohmann::json::parse(*plugin, nullptr, false);
    if (j.is_object() && j.contains("options") && j["options"].is_array()) {
      std::vector<std::string> options;
      for (const auto& o : j["options"]) {
        if (o.is_string()) options.push_back(o.get<std::string>());
      }
      SLACKER_ASSIGN_OR_RETURN(uint64_t size, ParseDriverOptions(options, d->DefaultSize()));
      MutexLock l(d->config_mu_);
      d->home_ = j.value("home", "");
      d->default_size_ = size;
    } else {
      log::Warn("plugin_json_unreadable", {{"file", common::PluginFile(d->opts_.state_dir)}});
    }
  }
  return d;
}

std::string SlackerDriver::MountPath(const std::string& id) const {
  return common::MountPoint(opts_.state_dir, id);
}

Status SlackerDriver::Persist(const LayerRecord& rec) {
  return AtomicWriteFile(common::LayerRecordFile(opts_.state_dir, rec.id), rec.ToJson());
}

uint64_t SlackerDriver::DefaultSize() const {
  MutexLock l(config_mu_);
  return default_size_;
}

void SlackerDriver::Count(uint64_t Counters::*counter) {
  MutexLock l(counters_mu_);
  ++(counters_.*counter);
}

SlackerDriver::Counters SlackerDriver::counters() const {
  MutexLock l(counters_mu_);
  return counters_;
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
  SLACKER_RETURN_IF_ERROR(AtomicWriteFile(common::PluginFile(opts_.state_dir), j.dump() + "\n"));
  {
    MutexLock l(config_mu_);
    home_ = home;
    default_size_ = size;
  }
  log::Info("init", {{"home", home}, {"default_size", std::to_string(size)}});
  return Status::Ok();
}

std::vector<std::pair<std::string, std::string>> SlackerDriver::StatusRows() {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t mounted = 0, volumes = 0;
  std::set<std::string> snaps;
  std::vector<std::shared_ptr<Layer>> all = layers_.All();
  size_t n = all.size(), busy = 0;
  for (auto& layer : all) {
    // TryLock: an ApplyDiff holds the layer's mutex for minutes; docker info must not wait.
    if (!layer->mu.TryLock()) {
      ++busy;
      continue;
    }
    if (layer->mounted()) ++mounted;
    if (layer->rec.has_volume) ++volumes;
    if (!layer->rec.snapshot.empty()) snaps.insert(layer->rec.snapshot);
    layer->mu.Unlock();
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
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "layer {} does not exist", id);
  MutexLock l(layer->mu);
  std::map<std::string, std::string> m = {
      {"Kind", KindName(layer->rec.kind)},
      {"Origin", OriginName(layer->rec.origin)},
      {"Snapshot", layer->rec.snapshot},
      {"Store", backend_.info().uuid},
  };
  if (layer->rec.has_volume) m["Volume"] = backend_.VolumePath(id);
  if (!layer->rec.snapshot.empty()) m["SnapshotFile"] = backend_.SnapshotPath(layer->rec.snapshot);
  if (layer->refs > 0) m["MergedDir"] = LayerPath(*layer);
  return m;
}

Status SlackerDriver::Create(const CreateRequest& req) { return CreateLayer(req, LayerKind::kImage); }
Status SlackerDriver::CreateReadWrite(const CreateRequest& req) {
  return CreateLayer(req, LayerKind::kReadWrite);
}

Status SlackerDriver::CreateLayer(const CreateRequest& req, LayerKind kind) {
  if (!ValidLayerId(req.id)) return Errorf(EINVAL, "invalid layer id {:?}: 1-{} of [A-Za-z0-9._-], not starting with '.'", req.id, kMaxLayerIdLength);
  AwaitTeardown(req.id);
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
  SLACKER_RETURN_IF_ERROR(layers_.Create(rec, [&] { return Persist(rec); }));
  log::Debug("create", {{"layer", req.id}, {"parent", req.parent}, {"kind", KindName(kind)}});
  return Status::Ok();
}

Status SlackerDriver::Remove(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return Status::Ok();  // idempotent, as dockerd retries removals
  MutexLock l(layer->mu);
  if (layer->refs > 0) log::Warn("remove_mounted_layer", {{"layer", id}, {"refs", std::to_string(layer->refs)}});
  if (opts_.park_time.count() > 0) return RemoveDeferred(*layer);  // the reaper tears it down
  if (layer->mounted()) SLACKER_RETURN_IF_ERROR(DiscardMountLocked(*layer).Context("remove layer " + id));
  if (layer->rec.has_volume) SLACKER_RETURN_IF_ERROR(backend_.RemoveVolume(id).Context("remove layer " + id));
  SLACKER_FAULT_POINT("remove.after_volume");
  std::string snap = layer->rec.snapshot;
  SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(common::LayerRecordFile(opts_.state_dir, id)));
  SLACKER_FAULT_POINT("remove.after_record");
  IgnoreError(RemoveFileIfExists(common::LayerReferenceFile(opts_.state_dir, id)), "the layer is gone (its record is removed); a stray .ref file is never read again");
  ::rmdir(MountPath(id).c_str());
  layer->removed = true;
  layers_.Erase(id);
  if (!snap.empty()) claims_.Release(snap, id);
  log::Debug("remove", {{"layer", id}});
  return Status::Ok();
}

bool SlackerDriver::Exists(const std::string& id) { return layers_.Find(id) != nullptr; }

size_t SlackerDriver::TeardownsPending() {
  MutexLock l(park_mu_);
  return tearing_down_.size();
}

// `parent` as given, or the layer's own parent when empty (as overlay2 does).
Result<std::string> SlackerDriver::BaseOf(const std::string& id, const std::string& parent, const char* what) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "{} of layer {}: no such layer", what, id);
  if (!parent.empty()) return parent;
  MutexLock l(layer->mu);
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
  if (auto layer = layers_.Find(id)) {
    MutexLock l(layer->mu);
    if (!layer->rec.lower.empty() && layer->rec.has_volume && base == layer->rec.parent) {
      // Overlay form: the size of its upper (as overlay2's DiffSize).
      SLACKER_ASSIGN_OR_RETURN(std::string root, GetLocked(*layer));
      auto bytes = DiffBytesAgainstParent(*layer, root);
      Status put = PutLocked(*layer, false);
      if (bytes.ok()) SLACKER_RETURN_IF_ERROR(put);
      return bytes;
    }
  }
  SLACKER_ASSIGN_OR_RETURN(auto view, OpenView(id));
  SLACKER_ASSIGN_OR_RETURN(auto changes, ChangesAgainst(view->path(), base));
  return ChangesSize(view->path(), changes);
}

Status SlackerDriver::Cleanup() {
  AwaitTeardowns();  // dockerd stops: nothing of a removed layer stays mounted
  Status first;
  for (auto& layer : layers_.All()) {
    MutexLock l(layer->mu);
    if (!layer->mounted()) continue;
    if (layer->refs > 0) {
      log::Warn("cleanup_unmount_held_layer", {{"layer", layer->rec.id}, {"refs", std::to_string(layer->refs)}});
    }
    Status s = UnmountLocked(*layer);
    if (!s.ok() && first.ok()) first = s;
  }
  DiscardAllSpares();
  UnmountIdleLowers(/*keep_held=*/false);
  log::Info("cleanup");
  return first;
}

Result<std::vector<LayerSnapshot>> SlackerDriver::ListLayers() {
  std::vector<LayerSnapshot> out;
  for (auto& layer : layers_.All()) {  // sorted by id (the table is a map)
    MutexLock l(layer->mu);
    if (layer->removed) continue;
    out.push_back({layer->rec.id, layer->rec.parent, layer->rec.kind == LayerKind::kReadWrite, layer->rec.snapshot});
  }
  return out;
}

std::vector<std::pair<std::string, double>> SlackerDriver::Metrics() {
  std::vector<std::shared_ptr<Layer>> all = layers_.All();
  Counters c = counters();
  PrefetchStats pf = prefetch_->stats();
  size_t mounted = 0;
  for (auto& layer : all) {
    // TryLock: an ApplyDiff holds the layer's mutex for minutes, a scrape must not wait.
    if (!layer->mu.TryLock()) continue;
    if (layer->mounted()) ++mounted;
    layer->mu.Unlock();
  }
  std::vector<std::pair<std::string, double>> out = {
      {"slacker_clones_total", c.clones},
      {"slacker_snapshots_total", c.snapshots},
      {"slacker_snapshot_cache_hits_total", c.snapshot_cache_hits},
      {"slacker_dedup_hits_total", c.dedup_hits},
      {"slacker_mounts_rw_total", c.rw_mounts},
      {"slacker_mounts_ro_total", c.ro_mounts},
      {"slacker_parked_reuses_total", c.parked_reuses},
      {"slacker_handovers_total", c.handovers},
      {"slacker_handovers_prepared_total", c.handovers_prepared},
      {"slacker_prepared_handovers_used_total", c.prepared_handovers_used},
      {"slacker_spares_made_total", c.spares_made},
      {"slacker_spare_hits_total", c.spare_hits},
      {"slacker_overlay_mounts_total", c.overlay_mounts},
      {"slacker_lower_mounts_total", c.lower_mounts},
      {"slacker_folds_total", c.folds},
      {"slacker_lowers_mounted", LowersMounted()},
      {"slacker_teardowns_pending", TeardownsPending()},
      {"slacker_prefetch_trace_hits_total", pf.trace_hits},
      {"slacker_prefetch_trace_misses_total", pf.trace_misses},
      {"slacker_prefetch_traces_rejected_total", pf.traces_rejected},
      {"slacker_prefetch_traces_recorded_total", pf.traces_recorded},
      {"slacker_prefetch_extents_total", pf.extents},
      {"slacker_prefetch_bytes_total", pf.bytes},
      {"slacker_prefetch_cancelled_total", pf.cancelled},
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
