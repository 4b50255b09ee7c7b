#include "registry_shim/tar.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <optional>

namespace slacker::registry_shim {
namespace {

// ustar header field offsets and widths.
constexpr size_t kNameOff = 0, kNameLen = 100;
constexpr size_t kModeOff = 100, kUidOff = 108, kGidOff = 116, kIdLen = 8;
constexpr size_t kSizeOff = 124, kMtimeOff = 136, kNumLen = 12;
constexpr size_t kChksumOff = 148, kChksumLen = 8;
constexpr size_t kTypeOff = 156;
constexpr size_t kLinkOff = 157, kLinkLen = 100;
constexpr size_t kMagicOff = 257, kVersionOff = 263;
constexpr size_t kUnameOff = 265, kGnameOff = 297, kOwnerNameLen = 32;
constexpr size_t kDevMajorOff = 329, kDevMinorOff = 337, kDevLen = 8;
constexpr size_t kPrefixOff = 345, kPrefixLen = 155;
constexpr size_t kGnuAtimeOff = 345;
constexpr size_t kGnuIsExtendedOff = 482;  // old GNU sparse: extension blocks follow
constexpr size_t kGnuSparseExtIsExtendedOff = 504;

constexpr char kPosixMagic[8] = {'u', 's', 't', 'a', 'r', '\0', '0', '0'};
constexpr char kGnuMagic[8] = {'u', 's', 't', 'a', 'r', ' ', ' ', '\0'};

uint64_t PaddingFor(uint64_t size) {
  return (kTarBlockSize - size % kTarBlockSize) % kTarBlockSize;
}

bool IsZeroBlock(const char* block) {
  return std::all_of(block, block + kTarBlockSize, [](char c) { return c == 0; });
}

std::string FieldString(const char* field, size_t len) {
  return std::string(field, strnlen(field, len));
}

// Parses an octal field (space/NUL padded) or a GNU base-256 field (high bit set).
// Negative base-256 values and overflow are errors.
Status ParseNumeric(const char* field, size_t len, std::string_view what, uint64_t* out) {
  const auto* u = reinterpret_cast<const unsigned char*>(field);
  if (u[0] & 0x80) {
    if (u[0] & 0x40) return Errorf(EINVAL, "negative base-256 {} field", what);
    uint64_t v = u[0] & 0x3f;
    for (size_t i = 1; i < len; i++) {
      if (v >> 56) return Errorf(EINVAL, "{} field overflows 64 bits", what);
      v = (v << 8) | u[i];
    }
    *out = v;
    return Status::Ok();
  }
  size_t i = 0;
  while (i < len && (field[i] == ' ' || field[i] == '\0')) i++;
  uint64_t v = 0;
  for (; i < len && field[i] != ' ' && field[i] != '\0'; i++) {
    if (field[i] < '0' || field[i] > '7') {
      return Errorf(EINVAL, "invalid octal {} field {:?}", what, std::string(field, len));
    }
    if (v >> 61) return Errorf(EINVAL, "{} field overflows 64 bits", what);
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  for (; i < len; i++) {
    if (field[i] != ' ' && field[i] != '\0') {
      return Errorf(EINVAL, "invalid octal {} field {:?}", what, std::string(field, len));
    }
  }
  *out = v;
  return Status::Ok();
}

Result<uint64_t> ParseDecimal(std::string_view s, std::string_view what) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return Errorf(EINVAL, "invalid PAX {} value {:?}", what, std::string(s));
  }
  return v;
}

// PAX time: [-]seconds[.fraction].
Status ParsePaxTime(std::string_view s, int64_t* sec, uint32_t* nsec) {
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  std::string_view whole = s.substr(0, s.find('.'));
  std::string_view frac = whole.size() < s.size() ? s.substr(whole.size() + 1) : std::string_view();
  SLACKER_ASSIGN_OR_RETURN(uint64_t secs, ParseDecimal(whole, "time"));
  if (secs > static_cast<uint64_t>(INT64_MAX)) return Errorf(EINVAL, "PAX time {} out of range", s);
  uint32_t ns = 0;
  for (size_t i = 0; i < 9; i++) {
    char c = i < frac.size() ? frac[i] : '0';
    if (c < '0' || c > '9') return Errorf(EINVAL, "invalid PAX time {:?}", std::string(s));
    ns = ns * 10 + static_cast<uint32_t>(c - '0');
  }
  *sec = static_cast<int64_t>(secs);
  *nsec = ns;
  if (negative && ns != 0) {  // -1.25 is 1.25 s before the epoch: sec -2, nsec .75
    *sec = -*sec - 1;
    *nsec = 1000000000u - ns;
  } else if (negative) {
    *sec = -*sec;
  }
  return Status::Ok();
}

// Applies PAX extended header records (already validated framing) to `entry`.
Status ApplyPaxRecords(std::string_view data, TarEntry* entry) {
  while (!data.empty()) {
    size_t space = data.find(' ');
    if (space == std::string_view::npos) return Errorf(EINVAL, "malformed PAX record (no length)");
    SLACKER_ASSIGN_OR_RETURN(uint64_t len, ParseDecimal(data.substr(0, space), "record length"));
    if (len <= space + 1 || len > data.size() || data[len - 1] != '\n') {
      return Errorf(EINVAL, "malformed PAX record (length {})", len);
    }
    std::string_view kv = data.substr(space + 1, len - space - 2);
    data.remove_prefix(len);
    size_t eq = kv.find('=');
    if (eq == 0 || eq == std::string_view::npos)
      return Errorf(EINVAL, "malformed PAX record (no key)");
    std::string_view key = kv.substr(0, eq);
    std::string_view value = kv.substr(eq + 1);
    constexpr std::string_view kXattr = "SCHILY.xattr.";
    if (key == "path") {
      entry->name = value;
    } else if (key == "linkpath") {
      entry->linkname = value;
    } else if (key == "size") {
      SLACKER_ASSIGN_OR_RETURN(entry->size, ParseDecimal(value, "size"));
    } else if (key == "uid") {
      SLACKER_ASSIGN_OR_RETURN(entry->uid, ParseDecimal(value, "uid"));
    } else if (key == "gid") {
      SLACKER_ASSIGN_OR_RETURN(entry->gid, ParseDecimal(value, "gid"));
    } else if (key == "uname") {
      entry->uname = value;
    } else if (key == "gname") {
      entry->gname = value;
    } else if (key == "mtime") {
      SLACKER_RETURN_IF_ERROR(ParsePaxTime(value, &entry->mtime_sec, &entry->mtime_nsec));
    } else if (key == "atime") {
      SLACKER_RETURN_IF_ERROR(ParsePaxTime(value, &entry->atime_sec, &entry->atime_nsec));
      entry->has_atime = true;
    } else if (key.starts_with(kXattr) && key.size() > kXattr.size()) {
      entry->xattrs.emplace_back(std::string(key.substr(kXattr.size())), std::string(value));
    } else if (key.starts_with("GNU.sparse.")) {
      entry->sparse = true;
      if (key == "GNU.sparse.name") entry->name = value;
    }
  }
  return Status::Ok();
}

void PutField(std::string& block, size_t off, size_t len, std::string_view value) {
  if (!value.empty()) std::memcpy(block.data() + off, value.data(), std::min(len, value.size()));
}

// width-1 octal digits and a NUL. False when `v` does not fit.
bool PutOctal(std::string& block, size_t off, size_t width, uint64_t v) {
  std::string digits = fmt::format("{:0{}o}", v, width - 1);
  if (digits.size() > width - 1) return false;
  PutField(block, off, width, digits);
  block[off + width - 1] = '\0';
  return true;
}

void PutChecksum(std::string& block) {
  std::memset(block.data() + kChksumOff, ' ', kChksumLen);
  uint64_t sum = 0;
  for (unsigned char c : block) sum += c;
  PutField(block, kChksumOff, kChksumLen, fmt::format("{:06o}", sum));
  block[kChksumOff + 6] = '\0';
  block[kChksumOff + 7] = ' ';
}

bool FitsOctal(uint64_t v, size_t width) {
  return width - 1 >= 22 || v < (uint64_t{1} << (3 * (width - 1)));
}

// Where to split a name longer than 100 bytes into ustar prefix (<= 155) and name
// (<= 100, non-empty) at a '/'; npos when it cannot be split.
size_t UstarNameSplit(std::string_view name) {
  size_t split = std::string_view::npos;
  for (size_t i = name.size() - 1; i > 0; i--) {
    if (name[i] != '/') continue;
    if (name.size() - i - 1 > kNameLen) break;
    if (i <= kPrefixLen && i + 1 < name.size()) split = i;
  }
  return split;
}

// Encodes a header block; GNU format puts the whole name in `name` (no prefix split).
Result<std::string> EncodeHeader(const TarEntry& e, bool gnu) {
  std::string block(kTarBlockSize, '\0');
  std::string_view name = e.name;
  std::string_view prefix;
  if (name.size() > kNameLen) {
    size_t split = gnu ? std::string_view::npos : UstarNameSplit(name);
    if (split == std::string_view::npos) {
      return Errorf(EOVERFLOW, "tar entry {}: name does not fit a {} header", e.name,
                    gnu ? "GNU" : "ustar");
    }
    prefix = name.substr(0, split);
    name = name.substr(split + 1);
  }
  if (e.linkname.size() > kLinkLen || e.uname.size() > kOwnerNameLen ||
      e.gname.size() > kOwnerNameLen) {
    return Errorf(EOVERFLOW, "tar entry {}: link target or owner name does not fit a ustar header",
                  e.name);
  }
  if (e.mtime_sec < 0) return Errorf(EOVERFLOW, "tar entry {}: negative mtime", e.name);
  PutField(block, kNameOff, kNameLen, name);
  bool fits = PutOctal(block, kModeOff, kIdLen, e.mode & 07777) &&
              PutOctal(block, kUidOff, kIdLen, e.uid) && PutOctal(block, kGidOff, kIdLen, e.gid) &&
              PutOctal(block, kSizeOff, kNumLen, e.size) &&
              PutOctal(block, kMtimeOff, kNumLen, static_cast<uint64_t>(e.mtime_sec)) &&
              PutOctal(block, kDevMajorOff, kDevLen, e.devmajor) &&
              PutOctal(block, kDevMinorOff, kDevLen, e.devminor);
  if (!fits)
    return Errorf(EOVERFLOW, "tar entry {}: numeric field does not fit a ustar header", e.name);
  block[kTypeOff] = e.typeflag;
  PutField(block, kLinkOff, kLinkLen, e.linkname);
  std::memcpy(block.data() + kMagicOff, gnu ? kGnuMagic : kPosixMagic, 8);
  PutField(block, kUnameOff, kOwnerNameLen, e.uname);
  PutField(block, kGnameOff, kOwnerNameLen, e.gname);
  PutField(block, kPrefixOff, kPrefixLen, prefix);
  PutChecksum(block);
  return block;
}

std::string PaxRecord(std::string_view key, std::string_view value) {
  size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return fmt::format("{} {}={}\n", len, key, value);
}

std::string BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

Status ParseTarHeaderBlock(const char* b, TarEntry* e) {
  uint64_t stored = 0;
  if (!ParseNumeric(b + kChksumOff, kChksumLen, "checksum", &stored).ok()) {
    return Errorf(EINVAL, "bad header checksum field {:?}: not a tar stream or corrupt",
                  std::string(b + kChksumOff, kChksumLen));
  }
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kTarBlockSize; i++) {
    bool in_chksum = i >= kChksumOff && i < kChksumOff + kChksumLen;
    unsigned_sum += in_chksum ? ' ' : static_cast<unsigned char>(b[i]);
    signed_sum += in_chksum ? ' ' : static_cast<signed char>(b[i]);
  }
  if (stored != unsigned_sum && static_cast<int64_t>(stored) != signed_sum) {
    return Errorf(EINVAL,
                  "bad header checksum (stored {:o}, computed {:o}): not a tar stream or corrupt",
                  stored, unsigned_sum);
  }
  bool posix = std::memcmp(b + kMagicOff, kPosixMagic, 6) == 0;
  bool gnu = std::memcmp(b + kMagicOff, kGnuMagic, 8) == 0;
  *e = TarEntry{};
  e->typeflag = b[kTypeOff];
  e->name = FieldString(b + kNameOff, kNameLen);
  if (posix) {
    std::string prefix = FieldString(b + kPrefixOff, kPrefixLen);
    if (!prefix.empty()) e->name = prefix + "/" + e->name;
  }
  e->linkname = FieldString(b + kLinkOff, kLinkLen);
  uint64_t mode = 0, mtime = 0;
  SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kModeOff, kIdLen, "mode", &mode));
  SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kUidOff, kIdLen, "uid", &e->uid));
  SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kGidOff, kIdLen, "gid", &e->gid));
  SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kSizeOff, kNumLen, "size", &e->size));
  SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kMtimeOff, kNumLen, "mtime", &mtime));
  e->mode = static_cast<uint32_t>(mode & 07777);
  if (mtime > static_cast<uint64_t>(INT64_MAX)) return Errorf(EINVAL, "mtime out of range");
  e->mtime_sec = static_cast<int64_t>(mtime);
  if (posix || gnu) {
    e->uname = FieldString(b + kUnameOff, kOwnerNameLen);
    e->gname = FieldString(b + kGnameOff, kOwnerNameLen);
    uint64_t major = 0, minor = 0;
    if (e->typeflag == kTarCharDevice || e->typeflag == kTarBlockDevice) {
      SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kDevMajorOff, kDevLen, "devmajor", &major));
      SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kDevMinorOff, kDevLen, "devminor", &minor));
      if (major > UINT32_MAX || minor > UINT32_MAX)
        return Errorf(EINVAL, "device number out of range");
    }
    e->devmajor = static_cast<uint32_t>(major);
    e->devminor = static_cast<uint32_t>(minor);
  }
  if (gnu && b[kGnuAtimeOff] != 0) {
    uint64_t atime = 0;
    SLACKER_RETURN_IF_ERROR(ParseNumeric(b + kGnuAtimeOff, kNumLen, "atime", &atime));
    if (atime <= static_cast<uint64_t>(INT64_MAX)) {
      e->has_atime = true;
      e->atime_sec = static_cast<int64_t>(atime);
    }
  }
  if (e->typeflag == kTarGnuSparse) e->sparse = true;
  return Status::Ok();
}

Result<std::string> EncodeUstarHeader(const TarEntry& entry) { return EncodeHeader(entry, false); }

Status TarReader::Forward(const void* buf, size_t n) {
  return raw_ != nullptr && n > 0 ? raw_->Write(buf, n) : Status::Ok();
}

Status TarReader::ReadRaw(void* buf, size_t n, std::string_view what) {
  Status s = ReadFull(src_, buf, n);
  if (!s.ok()) {
    return Errorf(s.code() == EIO ? EINVAL : s.code(), "truncated tar stream: {} at offset {}: {}",
                  what, offset_, s.message());
  }
  offset_ += n;
  return Forward(buf, n);
}

Status TarReader::ReadBlock(char* block, bool* eof, std::string_view what) {
  size_t got = 0;
  *eof = false;
  while (got < kTarBlockSize) {
    SLACKER_ASSIGN_OR_RETURN(size_t n, src_.Read(block + got, kTarBlockSize - got));
    if (n == 0) break;
    got += n;
  }
  offset_ += got;
  if (got == 0) {
    *eof = true;
    return Status::Ok();
  }
  SLACKER_RETURN_IF_ERROR(Forward(block, got));
  if (got < kTarBlockSize) {
    return Errorf(EINVAL, "truncated tar stream: {} at offset {} has only {} of 512 bytes", what,
                  offset_ - got, got);
  }
  return Status::Ok();
}

Status TarReader::SkipRest() {
  char buf[16384];
  while (body_left_ + padding_left_ > 0) {
    bool in_body = body_left_ > 0;
    uint64_t& left = in_body ? body_left_ : padding_left_;
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof buf));
    SLACKER_RETURN_IF_ERROR(
        ReadRaw(buf, n, fmt::format("{} of entry {}", in_body ? "body" : "padding", last_name_)));
    left -= n;
  }
  return Status::Ok();
}

Status TarReader::ReadExtension(const char* block, uint64_t size, std::string* out,
                                std::string* raw_header) {
  if (size > kMaxTarExtendedHeaderSize) {
    return Errorf(EINVAL, "tar extension header '{}' at offset {} is {} bytes (limit {})",
                  block[kTypeOff], offset_ - kTarBlockSize, size, kMaxTarExtendedHeaderSize);
  }
  std::string data(size + PaddingFor(size), '\0');
  SLACKER_RETURN_IF_ERROR(
      ReadRaw(data.data(), data.size(), fmt::format("extension header '{}'", block[kTypeOff])));
  raw_header->append(data);
  data.resize(size);
  *out = std::move(data);
  return Status::Ok();
}

Result<bool> TarReader::Next(TarEntry* entry) {
  SLACKER_RETURN_IF_ERROR(SkipRest());
  if (ended_) return false;
  std::string raw_header;
  std::string pax;  // concatenated records of every 'x' header before this entry
  std::optional<std::string> long_name, long_link;
  char block[kTarBlockSize];
  for (;;) {
    bool eof = false;
    SLACKER_RETURN_IF_ERROR(ReadBlock(block, &eof, "header block"));
    if (eof || IsZeroBlock(block)) {
      if (!raw_header.empty()) {
        return Errorf(
            EINVAL,
            "truncated tar stream: extension headers at offset {} are not followed by an entry",
            offset_);
      }
      ended_ = true;
      if (eof) return false;
      SLACKER_RETURN_IF_ERROR(ReadBlock(block, &eof, "end-of-archive block"));
      if (eof || IsZeroBlock(block)) return false;
      return Errorf(EINVAL,
                    "invalid tar stream: a zero block at offset {} is followed by a non-zero block",
                    offset_ - 2 * kTarBlockSize);
    }
    raw_header.append(block, kTarBlockSize);
    TarEntry hdr;
    Status parsed = ParseTarHeaderBlock(block, &hdr);
    if (!parsed.ok()) {
      return parsed.Context(fmt::format("tar header at offset {} (after entry {:?})",
                                        offset_ - kTarBlockSize, last_name_));
    }
    if (hdr.size > kMaxTarEntrySize) {
      return Errorf(EINVAL, "tar entry {}: size {} exceeds the {} byte limit", hdr.name, hdr.size,
                    kMaxTarEntrySize);
    }
    std::string data;
    switch (hdr.typeflag) {
      case kTarPaxHeader:
        SLACKER_RETURN_IF_ERROR(ReadExtension(block, hdr.size, &data, &raw_header));
        pax += data;
        continue;
      case kTarPaxGlobal:  // global defaults: ignored, as dockerd does
        SLACKER_RETURN_IF_ERROR(ReadExtension(block, hdr.size, &data, &raw_header));
        continue;
      case kTarGnuLongName:
      case kTarGnuLongLink:
        SLACKER_RETURN_IF_ERROR(ReadExtension(block, hdr.size, &data, &raw_header));
        data.resize(strnlen(data.data(), data.size()));
        (hdr.typeflag == kTarGnuLongName ? long_name : long_link) = std::move(data);
        continue;
      default:
        break;
    }
    if (hdr.typeflag == kTarGnuSparse && block[kGnuIsExtendedOff] != 0) {
      // Old GNU sparse: extension blocks of sparse map entries follow the header.
      char ext[kTarBlockSize];
      do {
        SLACKER_RETURN_IF_ERROR(ReadRaw(ext, sizeof ext, "GNU sparse extension block"));
        raw_header.append(ext, sizeof ext);
        if (raw_header.size() > kMaxTarExtendedHeaderSize) {
          return Errorf(EINVAL, "tar entry {}: GNU sparse map exceeds {} bytes", hdr.name,
                        kMaxTarExtendedHeaderSize);
        }
      } while (ext[kGnuSparseExtIsExtendedOff] != 0);
    }
    if (long_name) hdr.name = *long_name;
    if (long_link) hdr.linkname = *long_link;
    Status ps = ApplyPaxRecords(pax, &hdr);
    if (!ps.ok()) return ps.Context(fmt::format("tar entry {}", hdr.name));
    if (hdr.size > kMaxTarEntrySize) {
      return Errorf(EINVAL, "tar entry {}: size {} exceeds the {} byte limit", hdr.name, hdr.size,
                    kMaxTarEntrySize);
    }
    // As Go's archive/tar: a pre-POSIX regular file named "dir/" is a directory, and these
    // types never carry a body, whatever their size field says.
    if (hdr.typeflag == kTarRegularOld && hdr.name.ends_with('/')) hdr.typeflag = kTarDirectory;
    switch (hdr.typeflag) {
      case kTarHardlink:
      case kTarSymlink:
      case kTarCharDevice:
      case kTarBlockDevice:
      case kTarDirectory:
      case kTarFifo:
        hdr.size = 0;
        break;
      default:
        break;
    }
    hdr.raw_header = std::move(raw_header);
    body_left_ = hdr.size;
    padding_left_ = PaddingFor(hdr.size);
    last_name_ = hdr.name;
    *entry = std::move(hdr);
    return true;
  }
}

Result<size_t> TarReader::ReadBody(void* buf, size_t n) {
  size_t want = static_cast<size_t>(std::min<uint64_t>(n, body_left_));
  if (want == 0) return size_t{0};
  SLACKER_ASSIGN_OR_RETURN(size_t got, src_.Read(buf, want));
  if (got == 0) {
    return Errorf(EINVAL, "truncated tar stream: body of entry {} ends {} bytes early at offset {}",
                  last_name_, body_left_, offset_);
  }
  body_left_ -= got;
  offset_ += got;
  return got;
}

Result<uint64_t> TarReader::Drain() {
  uint64_t total = 0;
  char buf[16384];
  for (;;) {
    SLACKER_ASSIGN_OR_RETURN(size_t n, src_.Read(buf, sizeof buf));
    if (n == 0) return total;
    offset_ += n;
    total += n;
    SLACKER_RETURN_IF_ERROR(Forward(buf, n));
  }
}

Status TarWriter::Write(std::string_view bytes) {
  SLACKER_RETURN_IF_ERROR(out_.Write(bytes.data(), bytes.size()));
  written_ += bytes.size();
  return Status::Ok();
}

Status TarWriter::WritePadded(std::string_view bytes) {
  SLACKER_RETURN_IF_ERROR(Write(bytes));
  return Write(std::string(PaddingFor(bytes.size()), '\0'));
}

Status TarWriter::Add(const TarEntry& entry, std::string_view body) {
  TarEntry e = entry;
  e.size = body.size();
  if (!e.IsRegular() && !body.empty()) {
    return Errorf(EINVAL, "tar entry {}: only regular files carry a body", e.name);
  }
  bool gnu = long_names_ == LongNames::kGnu;
  std::string pax;
  auto ext_header = [&](char type, std::string_view name, std::string_view data) -> Status {
    TarEntry h;
    h.name = name.substr(0, kNameLen);
    h.typeflag = type;
    h.size = data.size();
    SLACKER_ASSIGN_OR_RETURN(std::string block, EncodeHeader(h, gnu));
    SLACKER_RETURN_IF_ERROR(Write(block));
    return WritePadded(data);
  };
  if (gnu) {
    if (e.name.size() > kNameLen) {
      SLACKER_RETURN_IF_ERROR(ext_header(kTarGnuLongName, "././@LongLink", e.name + '\0'));
      e.name.resize(kNameLen);
    }
    if (e.linkname.size() > kLinkLen) {
      SLACKER_RETURN_IF_ERROR(ext_header(kTarGnuLongLink, "././@LongLink", e.linkname + '\0'));
      e.linkname.resize(kLinkLen);
    }
  }
  // Whatever still does not fit ustar goes to a PAX header, in a fixed key order.
  if (!gnu && e.name.size() > kNameLen && UstarNameSplit(e.name) == std::string_view::npos) {
    pax += PaxRecord("path", e.name);
    e.name = e.name.substr(0, kNameLen);
  }
  if (e.linkname.size() > kLinkLen) {
    pax += PaxRecord("linkpath", e.linkname);
    e.linkname.resize(kLinkLen);
  }
  if (!FitsOctal(e.size, kNumLen)) {
    pax += PaxRecord("size", std::to_string(e.size));
  }
  if (!FitsOctal(e.uid, kIdLen)) {
    pax += PaxRecord("uid", std::to_string(e.uid));
    e.uid = 0;
  }
  if (!FitsOctal(e.gid, kIdLen)) {
    pax += PaxRecord("gid", std::to_string(e.gid));
    e.gid = 0;
  }
  if (e.uname.size() > kOwnerNameLen) {
    pax += PaxRecord("uname", e.uname);
    e.uname.clear();
  }
  if (e.gname.size() > kOwnerNameLen) {
    pax += PaxRecord("gname", e.gname);
    e.gname.clear();
  }
  if (e.mtime_sec < 0 || e.mtime_nsec != 0 ||
      !FitsOctal(static_cast<uint64_t>(e.mtime_sec), kNumLen)) {
    pax += e.mtime_nsec != 0 && e.mtime_sec >= 0
               ? PaxRecord("mtime", fmt::format("{}.{:09}", e.mtime_sec, e.mtime_nsec))
               : PaxRecord("mtime", std::to_string(e.mtime_sec));
    if (e.mtime_sec < 0 || !FitsOctal(static_cast<uint64_t>(e.mtime_sec), kNumLen)) e.mtime_sec = 0;
  }
  for (const auto& [key, value] : e.xattrs) pax += PaxRecord("SCHILY.xattr." + key, value);
  if (!pax.empty()) {
    if (pax.size() > kMaxTarExtendedHeaderSize) {
      return Errorf(EOVERFLOW, "tar entry {}: PAX header exceeds {} bytes", entry.name,
                    kMaxTarExtendedHeaderSize);
    }
    SLACKER_RETURN_IF_ERROR(ext_header(kTarPaxHeader, "PaxHeaders/" + BaseName(entry.name), pax));
  }
  uint64_t size = e.size;
  if (!FitsOctal(size, kNumLen)) e.size = 0;  // carried by the PAX record
  SLACKER_ASSIGN_OR_RETURN(std::string block, EncodeHeader(e, gnu));
  SLACKER_RETURN_IF_ERROR(Write(block));
  return WritePadded(body);
}

Status TarWriter::Finish(size_t record_size) {
  SLACKER_RETURN_IF_ERROR(Write(std::string(2 * kTarBlockSize, '\0')));
  if (record_size > 0 && written_ % record_size != 0) {
    SLACKER_RETURN_IF_ERROR(Write(std::string(record_size - written_ % record_size, '\0')));
  }
  return Status::Ok();
}

}  // namespace slacker::registry_shim
