// ext4 layer file systems: formatting an image file with libext2fs (no mkfs process),
// growing a mounted one online, and shrinking an unmounted one for a per-container quota.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "os/os.h"

namespace slacker::loopdev {

struct Ext4FormatOptions {
  uint32_t bytes_per_inode = 16384;  // container images are many small files
  bool journal = true;               // lazily initialised; skipped if the fs is too small
};

// Creates (or truncates to zero, then extends) `image_path` as a sparse file of
// `size_bytes` and writes an empty ext4 into it: 4 KiB blocks; features as mke2fs's ext4
// defaults (has_journal, ext_attr, resize_inode, dir_index, filetype, extent, flex_bg,
// 64bit, sparse_super, large_file, huge_file, dir_nlink, extra_isize, metadata_csum);
// 256-byte inodes; no reserved blocks; root directory 0:0 mode 0755; a random UUID.
// Reserved GDT blocks (resize_inode) cover 16x growth, not mke2fs's 1024x: writing those
// blocks was 90% of the format time; beyond 16x resize2fs/the kernel still grow, slower.
//
// Nothing is zeroed: the file was just truncated, so every inode table and journal block
// reads back as zeros (a hole). The groups are therefore flagged ITABLE_ZEROED (as
// mke2fs -E assume_storage_prezeroed=1 does) and the journal is created with
// EXT2_MKJOURNAL_LAZYINIT: the kernel's lazyinit thread has nothing to do after mount and
// the image stays sparse (about 240 KiB allocated for 10 GiB).
//
// Deliberately NO lost+found: a layer's tree is what Docker diffs, and an extra directory
// would show up in every Changes/Diff. e2fsck creates lost+found when it needs one.
//
// REQUIRES: size_bytes >= 16 MiB. The caller publishes the file (rename) when this returns OK.
Status FormatExt4(const std::string& image_path, uint64_t size_bytes,
                  const Ext4FormatOptions& options = Ext4FormatOptions());

// Grows the ext4 mounted at `mountpoint`, backed by `image_file` through a loop device, to
// `new_size_bytes`: extends the file (sparse), then EXT4_IOC_RESIZE_FS. The loop device
// must see the new size; the Os seam has no LOOP_SET_CAPACITY yet, so when the device is
// still smaller this fails with ENOTSUP (the driver instead extends the file before it
// attaches, and grows right after mounting). Shrinking is refused (EINVAL).
Status GrowExt4(os::Os& os, const std::string& mountpoint, const std::string& image_file,
                uint64_t new_size_bytes);

// Resizes the unmounted ext4 in `image_file` to `new_size_bytes` (rounded down to 4 KiB)
// with `resize2fs -f FILE <N>K` as a child process, extending the file first when
// growing and truncating it after a successful shrink. ENOSPC-like failures (the tree
// does not fit) come back as EIO carrying resize2fs's message.
Status ResizeExt4Offline(const std::string& image_file, uint64_t new_size_bytes);

}  // namespace slacker::loopdev
