// Streaming tar codec: a reader for the formats docker layers come in (ustar, GNU,
// PAX) that accounts for every byte of the stream, and a small deterministic writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/io.h"
#include "common/status.h"

namespace slacker::registry_shim {

inline constexpr size_t kTarBlockSize = 512;
// Header size fields above this are rejected as corrupt or hostile.
inline constexpr uint64_t kMaxTarEntrySize = uint64_t{64} << 30;
// PAX extended headers and GNU long names/links above this are rejected.
inline constexpr uint64_t kMaxTarExtendedHeaderSize = uint64_t{1} << 20;

// Typeflags (POSIX ustar plus the GNU and PAX extensions the reader understands).
inline constexpr char kTarRegular = '0';
inline constexpr char kTarRegularOld = '\0';  // pre-POSIX regular file
inline constexpr char kTarHardlink = '1';
inline constexpr char kTarSymlink = '2';
inline constexpr char kTarCharDevice = '3';
inline constexpr char kTarBlockDevice = '4';
inline constexpr char kTarDirectory = '5';
inline constexpr char kTarFifo = '6';
inline constexpr char kTarContiguous = '7';  // treated as a regular file
inline constexpr char kTarPaxHeader = 'x';
inline constexpr char kTarPaxGlobal = 'g';
inline constexpr char kTarGnuLongName = 'L';
inline constexpr char kTarGnuLongLink = 'K';
inline constexpr char kTarGnuSparse = 'S';

// One archive member, with PAX and GNU long-name extensions already folded in.
struct TarEntry {
  std::string name;      // as stored (not cleaned); PAX `path` / GNU 'L' override ustar name
  std::string linkname;  // hardlink or symlink target; PAX `linkpath` / GNU 'K'
  char typeflag = kTarRegular;
  uint32_t mode = 0644;  // permission, setuid, setgid and sticky bits (07777)
  uint64_t uid = 0;
  uint64_t gid = 0;
  std::string uname;
  std::string gname;
  uint64_t size = 0;  // bytes of body that follow the header in the stream
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  bool has_atime = false;  // atime from PAX `atime` or the GNU header
  int64_t atime_sec = 0;
  uint32_t atime_nsec = 0;
  uint32_t devmajor = 0;
  uint32_t devminor = 0;
  // PAX SCHILY.xattr.<name>=<value> records, in stream order (values are binary).
  std::vector<std::pair<std::string, std::string>> xattrs;
  // GNU sparse ('S', or PAX GNU.sparse.*): the body is a sparse map plus data, not the
  // file's content.
  bool sparse = false;
  // Exact bytes of this entry's header: every extension header (with its body and
  // padding) and the final 512-byte block, as read from the stream. Empty when writing.
  std::string raw_header;

  bool IsRegular() const {
    return typeflag == kTarRegular || typeflag == kTarRegularOld || typeflag == kTarContiguous;
  }
};

// Reads a tar stream entry by entry. Every byte consumed from `src` that is not handed out
// by ReadBody is forwarded to `raw` (when set), in stream order: headers, unread body bytes,
// body padding, the end-of-archive blocks and, after Drain, whatever follows them. The
// concatenation of `raw` and ReadBody output is therefore exactly the input stream.
//
// Like Go's archive/tar (which dockerd uses): the archive ends at two zero blocks, at a
// single zero block followed by end of stream, or at end of stream on a block boundary.
class TarReader {
 public:
  explicit TarReader(ByteSource& src, ByteSink* raw = nullptr) : src_(src), raw_(raw) {}

  // Advances to the next entry, forwarding what is left of the previous body and its padding
  // to `raw`. Returns false at the end of the archive. Errors (EINVAL/EIO) name the entry:
  // bad checksum, truncated stream, size field > kMaxTarEntrySize, extension header >
  // kMaxTarExtendedHeaderSize, malformed PAX record or numeric field.
  Result<bool> Next(TarEntry* entry);
  // Reads up to n bytes of the current entry's body; 0 at its end.
  Result<size_t> ReadBody(void* buf, size_t n);
  // REQUIRES: Next returned false. Reads the source to its end, forwarding to `raw`;
  // returns the number of bytes that followed the end-of-archive marker.
  Result<uint64_t> Drain();
  // Bytes consumed from the source so far.
  uint64_t offset() const { return offset_; }

 private:
  // Reads one block; *eof is set (and OK returned) when the stream ends before any byte.
  Status ReadBlock(char* block, bool* eof, std::string_view what);
  Status ReadRaw(void* buf, size_t n, std::string_view what);
  Status Forward(const void* buf, size_t n);
  Status SkipRest();
  Status ReadExtension(const char* block, uint64_t size, std::string* out, std::string* raw_header);

  ByteSource& src_;
  ByteSink* raw_;
  uint64_t offset_ = 0;
  uint64_t body_left_ = 0;
  uint64_t padding_left_ = 0;
  std::string last_name_;  // for error messages
  bool ended_ = false;
};

// Parses one 512-byte header block (no extension handling) into `entry`, verifying the
// checksum (unsigned, or signed as some old tars compute it).
Status ParseTarHeaderBlock(const char* block, TarEntry* entry);

// Encodes one ustar header block for `entry` (checksum filled, magic "ustar\0" "00", names
// split into prefix/name when needed). EOVERFLOW when a field does not fit ustar.
Result<std::string> EncodeUstarHeader(const TarEntry& entry);

// Deterministic tar writer: the same calls always give the same bytes. Fields that do
// not fit ustar, and xattrs, go into a PAX 'x' header named "PaxHeaders/<base name>";
// with LongNames::kGnu, long names and link targets use GNU 'L'/'K' headers instead.
class TarWriter {
 public:
  enum class LongNames { kPax, kGnu };
  explicit TarWriter(ByteSink& out, LongNames long_names = LongNames::kPax)
      : out_(out), long_names_(long_names) {}

  // Writes `entry` (entry.size is ignored and taken from `body`) and its padding.
  Status Add(const TarEntry& entry, std::string_view body = {});
  // Writes the two zero blocks; then, when record_size > 0, zero pads the archive to a
  // multiple of record_size (GNU tar uses 10240).
  Status Finish(size_t record_size = 0);
  uint64_t bytes_written() const { return written_; }

 private:
  Status Write(std::string_view bytes);
  Status WritePadded(std::string_view bytes);
  ByteSink& out_;
  LongNames long_names_;
  uint64_t written_ = 0;
};

}  // namespace slacker::registry_shim
