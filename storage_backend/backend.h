// The shared store (DESIGN.md §3) as the driver sees it: immutable snapshots named by a
// random 128-bit id, writable per-host volumes, per-host ref markers for gc, formatted
// templates, and two indexes from content to snapshots (chains/, containerd/names/).
// Snapshot and clone are O(1) where the store can reflink.
//
// The layout (every path, the crash-ordered publishing, the ids) is written down, and
// spelled, in one place: storage_backend/store_layout.h.
//
// Ids: operations reject an invalid snapshot id, layer name or chain key
// (store_layout.h) with EINVAL; the *Path accessors do not validate (they only build
// strings).
// Thread-safety: implementations are safe for concurrent calls on different ids; the
// caller serialises operations on one layer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "os/os.h"
#include "storage_backend/store_layout.h"

namespace slacker::storage_backend {

struct StoreInfo {
  int format = 0;        // on-disk layout version; this build knows 1
  std::string uuid;      // 32 lowercase hex, fixed at creation; names the store in references
  std::string created;   // RFC 3339, UTC
};

inline constexpr int kStoreFormat = 1;

// An entry of the chain index: the snapshot that holds the tree of `key`.
struct ChainEntry {
  std::string key;       // sha256(base snapshot + " " + DiffID), driver/spool.h ChainKey
  std::string snapshot;
};

// An entry of the name index (slacker-snapshotter): a committed snapshot by its portable
// name, so other hosts can adopt it. Stored as the JSON object
// {"bytes","host","inodes","name","namespace","snapshot"} under
// NameFile(ns, name) (store_layout.h).
struct NameEntry {
  std::string ns;        // containerd namespace of the publisher
  std::string name;      // portable name: a chain id "sha256:…" or a per-namespace name
  std::string snapshot;  // snapshot id on the store
  uint64_t bytes = 0;    // size of the change against its parent
  uint64_t inodes = 0;   // inodes the change added (0: unknown, e.g. a reference layer)
  std::string host;      // who published it
};

class Backend {
 public:
  virtual ~Backend() = default;

  // The store's identity, read (or created) when the store was opened.
  virtual const StoreInfo& info() const = 0;
  // One line for `docker info` / `slackerctl status`: kind, root, clone path in use.
  virtual std::string Describe() const = 0;
  // The directory holding store.json (the store's files as this host reaches them).
  virtual std::string root() const = 0;

  // root/snapshots/<snap>.img
  virtual std::string SnapshotPath(const std::string& snap) const = 0;
  // root/snapshots/<snap>.json
  virtual std::string SnapshotMetaPath(const std::string& snap) const = 0;
  // root/snapshots/<snap><suffix>, e.g. suffix ".skel".
  virtual std::string SnapshotFilePath(const std::string& snap, const std::string& suffix) const = 0;
  // root/volumes/<host>/<layer>.img
  virtual std::string VolumePath(const std::string& layer) const = 0;
  // root/templates/ext4-<size_bytes>.img
  virtual std::string TemplatePath(uint64_t size_bytes) const = 0;

  // Snapshots this host's volume of `layer` (clone: O(1) by reflink) under a new random
  // id, with `meta` as its .json, and marks it referenced by this host. The volume stays.
  // REQUIRES: the volume is not being written (unmounted, or its file system frozen).
  // Returns the new snapshot id. ENOENT if the volume does not exist.
  virtual Result<std::string> SnapshotVolume(const std::string& layer, const nlohmann::json& meta) = 0;
  // As SnapshotVolume, but moves the volume file into snapshots/ (rename: O(1) on any
  // store, no clone needed). The volume is gone afterwards; on failure it is left in place.
  // REQUIRES: the volume is unmounted and detached.
  virtual Result<std::string> PromoteVolume(const std::string& layer, const nlohmann::json& meta) = 0;
  // Makes this host's volume of `layer` a writable clone of snapshot `snap` (via
  // "<layer>.img.tmp-XXXX" then rename, so a crash never leaves a half-copied volume;
  // the host id's lease holder removes its leftovers at start). An
  // existing volume of that layer is replaced. ENOENT naming the snapshot if it is missing.
  virtual Status CloneSnapshot(const std::string& snap, const std::string& layer) = 0;
  // Clones any file of the store to `dst_path` (reflink, else copy; via a temporary file
  // then rename). Used to instantiate templates. dst is created mode 0600. Both paths
  // must lie in the store; a link on either is refused (ELOOP), a path outside it EXDEV.
  virtual Status CloneFile(const std::string& src_path, const std::string& dst_path) = 0;
  // Deletes this host's volume of `layer`; a missing volume is OK.
  virtual Status RemoveVolume(const std::string& layer) = 0;
  // Hand-over (issue 17, driver/README.md "Start and stop"): the file of volume `from`
  // becomes the volume of `to` (renamed, so a loop device on it, and the file system
  // mounted from it, go along), and `from` gets a clone of it. `to` must not exist.
  // Crash-safe: the clone is made first as "<from>.img.handover" and renamed into place
  // last; RecoverHandOvers (at start-up) finishes or discards an interrupted one.
  // REQUIRES: `from`'s file system is synced (its journal committed). ENOTSUP on a store
  // that cannot rename volumes (then nothing changed).
  virtual Status HandOverVolume(const std::string& from, const std::string& to) {
    SLACKER_RETURN_IF_ERROR(PrepareHandOver(from));
    return CompleteHandOver(from, to);
  }
  // The hand-over in two steps, so the clone can be made ahead of time (the driver makes
  // it right after dockerd's Put of an init layer, off the critical path of the container
  // layer's Get). PrepareHandOver: "<from>.img.handover" becomes a durable clone of
  // `from`'s file (replacing an older one); REQUIRES as above. CompleteHandOver: the
  // renames, then the directory made durable; REQUIRES a prepared clone that still equals
  // `from` (nothing wrote `from`'s file system since; else DiscardHandOver and prepare
  // again). DiscardHandOver deletes a prepared clone (none: OK). A crash after Prepare
  // leaves a clone next to its volume, which RecoverHandOvers deletes.
  virtual Status PrepareHandOver(const std::string& from) {
    return Errorf(ENOTSUP, "this store does not hand volumes over (volume {})", from);
  }
  virtual Status CompleteHandOver(const std::string& from, const std::string& to) {
    return Errorf(ENOTSUP, "this store does not hand volumes over ({} to {})", from, to);
  }
  // Renames this host's volume `from` to `to` (a loop device on it follows), then makes
  // the directory durable. `to` must not exist (EEXIST). For spare volumes
  // (driver/spares.cc); ENOTSUP where CanHandOverVolumes is false.
  virtual Status RenameVolume(const std::string& from, const std::string& to) {
    return Errorf(ENOTSUP, "this store does not rename volumes ({} to {})", from, to);
  }
  virtual Status DiscardHandOver(const std::string& from) {
    (void)from;
    return Status::Ok();
  }
  virtual bool CanHandOverVolumes() const { return false; }
  // After a crash: "<layer>.img.handover" becomes "<layer>.img" where that is missing, and
  // is deleted otherwise. Returns the layers whose volume it restored.
  virtual Result<std::vector<std::string>> RecoverHandOvers() { return std::vector<std::string>{}; }
  // Deletes a snapshot's image, metadata and companions (".skel"). For gc only: the
  // caller has established that no host's refs/ and no registry manifest use it.
  virtual Status RemoveSnapshot(const std::string& snap) = 0;
  // Whether snapshots/<snap>.img is published.
  virtual bool SnapshotExists(const std::string& snap) const = 0;
  // Parses snapshots/<snap>.json. ENOENT if missing, EINVAL if not a JSON object.
  virtual Result<nlohmann::json> ReadSnapshotMeta(const std::string& snap) const = 0;
  // The snapshot's start-up read trace, snapshots/<snap>.trace (driver/prefetch_trace.h;
  // opaque here, untrusted: the caller validates it). ENOENT if there is none, EFBIG if it
  // is larger than `limit`, ELOOP/EINVAL if a link or a non-regular file sits there.
  virtual Result<std::string> ReadSnapshotTrace(const std::string& snap, size_t limit) const = 0;
  // Publishes it (temporary beside it, fsync, rename: readers see the old or the new one
  // whole), replacing an older one. ENOENT if the snapshot's image is not published.
  virtual Status WriteSnapshotTrace(const std::string& snap, std::string_view bytes) = 0;
  // Creates refs/<host>/<snap> (durably); idempotent.
  virtual Status AddRef(const std::string& snap) = 0;
  // Removes refs/<host>/<snap>; a missing marker is OK.
  virtual Status DropRef(const std::string& snap) = 0;
  // Snapshot ids marked under refs/<host>/ (sorted).
  virtual Result<std::vector<std::string>> ListRefs() const = 0;
  // Published snapshot ids (sorted).
  virtual Result<std::vector<std::string>> ListSnapshots() const = 0;
  // Layer names of this host's volumes (sorted; temporary files excluded).
  virtual Result<std::vector<std::string>> ListVolumes() const = 0;
  // Space of the file system holding the store.
  virtual Result<os::FsStats> Space() const = 0;

  // --- Indexes: content to snapshot, shared by every host (store_index.h) ------------
  // Entries are hints written after their snapshot is published: the snapshot an entry
  // names may be gone (gc) or tombstoned, so a user marks it and checks it (the claim
  // protocol, STORE.md) before relying on it. Any host writes them; `slackerctl gc`
  // removes the entries whose snapshot is gone. Files are resolved beneath the store
  // root without following links: a link planted at an entry is refused with ELOOP by
  // the lookups, skipped by the listings, and replaced (never followed) by the writes.
  // An entry that is not what its writer writes (damaged, hostile) is EIO naming its
  // file from the lookups and skipped, with a warning, by the listings.

  // The chain index, chains/<key> = "<snap>\n": a standard layer unpacked on the base
  // snapshot with the DiffID hashed into `key` (driver/apply.cc).
  // The snapshot chains/<key> names; ENOENT if there is none; EINVAL for a bad key.
  virtual Result<std::string> LookupChain(const std::string& key) const = 0;
  // Makes chains/<key> name `snap` (atomic replace, durable); creates chains/ if missing.
  virtual Status RecordChain(const std::string& key, const std::string& snap) = 0;
  // Every readable entry, sorted by key; writes in flight (IsTempName) are skipped.
  virtual Result<std::vector<ChainEntry>> ListChains() const = 0;
  // Removes chains/<key> if it still names `snap` (re-read just before: a worker may have
  // recorded another snapshot under the key meanwhile). Returns whether it was removed.
  virtual Result<bool> RemoveChain(const std::string& key, const std::string& snap) = 0;

  // The name index, containerd/names/<sha256(NameIndexKey(ns, name))>.json.
  // Files `e` under (e.ns, e.name), replacing what was published under that key (atomic,
  // durable). EINVAL if e.name is empty or e.snapshot is not a snapshot id.
  virtual Status PublishName(const NameEntry& e) = 0;
  // The entry published under (ns, name); ENOENT if none. A chain id name finds what any
  // namespace published. EIO if the file names another name (damaged).
  virtual Result<NameEntry> LookupName(const std::string& ns, const std::string& name) const = 0;
  // Every readable entry, sorted by file name; an entry whose file name is not the one
  // its (namespace, name) files under is skipped as damaged.
  virtual Result<std::vector<NameEntry>> ListNames() const = 0;
  // Removes the entry of (ns, name) if it still names `snap`; returns whether it was.
  virtual Result<bool> RemoveName(const std::string& ns, const std::string& name, const std::string& snap) = 0;
};

}  // namespace slacker::storage_backend
