#include "driver/prefetch_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"

namespace slacker::driver {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kReadChunk = 1 << 20;
constexpr int kFileIdIno32Gen = 1;  // FILEID_INO32_GEN: ext4's handle {u32 inode, u32 generation}
constexpr uint32_t kMaxFiemapExtents = 512;
constexpr uint32_t kSkipExtentFlags = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED |
                                      FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_DATA_INLINE |
                                      FIEMAP_EXTENT_NOT_ALIGNED;

// A run of resident pages: [begin, end) in bytes.
struct PageRun {
  uint64_t begin, end;
};

// Resident runs of the first `bytes` of `fd` (mmap + mincore: nothing is read), runs
// closer than `gap` merged.
Result<std::vector<PageRun>> ResidentRuns(int fd, uint64_t bytes, uint64_t gap) {
  std::vector<PageRun> runs;
  if (bytes == 0) return runs;
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return Status::FromErrno(errno, "mmap for mincore");
  std::unique_ptr<void, std::function<void(void*)>> unmap(map, [bytes](void* p) { ::munmap(p, bytes); });
  constexpr uint64_t kWindowPages = 1 << 18;  // 1 GiB of pages per mincore call
  std::vector<unsigned char> vec(kWindowPages);
  uint64_t pages = (bytes + kPage - 1) / kPage;
  for (uint64_t first = 0; first < pages; first += kWindowPages) {
    uint64_t n = std::min(kWindowPages, pages - first);
    if (::mincore(static_cast<char*>(map) + first * kPage, n * kPage, vec.data()) != 0)
      return Status::FromErrno(errno, "mincore");
    for (uint64_t i = 0; i < n; ++i) {
      if (!(vec[i] & 1)) continue;
      uint64_t at = (first + i) * kPage;
      if (!runs.empty() && at <= runs.back().end + gap) {
        runs.back().end = at + kPage;
      } else {
        runs.push_back({at, at + kPage});
      }
    }
  }
  for (auto& r : runs) r.end = std::min(r.end, bytes);
  return runs;
}

// Linux 6.5's cachestat(2) (no glibc wrapper in Debian 12). Unlike mincore it counts the
// pages ext4 reads as buffers (sb_bread: the buffer is uptodate, its page is not), which
// is how all of ext4's metadata sits in the block device's cache.
constexpr long kSysCachestat = 451;
struct CachestatRange {
  uint64_t off, len;
};
struct Cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

Result<uint64_t> CachedPages(int fd, uint64_t off, uint64_t len) {
  CachestatRange range{off, len};
  Cachestat cs{};
  if (::syscall(kSysCachestat, fd, &range, &cs, 0) != 0) return Status::FromErrno(errno, "cachestat");
  return cs.nr_cache;
}

// Cached runs of [off, off + len) of `fd`, found by halving into 16 parts down to pages
// where cachestat counts any (a sparse cache costs few calls).
Status CachedRunsIn(int fd, uint64_t off, uint64_t len, uint64_t gap, std::vector<PageRun>& runs) {
  SLACKER_ASSIGN_OR_RETURN(uint64_t n, CachedPages(fd, off, len));
  if (n == 0) return Status::Ok();
  if (len <= kPage) {
    if (!runs.empty() && off <= runs.back().end + gap) {
      runs.back().end = off + len;
    } else {
      runs.push_back({off, off + len});
    }
    return Status::Ok();
  }
  uint64_t part = std::max(kPage, (len / 16 + kPage - 1) / kPage * kPage);
  for (uint64_t at = off; at < off + len; at += part)
    SLACKER_RETURN_IF_ERROR(CachedRunsIn(fd, at, std::min(part, off + len - at), gap, runs));
  return Status::Ok();
}

class Recorder {
 public:
  Recorder(int loop_fd, uint64_t image_bytes, timespec since, const RecordLimits& limits, const std::atomic<bool>& cancel)
      : loop_fd_(loop_fd), image_bytes_(image_bytes), since_(since), limits_(limits), cancel_(cancel) {}

  Result<Trace> Run(int root_fd) {
    trace_.image_bytes = image_bytes_;
    std::vector<PageRun> blocks;
    SLACKER_RETURN_IF_ERROR(CachedRunsIn(loop_fd_, 0, image_bytes_, limits_.merge_gap, blocks));
    for (const auto& r : blocks) {
      for (uint64_t at = r.begin; at < r.end && !Full(); at += kMaxExtentLength)
        Add({.offset = at, .length = static_cast<uint32_t>(std::min<uint64_t>(kMaxExtentLength, r.end - at))});
    }
    struct stat root;
    if (::fstat(root_fd, &root) != 0) return Status::FromErrno(errno, "stat the mount's root");
    dev_ = root.st_dev;
    UniqueFd dir(::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid()) return Status::FromErrno(errno, "open the mount's root");
    SLACKER_RETURN_IF_ERROR(Walk(std::move(dir), 0));
    if (cancel_.load()) return Errorf(ECANCELED, "recording cancelled");
    return std::move(trace_);
  }

 private:
  bool ChangedSince(const timespec& t) const {
    return t.tv_sec != since_.tv_sec ? t.tv_sec > since_.tv_sec : t.tv_nsec >= since_.tv_nsec;
  }
  bool Full() const { return trace_.extents.size() >= limits_.max_extents || bytes_ >= limits_.max_bytes; }

  void Add(const TraceExtent& e) {
    if (e.offset >= image_bytes_ || Full()) return;
    trace_.extents.push_back(e);
    bytes_ += e.length;
  }

  Status Walk(UniqueFd dir, int depth) {
    if (depth > 64) return Status::Ok();
    DIR* d = ::fdopendir(dir.Release());
    if (d == nullptr) return Status::FromErrno(errno, "fdopendir");
    std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
    while (dirent* ent = ::readdir(d)) {
      if (cancel_.load() || Full()) return Status::Ok();
      std::string name = ent->d_name;
      if (name == "." || name == "..") continue;
      if (ent->d_type == DT_DIR) {
        UniqueFd sub(::openat(::dirfd(d), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat st;
        if (sub.valid() && ::fstat(sub.get(), &st) == 0 && st.st_dev == dev_)
          SLACKER_RETURN_IF_ERROR(Walk(std::move(sub), depth + 1));
      } else if (ent->d_type == DT_REG) {
        File(::dirfd(d), name);
      }
    }
    return Status::Ok();
  }

  // One regular file's resident pages, as file extents. Errors skip the file: a trace
  // missing a file costs time, nothing else.
  void File(int dir_fd, const std::string& name) {
    // O_PATH first, then reopen: a name a running container swapped for a device or a
    // FIFO since readdir is never opened for reading.
    UniqueFd path(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!path.valid() || ::fstat(path.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_dev != dev_ || ChangedSince(st.st_ctim))
      return;
    std::string proc = "/proc/self/fd/" + std::to_string(path.get());
    UniqueFd fd(::open(proc.c_str(), O_RDONLY | O_NOATIME | O_CLOEXEC));
    if (!fd.valid()) return;
    auto runs = ResidentRuns(fd.get(), static_cast<uint64_t>(st.st_size), limits_.merge_gap);
    if (!runs.ok() || runs->empty()) return;
    unsigned generation = 0;
    if (::ioctl(fd.get(), FS_IOC_GETVERSION, &generation) != 0) return;
    std::vector<char> buf(sizeof(fiemap) + kMaxFiemapExtents * sizeof(fiemap_extent));
    auto* fm = reinterpret_cast<fiemap*>(buf.data());
    fm->fm_start = 0;
    fm->fm_length = FIEMAP_MAX_OFFSET;
    fm->fm_extent_count = kMaxFiemapExtents;
    if (::ioctl(fd.get(), FS_IOC_FIEMAP, fm) != 0) return;
    for (uint32_t i = 0; i < fm->fm_mapped_extents; ++i) {
      const fiemap_extent& fe = fm->fm_extents[i];
      if (fe.fe_flags & kSkipExtentFlags) continue;
      for (const auto& r : *runs) {
        uint64_t begin = std::max<uint64_t>(r.begin, fe.fe_logical);
        uint64_t end = std::min<uint64_t>(r.end, fe.fe_logical + fe.fe_length);
        for (; begin < end; begin += kMaxExtentLength) {
          Add({.offset = fe.fe_physical + (begin - fe.fe_logical),
               .length = static_cast<uint32_t>(std::min<uint64_t>(kMaxExtentLength, end - begin)),
               .kind = ExtentKind::kFile,
               .inode = static_cast<uint32_t>(st.st_ino),
               .generation = generation,
               .file_offset = begin});
        }
      }
    }
  }

  const int loop_fd_;
  const uint64_t image_bytes_;
  const timespec since_;
  const RecordLimits limits_;
  const std::atomic<bool>& cancel_;
  dev_t dev_ = 0;
  Trace trace_;
  uint64_t bytes_ = 0;
};

// The regular file (inode, generation) on the mount at root_fd, open for reading.
Result<UniqueFd> OpenByInode(int root_fd, const TraceExtent& e) {
  struct {
    file_handle h;
    uint32_t id[2];
  } handle{};
  handle.h.handle_bytes = sizeof(handle.id);
  handle.h.handle_type = kFileIdIno32Gen;
  handle.id[0] = e.inode;
  handle.id[1] = e.generation;
  UniqueFd path(::open_by_handle_at(root_fd, &handle.h, O_PATH | O_CLOEXEC));
  if (!path.valid()) return Status::FromErrno(errno, "open inode " + std::to_string(e.inode) + " by handle");
  struct stat st;
  if (::fstat(path.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != e.inode)
    return Errorf(EINVAL, "inode {} is not a regular file", e.inode);
  std::string proc = "/proc/self/fd/" + std::to_string(path.get());
  UniqueFd fd(::open(proc.c_str(), O_RDONLY | O_NOATIME | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "reopen inode " + std::to_string(e.inode));
  return fd;
}

}  // namespace

Result<Trace> RecordResidency(int root_fd, int loop_fd, uint64_t image_bytes, timespec changed_since,
                              const RecordLimits& limits, const std::atomic<bool>& cancel) {
  return Recorder(loop_fd, image_bytes, changed_since, limits, cancel).Run(root_fd);
}

Result<uint64_t> ResidentBytes(int fd, uint64_t bytes) {
  SLACKER_ASSIGN_OR_RETURN(auto runs, ResidentRuns(fd, bytes, 0));
  uint64_t n = 0;
  for (const auto& r : runs) n += r.end - r.begin;
  return n;
}

Result<uint64_t> ReplayExtent(int root_fd, int loop_fd, const TraceExtent& e, const std::atomic<bool>& cancel) {
  int fd = loop_fd;
  uint64_t at = e.offset;
  UniqueFd file;
  if (e.kind == ExtentKind::kFile) {
    SLACKER_ASSIGN_OR_RETURN(file, OpenByInode(root_fd, e));
    fd = file.get();
    at = e.file_offset;
  }
  static thread_local std::vector<char> buf(kReadChunk);
  uint64_t done = 0;
  while (done < e.length && !cancel.load()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kReadChunk, e.length - done));
    ssize_t got = ::pread(fd, buf.data(), n, static_cast<off_t>(at + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read a traced extent");
    }
    if (got == 0) break;  // past the end of the file: the trace is stale there
    done += static_cast<uint64_t>(got);
  }
  return done;
}

}  // namespace slacker::driver
