// containerd's snapshotter contract (snapshots.Snapshotter, containerd 1.6) on top of a
// GraphDriver (driver/). The gRPC front end (grpc_service.h) only translates messages and
// maps the errno-style codes of these methods to gRPC codes:
//   ENOENT → NOT_FOUND, EEXIST → ALREADY_EXISTS, EINVAL → INVALID_ARGUMENT,
//   EBUSY/ENOTEMPTY → FAILED_PRECONDITION (see grpc_service.cc).
//
// Mapping (snapshotter/README.md):
//   active    = a driver read-write layer (CreateReadWrite + Get: a lazy clone of the
//               parent's snapshot), mounted; Mounts = a bind of its mount directory.
//   committed = a driver image layer holding one snapshot on the shared store (applied
//               from a reference tar: no clone, no copy).
//   view      = a read-only bind of the parent's (shared, refcounted) read-only mount.
// Names are containerd's backend keys ("<namespace>/<seq>/<key>"). The catalog of names
// lives in <state>/catalog.json (atomic replace); the shared store keeps an index of
// committed snapshots by their portable name (StoreIndex) so other hosts can adopt them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "driver/graph_driver.h"
#include "registry_shim/reference.h"
#include "storage_backend/backend.h"

namespace slacker::snapshotter {

using Labels = std::map<std::string, std::string>;

// Values as in containerd's snapshots.proto (Kind enum).
enum class Kind : int { kView = 1, kActive = 2, kCommitted = 3 };
const char* KindName(Kind k);

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
  std::string store_uuid;         // this host's store (reference tars must name it)
  // The keys that sign (the first) and verify reference tars, read when called (they
  // change with `slackerctl key rotate`). Null: no keys (everything unsigned is refused).
  std::function<registry_shim::ReferenceTrust()> trust;
  std::string host_id;
  std::string driver_layers_dir;  // the driver's <state>/layers, for Cleanup ("" = skip)
  std::shared_ptr<StoreIndex> index;  // null: no publishing/adopting across hosts
  // Used bytes and inodes of the file system mounted at a directory (default: statfs).
  // Tests substitute it: a shared /tmp changes under them.
  std::function<Result<Usage>(const std::string& dir)> fs_use;
};

class SnapshotService {
 public:
  // Loads the catalog and re-mounts active snapshots (Get) that are not mounted.
  // REQUIRES: `driver` outlives the service.
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
  // EBUSY (FAILED_PRECONDITION) while the snapshot has children.
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

  struct Entry;  // catalog record (snapshot_service.cc)

 private:
  SnapshotService(driver::GraphDriver& driver, ServiceOptions opts);
  // What a call reserved in the catalog before its slow step (snapshot_service.cc).
  class Reservation;

  Status Load();
  Status Save();  // REQUIRES mu_
  Result<std::vector<Mount>> Create(const std::string& key, const std::string& parent, const Labels& labels,
                                    Kind kind);
  // Puts `e` into the catalog and saves it, in place of `replaced` (which must still be
  // `expected`) when given. Re-checks what the slow step could not hold: the name is free,
  // the parent exists. Nothing changes on an error.
  Status AddToCatalog(const std::shared_ptr<Entry>& e, const std::string& replaced = "",
                      const std::shared_ptr<Entry>& expected = nullptr);
  // Creates driver image layer `id` holding the snapshot a reference tar names.
  Status CommitLayerFromReference(const std::string& id, const std::string& parent_layer,
                                  const std::string& ref_tar);
  registry_shim::ReferenceTrust Trust() const;
  // A reference tar for `snapshot` on top of driver layer `parent_layer`, signed with our
  // key: what the driver verifies when the snapshotter commits a layer it resolved itself.
  Result<std::string> SignedReference(const std::string& parent_layer, const std::string& snapshot, uint64_t bytes);
  // The reference tar an extraction snapshot's /.slacker/ref.json `body` stands for, once
  // it verified against the chain id containerd committed the parent as.
  Result<std::string> ReferenceFromExtraction(const std::string& key, const std::string& parent,
                                              const std::string& parent_layer, const std::string& body);
  // The layer's mount (a driver Get the first time). These take the layer's lock, then mu_
  // for map work only; the driver is called without mu_.
  Result<std::string> EnsureMounted(const std::string& layer);
  Result<std::string> MountLayerLocked(const std::string& layer);  // REQUIRES the layer's lock
  // A view's hold on its parent's read-only mount ("" = the empty directory).
  Result<std::string> AcquireView(const std::string& layer);
  Status ReleaseView(const std::string& layer);
  // Releases our Get of `layer` (if held) and removes it from the driver.
  Status DropLayer(const std::string& layer);
  // Removes a layer a failed call created (logged: the call already reports its error).
  void RollBackLayer(const std::string& layer);
  std::shared_ptr<std::mutex> LayerMutex(const std::string& layer);
  std::string EmptyDir() const;

  driver::GraphDriver& driver_;
  ServiceOptions opts_;
  // Guards the catalog: the members below. Held only for map work and Save (a small
  // host-local file), never across a driver call or I/O on the store, so a slow or stuck
  // call on one snapshot (a frozen file system, a slow store) does not hold up the others.
  // Lock order: a layer's lock, then mu_. (No thread-safety annotation macros exist in
  // common/ yet: these comments are the contract.)
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::map<std::string, std::string> creating_;  // names a call is creating → their parent
  std::set<std::string> busy_;                   // snapshots a Commit is working on
  std::set<std::string> inflight_layers_;        // driver layers created, not yet in the catalog
  std::map<std::string, std::string> mounts_;    // layer → mount dir (while we hold a Get)
  std::map<std::string, int> view_refs_;         // committed layer → views on it
  // Per layer: orders the driver's Get and Put of that layer (views share one mount).
  std::map<std::string, std::shared_ptr<std::mutex>> layer_mu_;
};

}  // namespace slacker::snapshotter
