// Applies a standard layer tar onto a full tree, the way overlay2 would present the merged
// view (moby's archive.UnpackLayer semantics), without ever touching anything outside the
// tree.
#pragma once

#include <cstdint>
#include <string>

#include "common/io.h"
#include "common/status.h"
#include "registry_shim/prefixed_source.h"  // callers peek at the first block to route
#include "registry_shim/skeleton.h"

namespace slacker::registry_shim {

struct ApplyStats {
  int64_t size = 0;      // sum of the header sizes of regular-file entries (UnpackLayer's size)
  uint64_t entries = 0;  // tar entries read, extension headers not counted
};

// Applies `tar` (read to its end, trailing bytes included) on top of the tree at root_dir,
// which already holds the full lower tree:
//  - files, dirs (an existing dir is kept and gets the entry's owner, mode, xattrs, mtime),
//    symlinks, hardlinks (target resolved inside the root, may be a lower file), char/block
//    devices and fifos; an existing entry of another type (or any non-dir) is removed first;
//  - whiteouts `.wh.NAME` remove NAME; `.wh..wh..opq` removes every existing child of its
//    directory that this tar has not written; AUFS `.wh..wh.*` metadata is skipped;
//  - owner, then xattrs (PAX SCHILY.xattr.*), then mode (setuid/setgid/sticky survive),
//    then times; directory times last, in reverse order; file holes of >= 4 KiB zeros.
// Safety: nothing is ever resolved on the host. Names are cleaned lexically and an
// absolute name or one whose ".." climbs out is rejected (EINVAL "tar entry ../x escapes
// the layer root"), hardlink targets likewise; every parent is opened with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so a symlink in the tree resolves
// inside it, as in moby's chrooted unpack; a parent component that is a symlink not leading
// to a directory inside the root (dangling, aimed at the host) or another non-directory
// refuses the entry ("parent directory evil is a symlink to ..., which is not a directory
// inside the layer root"), it is neither followed nor replaced. Final components are
// created, changed and removed relative to the parent's fd, never followed: *at calls with
// O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, or the fd of what was just created (fchown, fsetxattr,
// fchmod, futimens). Directory times, set at the end, go only to the directory inode the
// entry made (resolved again inside the root, last component not followed).
// `skeleton` (nullable, REQUIRES: opened) receives the skeleton of the stream; the caller
// Closes it. On error the tree is in an unspecified state: the caller discards it.
Result<ApplyStats> ApplyTar(ByteSource& tar, const std::string& root_dir, SkeletonWriter* skeleton);

}  // namespace slacker::registry_shim
