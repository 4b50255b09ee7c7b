// The start-up read trace of an image snapshot (issue 20, driver/README.md "Start-up
// prefetch"): what a container read from its volume during its first start, as extents
// of the snapshot file, stored beside the snapshot (snapshots/<snap>.trace,
// storage_backend/STORE.md) and replayed by the next cold start of that image on any
// worker. A clone has the snapshot's byte offsets, so the extents hold for every volume
// cloned from it (and for a read-only mount of the snapshot itself).
//
// The file comes from the shared store: untrusted. DecodeTrace validates everything and
// normalises (sorted, merged, non-overlapping); a trace it refuses is ignored by the
// caller (it costs the prefetch, never correctness: a replay only reads).
//
// Format (all integers little-endian), version 1:
//   header, 32 bytes: magic "SLKTRACE" | u32 version = 1 | u32 extent count |
//                     u64 image size (bytes of the snapshot file) | u64 reserved = 0
//   extent, 32 bytes each, `count` of them:
//                     u64 offset (in the snapshot file) | u32 length (> 0) |
//                     u8 kind (0 block, 1 file) | 3 bytes zero |
//                     u32 inode | u32 generation | u64 file offset
//   trailer, 32 bytes: SHA-256 of everything before it
// A block extent is read through the volume's block device (ext4 metadata: inode tables,
// directories, extent trees, bitmaps live in its page cache); inode, generation and file
// offset are 0. A file extent is the data of ext4 inode `inode` (with i_generation
// `generation`) at `file offset`, which ext4 caches per file: it is read through that
// file, opened by handle on the layer's mount.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace slacker::driver {

enum class ExtentKind : uint8_t { kBlock = 0, kFile = 1 };

struct TraceExtent {
  uint64_t offset = 0;  // in the snapshot file
  uint32_t length = 0;
  ExtentKind kind = ExtentKind::kBlock;
  uint32_t inode = 0;       // kFile only
  uint32_t generation = 0;  // kFile only
  uint64_t file_offset = 0;  // kFile only

  bool operator==(const TraceExtent&) const = default;
};

struct Trace {
  uint64_t image_bytes = 0;  // size of the snapshot file the extents lie in
  std::vector<TraceExtent> extents;  // after NormaliseTrace: block extents, then file extents

  uint64_t TotalBytes() const;
};

inline constexpr uint32_t kTraceVersion = 1;
inline constexpr size_t kTraceHeaderBytes = 32, kTraceExtentBytes = 32, kTraceTrailerBytes = 32;
// Caps a recorder keeps and a reader enforces: a trace above them is refused whole.
inline constexpr uint32_t kMaxTraceExtents = 1u << 16;
inline constexpr uint64_t kMaxTraceBytes = 1ull << 30;  // total bytes a replay may read
inline constexpr uint32_t kMaxExtentLength = 64u << 20;
inline constexpr size_t kMaxTraceFileBytes =
    kTraceHeaderBytes + size_t{kMaxTraceExtents} * kTraceExtentBytes + kTraceTrailerBytes;

// The trailer of a trace whose other bytes are `body`: their SHA-256, 32 raw bytes.
std::string TraceChecksum(std::string_view body);

// Sorts, clips to image_bytes, merges touching block extents and drops file extents that
// overlap an earlier one (by snapshot offset, or the same file range); drops empty ones.
// Block extents come first: they are what every path lookup waits on.
void NormaliseTrace(Trace& trace);

// The bytes of `trace` (normalised first). EINVAL when it is over the caps.
Result<std::string> EncodeTrace(Trace trace);

// Parses and validates a trace file for a snapshot of `image_bytes` bytes: magic,
// version, length, checksum, every extent inside the image and of a known kind, the
// caps; then normalises it. EINVAL naming the first problem; never reads out of `bytes`.
Result<Trace> DecodeTrace(std::string_view bytes, uint64_t image_bytes);

}  // namespace slacker::driver
