// Chain ids, the signing keys, and the reference file a layer's own tree holds: what
// binds reference tars to their parent (registry_shim/FORMAT.md).
#include "common/files.h"
#include "common/log.h"
#include "driver/slacker_driver.h"
#include "driver/spool.h"
#include "loopdev/ext4_read.h"
#include "registry_shim/reference.h"

namespace slacker::driver {

using common::MutexLock;

// The keys are read again each time a reference is signed or verified (two small files
// on the store): a key another worker rotated to is used at once, and a retired key stops
// verifying at once.
registry_shim::ReferenceTrust SlackerDriver::Trust() {
  if (opts_.reload_keys) {
    auto keys = opts_.reload_keys();
    if (keys.ok() && !keys->empty()) {
      MutexLock l(trust_mu_);
      trust_.keys = *keys;
    } else {
      log::Warn("cluster_key_reload_failed",
                {{"err", keys.ok() ? "no keys" : keys.status().message()},
                 {"action", "using the keys read before"}});
    }
  }
  MutexLock l(trust_mu_);
  return trust_;
}

Result<std::string> SlackerDriver::ReadReferenceFile(const std::string& id) {
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "read the reference file of layer {}: no such layer", id);
  MutexLock l(layer->mu);
  auto read = [&](const std::string& image) {
    return loopdev::ReadExt4RegularFile(image, registry_shim::kReferenceTarEntryName,
                                        registry_shim::kMaxReferenceBody);
  };
  if (!layer->rec.has_volume) {
    if (layer->rec.snapshot.empty())
      return Errorf(ENOENT, "layer {} has no content of its own (no volume, no snapshot)", id);
    return read(backend_.SnapshotPath(layer->rec.snapshot));
  }
  if (!layer->rec.lower.empty()) {
    // Overlay form: the content is the overlay's, read through it.
    SLACKER_ASSIGN_OR_RETURN(std::string root, GetLocked(*layer));
    auto body = ReadFileBeneath(root, std::string(registry_shim::kReferenceTarEntryName),
                                registry_shim::kMaxReferenceBody);
    SLACKER_RETURN_IF_ERROR(PutLocked(*layer, false));
    return body;
  }
  SLACKER_RETURN_IF_ERROR(ReplayJournalLocked(*layer));  // libext2fs does not replay a journal
  if (!layer->mounted() || !layer->mounted_rw) return read(backend_.VolumePath(id));
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
  auto layer = layers_.Find(id);
  if (!layer) return Errorf(ENOENT, "chain id of layer {}: no such layer", id);
  LayerRecord rec;
  {
    MutexLock l(layer->mu);
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
  MutexLock l(layer->mu);
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

}  // namespace slacker::driver
