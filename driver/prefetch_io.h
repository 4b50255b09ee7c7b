// The kernel side of start-up prefetch (driver/README.md "Start-up prefetch"): what a
// mounted container volume has in its page caches, as a trace in snapshot offsets
// (RecordResidency), and reading one traced extent back into those caches (ReplayExtent).
//
// Where ext4 keeps what it read, and so where a replay must put it: metadata (inode
// tables, directories, extent blocks, bitmaps) in the page cache of the block device
// (the loop device), file data in each file's own page cache. The layer's volume file
// has no page cache of its own on the NFS path (the loop device and the FUSE bridge both
// use direct I/O), so reading the volume file would fetch bytes and keep none of them.
//
// Both work on descriptors pinned when the mount was made: `root_fd` the mount's root
// directory (O_RDONLY: open_by_handle_at refuses an O_PATH one), `loop_fd` its loop
// device (O_RDONLY). Neither ever writes: reads only fill caches, so a wrong trace costs
// reads, never content.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

#include "common/status.h"
#include "driver/prefetch_trace.h"

namespace slacker::driver {

struct RecordLimits {
  uint32_t max_extents = kMaxTraceExtents;
  uint64_t max_bytes = 512ull << 20;
  // Resident runs this close (in bytes) are read as one: a small gap costs less than a
  // request more.
  uint64_t merge_gap = 64 << 10;
};

// The pages of the file system at `root_fd` (on the block device `loop_fd`) that are
// cached now: block extents from the device's page cache (cachestat(2): Linux >= 6.5),
// file extents from the page cache of every regular file (walked without following links or leaving the mount;
// mincore, no read) mapped to the volume's offsets with FIEMAP. Files changed at or after
// `changed_since` (written by the container) are left out: their blocks are not the
// snapshot's. Extents beyond `image_bytes` are dropped. Stops early at the limits, and
// when `cancel` is set (then ECANCELED).
Result<Trace> RecordResidency(int root_fd, int loop_fd, uint64_t image_bytes, timespec changed_since,
                              const RecordLimits& limits, const std::atomic<bool>& cancel);

// Bytes of the first `bytes` of `fd` that are in the page cache (mincore: nothing is read).
Result<uint64_t> ResidentBytes(int fd, uint64_t bytes);

// Reads `e` into the cache ext4 uses for it: a block extent from `loop_fd` (buffered), a
// file extent from the file the handle (inode, generation) names on the mount at
// `root_fd` (not a regular file, or another inode: skipped). Reads at most 1 MiB at a
// time and stops between reads when `cancel` is set. Returns the bytes read.
Result<uint64_t> ReplayExtent(int root_fd, int loop_fd, const TraceExtent& e, const std::atomic<bool>& cancel);

}  // namespace slacker::driver
