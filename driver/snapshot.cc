// A layer's snapshot (O(1) reflink of its volume, reused while nothing was written:
// snapshot caching) and what Diff returns for each origin.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/changes.h"
#include "driver/layer_view.h"
#include "driver/overlay_fold.h"
#include "driver/slacker_driver.h"
#include "loopdev/freeze.h"
#include "loopdev/loop_device.h"
#include "registry_shim/reference.h"
#include "registry_shim/skeleton.h"

namespace slacker::driver {

using common::MutexLock;

// REQUIRES layer.rec.has_volume. Returns a snapshot equal to the volume's current
// content, reusing the last one when nothing was written since.
Result<std::string> SlackerDriver::SnapshotLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  SLACKER_RETURN_IF_ERROR(ReplayJournalLocked(layer));  // a handed-over parent's clone
  bool mounted = layer.mounted() && layer.mounted_rw;
  bool current = mounted ? layer.current.CurrentWhileMounted(layer.rec, SampleWrites(layer.loop_index(), MountPath(id)))
                         : SnapshotCurrency::CurrentAtRest(layer.rec);
  if (current) {
    Count(&Counters::snapshot_cache_hits);
    return layer.rec.snapshot;
  }
  SLACKER_ASSIGN_OR_RETURN(std::string snap, TakeSnapshot(layer, mounted));
  claims_.NoteClaim(snap, id);
  SLACKER_FAULT_POINT("diff.after_snapshot");
  LayerRecord next = layer.rec;
  next.snapshot = snap;
  next.origin = Origin::kVolume;
  next.dirty = mounted;  // still mounted rw: settled at Put
  if (Status p = Persist(next); !p.ok()) {
    claims_.Release(snap, id);
    return p;
  }
  // The replaced snapshot stays on the store (a registry may name it: gc decides).
  claims_.ReleaseReplaced(layer.rec.snapshot, snap, id);
  layer.rec = next;
  Count(&Counters::snapshots);
  log::Info("snapshot", {{"layer", id}, {"snapshot", snap}});
  return snap;
}

// Publishes a snapshot of the volume (frozen around the reflink if mounted rw).
Result<std::string> SlackerDriver::TakeSnapshot(Layer& layer, bool mounted) {
  const std::string& id = layer.rec.id;
  nlohmann::json meta = {{"parent_layer", layer.rec.parent}, {"source", "commit"},
                         {"layer", id}, {"host", opts_.host_id}};
  if (!layer.rec.lower.empty()) return TakeFoldedSnapshot(layer, mounted, meta);  // overlay.cc
  if (!mounted) {
    if (!LoopsBacking(backend_.VolumePath(id), loopdev::Deleted::kNo).empty()) {
      // Our mount is gone but the file system lives on (a copy of the mount in another
      // mount namespace): it was flushed at our Put, later writes may be missing.
      log::Warn("snapshot_of_volume_still_in_use", {{"layer", id},
                {"note", "a process in another mount namespace still holds the layer's file system"}});
    }
    SLACKER_RETURN_IF_ERROR(SyncVolumeFile(id).Context("snapshot layer " + id));
    auto r = backend_.SnapshotVolume(id, meta);
    if (!r.ok()) return r.status().Context("snapshot layer " + id);
    return r;
  }
  std::string mnt = MountPath(id);
  SLACKER_RETURN_IF_ERROR(os_.Freeze(mnt).Context("freeze layer " + id + " for snapshot"));
  SLACKER_FAULT_POINT("diff.while_frozen");
  // The baseline is sampled while frozen: writers the freeze blocked resume at the thaw,
  // and their writes are not in the snapshot, so they must count as changes.
  auto frozen_at = loopdev::WriteSectors(os_, layer.loop_index());
  Status synced = SyncVolumeFile(id);
  auto r = synced.ok() ? backend_.SnapshotVolume(id, meta) : Result<std::string>(synced);
  Status thaw = os_.Thaw(mnt);
  if (!r.ok()) return r.status().Context("snapshot layer " + id);
  if (!thaw.ok()) log::Error("thaw_failed", {{"layer", id}, {"err", thaw.message()}});
  layer.current.SnapshotTaken(frozen_at, thaw.ok());
  return r;
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
  if (!layer.rec.lower.empty() && layer.mounted_rw) {
    // Overlay form: what the layer wrote is its upper, counted as overlay2 counts a
    // layer (no tree walk of the parent, no mount of it).
    UniqueFd root(::open(MountPath(layer.rec.id).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root.valid()) return Status::FromErrno(errno, "open the volume of layer " + layer.rec.id);
    return UpperBytes(root.get());
  }
  SLACKER_ASSIGN_OR_RETURN(auto changes, ChangesAgainst(layer_root, layer.rec.parent));
  return ChangesSize(layer_root, changes);
}

Result<CommittedSnapshot> SlackerDriver::CommitSnapshotLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  CommittedSnapshot c;
  if (layer.rec.has_volume) {
    SLACKER_ASSIGN_OR_RETURN(c.snapshot, SnapshotLocked(layer));
    SLACKER_ASSIGN_OR_RETURN(c.parent_chain, ReferenceParent(layer.rec));
    SLACKER_ASSIGN_OR_RETURN(c.bytes, SnapshotDiffBytes(layer, c.snapshot));
    return c;
  }
  if (layer.rec.snapshot.empty()) {
    return Errorf(EINVAL, "commit layer {} to a snapshot: it has no content of its own (never written, nothing applied)",
                  id);
  }
  SLACKER_ASSIGN_OR_RETURN(c.parent_chain, ReferenceParent(layer.rec));
  c.snapshot = layer.rec.snapshot;
  c.bytes = static_cast<uint64_t>(std::max<int64_t>(0, layer.rec.diff_size));
  return c;
}

Result<CommittedSnapshot> SlackerDriver::CommitSnapshot(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "commit layer {} to a snapshot: no such layer", id);
  MutexLock l(layer->mu);
  return CommitSnapshotLocked(*layer);
}

Result<std::string> SlackerDriver::ContentSnapshot(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "layer {} does not exist", id);
  std::string parent;
  {
    MutexLock l(layer->mu);
    if (layer->rec.has_volume) return SnapshotLocked(*layer);
    if (!layer->rec.snapshot.empty()) return layer->rec.snapshot;
    parent = layer->rec.parent;
  }
  if (parent.empty()) return std::string();
  return ContentSnapshot(parent);
}

Result<DiffStream> SlackerDriver::Diff(const std::string& id, const std::string& /*parent*/) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "diff layer {}: no such layer", id);
  std::string skel;
  {
    MutexLock l(layer->mu);
    if (layer->rec.has_volume || layer->rec.origin != Origin::kTar) return DiffLocked(*layer);
    skel = backend_.SnapshotFilePath(layer->rec.snapshot, storage_backend::kSkeletonSuffix);
  }
  // Applied from a standard tar: its skeleton and the file bodies read from a view (which
  // takes the layer's mutex itself, through Get).
  SLACKER_ASSIGN_OR_RETURN(auto view, OpenView(id));
  SLACKER_ASSIGN_OR_RETURN(auto stream, registry_shim::OpenSkeletonStream(skel, view->path()));
  return DiffStream(std::make_unique<ViewSource>(std::move(stream), std::move(view)));
}

// Every case of Diff but a layer applied from a standard tar.
Result<DiffStream> SlackerDriver::DiffLocked(Layer& layer) {
  const std::string& id = layer.rec.id;
  if (layer.rec.has_volume) {
    SLACKER_ASSIGN_OR_RETURN(CommittedSnapshot committed, CommitSnapshotLocked(layer));
    registry_shim::Reference ref;
    ref.store = backend_.info().uuid;
    ref.snapshot = committed.snapshot;
    ref.parent = committed.parent_chain;
    ref.bytes = committed.bytes;
    return DiffStream(std::make_unique<StringSource>(registry_shim::EncodeReferenceTar(ref, Trust().signing_key())));
  }
  if (layer.rec.origin == Origin::kReference) {
    SLACKER_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(common::LayerReferenceFile(opts_.state_dir, id)));
    return DiffStream(std::make_unique<StringSource>(std::move(bytes)));
  }
  if (!layer.rec.snapshot.empty()) {
    // A snapshot of a volume that has since been promoted away (not reachable today).
    registry_shim::Reference ref;
    ref.store = backend_.info().uuid;
    ref.snapshot = layer.rec.snapshot;
    SLACKER_ASSIGN_OR_RETURN(ref.parent, ReferenceParent(layer.rec));
    return DiffStream(std::make_unique<StringSource>(registry_shim::EncodeReferenceTar(ref, Trust().signing_key())));
  }
  // Never written: same content as the parent, an empty tar.
  return DiffStream(std::make_unique<StringSource>(std::string(1024, '\0')));
}

}  // namespace slacker::driver
