// The embedded default store (DESIGN.md §2): when slackerd runs without --store, the
// shared store is a sparse file <state>/store.img formatted XFS with reflink=1 and
// loop-mounted at <state>/store. It lives in loopdev because it is a loop mount; the
// storage backend only ever sees the mounted directory.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "os/os.h"

namespace slacker::loopdev {

inline constexpr uint64_t kDefaultEmbeddedStoreBytes = 64ull << 30;

// Returns "<state_dir>/store", mounted from "<state_dir>/store.img":
// - already mounted from that image (per mountinfo and the loop's backing file): reused;
// - mounted from anything else: EBUSY naming what is mounted there;
// - otherwise the image is created if missing (sparse `size_bytes`, `mkfs.xfs -q
//   -m reflink=1 -s size=4096`, published by rename so a crash never leaves a half-made
//   image), attached with autoclear and mounted (xfs, noatime).
// The image persists across restarts; size_bytes only matters when it is created.
Result<std::string> EnsureEmbeddedStore(os::Os& os, const std::string& state_dir,
                                        uint64_t size_bytes = kDefaultEmbeddedStoreBytes);

// Creates a sparse XFS image with reflink at `image_path` (the file must not exist):
// writes `image_path`.tmp, formats it, renames. Also used by tests for scratch stores.
Status CreateXfsImage(const std::string& image_path, uint64_t size_bytes);

}  // namespace slacker::loopdev
