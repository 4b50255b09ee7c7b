// slacker's GraphDriver: every layer is a whole ext4 tree in one file on the shared
// store (DESIGN.md §1). The state machine of a layer:
//
//   Create/CreateReadWrite ──▶ created (metadata only; content = parent's)
//   created ──Get──▶ volume (clone of the parent's snapshot: lazy cloning) ──Put──▶ …
//   created ──ApplyDiff(ref)──▶ snapshot (origin reference; no clone, no copy)
//   created ──ApplyDiff(tar)──▶ snapshot (origin tar; unpacked into a clone, promoted)
//   volume ──Diff──▶ snapshot of the volume (reused while nothing was written:
//                    snapshot caching) → reference tar
//   snapshot-only image layer ──Get──▶ read-only mount of the snapshot (never cloned)
//
// Writes are detected with the loop device's write counter (/sys/block/loopN/stat)
// sampled after syncfs: unchanged counter since the last snapshot ⇒ same content
// (driver/snapshot_currency.h). The implementation is split by concern: see the file map
// in driver/README.md.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/mutex.h"
#include "common/state_layout.h"
#include "driver/claims.h"
#include "driver/graph_driver.h"
#include "driver/layer.h"
#include "driver/layer_record.h"
#include "loopdev/loop_device.h"
#include "driver/prefetch.h"
#include "os/os.h"
#include "registry_shim/reference.h"
#include "storage_backend/backend.h"

namespace slacker::driver {

struct DriverOptions {
  std::string state_dir;            // host-local: layers/, mnt/, views/, plugin.json
  std::string host_id;
  uint64_t default_size = 10ull << 30;  // sparse size of a new layer file system
  // Keys that sign (the first) and verify reference tars, and the operator's opt-out.
  registry_shim::ReferenceTrust trust;
  // Re-reads the keys (the store's cluster.key and cluster.key.prev, which `slackerctl key
  // rotate/retire` change); called before each reference is verified and each Diff signs.
  // Null: the keys are fixed (--cluster-key FILE, tests).
  std::function<Result<std::vector<std::string>>()> reload_keys;
  // Largest uncompressed standard layer tar an ApplyDiff spools to <state>/spool/ (it is
  // hashed for dedup before it is unpacked). Larger: EFBIG naming the limit, nothing kept.
  uint64_t max_spool_bytes = kDefaultMaxSpoolBytes;
  static constexpr uint64_t kDefaultMaxSpoolBytes = 64ull << 30;
  // How long a layer stays mounted after its last Put (a parked mount): a Get within
  // that time reuses the mount, a Remove discards it without writing anything back, and
  // a snapshot freezes it as any mounted layer. Zero: Put unmounts at once (the behaviour
  // before issue 17; the snapshotter and unit tests that check Put's unmount use it).
  // Non-zero also defers a removed layer's teardown: Remove deletes the record and
  // returns; the reaper thread discards the mount and deletes the volume file right after.
  std::chrono::milliseconds park_time{0};
  // Overlay form for read-write layers cloned from a snapshot (slackerd
  // --share-page-cache; driver/README.md "Shared page cache"): each such layer is an
  // overlay of its image's snapshot, mounted read-only once per host, and an upper
  // directory in its own volume, so the containers of one image share one page cache.
  // Snapshots fold the upper into a clone: their format does not change.
  bool share_page_cache = false;
  // Start-up prefetch by record and replay (driver/prefetch.h): off unless enabled.
  PrefetchOptions prefetch;
};

class LayerView;

class SlackerDriver : public GraphDriver, public SnapshotDriver {
 public:
  // REQUIRES: `os` and `backend` outlive the driver.
  static Result<std::unique_ptr<SlackerDriver>> Open(os::Os& os, storage_backend::Backend& backend,
                                                     DriverOptions options);
  // Unmounts parked layers; keeps every held mount (dockerd still holds its Gets): the
  // next Open adopts them.
  ~SlackerDriver() override;

  Status Init(const std::string& home, const std::vector<std::string>& options) override;
  Capabilities GetCapabilities() override { return Capabilities{true}; }
  std::vector<std::pair<std::string, std::string>> StatusRows() override;
  Result<std::map<std::string, std::string>> GetMetadata(const std::string& id) override;
  Status Create(const CreateRequest& req) override;
  Status CreateReadWrite(const CreateRequest& req) override;
  Status Remove(const std::string& id) override;
  Result<std::string> Get(const std::string& id, const std::string& mount_label) override;
  Status Put(const std::string& id) override;
  bool Exists(const std::string& id) override;
  Result<DiffStream> Diff(const std::string& id, const std::string& parent) override;
  Result<std::vector<Change>> Changes(const std::string& id, const std::string& parent) override;
  Result<int64_t> ApplyDiff(const std::string& id, const std::string& parent, ByteSource& tar) override;
  Result<int64_t> DiffSize(const std::string& id, const std::string& parent) override;
  Status Cleanup() override;
  Result<std::string> ChainId(const std::string& id) override;
  // From the volume (frozen while mounted rw, so its journal is checkpointed) or the
  // snapshot with libext2fs. ENOENT for a layer with neither (its tree is its parent's).
  Result<std::string> ReadReferenceFile(const std::string& id) override;
  // Counters, layer counts and store space. A layer busy in an operation (ApplyDiff, a
  // mount) is counted as not mounted rather than waited for.
  std::vector<std::pair<std::string, double>> Metrics() override;

  // SnapshotDriver (snapshot.cc, apply.cc, slacker_driver.cc): the snapshot Diff takes of
  // a written layer, and what ApplyDiff records for a reference, without the tar.
  Result<CommittedSnapshot> CommitSnapshot(const std::string& id) override;
  Result<int64_t> CreateFromSnapshot(const SnapshotLayerRequest& req) override;
  // Waits for each layer's current operation (it takes each layer's mutex in turn).
  Result<std::vector<LayerSnapshot>> ListLayers() override;

  // Counters for tests and Status (monotonic since start).
  struct Counters {
    uint64_t clones = 0, snapshots = 0, snapshot_cache_hits = 0, ro_mounts = 0, rw_mounts = 0;
    uint64_t dedup_hits = 0;
    uint64_t parked_reuses = 0;  // Gets served by a parked mount
    uint64_t handovers = 0;      // Gets that took over the parent's parked file system
    uint64_t handovers_prepared = 0;      // hand-over clones the preparer made after an init layer's Put
    uint64_t prepared_handovers_used = 0;  // hand-overs that found one (only renamed)
    uint64_t spares_made = 0;  // spare volumes the preparer made ready
    uint64_t spare_hits = 0;   // first Gets that took a spare (no clone, attach or mount)
    uint64_t journal_replays = 0;  // unmounted volumes mounted rw to replay their journal first
    uint64_t overlay_mounts = 0;   // overlays mounted (overlay form)
    uint64_t lower_mounts = 0;     // snapshots mounted as a shared lower
    uint64_t folds = 0;            // snapshots of overlay-form layers (upper folded into a clone)
  };
  Counters counters() const;
  PrefetchStats prefetch_stats() const { return prefetch_->stats(); }
  // Blocks until every deferred teardown of a removed layer is done (Cleanup, tests).
  void AwaitTeardowns() EXCLUDES(park_mu_);

 private:
  SlackerDriver(os::Os& os, storage_backend::Backend& backend, DriverOptions options);
  static Result<uint64_t> ParseDriverOptions(const std::vector<std::string>& options, uint64_t default_size);
  Status CreateLayer(const CreateRequest& req, LayerKind kind);
  Status Persist(const LayerRecord& rec);
  std::string MountPath(const std::string& id) const;
  uint64_t DefaultSize() const EXCLUDES(config_mu_);
  void Count(uint64_t Counters::*counter) EXCLUDES(counters_mu_);

  // recovery.cc: start-up, in phases (each says what crash it repairs).
  Status Recover();
  Status RemoveLeftoverSpool();
  Status LoadRecords();
  Status AdoptMounts(std::set<std::string>& mounted_sources);
  void RemoveStrayCloneTempFiles();
  void RemoveStrayVolumes(const std::set<std::string>& mounted_sources);
  void DetachIdleLoops(const std::set<std::string>& mounted_sources);
  void RemoveOrphanInitLayers();
  void RemoveFinishedRemovals();
  Status ReconcileMarkers();
  // Shared lowers and overlays (overlay form) a previous run left mounted.
  Status AdoptOverlays();
  // Loop devices backing `file`; kToo: also those of a deleted file that had its path
  // (cleanup), kNo: only `file` itself (is it in use).
  std::vector<int> LoopsBacking(const std::string& file, loopdev::Deleted deleted = loopdev::Deleted::kToo);

  // mounts.cc: Get/Put, the layer's mount and read views.
  // A container layer's volume was just mounted: prefetch what its image's containers
  // read at start, or record it (prefetch.h). Not for init layers or sized volumes.
  // Overlay form: nothing here; AttachOverlay starts it on the shared lower.
  void StartPrefetch(Layer& layer) REQUIRES(layer.mu);
  bool WantsPrefetch(const Layer& layer) const REQUIRES(layer.mu);
  // The image snapshot a container layer's volume was cloned from (its parent's, or its
  // `-init` parent's parent's), "" when none.
  std::string ImageOrigin(const std::string& parent);
  Result<std::string> GetLocked(Layer& layer) REQUIRES(layer.mu);
  // GetLocked without the overlay: the volume's (or snapshot's) mount.
  Status MountLocked(Layer& layer) REQUIRES(layer.mu);
  Status PutLocked(Layer& layer, bool force) REQUIRES(layer.mu);
  // Writes everything back, unmounts, and records whether the volume still equals its
  // snapshot. For a held mount too (Cleanup, Remove's fallback).
  Status UnmountLocked(Layer& layer) REQUIRES(layer.mu);
  // Unmounts a layer whose file is deleted next, writing nothing back.
  Status DiscardMountLocked(Layer& layer) REQUIRES(layer.mu);
  // Its mechanism, also for a removed layer's teardown: shuts a rw file system down,
  // then unmounts `mount` (or whatever is mounted at the layer's mount point).
  Status DiscardMount(const std::string& id, bool rw, std::optional<loopdev::MountedImage>& mount);
  // What is left of a removed layer when its teardown is deferred (park_time > 0): its
  // mount and its volume file, handed to the reaper thread.
  struct Teardown {
    std::string id;
    std::optional<loopdev::MountedImage> mount;
    bool mounted = false;     // something is mounted at the layer's mount point
    bool rw = false;          // ... its volume, read-write: shut down, not written back
    bool volume = false;      // the volume file is deleted after the unmount
    std::string overlay_lower;  // an overlay on this lower is unmounted first
  };
  Status RemoveDeferred(Layer& layer) REQUIRES(layer.mu) EXCLUDES(park_mu_);
  void TearDown(Teardown& t);
  std::string RemovingPath(const std::string& id) const;  // <state>/layers/<id>.removing
  // Blocks while a removed layer of this id is still being torn down (a Create that
  // reuses the id must not meet its mount or lose its new volume to the old unlink).
  void AwaitTeardown(const std::string& id) EXCLUDES(park_mu_);
  size_t TeardownsPending() EXCLUDES(park_mu_);

  // Parked mounts (DriverOptions::park_time): Park hands a mount nobody holds to the
  // reaper, Unpark takes it back (a Get) or forgets it (an unmount).
  void Park(Layer& layer) REQUIRES(layer.mu) EXCLUDES(park_mu_);
  void Unpark(Layer& layer) REQUIRES(layer.mu) EXCLUDES(park_mu_);
  // The reaper thread: tears removed layers down, and unmounts parked layers whose time
  // is up. Finishes the queued teardowns before it stops.
  void ReapParked() EXCLUDES(park_mu_);
  // One parked layer whose time may be up (the reaper, without park_mu_).
  void ReapOne(const std::string& id) EXCLUDES(park_mu_);
  // Hand-overs prepared ahead (parking.cc): a Put that parks dockerd's `<id>-init` layer
  // queues it; the preparer thread syncs its file system and clones its file, so the
  // container layer's first Get (TakeOverParentMount) only renames.
  void QueueHandOverPrep(Layer& layer) REQUIRES(layer.mu) EXCLUDES(park_mu_);
  void PrepareHandOvers() EXCLUDES(park_mu_);
  void PrepareHandOverLocked(Layer& layer) REQUIRES(layer.mu);
  void DropPreparedHandOver(Layer& layer) REQUIRES(layer.mu);
  // spares.cc: spare volumes, made by the preparer after a Get cloned an init layer's
  // base snapshot, taken by the next such Get (renamed, mount moved), discarded unused
  // after park_time.
  struct Spare {
    std::string id;  // storage_backend::IsSpareVolumeName: its volume and mount point
    std::optional<loopdev::MountedImage> mount;
    std::chrono::steady_clock::time_point expires;
  };
  enum class SpareUse { kNone, kMounted, kVolume };
  void QueueSpareFill(const LayerRecord& rec, const std::string& base) EXCLUDES(park_mu_);
  void FillSpare(const std::string& base) EXCLUDES(park_mu_);
  std::optional<Spare> TakeSpare(const std::string& base) EXCLUDES(park_mu_);
  void DiscardSpare(Spare& spare);
  std::vector<Spare> ExpiredSparesLocked(bool all) REQUIRES(park_mu_);
  void DiscardAllSpares() EXCLUDES(park_mu_);
  // `lower`: the record's lower (overlay form), "" for none.
  Result<SpareUse> AdoptSpare(Layer& layer, const std::string& base, const std::string& lower) REQUIRES(layer.mu)
      EXCLUDES(park_mu_);
  // Mounts ext4 from `file` at `target`, through the loop device that already backs the
  // file if there is one (never a second file system on one file).
  // `fresh`: this call made `file` (a new inode no loop device can hold yet), so the scan
  // of every loop device for one backing it is skipped.
  Result<loopdev::MountedImage> MountFile(const std::string& file, const std::string& target,
                                          const loopdev::MountedImage::Options& options, bool fresh = false);
  Status MountSnapshot(Layer& layer) REQUIRES(layer.mu);
  Status MountVolume(Layer& layer, bool fresh = false) REQUIRES(layer.mu);
  // True: the volume is also mounted (a spare taken over).
  Result<bool> MaterializeVolume(Layer& layer) REQUIRES(layer.mu);
  // The parent's lower when its volume was cloned (nullopt: not cloned).
  Result<std::optional<std::string>> CloneIdleParentVolume(Layer& child) REQUIRES(child.mu);
  // The container layer's first Get takes over its parked parent's live file system (the
  // hand-over); false when the conditions do not hold (then the caller clones).
  Result<bool> TakeOverParentMount(Layer& child) REQUIRES(child.mu);
  Status MoveParentMount(Layer& parent, Layer& child) REQUIRES(parent.mu, child.mu);
  // A layer with a volume that is not mounted and whose journal needs recovery (a
  // handed-over parent's clone, or a volume left by a crash): mounted read-write and
  // unmounted, so its file is a checkpointed ext4 image for snapshots and libext2fs.
  Status ReplayJournalLocked(Layer& layer) REQUIRES(layer.mu);
  // The write counter of `loop_index` after a syncfs of `mountpoint`.
  Result<uint64_t> SampleWrites(int loop_index, const std::string& mountpoint);
  Result<std::unique_ptr<LayerView>> OpenView(const std::string& id);

  // overlay.cc: overlay form (DriverOptions::share_page_cache).
  bool WantsOverlay(const LayerRecord& rec, const std::string& base) const;
  // False when snapshot `snap` cannot be a lower (its root has the overlay's directory
  // name, or it does not mount): its clones keep the plain form.
  bool LowerCanHoldOverlay(const std::string& snap) EXCLUDES(lowers_mu_);
  // Where the layer's content is mounted: its overlay, or its volume's mount.
  std::string LayerPath(const Layer& layer) const REQUIRES(layer.mu);
  // Snapshot `snap` mounted read-only at <state>/lower/<snap> (once; counted).
  Result<std::string> AcquireLower(const std::string& snap) EXCLUDES(lowers_mu_);
  void ReleaseLower(const std::string& snap) EXCLUDES(lowers_mu_);
  // Unmounts the lowers no overlay uses; keep_held: the others stay mounted for the next
  // Open (the driver's exit).
  void UnmountIdleLowers(bool keep_held) EXCLUDES(lowers_mu_);
  size_t LowersMounted() EXCLUDES(lowers_mu_);
  Status AttachOverlay(Layer& layer) REQUIRES(layer.mu);
  // The overlay of `layer` was just mounted on the shared lower of its snapshot: the
  // container reads what it did not write from the lower, so the lower's caches are what
  // a trace of that snapshot records and a replay fills (shared by every container of it).
  void StartLowerPrefetch(Layer& layer) REQUIRES(layer.mu) EXCLUDES(lowers_mu_);
  Status MountOverlay(const std::string& id, const std::string& lowerdir);
  Status DetachOverlay(Layer& layer) REQUIRES(layer.mu);
  Status MoveOverlay(Layer& parent, Layer& child) REQUIRES(parent.mu, child.mu);
  Result<std::string> TakeFoldedSnapshot(Layer& layer, bool mounted, const nlohmann::json& meta) REQUIRES(layer.mu);
  Result<std::string> FoldAndPromote(const std::string& tmp, const nlohmann::json& meta);

  // snapshot.cc: the layer's snapshot and what Diff returns.
  Result<std::string> SnapshotLocked(Layer& layer) REQUIRES(layer.mu);
  Result<std::string> TakeSnapshot(Layer& layer, bool mounted) REQUIRES(layer.mu);
  Result<DiffStream> DiffLocked(Layer& layer) REQUIRES(layer.mu);
  Result<CommittedSnapshot> CommitSnapshotLocked(Layer& layer) REQUIRES(layer.mu);
  Status SyncVolumeFile(const std::string& id);
  Result<int64_t> DiffBytesAgainstParent(Layer& layer, const std::string& layer_root) REQUIRES(layer.mu);
  Result<uint64_t> SnapshotDiffBytes(Layer& layer, const std::string& snap) REQUIRES(layer.mu);
  // The snapshot that holds layer `id`'s current content ("" = empty file system).
  // Takes the layer's mutex (callers hold only descendants' mutexes: child → parent order).
  Result<std::string> ContentSnapshot(const std::string& id);
  Result<std::string> BaseOf(const std::string& id, const std::string& parent, const char* what);
  Result<std::vector<Change>> ChangesAgainst(const std::string& root, const std::string& base_id);

  // references.cc: chain ids, signing keys, reference files.
  // The chain id references on top of `rec` (an image layer being applied, or a written
  // read-write layer) are bound to: ChainId(rec.parent). Takes ancestors' mutexes.
  Result<std::string> ReferenceParent(const LayerRecord& rec);
  registry_shim::ReferenceTrust Trust() EXCLUDES(trust_mu_);

  // apply.cc: ApplyDiff.
  Result<int64_t> ApplyReference(Layer& layer, const std::string& bytes) REQUIRES(layer.mu);
  // EBUSY while the layer is mounted; unmounts a parked mount: content may be replaced.
  Status ReadyForContent(Layer& layer, const std::string& what) REQUIRES(layer.mu);
  Result<int64_t> RecordReference(Layer& layer, const registry_shim::Reference& ref, const std::string& parent_chain,
                                  const std::string& bytes) REQUIRES(layer.mu);
  Result<int64_t> ApplyStandard(Layer& layer, ByteSource& tar) REQUIRES(layer.mu);
  Result<int64_t> ApplyDedupHit(Layer& layer, const std::string& snap, const std::string& diff_id,
                                const std::string& chain_id) REQUIRES(layer.mu);
  Result<int64_t> ApplyStandardInto(Layer& layer, ByteSource& tar, const std::string& chain_key,
                                    const std::optional<std::string>& chain_id) REQUIRES(layer.mu);
  Status CheckStoreSpace(uint64_t need, const std::string& what);

  // quota.cc: making a layer's volume (clone, template, size).
  Status CloneBase(const std::string& snap, const std::string& layer_id, uint64_t size_bytes);
  Result<std::string> EnsureTemplate(uint64_t size_bytes) EXCLUDES(template_mu_);
  Status CopyTreeIntoNewFs(const std::string& snap, const std::string& layer_id, uint64_t size_bytes);

  os::Os& os_;
  storage_backend::Backend& backend_;
  const DriverOptions opts_;  // default_size and trust.keys as given: see below
  uint64_t default_size_at_start_ = 0;  // before any Init option

  LayerTable layers_;
  ClaimSet claims_;

  mutable common::Mutex config_mu_;  // Init's options
  std::string home_ GUARDED_BY(config_mu_);
  uint64_t default_size_ GUARDED_BY(config_mu_) = 0;

  mutable common::Mutex counters_mu_;  // a leaf lock
  Counters counters_ GUARDED_BY(counters_mu_);

  common::Mutex template_mu_;  // held while a template is formatted: one at a time
  mutable common::Mutex trust_mu_;
  registry_shim::ReferenceTrust trust_ GUARDED_BY(trust_mu_);  // keys reloaded: key rotation

  // A leaf lock: taken under a layer's mutex (Park, Unpark); the reaper takes a layer's
  // mutex only after releasing it.
  common::Mutex park_mu_;
  std::condition_variable_any park_cv_;
  std::map<std::string, std::chrono::steady_clock::time_point> parked_ GUARDED_BY(park_mu_);  // id -> unmount at
  bool stop_reaper_ GUARDED_BY(park_mu_) = false;
  std::deque<Teardown> teardowns_ GUARDED_BY(park_mu_);       // queued by Remove
  std::set<std::string> tearing_down_ GUARDED_BY(park_mu_);   // queued or in progress
  std::condition_variable_any teardown_done_cv_;
  std::thread reaper_;  // started by Open when park_time > 0; joined by the destructor
  struct PrepJob {
    enum Kind { kHandOver, kFillSpare } kind;
    std::string arg;  // the init layer; the base snapshot
  };
  std::deque<PrepJob> prepares_ GUARDED_BY(park_mu_);
  std::map<std::string, Spare> spares_ GUARDED_BY(park_mu_);  // base snapshot -> its spare
  std::set<std::string> spare_fills_ GUARDED_BY(park_mu_);    // base snapshots queued or in progress
  std::condition_variable_any prepare_cv_;
  // Shared lowers (overlay.cc): snapshot -> its read-only mount and the overlays on it.
  // A leaf lock but for the mount it makes (never takes a layer's mutex).
  struct Lower {
    std::optional<loopdev::MountedImage> mount;
    int refs = 0;
  };
  common::Mutex lowers_mu_;
  std::map<std::string, Lower> lowers_ GUARDED_BY(lowers_mu_);
  bool prepare_handovers_ = false;  // set by Open before the preparer starts
  std::thread preparer_;  // started by Open when park_time > 0 and the store hands volumes over
  std::unique_ptr<Prefetcher> prefetch_;  // threads only when DriverOptions::prefetch.enabled
};

}  // namespace slacker::driver
