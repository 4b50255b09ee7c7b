// The shared store (DESIGN.md §3) as the driver sees it: immutable snapshots named by a
// random 128-bit id, writable per-host volumes, per-host ref markers for gc, and
// formatted templates. Snapshot and clone are O(1) where the store can reflink.
//
// Layout under root():
//   store.json                      {"format":1,"uuid":"<32 hex>","created":"<RFC3339>"}
//   snapshots/<snap>.img            immutable ext4 image, mode 0400 (all else 0600, dirs 0700)
//   snapshots/<snap>.json           metadata (parent, source, bytes, ...)
//   snapshots/<snap>.<suffix>       companions, e.g. .skel (tar skeleton)
//   volumes/<host>/<layer>.img      writable ext4, owned by one host
//   refs/<host>/<snap>              empty marker: this host's layers use <snap>
//   leases/<host>.json              which process holds the host id (lease.h, STORE.md)
//   templates/ext4-<bytes>.img      empty formatted ext4, cloned for new base layers
// Publishing is crash-ordered: the image is cloned to "<snap>.img.tmp", its metadata is
// written, then the image is renamed into place. A crash leaves only "*.tmp" files or a
// "<snap>.json" without its image: debris that ListSnapshots() ignores and gc removes.
//
// Ids: a snapshot id is 32 lowercase hex characters; a layer name is 1-255 of
// [A-Za-z0-9_.-], not starting with '.'. Operations reject others with EINVAL; the *Path
// accessors do not validate (they only build strings).
// Thread-safety: implementations are safe for concurrent calls on different ids; the
// caller serialises operations on one layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "os/os.h"

namespace slacker::storage_backend {

struct StoreInfo {
  int format = 0;        // on-disk layout version; this build knows 1
  std::string uuid;      // 32 lowercase hex, fixed at creation; names the store in references
  std::string created;   // RFC 3339, UTC
};

inline constexpr int kStoreFormat = 1;

// snapshots/<snap><kGcTombstoneSuffix>: a gc means to delete <snap> (STORE.md). Layers
// that already use <snap> keep using it; a new claim treats it as gone.
inline constexpr const char* kGcTombstoneSuffix = ".gc";

// 32 lowercase hex characters.
bool IsValidSnapshotId(const std::string& snap);
// 1-255 of [A-Za-z0-9_.-], not starting with '.'.
bool IsValidLayerName(const std::string& layer);

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
    (void)from;
    (void)to;
    return Errorf(ENOTSUP, "this store does not hand volumes over");
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
};

}  // namespace slacker::storage_backend
