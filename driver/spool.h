// The spool of an ApplyDiff of a standard tar (the stream read into <state>/spool/ while
// it is hashed: the SHA-256 of the uncompressed stream is the layer's DiffID, which keys
// the cluster's dedup index before anything is unpacked), and the driver's SHA-256
// helpers. Driver-internal.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/fd.h"
#include "common/io.h"
#include "common/status.h"

namespace slacker::driver {

// Reads a whole stream into a file while hashing it (SHA-256: the layer's DiffID). The
// destructor removes the file.
class SpoolFile {
 public:
  ~SpoolFile();
  // Fails with EFBIG, the partial file removed, once the stream exceeds `limit` bytes.
  Status Fill(const std::string& path, ByteSource& src, uint64_t limit);
  const std::string& digest() const { return digest_; }
  uint64_t size() const { return size_; }
  // Reads the spooled bytes from the start.
  Result<size_t> Read(void* buf, size_t n);

 private:
  Status WriteAll(const char* p, size_t n);
  std::string path_;
  UniqueFd fd_;
  std::string digest_;
  uint64_t size_ = 0;
};

class SpoolSource : public ByteSource {
 public:
  explicit SpoolSource(SpoolFile& f) : f_(f) {}
  Result<size_t> Read(void* buf, size_t n) override { return f_.Read(buf, n); }

 private:
  SpoolFile& f_;
};

// "sha256:<hex>" of the stream (a DiffID); of bytes in memory: common/hash.h.
Result<std::string> Sha256Digest(ByteSource& src);
// The dedup index's key of a standard layer: hex sha256(<base snapshot> + " " + <DiffID>).
std::string ChainKey(const std::string& base_snapshot, const std::string& diff_id);

}  // namespace slacker::driver
