#include "registry_shim/skeleton.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "registry_shim/in_root.h"

namespace slacker::registry_shim {
namespace {

constexpr char kMagic[8] = {'S', 'L', 'K', 'S', 'K', 'E', 'L', '\n'};
constexpr char kEndMagic[8] = {'S', 'K', 'E', 'L', 'E', 'N', 'D', '\n'};
constexpr size_t kHeaderSize = 16;
constexpr char kRecRaw = 'R', kRecTree = 'F', kRecSpill = 'S', kRecEnd = 'E';
constexpr size_t kFlushAt = 1 << 20;
constexpr size_t kMaxPath = 1 << 20;

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

Status WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::FromErrno(errno, "write skeleton " + path);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// Reads exactly n bytes at off; a short read is a truncated file.
Status PreadFull(int fd, void* buf, size_t n, uint64_t off, std::string_view what) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno(errno, fmt::format("read {}", what));
    if (r == 0) return Errorf(EIO, "{} is truncated at offset {}", what, off);
    p += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

}  // namespace

class SkeletonWriter::RawSink : public ByteSink {
 public:
  explicit RawSink(SkeletonWriter* w) : w_(w) {}
  Status Write(const void* buf, size_t n) override { return w_->AddRaw(buf, n); }

 private:
  SkeletonWriter* w_;
};

SkeletonWriter::SkeletonWriter() : raw_sink_(std::make_unique<RawSink>(this)) {}
SkeletonWriter::~SkeletonWriter() = default;
ByteSink* SkeletonWriter::raw_sink() { return raw_sink_.get(); }

Status SkeletonWriter::Open(const std::string& path) {
  path_ = path;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "create skeleton " + path);
  fd_.Reset(fd);
  raw_.clear();
  out_.assign(kMagic, sizeof kMagic);
  PutU32(out_, kSkeletonVersion);
  PutU32(out_, 0);  // flags, reserved
  stream_bytes_ = 0;
  bodies_ = 0;
  return Status::Ok();
}

Status SkeletonWriter::FlushOut() {
  if (!fd_.valid()) return Errorf(EBADF, "skeleton {:?} is not open", path_);
  SLACKER_RETURN_IF_ERROR(WriteAll(fd_.get(), out_.data(), out_.size(), path_));
  out_.clear();
  return Status::Ok();
}

Status SkeletonWriter::Put(const void* buf, size_t n) {
  out_.append(static_cast<const char*>(buf), n);
  return out_.size() >= kFlushAt ? FlushOut() : Status::Ok();
}

Status SkeletonWriter::FlushRaw() {
  if (raw_.empty()) return Status::Ok();
  std::string rec(1, kRecRaw);
  PutU64(rec, raw_.size());
  SLACKER_RETURN_IF_ERROR(Put(rec.data(), rec.size()));
  SLACKER_RETURN_IF_ERROR(Put(raw_.data(), raw_.size()));
  raw_.clear();
  return Status::Ok();
}

Status SkeletonWriter::AddRaw(const void* buf, size_t n) {
  raw_.append(static_cast<const char*>(buf), n);
  stream_bytes_ += n;
  return raw_.size() >= kFlushAt ? FlushRaw() : Status::Ok();
}

Result<uint64_t> SkeletonWriter::AddTreeBody(const std::string& path, uint64_t size) {
  if (path.empty() || path.size() > kMaxPath)
    return Errorf(EINVAL, "skeleton: invalid body path {:?}", path);
  SLACKER_RETURN_IF_ERROR(FlushRaw());
  std::string rec(1, kRecTree);
  PutU64(rec, bodies_);
  PutU64(rec, size);
  PutU32(rec, static_cast<uint32_t>(path.size()));
  rec += path;
  SLACKER_RETURN_IF_ERROR(Put(rec.data(), rec.size()));
  stream_bytes_ += size;
  return bodies_++;
}

Status SkeletonWriter::SpillTreeBody(uint64_t index, int fd, uint64_t size) {
  if (index >= bodies_) return Errorf(EINVAL, "skeleton: spill of unknown body {}", index);
  SLACKER_RETURN_IF_ERROR(FlushRaw());
  std::string rec(1, kRecSpill);
  PutU64(rec, index);
  PutU64(rec, size);
  SLACKER_RETURN_IF_ERROR(Put(rec.data(), rec.size()));
  SLACKER_RETURN_IF_ERROR(FlushOut());
  std::string buf(std::min<uint64_t>(size, kFlushAt), '\0');
  uint64_t off = 0;
  while (off < size) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    SLACKER_RETURN_IF_ERROR(PreadFull(fd, buf.data(), n, off,
                                      fmt::format("body {} being kept in the skeleton", index)));
    SLACKER_RETURN_IF_ERROR(WriteAll(fd_.get(), buf.data(), n, path_));
    off += n;
  }
  return Status::Ok();
}

Status SkeletonWriter::Close() {
  SLACKER_RETURN_IF_ERROR(FlushRaw());
  std::string rec(1, kRecEnd);
  PutU64(rec, stream_bytes_);
  PutU64(rec, bodies_);
  rec.append(kEndMagic, sizeof kEndMagic);
  SLACKER_RETURN_IF_ERROR(Put(rec.data(), rec.size()));
  SLACKER_RETURN_IF_ERROR(FlushOut());
  if (::fsync(fd_.get()) != 0) return Status::FromErrno(errno, "fsync skeleton " + path_);
  int fd = fd_.Release();
  if (::close(fd) != 0) return Status::FromErrno(errno, "close skeleton " + path_);
  return Status::Ok();
}

namespace {

class SkeletonSource : public ByteSource {
 public:
  SkeletonSource(std::string skel_path, std::string root_dir)
      : skel_path_(std::move(skel_path)), root_dir_(std::move(root_dir)) {}

  Status Open() {
    int fd = ::open(skel_path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "open skeleton " + skel_path_);
    skel_.Reset(fd);
    int root = ::open(root_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return Status::FromErrno(errno, "open layer tree " + root_dir_);
    root_.Reset(root);
    struct stat st;
    if (::fstat(skel_.get(), &st) != 0)
      return Status::FromErrno(errno, "stat skeleton " + skel_path_);
    file_size_ = static_cast<uint64_t>(st.st_size);
    char head[kHeaderSize];
    SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), head, sizeof head, 0, What()));
    if (std::memcmp(head, kMagic, sizeof kMagic) != 0)
      return Errorf(EINVAL, "{} is not a skeleton file", What());
    uint32_t version = GetU32(head + 8);
    if (version != kSkeletonVersion) {
      return Errorf(EINVAL, "{} has version {}, this build reads version {}", What(), version,
                    kSkeletonVersion);
    }
    return Scan();
  }

  Result<size_t> Read(void* buf, size_t n) override {
    while (state_ == State::kRecord) SLACKER_RETURN_IF_ERROR(NextRecord());
    if (state_ == State::kDone || n == 0) return size_t{0};
    size_t want = static_cast<size_t>(std::min<uint64_t>(n, left_));
    if (state_ == State::kSkel) {
      SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), buf, want, skel_off_, What()));
      skel_off_ += want;
    } else {
      ssize_t r;
      do {
        r = ::read(body_.get(), buf, want);
      } while (r < 0 && errno == EINTR);
      if (r < 0)
        return Status::FromErrno(errno,
                                 fmt::format("read {} in layer tree {}", body_path_, root_dir_));
      if (r == 0) {
        return Errorf(EIO,
                      "file {} in layer tree {} shrank while streaming its tar (the tree changed)",
                      body_path_, root_dir_);
      }
      want = static_cast<size_t>(r);
    }
    left_ -= want;
    produced_ += want;
    if (left_ == 0) {
      body_.Reset();
      state_ = State::kRecord;
    }
    return want;
  }

 private:
  enum class State { kRecord, kSkel, kTree, kDone };

  std::string What() const { return "skeleton " + skel_path_; }

  // Walks the records once: checks framing and the end record, and indexes spilled bodies.
  Status Scan() {
    uint64_t off = kHeaderSize;
    for (;;) {
      char rec[21];
      SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 1, off, What()));
      switch (rec[0]) {
        case kRecRaw:
          SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 9, off, What()));
          off += 9 + GetU64(rec + 1);
          break;
        case kRecTree:
          SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 21, off, What()));
          off += 21 + GetU32(rec + 17);
          break;
        case kRecSpill:
          SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 17, off, What()));
          spilled_[GetU64(rec + 1)] = {off + 17, GetU64(rec + 9)};
          off += 17 + GetU64(rec + 9);
          break;
        case kRecEnd: {
          char end[25];
          SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), end, sizeof end, off, What()));
          if (std::memcmp(end + 17, kEndMagic, sizeof kEndMagic) != 0 ||
              off + sizeof end != file_size_) {
            return Errorf(EINVAL, "{} is corrupt: bad end record at offset {}", What(), off);
          }
          total_ = GetU64(end + 1);
          return Status::Ok();
        }
        default:
          return Errorf(EINVAL, "{} is corrupt: unknown record type {:#x} at offset {}", What(),
                        static_cast<unsigned char>(rec[0]), off);
      }
      if (off > file_size_)
        return Errorf(EIO, "{} is truncated (record runs past the end)", What());
    }
  }

  Status NextRecord() {
    char rec[21];
    SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 1, cursor_, What()));
    switch (rec[0]) {
      case kRecRaw:
        SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 9, cursor_, What()));
        left_ = GetU64(rec + 1);
        skel_off_ = cursor_ + 9;
        cursor_ = skel_off_ + left_;
        state_ = left_ > 0 ? State::kSkel : State::kRecord;
        return Status::Ok();
      case kRecSpill:
        SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 17, cursor_, What()));
        cursor_ += 17 + GetU64(rec + 9);
        return Status::Ok();
      case kRecEnd:
        if (produced_ != total_) {
          return Errorf(EIO, "{}: produced {} bytes, the skeleton recorded {}", What(), produced_,
                        total_);
        }
        state_ = State::kDone;
        return Status::Ok();
      case kRecTree:
        break;
      default:
        return Errorf(EINVAL, "{} is corrupt at offset {}", What(), cursor_);
    }
    SLACKER_RETURN_IF_ERROR(PreadFull(skel_.get(), rec, 21, cursor_, What()));
    uint64_t index = GetU64(rec + 1);
    uint64_t size = GetU64(rec + 9);
    uint32_t path_len = GetU32(rec + 17);
    if (path_len > kMaxPath)
      return Errorf(EINVAL, "{} is corrupt: path of {} bytes", What(), path_len);
    body_path_.assign(path_len, '\0');
    SLACKER_RETURN_IF_ERROR(
        PreadFull(skel_.get(), body_path_.data(), path_len, cursor_ + 21, What()));
    cursor_ += 21 + path_len;
    left_ = size;
    if (size == 0) return Status::Ok();
    if (auto it = spilled_.find(index); it != spilled_.end()) {
      if (it->second.second != size)
        return Errorf(EINVAL, "{} is corrupt: body {} size mismatch", What(), index);
      skel_off_ = it->second.first;
      state_ = State::kSkel;
      return Status::Ok();
    }
    SLACKER_RETURN_IF_ERROR(OpenTreeBody(size));
    state_ = State::kTree;
    return Status::Ok();
  }

  Status OpenTreeBody(uint64_t size) {
    // O_PATH first: only a regular file is ever opened for reading (no device or fifo opens).
    auto probe = OpenInRoot(root_.get(), body_path_, O_PATH | O_NOFOLLOW);
    if (!probe.ok()) {
      return probe.status().Context(fmt::format(
          "rebuild layer tar from {} and tree {} (the tree changed?)", skel_path_, root_dir_));
    }
    struct stat st;
    if (::fstat(probe->get(), &st) != 0) return Status::FromErrno(errno, "stat " + body_path_);
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != size) {
      return Errorf(EIO,
                    "rebuild layer tar from {}: {} in tree {} is {} of {} bytes, the layer was "
                    "applied with a "
                    "regular file of {} bytes (the tree changed since ApplyDiff)",
                    skel_path_, body_path_, root_dir_,
                    S_ISREG(st.st_mode) ? "a regular file" : "not a regular file", st.st_size,
                    size);
    }
    SLACKER_ASSIGN_OR_RETURN(body_,
                             OpenInRoot(root_.get(), body_path_, O_RDONLY | O_NOFOLLOW | O_NOCTTY));
    struct stat st2;
    if (::fstat(body_.get(), &st2) != 0) return Status::FromErrno(errno, "stat " + body_path_);
    if (st2.st_ino != st.st_ino || st2.st_dev != st.st_dev) {
      return Errorf(EIO, "{} in tree {} changed while it was opened", body_path_, root_dir_);
    }
    return Status::Ok();
  }

  std::string skel_path_, root_dir_;
  UniqueFd skel_, root_, body_;
  uint64_t file_size_ = 0;
  uint64_t total_ = 0;
  uint64_t cursor_ = kHeaderSize;
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> spilled_;  // index → (offset, size)
  State state_ = State::kRecord;
  uint64_t left_ = 0;
  uint64_t skel_off_ = 0;
  uint64_t produced_ = 0;
  std::string body_path_;
};

}  // namespace

Result<std::unique_ptr<ByteSource>> OpenSkeletonStream(const std::string& skeleton_path,
                                                       const std::string& root_dir) {
  auto src = std::make_unique<SkeletonSource>(skeleton_path, root_dir);
  SLACKER_RETURN_IF_ERROR(src->Open());
  return std::unique_ptr<ByteSource>(std::move(src));
}

}  // namespace slacker::registry_shim
