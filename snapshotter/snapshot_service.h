// containerd's snapshotter contract (snapshots.Snapshotter, containerd 1.6) on top of a
// GraphDriver (driver/) with the SnapshotDriver capability. The gRPC front end
// (grpc_service.h) only translates messages and maps the errno-style codes of these
// methods to gRPC codes:
//   ENOENT → NOT_FOUND, EEXIST → ALREADY_EXISTS, EINVAL → INVALID_ARGUMENT,
//   EBUSY/ENOTEMPTY → FAILED_PRECONDITION (see grpc_service.cc).
//
// Mapping (snapshotter/README.md):
//   active    = a driver read-write layer (CreateReadWrite + Get: a lazy clone of the
//               parent's snapshot), mounted; Mounts = a bind of its mount directory.
//   committed = a driver image layer holding one snapshot on the shared store
//               (SnapshotDriver::CommitSnapshot of the active layer, then
//               CreateFromSnapshot: no clone, no copy, no reference tar).
//   view      = a read-only bind of the parent's (shared, refcounted) read-only mount.
// Names are containerd's backend keys ("<namespace>/<seq>/<key>"). The catalog of names
// (catalog.h) lives in <state>/catalog.json; the shared store keeps an index of
// committed snapshots by their portable name (StoreIndex) so other hosts can adopt them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "driver/graph_driver.h"
#include "registry_shim/reference.h"
#include "storage_backend/backend.h"
#include "snapshotter/record.h"

namespace slacker::snapshotter {

struct Info {
  std::string name;
  std::string parent;
  Kind kind = Kind::kActive;
  Labels labels;
  int64_t created_ns = 0;  // Unix time, nanoseconds
  int64_t updated_ns = 0;
  bool operator==(const Info&) const = default;
};

struct Mount {
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

struct Usage {
  int64_t size = 0;
  int64_t inodes = 0;
};

// The label containerd's unpacker puts on an extraction snapshot: the chain id (or
// name) the snapshot will be committed as.
inline constexpr const char* kLabelSnapshotRef = "containerd.io/snapshot.ref";

// An index of committed snapshots on the shared store, by portable name: the backend
// name without containerd's "<namespace>/<seq>/" prefix. Chain ids ("sha256:…", content
// addressed) are shared by every namespace; other names are kept per namespace. The
// store owns the files (Backend::PublishName, LookupName; containerd/names/).
class StoreIndex {
 public:
  struct Entry {
    std::string name;      // portable name
    std::string snapshot;  // snapshot id on the store
    uint64_t bytes = 0;    // size of the change against its parent
    std::string host;      // who published it
    uint64_t inodes = 0;   // inodes the change added (0: unknown, e.g. a reference layer)
  };
  // `store` must outlive the index.
  explicit StoreIndex(storage_backend::Backend& store) : store_(store) {}
  Status Publish(const std::string& ns, const Entry& e);
  // ENOENT when nothing is published under that name.
  Result<Entry> Lookup(const std::string& ns, const std::string& name) const;

 private:
  storage_backend::Backend& store_;
};

// Splits containerd's backend key "<ns>/<seq>/<rest>" into (ns, rest). A key without
// that shape (a direct client) gives ("", key).
std::pair<std::string, std::string> SplitBackendKey(const std::string& key);

struct ServiceOptions {
  std::string state_dir;          // catalog.json lives here
  std::string store_uuid;         // this host's store
  // The keys that verify the reference tars containerd unpacks into extraction snapshots,
  // read when called (they change with `slackerctl key rotate`). Null: no keys
  // (everything unsigned is refused).
  std::function<registry_shim::ReferenceTrust()> trust;
  std::string host_id;
  std::shared_ptr<StoreIndex> index;  // null: no publishing/adopting across hosts
  // Used bytes and inodes of the file system mounted at a directory (default: statfs).
  // Tests substitute it: a shared /tmp changes under them.
  std::function<Result<Usage>(const std::string& dir)> fs_use;
};

// catalog.h, layer_mounts.h: kept out of this header (see record.h).
class Catalog;
class CatalogTransaction;
class LayerMounts;

class SnapshotService {
 public:
  ~SnapshotService();
  // Loads the catalog and re-mounts active snapshots (Get) that are not mounted.
  // REQUIRES: `driver` outlives the service. EINVAL if it is not a driver::SnapshotDriver.
  static Result<std::unique_ptr<SnapshotService>> Open(driver::GraphDriver& driver, ServiceOptions opts);

  // New active snapshot `key` on committed `parent` ("" = empty). EEXIST if `key` exists.
  // With label containerd.io/snapshot.ref=T and T published on the shared store (or T
  // committed here already), creates committed T instead and returns EEXIST: containerd
  // then skips the layer (remote snapshot).
  Result<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent, const Labels& labels);
  Result<std::vector<Mount>> View(const std::string& key, const std::string& parent, const Labels& labels);
  Result<std::vector<Mount>> Mounts(const std::string& key);
  // Active `key` becomes committed `name` (a snapshot on the shared store). An extraction
  // snapshot whose tree received a slacker reference tar (/.slacker/ref.json, read by the
  // driver from the layer's image, never through the mount) commits to the referenced
  // snapshot instead, once the reference verifies against the parent's chain id: no data
  // is copied.
  Status Commit(const std::string& name, const std::string& key, const Labels& labels);
  // EBUSY (FAILED_PRECONDITION) while the snapshot has children or another call uses it.
  Status Remove(const std::string& key);
  Result<Info> Stat(const std::string& key);
  // paths empty or "labels": replace all labels; "labels.K": set (or delete when absent)
  // one label. Anything else is EINVAL. Returns the updated info.
  Result<Info> Update(const Info& info, const std::vector<std::string>& paths);
  // Every snapshot of this host (not of other hosts on the store: containerd's garbage
  // collector removes what its database does not know).
  std::vector<Info> Walk();
  // committed: the size of its change against the parent; active: what was written
  // into its file system since Prepare (statfs now minus statfs at Prepare); view: 0.
  Result<Usage> GetUsage(const std::string& key);
  // Removes driver layers no catalog entry names (left by a crash between the two).
  Status Cleanup();

 private:
  SnapshotService(driver::GraphDriver& driver, driver::SnapshotDriver& snapshots, ServiceOptions opts,
                  std::unique_ptr<Catalog> catalog);

  Result<std::vector<Mount>> Create(const std::string& key, const std::string& parent, const Labels& labels,
                                    Kind kind);
  // Locks new name `name` and its committed `parent` in `txn`: EEXIST when the name is
  // taken or being created, ENOENT/EINVAL for a missing or uncommitted parent. Returns the
  // parent's driver layer ("" for none).
  Result<std::string> ReserveName(CatalogTransaction& txn, const std::string& name, const std::string& parent);
  // Prepare with label containerd.io/snapshot.ref=T, T published on the store: commits T
  // here under a new name (EEXIST, which containerd expects). nullopt: prepare normally.
  std::optional<Status> AdoptPublished(const std::string& key, const std::string& parent,
                                       const std::string& parent_layer, const Labels& labels);
  // A new driver image layer on `parent_layer` holding `snapshot` becomes `r.layer`; the
  // transaction removes it if it does not commit.
  Status MakeCommittedLayer(CatalogTransaction& txn, Record& r, const std::string& parent_layer,
                            const std::string& snapshot, std::optional<std::string> parent_chain);
  // The snapshot an extraction snapshot's /.slacker/ref.json names, once the reference
  // verified against the chain id containerd committed the parent as; nullopt when the
  // layer holds no such file (or `active` is not an extraction snapshot).
  Result<std::optional<registry_shim::Reference>> ReferenceOfExtraction(const std::string& key,
                                                                        const Record& active);
  Result<std::string> AcquireView(const std::string& layer);  // "" = the empty directory
  Status ReleaseView(const std::string& layer);
  // Removes a layer a failed call created (logged: the call already reports its error).
  void RollBackLayer(const std::string& layer);
  std::string EmptyDir() const;

  driver::GraphDriver& driver_;
  driver::SnapshotDriver& snapshots_;  // the same driver's snapshot capability
  ServiceOptions opts_;
  // Names, kinds, parents, labels and their per-name locks: catalog.h. No lock of the
  // service is held across a driver call or I/O on the store.
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<LayerMounts> mounts_;
};

}  // namespace slacker::snapshotter
