#include "os/fake_os.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

namespace slacker::os {

FakeOs::FakeOs() = default;
FakeOs::~FakeOs() {
  for (auto& [idx, loop] : loops_) ::close(loop.watch_fd);
}

void FakeOs::ReapLocked() {
  for (auto it = loops_.begin(); it != loops_.end();) {
    std::string dev = fmt::format("/dev/loop{}", it->first);
    bool mounted = std::any_of(mounts_.begin(), mounts_.end(), [&](auto& m) { return m.source == dev; });
    struct pollfd p = {it->second.watch_fd, 0, 0};
    bool closed = ::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
    if (it->second.config.autoclear && !mounted && closed) {
      ::close(it->second.watch_fd);
      it = loops_.erase(it);
    } else {
      ++it;
    }
  }
}

Status FakeOs::Enter(const std::string& op) {
  calls_[op]++;
  auto it = fail_next_.find(op);
  if (it != fail_next_.end()) {
    int err = it->second;
    fail_next_.erase(it);
    return Status::FromErrno(err, "injected failure in " + op);
  }
  return Status::Ok();
}

void FakeOs::FailNext(const std::string& op, int err) {
  std::lock_guard<std::mutex> l(mu_);
  fail_next_[op] = err;
}

int FakeOs::Calls(const std::string& op) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

std::vector<FakeOs::MountEntry> FakeOs::Mounts() const {
  std::lock_guard<std::mutex> l(mu_);
  return mounts_;
}

std::map<int, FakeOs::LoopEntry> FakeOs::Loops() const {
  std::lock_guard<std::mutex> l(mu_);
  const_cast<FakeOs*>(this)->ReapLocked();
  return loops_;
}

bool FakeOs::IsMounted(const std::string& target) const {
  std::lock_guard<std::mutex> l(mu_);
  return std::any_of(mounts_.begin(), mounts_.end(), [&](auto& m) { return m.target == target; });
}

bool FakeOs::IsFrozen(const std::string& mountpoint) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = frozen_.find(mountpoint);
  return it != frozen_.end() && it->second;
}

Status FakeOs::Mount(const std::string& source, const std::string& target, const std::string& fstype,
                     unsigned long flags, const std::string& data) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("Mount"));
  struct stat st;
  if (::stat(target.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Errorf(ENOENT, "mount {} on {}: mount point does not exist", source, target);
  if (flags & MS_BIND) {
    // A bind mount of a mount point: the same file system (device) at a second place.
    auto it = std::find_if(mounts_.rbegin(), mounts_.rend(), [&](const MountEntry& m) { return m.target == source; });
    if (it == mounts_.rend()) return Errorf(EINVAL, "bind {} on {}: not a mount point (the fake binds mounts only)", source, target);
    MountEntry bound = *it;
    bound.target = target;
    mounts_.push_back(bound);
    return Status::Ok();
  }
  mounts_.push_back({source, target, fstype, data, flags});
  shut_down_[target] = false;
  return Status::Ok();
}

Status FakeOs::Unmount(const std::string& target, int /*flags*/) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("Unmount"));
  for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
    if (it->target != target) continue;
    std::string source = it->source;
    shut_down_[target] = false;
    mounts_.erase(std::next(it).base());
    ReapLocked();
    return Status::Ok();
  }
  return Status::FromErrno(EINVAL, "unmount " + target);
}

Result<int> FakeOs::LoopGetFree() {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("LoopGetFree"));
  ReapLocked();
  int i = 0;
  while (loops_.count(i)) ++i;
  return i;
}

Result<UniqueFd> FakeOs::LoopConfigure(int index, const std::string& backing_file,
                                       const LoopConfig& config) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("LoopConfigure"));
  if (loops_.count(index)) return Status::FromErrno(EBUSY, fmt::format("LOOP_CONFIGURE /dev/loop{}", index));
  if (::access(backing_file.c_str(), F_OK) != 0) return Status::FromErrno(errno, "open " + backing_file);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  loops_[index] = LoopEntry{backing_file, config, 0, p[0]};
  struct stat st;
  if (::stat(backing_file.c_str(), &st) == 0) {
    loops_[index].dev = st.st_dev;
    loops_[index].ino = st.st_ino;
  }
  return UniqueFd(p[1]);
}

std::string FakeOs::BackingFileNow(const LoopEntry& loop) {
  struct stat st;
  auto same = [&](const std::string& path) {
    return ::stat(path.c_str(), &st) == 0 && st.st_dev == loop.dev && st.st_ino == loop.ino;
  };
  if (loop.ino == 0 || same(loop.backing_file)) return loop.backing_file;
  std::string dir = loop.backing_file.substr(0, loop.backing_file.rfind('/'));
  if (DIR* d = ::opendir(dir.c_str())) {
    std::string found;
    while (dirent* e = ::readdir(d)) {
      std::string path = dir + "/" + e->d_name;
      if (e->d_ino == loop.ino && same(path)) {
        found = path;
        break;
      }
    }
    ::closedir(d);
    if (!found.empty()) return found;
  }
  return loop.backing_file + " (deleted)";
}

Status FakeOs::LoopClear(int index) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("LoopClear"));
  auto it = loops_.find(index);
  if (it == loops_.end()) return Status::FromErrno(ENXIO, fmt::format("LOOP_CLR_FD /dev/loop{}", index));
  ::close(it->second.watch_fd);
  loops_.erase(it);
  return Status::Ok();
}

static Status CopyAll(int src_fd, int dst_fd) {
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(src_fd, buf, sizeof buf, off);
    if (n < 0) return Status::FromErrno(errno, "read");
    if (n == 0) break;
    if (::pwrite(dst_fd, buf, static_cast<size_t>(n), off) != n) return Status::FromErrno(errno, "write");
    off += n;
  }
  struct stat st;
  ::fstat(src_fd, &st);
  if (::ftruncate(dst_fd, st.st_size) != 0) return Status::FromErrno(errno, "truncate");
  return Status::Ok();
}

Status FakeOs::Ficlone(int dst_fd, int src_fd) {
  std::function<void()> before;
  {
    std::lock_guard<std::mutex> l(mu_);
    SLACKER_RETURN_IF_ERROR(Enter("Ficlone"));
    before.swap(before_ficlone_);
  }
  if (before) before();
  return CopyAll(src_fd, dst_fd);
}

void FakeOs::BeforeNextFiclone(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  before_ficlone_ = std::move(fn);
}

Result<uint64_t> FakeOs::CopyFileRange(int src_fd, int dst_fd, uint64_t len) {
  {
    std::lock_guard<std::mutex> l(mu_);
    SLACKER_RETURN_IF_ERROR(Enter("CopyFileRange"));
  }
  SLACKER_RETURN_IF_ERROR(CopyAll(src_fd, dst_fd));
  return len;
}

Status FakeOs::Freeze(const std::string& mountpoint) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("Freeze"));
  if (frozen_[mountpoint]) return Status::FromErrno(EBUSY, "FIFREEZE " + mountpoint);
  frozen_[mountpoint] = true;
  WriteSuperblockLocked(mountpoint);
  return Status::Ok();
}

Status FakeOs::Thaw(const std::string& mountpoint) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("Thaw"));
  if (!frozen_[mountpoint]) return Status::FromErrno(EINVAL, "FITHAW " + mountpoint);
  frozen_[mountpoint] = false;
  WriteSuperblockLocked(mountpoint);
  return Status::Ok();
}

void FakeOs::BeforeNextShutdown(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  before_shutdown_ = std::move(fn);
}

Status FakeOs::Shutdown(const std::string& mountpoint) {
  std::function<void()> before;
  {
    std::lock_guard<std::mutex> l(mu_);
    before.swap(before_shutdown_);
  }
  if (before) before();
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("Shutdown"));
  if (!std::any_of(mounts_.begin(), mounts_.end(), [&](const MountEntry& m) { return m.target == mountpoint; })) {
    return Status::FromErrno(EINVAL, "EXT4_IOC_SHUTDOWN " + mountpoint);
  }
  shut_down_[mountpoint] = true;
  return Status::Ok();
}

bool FakeOs::IsShutDown(const std::string& mountpoint) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = shut_down_.find(mountpoint);
  return it != shut_down_.end() && it->second;
}

Status FakeOs::SyncFs(const std::string& /*path*/) {
  std::lock_guard<std::mutex> l(mu_);
  return Enter("SyncFs");
}

void FakeOs::SetFreeBytes(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  free_bytes_ = bytes;
}

Result<FsStats> FakeOs::StatFs(const std::string& /*path*/) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("StatFs"));
  FsStats s;
  s.total_bytes = 100ull << 30;
  s.free_bytes = free_bytes_;
  s.total_inodes = 1000000;
  s.free_inodes = 900000;
  return s;
}

Status FakeOs::Ext4GrowTo(const std::string& /*mountpoint*/, uint64_t /*blocks*/) {
  std::lock_guard<std::mutex> l(mu_);
  return Enter("Ext4GrowTo");
}

void FakeOs::RecordWrite(const std::string& mountpoint, uint64_t sectors) {
  std::lock_guard<std::mutex> l(mu_);
  RecordWriteLocked(mountpoint, sectors);
}

// As ext4 with 4 KiB blocks does at FIFREEZE and FITHAW (loopdev::kFreezeWriteSectors).
void FakeOs::WriteSuperblockLocked(const std::string& mountpoint) { RecordWriteLocked(mountpoint, 8); }

void FakeOs::RecordWriteLocked(const std::string& mountpoint, uint64_t sectors) {
  for (auto& m : mounts_) {
    if (m.target != mountpoint) continue;
    for (auto& [idx, loop] : loops_) {
      if (fmt::format("/dev/loop{}", idx) == m.source) loop.write_sectors += sectors;
    }
  }
}

Result<std::string> FakeOs::ReadKernelFile(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("ReadKernelFile"));
  ReapLocked();
  if (path == "/proc/self/mountinfo") {
    std::string out;
    int id = 100;
    for (const auto& m : mounts_) {
      out += fmt::format("{} 1 7:0 / {} {} - {} {} {}\n", id++, m.target,
                         (m.flags & MS_RDONLY) ? "ro" : "rw", m.fstype, m.source,
                         m.data.empty() ? "rw" : m.data);
    }
    return out;
  }
  int index;
  char tail[64];
  if (std::sscanf(path.c_str(), "/sys/block/loop%d/%63s", &index, tail) == 2) {
    auto it = loops_.find(index);
    if (it == loops_.end()) return Status::FromErrno(ENOENT, "open " + path);
    if (std::string(tail) == "loop/backing_file") return BackingFileNow(it->second) + "\n";
    if (std::string(tail) == "stat")
      return fmt::format("0 0 0 0 0 0 {} 0 0 0 0 0 0 0 0 0 0\n", it->second.write_sectors);
    if (std::string(tail) == "loop/autoclear") return std::string(it->second.config.autoclear ? "1\n" : "0\n");
  }
  return Status::FromErrno(ENOENT, "open " + path);
}

Result<std::vector<std::string>> FakeOs::ListKernelDir(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  SLACKER_RETURN_IF_ERROR(Enter("ListKernelDir"));
  ReapLocked();
  if (path != "/sys/block") return Status::FromErrno(ENOENT, "open directory " + path);
  std::vector<std::string> out;
  for (const auto& [idx, loop] : loops_) out.push_back(fmt::format("loop{}", idx));
  return out;
}

}  // namespace slacker::os
