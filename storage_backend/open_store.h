// Opening the shared store in any of its forms (DESIGN.md §3, §7), for every program that
// uses one: slackerd, slacker-snapshotter and slackerctl.
//   ""                  the embedded store: <state>/store.img, XFS with reflink, mounted at
//                       <state>/store (loopdev/embedded_store.h)
//   DIR                 a mounted directory (a reflink XFS, a kernel NFSv4.2 mount)
//   nfs://HOST/EXPORT   the export's files through this host's kernel NFS mount of it, or
//                       a slacker-nfs-fuse bridge (nfs_view.h); clones are copies
//   http[s]://HOST:PORT a snapshot service (slacker-storaged): snapshot and clone are calls
//                       to it, the files are reached through the NFS export it advertises
// This is a composition above storage_backend/ and loopdev/ (its own CMake target,
// slacker_store_open), so the backends themselves stay free of loop devices and FUSE.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "os/os.h"
#include "storage_backend/backend.h"
#include "storage_backend/nfs_view.h"

namespace slacker::storage_backend {

// Default initializers let callers name only the fields they set.
struct StoreSpec {
  std::string store = {};       // "", DIR, nfs://HOST/EXPORT, http[s]://HOST:PORT
  std::string state = {};       // host-local: the embedded store, the NFS bridge's mount
  std::string host_id = {};
  std::string token_file = {};  // snapshot service bearer token (http[s]:// only)
  std::string ca_file = {};     // CA for https://
  std::string nfs_bridge = {};  // slacker-nfs-fuse binary; "" finds it (BridgePath)
  // Opening an existing store only: a DIR without store.json is ENOENT (a mistyped path
  // must not become a new store), and "" needs the embedded store mounted already (EINVAL
  // otherwise; it is never created).
  bool must_exist = false;
};

// Members are destroyed in reverse order: the backend before the NFS view it reads through.
struct OpenedStore {
  std::unique_ptr<NfsView> nfs_view;  // set for nfs:// and http[s]://
  std::unique_ptr<Backend> backend;
  std::string description;  // the store as logged at start
};

// Opens the store `spec.store` names. For nfs:// and http[s]:// without a kernel NFS
// mount of the export, starts a bridge mounted at <spec.state>/nfs. Deletes nothing on
// the store and takes no lease (cmd/daemon.h takes the host id's lease after this): a
// tool may open the store of a running daemon's host id without disturbing its files.
Result<OpenedStore> OpenStore(os::Os& os, const StoreSpec& spec);

// The slacker-nfs-fuse binary: `flag`, else beside this binary (installed), else the
// build tree's nfs_bridge/, else PATH.
std::string BridgePath(const std::string& flag);

}  // namespace slacker::storage_backend
