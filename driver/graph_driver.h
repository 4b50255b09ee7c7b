// The graphdriver contract that front ends (plugin/, a future containerd snapshotter)
// call. Methods mirror moby's graphdriver.Driver (daemon/graphdriver/driver.go) and the
// wire protocol in PROTOCOL.md. All methods are thread-safe; calls on different layers
// run concurrently. Errors carry an errno-style code: ENOENT (no such layer), EEXIST,
// EINVAL (bad argument), EBUSY (in use), ENOSPC, EIO, ...
#pragma once

#include <cstdint>
#include <map>
#include <memory>
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

}  // namespace slacker::driver
