// The graphdriver contract that front ends (plugin/, a future containerd snapshotter)
// call. Methods mirror moby's graphdriver.Driver (daemon/graphdriver/driver.go) and the
// wire protocol in PROTOCOL.md. All methods are thread-safe; calls on different layers
// run concurrently. Errors carry an errno-style code: ENOENT (no such layer), EEXIST,
// EINVAL (bad argument), EBUSY (in use), ENOSPC, EIO, ...
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/io.h"
#include "common/status.h"

namespace slacker::driver {

struct CreateRequest {
  std::string id;
  std::string parent;  // "" for a base layer
  std::string mount_label;
  std::map<std::string, std::string> storage_opt;  // e.g. {"size": "50M"}
};

enum class ChangeKind : int { kModify = 0, kAdd = 1, kDelete = 2 };

struct Change {
  std::string path;  // absolute inside the layer, e.g. "/etc/hosts"
  ChangeKind kind;
  bool operator==(const Change&) const = default;
};

struct Capabilities {
  bool reproduces_exact_diffs = true;
};

// A Diff in progress: the plugin streams Read() to the client, then destroys it, which
// releases whatever the driver held (mounts, locks).
using DiffStream = std::unique_ptr<ByteSource>;

// The longest layer id a driver accepts. dockerd's are at most 69 characters (64 hex
// digits and "-init"); the id names files (`layers/<id>.json.tmp-<pid>`, staging files
// with the host id), which must stay under the 255-byte file name limit.
inline constexpr size_t kMaxLayerIdLength = 128;

class GraphDriver {
 public:
  virtual ~GraphDriver() = default;

  // Called once per dockerd start (and again after Cleanup, with a new home). `home` is
  // the daemon's directory for this driver; `options` are --storage-opt values.
  virtual Status Init(const std::string& home, const std::vector<std::string>& options) = 0;
  virtual Capabilities GetCapabilities() = 0;
  // Rows for `docker info`.
  virtual std::vector<std::pair<std::string, std::string>> StatusRows() = 0;
  // Rows for `docker inspect` GraphDriver.Data. ENOENT for an unknown layer.
  virtual Result<std::map<std::string, std::string>> GetMetadata(const std::string& id) = 0;
  // Image layer (Create) and container layer (CreateReadWrite). Record metadata only.
  virtual Status Create(const CreateRequest& req) = 0;
  virtual Status CreateReadWrite(const CreateRequest& req) = 0;
  virtual Status Remove(const std::string& id) = 0;
  // Mounts (refcounted) and returns the absolute path of the layer's root.
  virtual Result<std::string> Get(const std::string& id, const std::string& mount_label) = 0;
  virtual Status Put(const std::string& id) = 0;
  virtual bool Exists(const std::string& id) = 0;
  // The layer as a tar stream (see DESIGN.md §4: a reference tar for a written layer, the
  // exact applied bytes for an applied one). Errors before the first byte are returned here.
  virtual Result<DiffStream> Diff(const std::string& id, const std::string& parent) = 0;
  virtual Result<std::vector<Change>> Changes(const std::string& id, const std::string& parent) = 0;
  // Applies an uncompressed tar (standard or reference) read from `tar` to layer `id`.
  // Returns the size dockerd records for the layer.
  virtual Result<int64_t> ApplyDiff(const std::string& id, const std::string& parent,
                                    ByteSource& tar) = 0;
  virtual Result<int64_t> DiffSize(const std::string& id, const std::string& parent) = 0;
  // dockerd is stopping: unmount what is not in use by anyone.
  virtual Status Cleanup() = 0;
  // Optional: the chain id reference tars made on top of layer `id` are bound to
  // (registry_shim/FORMAT.md): an image layer's chain of DiffIDs; a read-write layer's
  // nearest image ancestor's; "" for the empty file system. ENOTSUP if not supported.
  virtual Result<std::string> ChainId(const std::string& id) {
    return Errorf(ENOTSUP, "chain id of layer {}: not supported by this driver", id);
  }
  // Optional: the content of /.slacker/ref.json in layer `id`'s own tree (where a
  // containerd differ unpacked a reference tar), read from the layer's image file, never
  // by opening a path in a mounted tree: ENOENT when there is none; EINVAL when it is not a
  // regular file or a link is on its path (nothing is followed); EFBIG above
  // registry_shim::kMaxReferenceBody bytes. ENOTSUP if not supported.
  virtual Result<std::string> ReadReferenceFile(const std::string& id) {
    return Errorf(ENOTSUP, "read the reference file of layer {}: not supported by this driver", id);
  }
  // Optional: (name, value) samples for the plugin's metrics endpoint, each a valid
  // Prometheus metric name given once. Must not wait on a layer's long operation: the
  // endpoint calls it on every scrape.
  virtual std::vector<std::pair<std::string, double>> Metrics() { return {}; }
};

// What CommitSnapshot made of a layer.
struct CommittedSnapshot {
  std::string snapshot;      // snapshot id on the driver's store
  uint64_t bytes = 0;        // size of the layer's change against its parent
  // The chain id the snapshot's content sits on (the layer's nearest image ancestor's;
  // "" for the empty file system): what CreateFromSnapshot checks the new layer's
  // parent against.
  std::string parent_chain;
  bool operator==(const CommittedSnapshot&) const = default;
};

// CreateFromSnapshot's request: image layer `id` (made by Create, nothing applied yet)
// holds `snapshot`.
struct SnapshotLayerRequest {
  std::string id;
  std::string snapshot;  // on the driver's own store
  uint64_t bytes = 0;    // its change against the parent: the layer's size (DiffSize)
  // The chain id the snapshot was made on top of (CommittedSnapshot::parent_chain);
  // checked against the layer's parent as a reference's parent binding is: EACCES when
  // they differ. nullopt: the caller vouches for the binding (it verified a foreign
  // reference against its own name of the parent, or found the snapshot published under
  // the name of the tree it continues).
  std::optional<std::string> parent_chain;
};

// One layer as ListLayers reports it.
struct LayerSnapshot {
  std::string id;
  std::string parent;
  bool read_write = false;
  std::string snapshot;  // its last snapshot, "" if none (a fresh layer, one only written)
  bool operator==(const LayerSnapshot&) const = default;
};

// Optional capability (moby's way: a separate interface, found with dynamic_cast):
// snapshot-level operations for an in-process front end (the containerd snapshotter),
// which commits and creates layers by snapshot id instead of producing a reference tar
// with Diff and feeding it to ApplyDiff. The caller is trusted: nothing here is signed or
// parsed; reference tars (their encoding, signing and verifying) stay between Diff,
// ApplyDiff and registry_shim/. Thread-safe as GraphDriver.
class SnapshotDriver {
 public:
  virtual ~SnapshotDriver() = default;
  // Commits layer `id`'s content to a snapshot on the store, as Diff does for a written
  // layer: everything written before the call is in the snapshot (a mounted file system
  // is frozen around it, the volume file fsynced), and the last snapshot is returned
  // again when nothing was written since (snapshot caching). A layer without a volume
  // returns the snapshot it holds (applied or created from one). ENOENT: no such layer;
  // EINVAL: the layer has no content of its own (never written, nothing applied).
  virtual Result<CommittedSnapshot> CommitSnapshot(const std::string& id) = 0;
  // Image layer req.id holds req.snapshot without cloning or copying anything (what
  // ApplyDiff of a reference tar records, and Diff then returns a reference tar to it).
  // ENOENT: no such layer, or the snapshot is not on this store (deleted by gc?); EBUSY:
  // the layer is mounted; EACCES: req.parent_chain is not the layer's parent's chain id.
  // Returns the layer's size (req.bytes).
  virtual Result<int64_t> CreateFromSnapshot(const SnapshotLayerRequest& req) = 0;
  // Every layer with its snapshot, sorted by id.
  virtual Result<std::vector<LayerSnapshot>> ListLayers() = 0;
};

}  // namespace slacker::driver
