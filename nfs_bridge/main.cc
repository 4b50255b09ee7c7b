// slacker-nfs-fuse: exposes an NFSv3 export (reached in user space through libnfs) as a
// FUSE file system, so that hosts without a kernel NFS client can loop-attach the
// store's layer files (DESIGN.md §7). See nfs_bridge/README.md.
//
// Data path: every open file is served with FUSE direct I/O (no page cache in the
// bridge's kernel side: the loop device above it attaches with LO_FLAGS_DIRECT_IO, and
// what one worker writes must reach the server, not sit in this host's cache). Writes go
// out as raw NFSv3 WRITE UNSTABLE and are kept (unstable_writes.h) until fsync(2),
// flush (close) or release, which COMMIT and re-send what the server may have lost in a
// restart (a changed write verifier), so ext4's journal barriers on the loop device
// reach stable storage on the server.
//
// Concurrency: libnfs 4.0 contexts are not thread-safe, so the bridge keeps a pool of
// --contexts contexts (own TCP connection each), each behind a mutex; an open file gets
// one NFS file handle per context, opened lazily. Requests from the multithreaded FUSE
// loop take any free context, so up to N NFS requests are in flight at once.
//
// Server restarts: every context has autoreconnect on (retry forever, like a "hard"
// kernel mount); a request in flight when the server goes away is resent after the
// reconnect, and the file handles stay valid (NFSv3 handles are persistent), so I/O
// blocks while the server is down and resumes when it is back.
#define FUSE_USE_VERSION 35
#include <fuse.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <nfsc/libnfs-raw.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "nfs_bridge/unstable_writes.h"

// libnfs 4.0's struct nfs_fh (include/libnfs-private.h; the public headers declare it
// only): the bytes of an open file's NFSv3 handle, for the raw WRITE and COMMIT calls.
struct nfs_fh {
  int len;
  char* val;
};

namespace {

using slacker::Result;
using slacker::Status;
using slacker::nfs_bridge::FileChannel;
using slacker::nfs_bridge::Stability;
using slacker::nfs_bridge::UnstableWrites;
using slacker::nfs_bridge::WriteVerifier;

constexpr uint64_t kMaxIo = 1 << 20;

struct Counters {
  std::atomic<uint64_t> read_bytes{0}, write_bytes{0}, reads{0}, writes{0}, commits{0}, metadata_ops{0},
      errors{0}, resent_bytes{0};
};

struct Context {
  std::mutex mu;
  nfs_context* nfs = nullptr;
};

struct Bridge {
  std::string url;
  std::string server;
  std::string export_path;
  std::string stats_file;
  bool stable_writes = false;  // --stable-writes: WRITE FILE_SYNC instead of UNSTABLE
  uint64_t unstable_limit = 64ull << 20;  // --unstable-limit: kept bytes per open file
  uint64_t write_max = kMaxIo;             // the server's wsize: the largest raw WRITE
  std::vector<std::unique_ptr<Context>> contexts;
  std::atomic<unsigned> next{0};
  Counters counters;
};

Bridge* g_bridge = nullptr;

// A context held for the duration of one request.
class Lease {
 public:
  Lease() {
    auto& cs = g_bridge->contexts;
    unsigned start = g_bridge->next.fetch_add(1);
    for (size_t i = 0; i < cs.size(); ++i) {
      size_t k = (start + i) % cs.size();
      if (cs[k]->mu.try_lock()) {
        index_ = k;
        return;
      }
    }
    index_ = start % cs.size();
    cs[index_]->mu.lock();
  }
  ~Lease() { g_bridge->contexts[index_]->mu.unlock(); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  nfs_context* nfs() const { return g_bridge->contexts[index_]->nfs; }
  size_t index() const { return index_; }

 private:
  size_t index_ = 0;
};

int Fail(int rc) {
  if (rc < 0) g_bridge->counters.errors++;
  return rc;
}

// Runs `nfs`'s event loop until `*done`, as libnfs's own synchronous calls do; a lost
// connection is re-established and the request re-sent by libnfs (autoreconnect).
Status WaitForReply(nfs_context* nfs, const bool* done) {
  while (!*done) {
    pollfd pfd{nfs_get_fd(nfs), static_cast<short>(nfs_which_events(nfs)), 0};
    int rc = poll(&pfd, 1, 100);
    if (rc < 0 && errno == EINTR) continue;
    if (nfs_service(nfs, rc < 0 ? -1 : pfd.revents) < 0) {
      return Status::Error(EIO, std::string("NFS connection: ") + nfs_get_error(nfs));
    }
  }
  return Status::Ok();
}

// What an RPC callback reports: done, and an error or the reply's fields.
struct Call {
  bool done = false;
  Status status;
  FileChannel::WriteReply write;
  WriteVerifier verifier{};
};

// The common part of the WRITE3 and COMMIT3 callbacks: the RPC status and the NFS status.
bool CallFailed(Call* c, const char* what, int rpc_status, void* data, int nfs_status) {
  c->done = true;
  if (rpc_status != RPC_STATUS_SUCCESS) {
    c->status = Status::Error(EIO, std::string("NFS ") + what + ": " +
                                       (rpc_status == RPC_STATUS_ERROR && data != nullptr
                                            ? static_cast<const char*>(data)
                                            : "cancelled or timed out"));
    return true;
  }
  if (nfs_status != NFS3_OK) {
    int err = -nfsstat3_to_errno(nfs_status);  // libnfs gives -errno
    c->status = Status::Error(err > 0 ? err : EIO, std::string("NFS ") + what + ": " + nfsstat3_to_str(nfs_status));
    return true;
  }
  return false;
}

void WriteDone(rpc_context*, int rpc_status, void* data, void* private_data) {
  auto* c = static_cast<Call*>(private_data);
  auto* res = static_cast<WRITE3res*>(data);
  if (CallFailed(c, "WRITE", rpc_status, data, rpc_status == RPC_STATUS_SUCCESS ? res->status : NFS3_OK)) return;
  const WRITE3resok& ok = res->WRITE3res_u.resok;
  c->write.count = ok.count;
  c->write.durable = ok.committed != UNSTABLE;
  std::memcpy(c->write.verifier.data(), ok.verf, c->write.verifier.size());
}

void CommitDone(rpc_context*, int rpc_status, void* data, void* private_data) {
  auto* c = static_cast<Call*>(private_data);
  auto* res = static_cast<COMMIT3res*>(data);
  if (CallFailed(c, "COMMIT", rpc_status, data, rpc_status == RPC_STATUS_SUCCESS ? res->status : NFS3_OK)) return;
  std::memcpy(c->verifier.data(), res->COMMIT3res_u.resok.verf, c->verifier.size());
}

// The outcome of a call queued on `l`'s context (`queued`: the rpc_*_async result).
Status Finish(const Lease& l, int queued, Call* c, const char* what) {
  if (queued != 0) return Status::Error(EIO, std::string("NFS ") + what + ": " + nfs_get_error(l.nfs()));
  Status st = WaitForReply(l.nfs(), &c->done);
  return st.ok() ? c->status : st;
}

// WRITE3 and COMMIT3 of one file, by its NFS handle, on any free context: libnfs's
// nfs_pwrite and nfs_fsync do not tell the write verifier.
class NfsFileChannel : public FileChannel {
 public:
  explicit NfsFileChannel(std::vector<char> handle) : handle_(std::move(handle)) {}

  Result<WriteReply> Write(uint64_t offset, std::span<const char> data, Stability how) override {
    Lease l;
    WRITE3args args{};
    args.file = Handle();
    args.offset = offset;
    args.count = static_cast<count3>(data.size());
    args.stable = how == Stability::kFileSync ? FILE_SYNC : UNSTABLE;
    args.data.data_len = static_cast<u_int>(data.size());
    args.data.data_val = const_cast<char*>(data.data());  // encoded (copied) before the call returns
    Call c;
    Status st = Finish(l, rpc_nfs3_write_async(nfs_get_rpc_context(l.nfs()), WriteDone, &args, &c), &c, "WRITE");
    if (!st.ok()) return st;
    return c.write;
  }

  Result<WriteVerifier> Commit() override {
    Lease l;
    COMMIT3args args{};
    args.file = Handle();
    Call c;
    Status st =
        Finish(l, rpc_nfs3_commit_async(nfs_get_rpc_context(l.nfs()), CommitDone, &args, &c), &c, "COMMIT");
    if (!st.ok()) return st;
    g_bridge->counters.commits++;
    return c.verifier;
  }

 private:
  nfs_fh3 Handle() {
    nfs_fh3 fh{};
    fh.data.data_len = static_cast<u_int>(handle_.size());
    fh.data.data_val = handle_.data();
    return fh;
  }
  std::vector<char> handle_;
};

// An open file: one libnfs handle per context (reads, attributes), opened on first use by
// that context; writes go through `log` by the file's NFS handle.
struct OpenFile {
  std::string path;
  int flags = 0;  // for lazy opens: access mode only
  std::vector<nfsfh*> fh;
  std::unique_ptr<NfsFileChannel> channel;
  std::unique_ptr<UnstableWrites> log;
  std::atomic<uint64_t> resent_counted{0};
};

// Makes what was written through `f` durable (UnstableWrites::Sync); -errno on failure.
int SyncFile(OpenFile* f, const char* why) {
  Status st = f->log->Sync();
  uint64_t resent = f->log->resent_bytes();
  uint64_t before = f->resent_counted.exchange(resent);
  if (resent > before) {
    g_bridge->counters.resent_bytes += resent - before;
    slacker::log::Warn("nfs_unstable_writes_resent", {{"path", f->path}, {"bytes", std::to_string(resent - before)}});
  }
  if (st.ok()) return 0;
  slacker::log::Error("nfs_commit_failed", {{"path", f->path}, {"during", why}, {"error", st.message()}});
  g_bridge->counters.errors++;
  return -st.code();
}

// Every open file, so that a truncate by path can make their kept writes durable first.
std::mutex g_open_mu;
std::vector<OpenFile*> g_open;

int Meta() {
  g_bridge->counters.metadata_ops++;
  return 0;
}

void ToStat(const nfs_stat_64& n, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_dev = n.nfs_dev;
  st->st_ino = n.nfs_ino;
  st->st_mode = static_cast<mode_t>(n.nfs_mode);
  st->st_nlink = static_cast<nlink_t>(n.nfs_nlink);
  st->st_uid = static_cast<uid_t>(n.nfs_uid);
  st->st_gid = static_cast<gid_t>(n.nfs_gid);
  st->st_rdev = n.nfs_rdev;
  st->st_size = static_cast<off_t>(n.nfs_size);
  st->st_blksize = static_cast<blksize_t>(n.nfs_blksize);
  st->st_blocks = static_cast<blkcnt_t>(n.nfs_blocks);
  st->st_atim = {static_cast<time_t>(n.nfs_atime), static_cast<long>(n.nfs_atime_nsec)};
  st->st_mtim = {static_cast<time_t>(n.nfs_mtime), static_cast<long>(n.nfs_mtime_nsec)};
  st->st_ctim = {static_cast<time_t>(n.nfs_ctime), static_cast<long>(n.nfs_ctime_nsec)};
}

OpenFile* File(fuse_file_info* fi) { return reinterpret_cast<OpenFile*>(fi->fh); }

// The handle of `f` on the leased context, opening it there on first use.
int HandleOn(const Lease& lease, OpenFile* f, nfsfh** out) {
  nfsfh*& fh = f->fh[lease.index()];
  if (fh == nullptr) {
    int rc = nfs_open(lease.nfs(), f->path.c_str(), f->flags, &fh);
    if (rc < 0) {
      fh = nullptr;
      return Fail(rc);
    }
  }
  *out = fh;
  return 0;
}

void* Init(fuse_conn_info* conn, fuse_config* cfg) {
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;
  conn->max_readahead = kMaxIo;
  // No asynchronous direct I/O: with it, data a loop device wrote through the bridge was
  // missing when read back right after the unmount (test/e2e/nfs_coherence_repro.sh:
  // 2-7 bad of 10-15 iterations with it, 0 of 27 without).
  conn->want &= ~FUSE_CAP_ASYNC_DIO;
  // Other hosts (and the snapshot service) change the share: do not trust cached
  // names or attributes.
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->direct_io = 1;
  cfg->kernel_cache = 0;
  cfg->use_ino = 1;
  cfg->hard_remove = 1;
  return nullptr;
}

int GetAttr(const char* path, struct stat* st, fuse_file_info* fi) {
  Meta();
  Lease l;
  nfs_stat_64 n;
  int rc;
  if (fi != nullptr && fi->fh != 0) {
    nfsfh* fh;
    if ((rc = HandleOn(l, File(fi), &fh)) < 0) return rc;
    rc = nfs_fstat64(l.nfs(), fh, &n);
  } else {
    rc = nfs_lstat64(l.nfs(), path, &n);
  }
  if (rc < 0) return Fail(rc);
  ToStat(n, st);
  return 0;
}

int ReadDir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*, fuse_readdir_flags) {
  Meta();
  Lease l;
  nfsdir* dir;
  int rc = nfs_opendir(l.nfs(), path, &dir);
  if (rc < 0) return Fail(rc);
  while (nfsdirent* e = nfs_readdir(l.nfs(), dir)) {
    struct stat st;
    std::memset(&st, 0, sizeof st);
    st.st_ino = e->inode;
    st.st_mode = static_cast<mode_t>(e->mode);
    if (fill(buf, e->name, &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) break;
  }
  nfs_closedir(l.nfs(), dir);
  return 0;
}

int OpenCommon(const char* path, fuse_file_info* fi, bool create, mode_t mode) {
  Meta();
  auto f = std::make_unique<OpenFile>();
  f->path = path;
  f->flags = (fi->flags & O_ACCMODE) | (g_bridge->stable_writes ? O_SYNC : 0);
  f->fh.assign(g_bridge->contexts.size(), nullptr);
  {
    Lease l;
    nfsfh* fh = nullptr;
    int open_flags = fi->flags & (O_ACCMODE | O_TRUNC | O_EXCL | O_SYNC | O_DSYNC);
    if (g_bridge->stable_writes) open_flags |= O_SYNC;
    int rc = create ? nfs_create(l.nfs(), path, open_flags | O_CREAT, static_cast<int>(mode & 07777), &fh)
                    : nfs_open(l.nfs(), path, open_flags, &fh);
    if (rc < 0) return Fail(rc);
    f->fh[l.index()] = fh;
    const nfs_fh* handle = nfs_get_fh(fh);
    f->channel = std::make_unique<NfsFileChannel>(std::vector<char>(handle->val, handle->val + handle->len));
  }
  UnstableWrites::Options options;
  options.limit = g_bridge->unstable_limit;
  options.stable = g_bridge->stable_writes;
  f->log = std::make_unique<UnstableWrites>(f->channel.get(), options);
  fi->direct_io = 1;
  fi->keep_cache = 0;
  {
    std::lock_guard<std::mutex> g(g_open_mu);  // no context held: see SyncBeforeTruncate
    g_open.push_back(f.get());
  }
  fi->fh = reinterpret_cast<uint64_t>(f.release());
  return 0;
}

int Open(const char* path, fuse_file_info* fi) { return OpenCommon(path, fi, false, 0); }
int Create(const char* path, mode_t mode, fuse_file_info* fi) { return OpenCommon(path, fi, true, mode); }

// The last close: what is still kept is made durable (a failure is logged; the kernel
// ignores release's result, and flush already reported it to close(2)).
int Release(const char*, fuse_file_info* fi) {
  OpenFile* f = File(fi);
  int synced = SyncFile(f, "release");
  {
    std::lock_guard<std::mutex> g(g_open_mu);
    std::erase(g_open, f);
  }
  auto& cs = g_bridge->contexts;
  for (size_t i = 0; i < cs.size(); ++i) {
    if (f->fh[i] == nullptr) continue;
    std::lock_guard<std::mutex> g(cs[i]->mu);
    nfs_close(cs[i]->nfs, f->fh[i]);
  }
  delete f;
  return synced;
}

// Moves `size` bytes in requests of at most kMaxIo: `op(offset_in_buffer, count)` returns
// the bytes moved or -errno. A 0 ends a read (EOF) and fails a write.
template <class Op>
int Transfer(size_t size, bool is_read, Op op) {
  size_t done = 0;
  while (done < size) {
    int rc = op(done, std::min<uint64_t>(size - done, kMaxIo));
    if (rc < 0) return Fail(rc);
    if (rc == 0) {
      if (is_read) break;
      return Fail(-EIO);
    }
    done += static_cast<size_t>(rc);
  }
  auto& c = g_bridge->counters;
  (is_read ? c.reads : c.writes)++;
  (is_read ? c.read_bytes : c.write_bytes) += done;
  return static_cast<int>(done);
}

int Read(const char*, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Lease l;
  nfsfh* fh;
  int rc = HandleOn(l, File(fi), &fh);
  if (rc < 0) return rc;
  return Transfer(size, true, [&](size_t at, uint64_t n) {
    return nfs_pread(l.nfs(), fh, static_cast<uint64_t>(off) + at, n, buf + at);
  });
}

int Write(const char*, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  OpenFile* f = File(fi);
  return Transfer(size, false, [&](size_t at, uint64_t n) {
    n = std::min(n, g_bridge->write_max);
    Result<uint64_t> done = f->log->Write(static_cast<uint64_t>(off) + at, std::span<const char>(buf + at, n));
    if (!done.ok()) {
      slacker::log::Error("nfs_write_failed", {{"path", f->path}, {"error", done.status().message()}});
      return -done.status().code();
    }
    return static_cast<int>(*done);
  });
}

// An UNSTABLE write is durable only once a COMMIT under the same write verifier has
// succeeded: UnstableWrites::Sync commits, and re-sends what a restarted server lost.
int Fsync(const char*, int, fuse_file_info* fi) { return SyncFile(File(fi), "fsync"); }

// close(2): NFS's close-to-open consistency, and the last chance to report a lost write.
int Flush(const char*, fuse_file_info* fi) { return SyncFile(File(fi), "flush"); }

// Before a truncate: kept writes must not be re-sent after it (they could extend the file
// again). `open`: the file truncated through its handle; null: by path, so every open file.
int SyncBeforeTruncate(OpenFile* open, uint64_t size) {
  if (open != nullptr) {
    if (int rc = SyncFile(open, "truncate"); rc < 0) return rc;
    open->log->Truncate(size);  // what a concurrent write kept meanwhile
    return 0;
  }
  // Held throughout: Release cannot free a file meanwhile. Lock order: g_open_mu, then a
  // context (Lease); nobody takes g_open_mu while holding a context.
  std::lock_guard<std::mutex> g(g_open_mu);
  for (OpenFile* f : g_open) {
    if (int rc = SyncFile(f, "truncate"); rc < 0) return rc;
  }
  return 0;
}

int FsyncDir(const char*, int, fuse_file_info*) { return 0; }  // NFSv3 directory ops are synchronous

int Truncate(const char* path, off_t size, fuse_file_info* fi) {
  Meta();
  OpenFile* open = fi != nullptr && fi->fh != 0 ? File(fi) : nullptr;
  if (int rc = SyncBeforeTruncate(open, static_cast<uint64_t>(size)); rc < 0) return rc;
  Lease l;
  if (fi != nullptr && fi->fh != 0) {
    nfsfh* fh;
    int rc = HandleOn(l, File(fi), &fh);
    if (rc < 0) return rc;
    return Fail(nfs_ftruncate(l.nfs(), fh, static_cast<uint64_t>(size)));
  }
  return Fail(nfs_truncate(l.nfs(), path, static_cast<uint64_t>(size)));
}

int Unlink(const char* path) {
  Meta();
  Lease l;
  return Fail(nfs_unlink(l.nfs(), path));
}

int Rename(const char* from, const char* to, unsigned int flags) {
  Meta();
  if (flags != 0) return -EINVAL;  // NFSv3 RENAME has no NOREPLACE/EXCHANGE
  Lease l;
  return Fail(nfs_rename(l.nfs(), from, to));
}

int Link(const char* from, const char* to) {
  Meta();
  Lease l;
  return Fail(nfs_link(l.nfs(), from, to));
}

int Symlink(const char* target, const char* path) {
  Meta();
  Lease l;
  return Fail(nfs_symlink(l.nfs(), target, path));
}

int ReadLink(const char* path, char* buf, size_t size) {
  Meta();
  Lease l;
  return Fail(nfs_readlink(l.nfs(), path, buf, static_cast<int>(size)));
}

int MkDir(const char* path, mode_t mode) {
  Meta();
  Lease l;
  return Fail(nfs_mkdir2(l.nfs(), path, static_cast<int>(mode & 07777)));
}

int RmDir(const char* path) {
  Meta();
  Lease l;
  return Fail(nfs_rmdir(l.nfs(), path));
}

int ChMod(const char* path, mode_t mode, fuse_file_info*) {
  Meta();
  Lease l;
  return Fail(nfs_chmod(l.nfs(), path, static_cast<int>(mode & 07777)));
}

int ChOwn(const char* path, uid_t uid, gid_t gid, fuse_file_info*) {
  Meta();
  Lease l;
  nfs_stat_64 n;
  if (uid == static_cast<uid_t>(-1) || gid == static_cast<gid_t>(-1)) {
    int rc = nfs_stat64(l.nfs(), path, &n);
    if (rc < 0) return Fail(rc);
    if (uid == static_cast<uid_t>(-1)) uid = static_cast<uid_t>(n.nfs_uid);
    if (gid == static_cast<gid_t>(-1)) gid = static_cast<gid_t>(n.nfs_gid);
  }
  return Fail(nfs_chown(l.nfs(), path, static_cast<int>(uid), static_cast<int>(gid)));
}

int UTimens(const char* path, const timespec tv[2], fuse_file_info*) {
  Meta();
  Lease l;
  timeval t[2];
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  for (int i = 0; i < 2; ++i) {
    timespec s = tv[i];
    if (s.tv_nsec == UTIME_NOW || s.tv_nsec == UTIME_OMIT) s = now;  // v3 SETATTR: no "omit" via utimes
    t[i].tv_sec = s.tv_sec;
    t[i].tv_usec = s.tv_nsec / 1000;
  }
  return Fail(nfs_utimes(l.nfs(), path, t));
}

int StatFs(const char* path, struct statvfs* out) {
  Meta();
  Lease l;
  nfs_statvfs_64 s;
  int rc = nfs_statvfs64(l.nfs(), path, &s);
  if (rc < 0) return Fail(rc);
  std::memset(out, 0, sizeof *out);
  out->f_bsize = s.f_bsize;
  out->f_frsize = s.f_frsize;
  out->f_blocks = s.f_blocks;
  out->f_bfree = s.f_bfree;
  out->f_bavail = s.f_bavail;
  out->f_files = s.f_files;
  out->f_ffree = s.f_ffree;
  out->f_favail = s.f_favail;
  out->f_namemax = s.f_namemax;
  return 0;
}

int Access(const char*, int) { return 0; }

void WriteStats() {
  if (g_bridge->stats_file.empty()) return;
  const Counters& c = g_bridge->counters;
  std::string tmp = g_bridge->stats_file + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return;
  std::fprintf(f,
               "{\"url\":\"%s\",\"read_bytes\":%llu,\"write_bytes\":%llu,\"reads\":%llu,\"writes\":%llu,"
               "\"commits\":%llu,\"metadata_ops\":%llu,\"errors\":%llu,\"resent_bytes\":%llu}\n",
               g_bridge->url.c_str(), static_cast<unsigned long long>(c.read_bytes.load()),
               static_cast<unsigned long long>(c.write_bytes.load()),
               static_cast<unsigned long long>(c.reads.load()), static_cast<unsigned long long>(c.writes.load()),
               static_cast<unsigned long long>(c.commits.load()),
               static_cast<unsigned long long>(c.metadata_ops.load()),
               static_cast<unsigned long long>(c.errors.load()),
               static_cast<unsigned long long>(c.resent_bytes.load()));
  std::fclose(f);
  std::rename(tmp.c_str(), g_bridge->stats_file.c_str());
}

constexpr const char* kUsage =
    "usage: slacker-nfs-fuse [--contexts N] [--stats-file F] [--stable-writes] [--unstable-limit BYTES] nfs://HOST/EXPORT MOUNTPOINT [FUSE options]\n"
    "  Serves the NFSv3 export at MOUNTPOINT (runs in the foreground; unmount to stop).\n"
    "  --contexts N     parallel NFS connections (default 4)\n"
    "  --stats-file F   rewrite F once a second with byte/op counters (JSON)\n"
    "  --stable-writes  WRITE FILE_SYNC instead of UNSTABLE + COMMIT on fsync\n"
    "  --unstable-limit BYTES  unstable (not yet committed) bytes kept per open file before a\n"
    "                   write commits early (default 67108864)\n";

// "nfs://HOST/PATH[?args]" -> HOST, /PATH
bool SplitUrl(const std::string& url, std::string* server, std::string* path) {
  if (!url.starts_with("nfs://")) return false;
  std::string rest = url.substr(6);
  auto q = rest.find('?');
  if (q != std::string::npos) rest = rest.substr(0, q);
  auto slash = rest.find('/');
  if (slash == std::string::npos || slash == 0) return false;
  *server = rest.substr(0, slash);
  *path = rest.substr(slash);
  while (path->size() > 1 && path->back() == '/') path->pop_back();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Bridge bridge;
  g_bridge = &bridge;
  int contexts = 4;
  std::vector<std::string> positional;
  std::vector<std::string> fuse_extra;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--contexts" && i + 1 < argc) {
      contexts = std::atoi(argv[++i]);
    } else if (a == "--stable-writes") {
      bridge.stable_writes = true;
    } else if (a == "--unstable-limit" && i + 1 < argc) {
      bridge.unstable_limit = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--stats-file" && i + 1 < argc) {
      bridge.stats_file = argv[++i];
    } else if (a == "-o" && i + 1 < argc) {
      fuse_extra.push_back("-o");
      fuse_extra.push_back(argv[++i]);
    } else if (a.starts_with("-")) {
      std::fprintf(stderr, "slacker-nfs-fuse: unknown option %s\n%s", a.c_str(), kUsage);
      return 2;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2 || contexts < 1 || contexts > 64) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  bridge.url = positional[0];
  if (!SplitUrl(bridge.url, &bridge.server, &bridge.export_path)) {
    std::fprintf(stderr, "slacker-nfs-fuse: %s is not nfs://HOST/EXPORT\n", bridge.url.c_str());
    return 2;
  }
  for (int i = 0; i < contexts; ++i) {
    auto c = std::make_unique<Context>();
    c->nfs = nfs_init_context();
    if (c->nfs == nullptr) {
      std::fprintf(stderr, "slacker-nfs-fuse: cannot create an NFS context\n");
      return 1;
    }
    nfs_set_version(c->nfs, NFS_V3);
    nfs_set_autoreconnect(c->nfs, -1);
    nfs_set_dircache(c->nfs, 0);  // other hosts and the snapshot service change directories
    if (nfs_mount(c->nfs, bridge.server.c_str(), bridge.export_path.c_str()) != 0) {
      std::fprintf(stderr,
                   "slacker-nfs-fuse: mount %s: %s (is the NFS server up and exporting %s over NFSv3?)\n",
                   bridge.url.c_str(), nfs_get_error(c->nfs), bridge.export_path.c_str());
      return 1;
    }
    bridge.contexts.push_back(std::move(c));
  }
  bridge.write_max = std::clamp<uint64_t>(nfs_get_writemax(bridge.contexts[0]->nfs), 4096, kMaxIo);
  std::fprintf(stderr, "slacker-nfs-fuse: %s mounted over NFSv3 with %d connections (readmax %llu, writemax %llu)\n",
               bridge.url.c_str(), contexts, static_cast<unsigned long long>(nfs_get_readmax(bridge.contexts[0]->nfs)),
               static_cast<unsigned long long>(nfs_get_writemax(bridge.contexts[0]->nfs)));

  fuse_operations ops{};
  ops.init = Init;
  ops.getattr = GetAttr;
  ops.readdir = ReadDir;
  ops.open = Open;
  ops.create = Create;
  ops.release = Release;
  ops.read = Read;
  ops.write = Write;
  ops.fsync = Fsync;
  ops.flush = Flush;
  ops.fsyncdir = FsyncDir;
  ops.truncate = Truncate;
  ops.unlink = Unlink;
  ops.rename = Rename;
  ops.link = Link;
  ops.symlink = Symlink;
  ops.readlink = ReadLink;
  ops.mkdir = MkDir;
  ops.rmdir = RmDir;
  ops.chmod = ChMod;
  ops.chown = ChOwn;
  ops.utimens = UTimens;
  ops.statfs = StatFs;
  ops.access = Access;

  std::string fsname = "fsname=" + bridge.url;
  std::vector<std::string> args = {"slacker-nfs-fuse", positional[1], "-f", "-o", fsname,
                                   "-o", "subtype=slacker-nfs", "-o", "max_read=1048576", "-o", "max_threads=64"};
  args.insert(args.end(), fuse_extra.begin(), fuse_extra.end());
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());

  std::atomic<bool> done{false};
  std::thread stats([&] {
    while (!done.load()) {
      WriteStats();
      for (int i = 0; i < 10 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  int rc = fuse_main(static_cast<int>(cargs.size()), cargs.data(), &ops, nullptr);
  done = true;
  stats.join();
  WriteStats();
  for (auto& c : bridge.contexts) nfs_destroy_context(c->nfs);
  return rc;
}
