// The file system slacker-nfs-fuse serves: each FUSE operation as NFSv3 calls on the
// session (nfs_session.h), independent of libfuse (main.cc binds these to
// fuse_operations) and of libnfs (NfsClient). Every method returns 0 (or a byte count)
// or -errno, as FUSE wants; failures are counted in the session's counters.
//
// Open files: one handle per connection, opened lazily on the connection a request
// leased; writes go out as raw WRITE3 by the file's NFS handle and are kept until a
// COMMIT confirms them (UnstableWrites), which fsync, flush (close) and release do.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nfs_bridge/nfs_session.h"
#include "nfs_bridge/unstable_writes.h"

namespace slacker::nfs_bridge {

// The largest READ or WRITE the bridge sends (and FUSE's max_read/max_write).
constexpr uint64_t kMaxIo = 1 << 20;

// libnfs's attributes as stat(2)'s.
void ToStat(const NfsAttr& attr, struct stat* st);

// utimensat(2) times as NFSv3 SETATTR times: UTIME_NOW and UTIME_OMIT become `now`
// (libnfs's utimes cannot leave one time unchanged), nanoseconds become microseconds.
void ToTimevals(const timespec in[2], const timespec& now, timeval out[2]);

class BridgeFs {
 public:
  struct Options {
    bool stable_writes = false;             // --stable-writes: WRITE FILE_SYNC, nothing kept
    uint64_t unstable_limit = 64ull << 20;  // --unstable-limit: kept bytes per open file
    uint64_t write_max = kMaxIo;            // the server's wsize: the largest raw WRITE
  };

  struct OpenFile {
    std::string path;
    int flags = 0;                  // for the lazy opens: the access mode (and O_SYNC)
    std::vector<NfsOpenFile*> fh;   // per connection; null until first used there
    std::unique_ptr<SessionFileChannel> channel;
    std::unique_ptr<UnstableWrites> log;
    std::atomic<uint64_t> resent_counted{0};
  };

  // REQUIRES: `session` outlives this object.
  BridgeFs(NfsSession* session, Options options) : session_(session), options_(options) {}

  // `file`: the open file FUSE names, or null (by path).
  int GetAttr(const std::string& path, OpenFile* file, struct stat* st);
  // Calls `fill` for each entry until it returns false.
  int ReadDir(const std::string& path, const std::function<bool(const std::string& name, const struct stat&)>& fill);
  // open(2)/creat(2): `*out` is owned by the caller until Release.
  int Open(const std::string& path, int flags, OpenFile** out);
  int Create(const std::string& path, int flags, mode_t mode, OpenFile** out);
  // The last close: makes kept writes durable (its result is only logged by FUSE), closes
  // every connection's handle and frees `file`.
  int Release(OpenFile* file);
  int Read(OpenFile* file, char* buf, size_t size, uint64_t offset);
  int Write(OpenFile* file, const char* buf, size_t size, uint64_t offset);
  int Fsync(OpenFile* file) { return Sync(file, "fsync"); }
  int Flush(OpenFile* file) { return Sync(file, "flush"); }
  int Truncate(const std::string& path, uint64_t size, OpenFile* file);
  int Unlink(const std::string& path);
  int Rename(const std::string& from, const std::string& to, unsigned int flags);
  int Link(const std::string& from, const std::string& to);
  int Symlink(const std::string& target, const std::string& path);
  int ReadLink(const std::string& path, char* buf, size_t size);
  int MkDir(const std::string& path, mode_t mode);
  int RmDir(const std::string& path);
  int ChMod(const std::string& path, mode_t mode);
  // -1 for uid or gid keeps the current one (NFSv3 SETATTR sets both).
  int ChOwn(const std::string& path, uid_t uid, gid_t gid);
  int UTimens(const std::string& path, const timespec times[2]);
  int StatFs(const std::string& path, struct statvfs* out);

  size_t open_files() const;

 private:
  int OpenCommon(const std::string& path, int flags, bool create, mode_t mode, OpenFile** out);
  // The handle of `file` on the leased connection, opening it there on first use.
  int HandleOn(const NfsSession::Lease& lease, OpenFile* file, NfsOpenFile** out);
  // Makes what was written through `file` durable; -errno on failure.
  int Sync(OpenFile* file, const char* why);
  // Before a truncate: kept writes must not be re-sent after it (they could extend the
  // file again). `file`: truncated through its handle; null: by path, so every open file.
  int SyncBeforeTruncate(OpenFile* file, uint64_t size);
  void CountMetadataOp() { session_->counters().metadata_ops++; }

  NfsSession* const session_;
  const Options options_;
  // Every open file, so that a truncate by path can make their kept writes durable
  // first. Lock order: open_mu_, then a connection (Lease); nobody takes open_mu_ while
  // holding a connection.
  mutable std::mutex open_mu_;
  std::vector<OpenFile*> open_;
};

}  // namespace slacker::nfs_bridge
