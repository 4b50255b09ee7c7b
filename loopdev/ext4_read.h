// Reading one small file out of an ext4 image file with libext2fs, without mounting it:
// for content that is not trusted (a layer's tree), where opening the file through a
// mount could block on a FIFO, follow a symlink out of the tree, or read without end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace slacker::loopdev {

// The content of the regular file at `path` (relative to the root, '/'-separated, no "."
// or ".." components) in the ext4 file system in `image_path`, opened read-only.
// Never follows a symbolic link (a link at any component is EINVAL, as is a FIFO, device,
// socket or directory at the end), never reads more than `max_bytes` (a larger file is
// EFBIG). ENOENT when a component does not exist. The image must not be written during
// the call (a mounted file system: frozen, so its journal is checkpointed).
Result<std::string> ReadExt4RegularFile(const std::string& image_path, std::string_view path,
                                        uint64_t max_bytes);

// Whether the ext4 image in `image_path` has committed journal transactions that are not
// yet written to their home blocks (the superblock's needs_recovery feature, set while a
// file system is mounted read-write and cleared by a clean unmount or a freeze). Such an
// image must be mounted read-write (which replays the journal) before a read that does
// not replay it: libext2fs, or a `ro,noload` mount of a snapshot. EINVAL: not ext4.
Result<bool> Ext4NeedsRecovery(const std::string& image_path);

}  // namespace slacker::loopdev
