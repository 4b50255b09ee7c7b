// Folding a layer's overlay upper directory into its volume's root (driver/README.md
// "Shared page cache"). A read-write layer in overlay form keeps, in its volume:
//
//   /                       the tree of the snapshot it was cloned from (never written)
//   /.slacker-overlay/upper what the layer wrote, in overlayfs's format: whiteouts are
//                           character devices 0/0, a directory whose lower is hidden
//                           carries trusted.overlay.opaque="y"
//   /.slacker-overlay/work  overlayfs's work directory
//
// The layer's content is the overlay of the upper on that snapshot. Folding makes a
// volume whose root is that content: every upper entry replaces (or, for a directory
// over a directory, merges into) the root's, whiteouts delete, opaque directories replace
// whole, overlayfs's own xattrs (trusted.overlay.*) are dropped, and .slacker-overlay is
// removed. The driver folds only a private clone (never a volume a container uses), so a
// crash midway loses nothing: the clone is discarded.
//
// The upper was written by a container: every step acts on directory descriptors, opens
// with O_NOFOLLOW, never follows a link and never leaves the volume's file system.
#pragma once

#include <string>

#include "common/status.h"

namespace slacker::driver {

inline constexpr const char* kOverlayDirName = ".slacker-overlay";
inline constexpr const char* kOverlayUpperName = "upper";
inline constexpr const char* kOverlayWorkName = "work";
// Deeper upper trees are refused (EINVAL): the fold recurses once per level.
inline constexpr int kMaxFoldDepth = 1024;

// `root_fd`: the volume's root directory (mounted read-write). No .slacker-overlay: OK,
// nothing to fold.
Status FoldOverlay(int root_fd);

// What the layer wrote, as overlay2 counts a layer's size (its upper directory): the
// sizes of the upper's files and links, each inode once, whiteouts and directories not
// counted. `root_fd` as for FoldOverlay; 0 when there is no upper.
Result<int64_t> UpperBytes(int root_fd);

}  // namespace slacker::driver
