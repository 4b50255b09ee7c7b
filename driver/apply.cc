// ApplyDiff: a reference tar (record the snapshot it names, after checking its signature,
// parent binding, store and gc state) or a standard tar (spooled and hashed, looked up in
// the cluster's dedup index, else unpacked into a staged volume that is promoted to a
// snapshot).
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/fault.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/log.h"
#include "driver/slacker_driver.h"
#include "driver/spool.h"
#include "loopdev/mount.h"
#include "registry_shim/apply.h"
#include "registry_shim/prefixed_source.h"
#include "registry_shim/reference.h"
#include "registry_shim/skeleton.h"

namespace slacker::driver {
namespace {

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

// The volume a standard tar is unpacked into, mounted rw at the layer's mount point, and
// the skeleton written beside the store's snapshots. Until committed, the destructor
// rolls back: unmounts, removes the skeleton's temp file and, if the apply made the
// volume (`owns_volume`), the volume. An interrupted ApplyDiff leaves no layer content
// behind; dockerd retries.
class StagedVolume {
 public:
  StagedVolume(storage_backend::Backend& backend, std::string layer_id, bool owns_volume, std::string skel_tmp)
      : backend_(backend), id_(std::move(layer_id)), owns_volume_(owns_volume), skel_tmp_(std::move(skel_tmp)) {}
  StagedVolume(const StagedVolume&) = delete;
  StagedVolume& operator=(const StagedVolume&) = delete;
  ~StagedVolume() {
    mount_.reset();  // the destructor unmounts (lazily if busy)
    if (!committed_) IgnoreError(RemoveFileIfExists(skel_tmp_), "rollback: the apply error is what the caller must see");
    if (owns_volume_) IgnoreError(backend_.RemoveVolume(id_), "rollback: the apply error is what the caller must see; a stray volume is removed at the next start");
  }

  Status Mount(os::Os& os, const std::string& target) {
    SLACKER_ASSIGN_OR_RETURN(auto m, loopdev::MountedImage::Mount(os, backend_.VolumePath(id_), target));
    mount_.emplace(std::move(m));
    return Status::Ok();
  }
  Status Unmount() {
    SLACKER_RETURN_IF_ERROR(mount_->Unmount(loopdev::BusyPolicy::kDetach));
    mount_.reset();
    return Status::Ok();
  }
  const std::string& skeleton_tmp() const { return skel_tmp_; }
  // The volume became a snapshot (PromoteVolume): nothing left to remove but the skeleton.
  void Promoted() { owns_volume_ = false; }
  // The skeleton is published under the snapshot's name.
  void Commit() { committed_ = true; }

 private:
  storage_backend::Backend& backend_;
  std::string id_;
  bool owns_volume_;
  std::string skel_tmp_;
  std::optional<loopdev::MountedImage> mount_;
  bool committed_ = false;
};

// Unpacks `tar` into the staged volume mounted at `mnt`, writing the skeleton, flushes
// it (it becomes a snapshot next) and unmounts it.
Result<registry_shim::ApplyStats> Unpack(os::Os& os, StagedVolume& staged, ByteSource& tar, const std::string& id,
                                         const std::string& mnt) {
  registry_shim::SkeletonWriter skel;
  Status so = skel.Open(staged.skeleton_tmp());
  FaultAfterBytes counted(tar, "apply.mid_extract", 64 * 1024);
  Result<registry_shim::ApplyStats> stats = so.ok() ? registry_shim::ApplyTar(counted, mnt, &skel) : Result<registry_shim::ApplyStats>(so);
  Status close = stats.ok() ? skel.Close() : Status::Ok();
  if (stats.ok()) FlushBeforeUnmount(os, id, mnt, -1);
  Status um = staged.Unmount();
  if (!stats.ok()) return stats.status();
  if (!close.ok()) return close;
  if (!um.ok()) return um;
  return stats;
}

// The first bytes of `tar`, up to one tar header.
Result<std::string> ReadHead(ByteSource& tar) {
  std::string head(512, '\0');
  size_t got = 0;
  while (got < head.size()) {
    SLACKER_ASSIGN_OR_RETURN(size_t n, tar.Read(head.data() + got, head.size() - got));
    if (n == 0) break;
    got += n;
  }
  head.resize(got);
  return head;
}

}  // namespace

Result<int64_t> SlackerDriver::ApplyDiff(const std::string& id, const std::string& /*parent*/, ByteSource& tar) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "apply diff to layer {}: no such layer", id);
  common::MutexLock l(layer->mu);
  SLACKER_RETURN_IF_ERROR(ReadyForContent(*layer, "apply diff to layer " + id));
  SLACKER_ASSIGN_OR_RETURN(std::string head, ReadHead(tar));
  if (head.empty()) {
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
  if (head.size() == 512 && registry_shim::IsReferenceTarHeader(head.data())) {
    std::string bytes = head;
    char buf[4096];
    for (;;) {
      SLACKER_ASSIGN_OR_RETURN(size_t n, tar.Read(buf, sizeof buf));
      if (n == 0) break;
      bytes.append(buf, n);
      if (bytes.size() > registry_shim::kMaxReferenceTar)
        return Errorf(EINVAL, "apply diff to layer {}: reference tar is larger than {} bytes", id, registry_shim::kMaxReferenceTar);
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
  SLACKER_RETURN_IF_ERROR(registry_shim::VerifyReference(*ref, Trust(), parent_chain).Context("apply reference to layer " + id));
  return RecordReference(layer, *ref, parent_chain, bytes);
}

Status SlackerDriver::ReadyForContent(Layer& layer, const std::string& what) {
  if (layer.refs > 0) return Errorf(EBUSY, "{}: the layer is mounted", what);
  if (layer.rec.has_volume && !layer.rec.lower.empty()) {
    // dockerd applies only into new image layers; a container layer's content is its
    // overlay, which a tar unpacked into the volume's root would bypass.
    return Errorf(EINVAL, "{}: it is a container layer in overlay form (--share-page-cache), written through "
                  "Get; apply a diff to a new layer instead", what);
  }
  if (layer.parked) SLACKER_RETURN_IF_ERROR(UnmountLocked(layer).Context(what));
  return Status::Ok();
}

// The layer holds the snapshot `ref` names (verified or vouched for by the caller);
// `bytes` is the reference tar Diff reproduces, whose digest extends the chain id.
Result<int64_t> SlackerDriver::RecordReference(Layer& layer, const registry_shim::Reference& ref,
                                               const std::string& parent_chain, const std::string& bytes) {
  const std::string& id = layer.rec.id;
  if (ref.store != backend_.info().uuid) {
    return Errorf(EINVAL,
                  "apply reference to layer {}: snapshot {} lives on store {}, but this worker's store is {} "
                  "(pull it on a worker that shares that store, or export the image with `slackerctl export`)",
                  id, ref.snapshot, ref.store, backend_.info().uuid);
  }
  if (!backend_.SnapshotExists(ref.snapshot)) {
    return Errorf(ENOENT, "apply reference to layer {}: snapshot {} does not exist on store {} (deleted by gc?)",
                  id, ref.snapshot, ref.store);
  }
  // Mark first, then check the image: a gc hides an image before it re-reads the
  // markers (storage_backend/STORE.md), so one of the two sees the other.
  SLACKER_RETURN_IF_ERROR(claims_.Claim(ref.snapshot, id).Context("apply reference to layer " + id));
  if (!claims_.Claimable(ref.snapshot)) {
    claims_.Release(ref.snapshot, id);
    return Errorf(ENOENT, "apply reference to layer {}: snapshot {} was just deleted from store {} (by gc?)", id,
                  ref.snapshot, ref.store);
  }
  LayerRecord next = layer.rec;
  next.snapshot = ref.snapshot;
  next.origin = Origin::kReference;
  next.has_volume = false;
  next.dirty = false;
  next.diff_size = static_cast<int64_t>(ref.bytes);
  next.chain_id = registry_shim::NextChainId(parent_chain, slacker::Sha256Digest(bytes));
  Status written = AtomicWriteFile(common::LayerReferenceFile(opts_.state_dir, id), bytes);
  if (written.ok()) written = Persist(next);
  if (!written.ok()) {
    if (ref.snapshot != layer.rec.snapshot) claims_.Release(ref.snapshot, id);
    return written;
  }
  if (layer.rec.has_volume) IgnoreError(backend_.RemoveVolume(id), "the reference replaces the volume; a stray volume is removed at the next start");
  claims_.ReleaseReplaced(layer.rec.snapshot, next.snapshot, id);
  layer.rec = next;
  log::Info("apply_reference", {{"layer", id}, {"snapshot", ref.snapshot}});
  return next.diff_size;
}

Result<int64_t> SlackerDriver::CreateFromSnapshot(const SnapshotLayerRequest& req) {
  std::string what = "create layer " + req.id + " from snapshot " + req.snapshot;
  if (!storage_backend::IsValidSnapshotId(req.snapshot)) return Errorf(EINVAL, "{}: invalid snapshot id", what);
  auto layer = layers_.Find(req.id);
  if (!layer) return Errorf(ENOENT, "{}: no such layer", what);
  common::MutexLock l(layer->mu);
  SLACKER_RETURN_IF_ERROR(ReadyForContent(*layer, what));
  SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ReferenceParent(layer->rec));
  if (req.parent_chain && *req.parent_chain != parent_chain) {
    return Errorf(EACCES, "{}: the snapshot was made on top of {:?}, but the layer's parent is {:?}", what,
                  *req.parent_chain, parent_chain);
  }
  registry_shim::Reference ref;
  ref.store = backend_.info().uuid;
  ref.snapshot = req.snapshot;
  ref.parent = parent_chain;
  ref.bytes = req.bytes;
  // The layer is then what ApplyDiff of this reference makes: Diff pushes it as a
  // reference tar, and its chain id hashes that tar.
  return RecordReference(*layer, ref, parent_chain, registry_shim::EncodeReferenceTar(ref, Trust().signing_key()));
}

// Dedup across the cluster: a standard layer whose chain (the parent's content snapshot
// + its DiffID) any worker already applied is the same tree, and its skeleton reproduces
// the same bytes. The chain index lives on the shared store (Backend::LookupChain): the
// key sha256(base+" "+diffid) names the snapshot id.
Result<int64_t> SlackerDriver::ApplyStandard(Layer& layer, ByteSource& tar) {
  const std::string& id = layer.rec.id;
  if (layer.rec.has_volume) return ApplyStandardInto(layer, tar, "", std::nullopt);  // written through Get first
  std::string base = layer.rec.snapshot;
  if (base.empty() && !layer.rec.parent.empty()) {
    SLACKER_ASSIGN_OR_RETURN(base, ContentSnapshot(layer.rec.parent));
  }
  SpoolFile spool;
  SLACKER_RETURN_IF_ERROR(spool.Fill(common::SpoolFile(opts_.state_dir, id), tar, opts_.max_spool_bytes)
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
  auto known = backend_.LookupChain(key);
  if (!known.ok() && known.status().code() != ENOENT)
    log::Warn("chain_lookup_failed", {{"layer", id}, {"err", known.status().message()}});
  if (known.ok()) {
    const std::string& snap = *known;
    // Mark first, then check the image (the gc protocol); a snapshot gone meanwhile is a
    // miss: unpack the tar again.
    bool claimed = backend_.SnapshotExists(snap) && claims_.Claim(snap, id).ok();
    bool usable = claimed && claims_.Claimable(snap) &&
                  PathExists(backend_.SnapshotFilePath(snap, storage_backend::kSkeletonSuffix));
    if (claimed && !usable) claims_.Release(snap, id);
    if (usable) return ApplyDedupHit(layer, snap, spool.digest(), chain_id);
  }
  SLACKER_RETURN_IF_ERROR(CheckStoreSpace(spool.size(), "apply diff to layer " + id));
  SLACKER_RETURN_IF_ERROR(CloneBase(base, id, layer.rec.size_bytes).Context("apply diff to layer " + id));
  SpoolSource src(spool);
  return ApplyStandardInto(layer, src, key, chain_id);
}

// The layer records the snapshot (claimed already) some worker unpacked the same tar into.
Result<int64_t> SlackerDriver::ApplyDedupHit(Layer& layer, const std::string& snap, const std::string& diff_id,
                                             const std::string& chain_id) {
  const std::string& id = layer.rec.id;
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
    if (snap != layer.rec.snapshot) claims_.Release(snap, id);
    return persisted;
  }
  claims_.ReleaseReplaced(layer.rec.snapshot, snap, id);
  layer.rec = next;
  Count(&Counters::dedup_hits);
  log::Info("apply_tar_dedup", {{"layer", id}, {"snapshot", snap}, {"diff_id", diff_id}});
  return size;
}

// Unpacks `tar` into the layer's volume (cloned already, unless `chain_key` is empty: a
// volume written through Get) and promotes it to a snapshot. `chain_key` non-empty:
// publish the result in the chain index. `chain_id`: the record's new chain id (nullopt:
// keep it).
Result<int64_t> SlackerDriver::ApplyStandardInto(Layer& layer, ByteSource& tar, const std::string& chain_key,
                                                 const std::optional<std::string>& chain_id) {
  const std::string& id = layer.rec.id;
  std::string what = "apply diff to layer " + id;
  StagedVolume staged(backend_, id, /*owns_volume=*/!chain_key.empty(),
                      backend_.SnapshotFilePath("staging-" + opts_.host_id + "-" + id,
                                                storage_backend::kSkeletonSuffix));
  std::string mnt = MountPath(id);
  SLACKER_RETURN_IF_ERROR(MakeDirs(mnt, 0755).Context(what));
  SLACKER_RETURN_IF_ERROR(staged.Mount(os_, mnt).Context(what));
  auto stats = Unpack(os_, staged, tar, id, mnt);
  if (!stats.ok()) {
    // The layer's ext4 image is sparse on the store: a full store shows up inside it as
    // EIO, not ENOSPC. Say what it is.
    Status full = CheckStoreSpace(0, what);
    Status err = full.ok() ? stats.status() : Errorf(ENOSPC, "{} ({})", full.message(), stats.status().message());
    return err.Context(what);
  }
  nlohmann::json meta = {{"parent_layer", layer.rec.parent}, {"source", "apply"}, {"layer", id},
                         {"host", opts_.host_id}, {"bytes", stats->size}};
  auto snap = backend_.PromoteVolume(id, meta);
  if (!snap.ok()) return snap.status().Context(what);
  staged.Promoted();
  claims_.NoteClaim(*snap, id);
  std::string skel_path = backend_.SnapshotFilePath(*snap, storage_backend::kSkeletonSuffix);
  if (::rename(staged.skeleton_tmp().c_str(), skel_path.c_str()) != 0) {
    int err = errno;
    return Status::FromErrno(err, "publish skeleton " + skel_path);
  }
  staged.Commit();
  SLACKER_FAULT_POINT("apply.before_record");
  LayerRecord next = layer.rec;
  next.snapshot = *snap;
  next.origin = Origin::kTar;
  next.has_volume = false;
  next.dirty = false;
  next.diff_size = stats->size;
  if (chain_id) next.chain_id = *chain_id;
  if (Status p = Persist(next); !p.ok()) {
    claims_.Release(*snap, id);  // no record names it: let gc take it
    return p;
  }
  claims_.ReleaseReplaced(layer.rec.snapshot, next.snapshot, id);
  layer.rec = next;
  Count(&Counters::snapshots);
  if (!chain_key.empty()) {
    Status cs = backend_.RecordChain(chain_key, *snap);
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

}  // namespace slacker::driver
