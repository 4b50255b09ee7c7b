// The local backend: the store is a directory on a mounted file system that this host
// can reflink in (XFS with reflink=1, NFSv4.2 with CLONE, btrfs). Also serves any plain
// directory through the copy fallbacks, slowly.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "os/os.h"
#include "storage_backend/backend.h"

namespace slacker::storage_backend {

// How files are cloned. kAuto: FICLONE; when the file system refuses it (EOPNOTSUPP,
// EXDEV, EINVAL, ENOTTY, ENOSYS) copy_file_range; when that is refused too, a sparse-aware
// copy (SEEK_DATA/SEEK_HOLE: holes stay holes, size preserved). The first refusal is
// remembered for the life of the store, and the path in use is logged once.
// The forced modes let tests exercise each fallback on a reflink-capable store.
enum class CloneMode { kAuto, kForceCopyFileRange, kForceSparseCopy };

// Opens the store at `dir` for host `host_id` (a valid layer name), creating the layout
// (store.json, snapshots/, volumes/<host>/, refs/<host>/, templates/) on first use.
// Deletes nothing and takes no lease (storage_backend/STORE.md): callers that act for
// the host id take its lease (lease.h) first.
// Refuses (EINVAL naming the file) a store.json that is unreadable or of an unknown
// format. All privileged calls (FICLONE, copy_file_range, statfs) go through `os`, which
// must outlive the backend.
// Every path beneath `dir` is resolved from a descriptor of `dir` without following links
// (a link planted in the store is refused with ELOOP, a path outside it with EXDEV).
// Directories are created 0700, files 0600, snapshots 0400; a store from an older release
// (0755/0644/0444) is tightened on open (FindLoosePermissions) unless `tightening` says
// the store's owner did so already.
enum class Tightening {
  kWholeStore,  // walk every entry of the store (a process's first open of it)
  kNone,        // do not walk: slacker-storaged per host after its own open at start, and a
                // worker's view of a rest store (storaged tightens the store it serves).
                // The walk costs a stat per entry: thousands on a busy store, and on an
                // NFS view a round trip each.
};
Result<std::unique_ptr<Backend>> OpenLocalStore(os::Os& os, const std::string& dir, const std::string& host_id,
                                                CloneMode mode = CloneMode::kAuto,
                                                Tightening tightening = Tightening::kWholeStore);

// A directory or regular file of the store open to group or others.
struct LoosePermission {
  std::string path;
  unsigned mode = 0;  // as found
  bool directory = false;
};
// Walks the store at `dir` (links not followed, other file systems not entered) for
// entries with group/other bits. With fix those bits are cleared (0755 -> 0700,
// 0644 -> 0600, 0444 -> 0400). Returns what was found, before fixing, sorted by walk order.
Result<std::vector<LoosePermission>> FindLoosePermissions(const std::string& dir, bool fix);

}  // namespace slacker::storage_backend
