// Tar skeletons: what must be kept, beside the applied tree, to give back the exact bytes
// of a standard layer tar (Diff of an image layer must match its DiffID). A skeleton holds
// every byte of the stream except regular-file bodies that can be read back from the final
// tree; those are referenced by path. Byte format: registry_shim/FORMAT.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/fd.h"
#include "common/io.h"
#include "common/status.h"

namespace slacker::registry_shim {

inline constexpr uint32_t kSkeletonVersion = 1;

// Writes a skeleton file, record by record, in stream order. Not thread-safe.
class SkeletonWriter {
 public:
  SkeletonWriter();
  ~SkeletonWriter();
  SkeletonWriter(const SkeletonWriter&) = delete;
  SkeletonWriter& operator=(const SkeletonWriter&) = delete;

  // Creates (or truncates) the skeleton file at `path` and writes its header.
  Status Open(const std::string& path);
  // Stream bytes kept in the skeleton itself.
  Status AddRaw(const void* buf, size_t n);
  // A sink for AddRaw (what TarReader forwards: headers, padding, trailer).
  ByteSink* raw_sink();
  // The next `size` stream bytes are the content of the regular file at `path` (clean,
  // relative to the tree root) in the final tree. Returns the body's index.
  // REQUIRES: size > 0.
  Result<uint64_t> AddTreeBody(const std::string& path, uint64_t size);
  // The tree body `index` will not be in the final tree after all: stores it in the skeleton,
  // reading `size` bytes from `fd` (from offset 0). Call at most once per index.
  Status SpillTreeBody(uint64_t index, int fd, uint64_t size);
  // Writes the end record, fsyncs and closes. The file is complete only after this.
  Status Close();

  uint64_t stream_bytes() const { return stream_bytes_; }

 private:
  class RawSink;
  Status FlushRaw();
  Status Put(const void* buf, size_t n);
  Status FlushOut();

  UniqueFd fd_;
  std::string path_;
  std::string raw_;  // raw bytes not yet written as a record
  std::string out_;  // encoded records not yet written to fd_
  uint64_t stream_bytes_ = 0;
  uint64_t bodies_ = 0;
  std::unique_ptr<RawSink> raw_sink_;
};

// Streams the tar a skeleton describes, reading referenced bodies from the tree at
// `root_dir` (beneath it, with openat2 RESOLVE_IN_ROOT). Pull-based, bounded memory (the
// index of spilled bodies aside). Fails up front on a truncated or unknown-version skeleton;
// a Read fails when a referenced file is missing, not regular, or its size differs from the
// recorded one (the tree changed since the layer was applied).
Result<std::unique_ptr<ByteSource>> OpenSkeletonStream(const std::string& skeleton_path,
                                                       const std::string& root_dir);

}  // namespace slacker::registry_shim
