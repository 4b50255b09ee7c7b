#include "nfs_bridge/bridge_fs.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace slacker::nfs_bridge {

void ToStat(const NfsAttr& n, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_dev = n.dev;
  st->st_ino = n.ino;
  st->st_mode = static_cast<mode_t>(n.mode);
  st->st_nlink = static_cast<nlink_t>(n.nlink);
  st->st_uid = static_cast<uid_t>(n.uid);
  st->st_gid = static_cast<gid_t>(n.gid);
  st->st_rdev = n.rdev;
  st->st_size = static_cast<off_t>(n.size);
  st->st_blksize = static_cast<blksize_t>(n.blksize);
  st->st_blocks = static_cast<blkcnt_t>(n.blocks);
  st->st_atim = {static_cast<time_t>(n.atime), static_cast<long>(n.atime_nsec)};
  st->st_mtim = {static_cast<time_t>(n.mtime), static_cast<long>(n.mtime_nsec)};
  st->st_ctim = {static_cast<time_t>(n.ctime), static_cast<long>(n.ctime_nsec)};
}

void ToTimevals(const timespec in[2], const timespec& now, timeval out[2]) {
  for (int i = 0; i < 2; ++i) {
    timespec s = in[i];
    if (s.tv_nsec == UTIME_NOW || s.tv_nsec == UTIME_OMIT) s = now;
    out[i].tv_sec = s.tv_sec;
    out[i].tv_usec = s.tv_nsec / 1000;
  }
}

int BridgeFs::HandleOn(const NfsSession::Lease& lease, OpenFile* file, NfsOpenFile** out) {
  NfsOpenFile*& fh = file->fh[lease.index()];
  if (fh == nullptr) {
    int rc = lease.nfs().Open(file->path, file->flags, &fh);
    if (rc < 0) {
      fh = nullptr;
      return session_->Fail(rc);
    }
  }
  *out = fh;
  return 0;
}

int BridgeFs::GetAttr(const std::string& path, OpenFile* file, struct stat* st) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  NfsAttr attr;
  int rc;
  if (file != nullptr) {
    NfsOpenFile* fh;
    if ((rc = HandleOn(l, file, &fh)) < 0) return rc;
    rc = l.nfs().FStat(fh, &attr);
  } else {
    rc = l.nfs().LStat(path, &attr);
  }
  if (rc < 0) return session_->Fail(rc);
  ToStat(attr, st);
  return 0;
}

int BridgeFs::ReadDir(const std::string& path,
                      const std::function<bool(const std::string& name, const struct stat&)>& fill) {
  CountMetadataOp();
  std::vector<NfsDirEntry> entries;
  {
    NfsSession::Lease l(*session_);
    if (int rc = l.nfs().ReadDir(path, &entries); rc < 0) return session_->Fail(rc);
  }
  for (const NfsDirEntry& e : entries) {
    struct stat st;
    std::memset(&st, 0, sizeof st);
    st.st_ino = e.inode;
    st.st_mode = static_cast<mode_t>(e.mode);
    if (!fill(e.name, st)) break;
  }
  return 0;
}

int BridgeFs::OpenCommon(const std::string& path, int flags, bool create, mode_t mode, OpenFile** out) {
  CountMetadataOp();
  auto f = std::make_unique<OpenFile>();
  f->path = path;
  f->flags = (flags & O_ACCMODE) | (options_.stable_writes ? O_SYNC : 0);
  f->fh.assign(session_->size(), nullptr);
  {
    NfsSession::Lease l(*session_);
    NfsOpenFile* fh = nullptr;
    int open_flags = flags & (O_ACCMODE | O_TRUNC | O_EXCL | O_SYNC | O_DSYNC);
    if (options_.stable_writes) open_flags |= O_SYNC;
    int rc = create ? l.nfs().Create(path, open_flags | O_CREAT, static_cast<int>(mode & 07777), &fh)
                    : l.nfs().Open(path, open_flags, &fh);
    if (rc < 0) return session_->Fail(rc);
    f->fh[l.index()] = fh;
    f->channel = std::make_unique<SessionFileChannel>(session_, l.nfs().Handle(fh));
  }
  UnstableWrites::Options log_options;
  log_options.limit = options_.unstable_limit;
  log_options.stable = options_.stable_writes;
  f->log = std::make_unique<UnstableWrites>(f->channel.get(), log_options);
  {
    std::lock_guard<std::mutex> g(open_mu_);  // no connection held: see open_mu_
    open_.push_back(f.get());
  }
  *out = f.release();
  return 0;
}

int BridgeFs::Open(const std::string& path, int flags, OpenFile** out) {
  return OpenCommon(path, flags, false, 0, out);
}

int BridgeFs::Create(const std::string& path, int flags, mode_t mode, OpenFile** out) {
  return OpenCommon(path, flags, true, mode, out);
}

int BridgeFs::Sync(OpenFile* file, const char* why) {
  Status st = file->log->Sync();
  uint64_t resent = file->log->resent_bytes();
  uint64_t before = file->resent_counted.exchange(resent);
  if (resent > before) {
    session_->counters().resent_bytes += resent - before;
    log::Warn("nfs_unstable_writes_resent", {{"path", file->path}, {"bytes", std::to_string(resent - before)}});
  }
  if (st.ok()) return 0;
  log::Error("nfs_commit_failed", {{"path", file->path}, {"during", why}, {"error", st.message()}});
  session_->counters().errors++;
  return -st.code();
}

int BridgeFs::Release(OpenFile* file) {
  int synced = Sync(file, "release");
  {
    std::lock_guard<std::mutex> g(open_mu_);
    std::erase(open_, file);
  }
  for (size_t i = 0; i < file->fh.size(); ++i) {
    if (file->fh[i] == nullptr) continue;
    NfsSession::Lease l(*session_, i);
    l.nfs().Close(file->fh[i]);
  }
  delete file;
  return synced;
}

namespace {

// Moves `size` bytes in requests of at most `max` bytes: `op(offset_in_buffer, count)`
// returns the bytes moved or -errno. A 0 ends a read (EOF) and fails a write (EIO).
template <class Op>
int Transfer(NfsSession* session, size_t size, uint64_t max, bool is_read, Op op) {
  size_t done = 0;
  while (done < size) {
    int rc = op(done, std::min<uint64_t>(size - done, max));
    if (rc < 0) return session->Fail(rc);
    if (rc == 0) {
      if (is_read) break;
      return session->Fail(-EIO);
    }
    done += static_cast<size_t>(rc);
  }
  Counters& c = session->counters();
  (is_read ? c.reads : c.writes)++;
  (is_read ? c.read_bytes : c.write_bytes) += done;
  return static_cast<int>(done);
}

}  // namespace

int BridgeFs::Read(OpenFile* file, char* buf, size_t size, uint64_t offset) {
  NfsSession::Lease l(*session_);
  NfsOpenFile* fh;
  if (int rc = HandleOn(l, file, &fh); rc < 0) return rc;
  return Transfer(session_, size, kMaxIo, true,
                  [&](size_t at, uint64_t n) { return l.nfs().PRead(fh, offset + at, n, buf + at); });
}

int BridgeFs::Write(OpenFile* file, const char* buf, size_t size, uint64_t offset) {
  uint64_t max = std::min(kMaxIo, options_.write_max);
  return Transfer(session_, size, max, false, [&](size_t at, uint64_t n) {
    Result<uint64_t> done = file->log->Write(offset + at, std::span<const char>(buf + at, n));
    if (!done.ok()) {
      log::Error("nfs_write_failed", {{"path", file->path}, {"error", done.status().message()}});
      return -done.status().code();
    }
    return static_cast<int>(*done);
  });
}

int BridgeFs::SyncBeforeTruncate(OpenFile* file, uint64_t size) {
  if (file != nullptr) {
    if (int rc = Sync(file, "truncate"); rc < 0) return rc;
    file->log->Truncate(size);  // what a concurrent write kept meanwhile
    return 0;
  }
  // Held throughout: Release cannot free a file meanwhile (lock order: see open_mu_).
  std::lock_guard<std::mutex> g(open_mu_);
  for (OpenFile* f : open_) {
    if (int rc = Sync(f, "truncate"); rc < 0) return rc;
  }
  return 0;
}

int BridgeFs::Truncate(const std::string& path, uint64_t size, OpenFile* file) {
  CountMetadataOp();
  if (int rc = SyncBeforeTruncate(file, size); rc < 0) return rc;
  NfsSession::Lease l(*session_);
  if (file != nullptr) {
    NfsOpenFile* fh;
    if (int rc = HandleOn(l, file, &fh); rc < 0) return rc;
    return session_->Fail(l.nfs().FTruncate(fh, size));
  }
  return session_->Fail(l.nfs().Truncate(path, size));
}

int BridgeFs::Unlink(const std::string& path) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().Unlink(path));
}

int BridgeFs::Rename(const std::string& from, const std::string& to, unsigned int flags) {
  CountMetadataOp();
  if (flags != 0) return -EINVAL;  // NFSv3 RENAME has no NOREPLACE/EXCHANGE
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().Rename(from, to));
}

int BridgeFs::Link(const std::string& from, const std::string& to) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().Link(from, to));
}

int BridgeFs::Symlink(const std::string& target, const std::string& path) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().Symlink(target, path));
}

int BridgeFs::ReadLink(const std::string& path, char* buf, size_t size) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  int rc = l.nfs().ReadLink(path, buf, size);
  return rc < 0 ? session_->Fail(rc) : 0;  // FUSE's readlink returns 0 on success
}

int BridgeFs::MkDir(const std::string& path, mode_t mode) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().MkDir(path, static_cast<int>(mode & 07777)));
}

int BridgeFs::RmDir(const std::string& path) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().RmDir(path));
}

int BridgeFs::ChMod(const std::string& path, mode_t mode) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().ChMod(path, static_cast<int>(mode & 07777)));
}

int BridgeFs::ChOwn(const std::string& path, uid_t uid, gid_t gid) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  if (uid == static_cast<uid_t>(-1) || gid == static_cast<gid_t>(-1)) {
    NfsAttr attr;
    if (int rc = l.nfs().Stat(path, &attr); rc < 0) return session_->Fail(rc);
    if (uid == static_cast<uid_t>(-1)) uid = static_cast<uid_t>(attr.uid);
    if (gid == static_cast<gid_t>(-1)) gid = static_cast<gid_t>(attr.gid);
  }
  return session_->Fail(l.nfs().ChOwn(path, static_cast<int>(uid), static_cast<int>(gid)));
}

int BridgeFs::UTimens(const std::string& path, const timespec times[2]) {
  CountMetadataOp();
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  timeval tv[2];
  ToTimevals(times, now, tv);
  NfsSession::Lease l(*session_);
  return session_->Fail(l.nfs().UTimes(path, tv));
}

int BridgeFs::StatFs(const std::string& path, struct statvfs* out) {
  CountMetadataOp();
  NfsSession::Lease l(*session_);
  NfsFsStat s;
  if (int rc = l.nfs().StatVfs(path, &s); rc < 0) return session_->Fail(rc);
  std::memset(out, 0, sizeof *out);
  out->f_bsize = s.bsize;
  out->f_frsize = s.frsize;
  out->f_blocks = s.blocks;
  out->f_bfree = s.bfree;
  out->f_bavail = s.bavail;
  out->f_files = s.files;
  out->f_ffree = s.ffree;
  out->f_favail = s.favail;
  out->f_namemax = s.namemax;
  return 0;
}

size_t BridgeFs::open_files() const {
  std::lock_guard<std::mutex> g(open_mu_);
  return open_.size();
}

}  // namespace slacker::nfs_bridge
