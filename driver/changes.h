// Filesystem changes between two full trees, reported the way moby's
// pkg/archive/changes.go (ChangesDirs) reports them, so `docker diff` and DiffSize on
// slacker match overlay2 / the naive diff driver:
//  - a path only in `new_root`: Add (and every path below it);
//  - only in `old_root`: Delete (once, not its children);
//  - in both: Modify when mode, uid, gid or rdev differ, or (non-directories) mtime or
//    size differ, or the security.capability xattr differs;
//  - a directory with changes below it that is not itself reported gets a Modify.
// A top-level `lost+found` is never reported. Output is sorted by path.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "driver/graph_driver.h"

namespace slacker::driver {

// `old_root` may be "" (everything is added).
Result<std::vector<Change>> ComputeChanges(const std::string& new_root, const std::string& old_root);

// moby's archive.ChangesSize: bytes of added/modified non-directories in `new_root`
// (hard-linked inodes counted once).
int64_t ChangesSize(const std::string& new_root, const std::vector<Change>& changes);

}  // namespace slacker::driver
