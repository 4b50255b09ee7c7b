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
// sampled after syncfs: unchanged counter since the last snapshot ⇒ same content.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "driver/graph_driver.h"
#include "driver/layer_record.h"
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
};

class SlackerDriver : public GraphDriver {
 public:
  // REQUIRES: `os` and `backend` outlive the driver.
  static Result<std::unique_ptr<SlackerDriver>> Open(os::Os& os, storage_backend::Backend& backend,
                                                     DriverOptions options);
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

  // Counters for tests and Status (monotonic since start).
  struct Counters {
    uint64_t clones = 0, snapshots = 0, snapshot_cache_hits = 0, ro_mounts = 0, rw_mounts = 0;
    uint64_t dedup_hits = 0;
  };
  Counters counters() const;

  struct Layer;  // in-memory state of one layer (slacker_driver.cc)
  class View;    // a read view of a layer's tree

 private:
  SlackerDriver(os::Os& os, storage_backend::Backend& backend, DriverOptions options);
  Status Recover();
  static Result<uint64_t> ParseDriverOptions(const std::vector<std::string>& options, uint64_t default_size);
  Status CreateLayer(const CreateRequest& req, LayerKind kind);
  std::shared_ptr<Layer> Find(const std::string& id);
  Status Persist(const LayerRecord& rec);
  std::string MountPath(const std::string& id) const;

  // The following REQUIRE the layer's mutex held.
  Result<std::string> GetLocked(Layer& layer);
  Status PutLocked(Layer& layer, bool force);
  Status MaterializeVolume(Layer& layer);
  Status MountVolume(Layer& layer);
  Result<std::string> SnapshotLocked(Layer& layer);
  Status SyncVolumeFile(const std::string& id);
  Result<int64_t> DiffBytesAgainstParent(Layer& layer, const std::string& layer_root);
  Result<uint64_t> SnapshotDiffBytes(Layer& layer, const std::string& snap);
  std::vector<int> LoopsBacking(const std::string& file);
  Result<int64_t> ApplyReference(Layer& layer, const std::string& bytes);
  // The chain id references on top of `rec` (an image layer being applied, or a written
  // read-write layer) are bound to: ChainId(rec.parent). Takes ancestors' mutexes.
  Result<std::string> ReferenceParent(const LayerRecord& rec);
  Status VerifyReference(const registry_shim::Reference& ref, const std::string& parent_chain);
  registry_shim::ReferenceTrust Trust();
  Result<int64_t> ApplyStandard(Layer& layer, ByteSource& tar);
  Result<int64_t> ApplyStandardInto(Layer& layer, ByteSource& tar, const std::string& chain_key);
  std::string ChainPath(const std::string& key) const;

  // Claims (storage_backend/STORE.md "Ref markers"): the layers of this host that use a
  // snapshot. refs/<host>/<snap> exists while a snapshot has claims; claims_mu_ covers
  // both the map and the marker files, so a Release that deletes a marker never races an
  // AddRef that found it present.
  // Claim: adds `layer_id`'s claim, creating the marker (durably) if it is the first.
  Status Claim(const std::string& snap, const std::string& layer_id);
  // As Claim, for a snapshot the backend just published (and marked) for this layer.
  void NoteClaim(const std::string& snap, const std::string& layer_id);
  // Drops `layer_id`'s claim; the last one deletes the marker.
  void Release(const std::string& snap, const std::string& layer_id);
  // After Claim: whether the snapshot may be used (its image exists and no gc tombstoned
  // it; a claim made before the tombstone is seen by that gc's re-check).
  bool ClaimableSnapshot(const std::string& snap) const;
  // Releases `old_snap` if a layer's record moved from it to another snapshot.
  void ReleaseReplaced(const std::string& old_snap, const std::string& new_snap, const std::string& layer_id);
  // Start-up (under the host id's lease): claims from the records; deletes the markers no
  // record names and re-creates missing ones.
  Status ReconcileMarkers();

  // The snapshot that holds layer `id`'s current content ("" = empty file system).
  // Takes the layer's mutex (callers hold only descendants' mutexes: child → parent order).
  Result<std::string> ContentSnapshot(const std::string& id);
  Result<std::unique_ptr<View>> OpenView(const std::string& id);
  Result<std::string> BaseOf(const std::string& id, const std::string& parent, const char* what);
  Result<std::vector<Change>> ChangesAgainst(const std::string& root, const std::string& base_id);
  Result<uint64_t> SampleWrites(int loop_index, const std::string& mountpoint);
  Status CheckStoreSpace(uint64_t need, const std::string& what);
  Status CloneBase(const std::string& snap, const std::string& layer_id, uint64_t size_bytes);
  Result<std::string> EnsureTemplate(uint64_t size_bytes);
  Status CopyTreeIntoNewFs(const std::string& snap, const std::string& layer_id, uint64_t size_bytes);

  os::Os& os_;
  storage_backend::Backend& backend_;
  DriverOptions opts_;
  std::string home_;
  uint64_t default_size_at_start_ = 0;  // before any Init option

  // Guards layers_ and counters_. A leaf lock: a layer's mutex may be held when taking
  // it, never the other way round.
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Layer>> layers_;
  Counters counters_;
  std::mutex template_mu_;
  mutable std::mutex trust_mu_;  // guards opts_.trust.keys (reloaded: key rotation)
  // A leaf lock, held across marker file operations: no other lock is taken under it.
  std::mutex claims_mu_;
  std::map<std::string, std::set<std::string>> claims_;  // snapshot -> layer ids
};

}  // namespace slacker::driver
