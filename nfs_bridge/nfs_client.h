// The NFSv3 calls the bridge makes on one connection (one libnfs context), behind an
// interface so that the session and the FUSE operations are tested without a server
// (a fake in test/, libnfs in libnfs_client.h).
#pragma once

#include <sys/time.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "nfs_bridge/unstable_writes.h"

namespace slacker::nfs_bridge {

// The attributes of a file (libnfs's nfs_stat_64).
struct NfsAttr {
  uint64_t dev = 0, ino = 0, mode = 0, nlink = 0, uid = 0, gid = 0, rdev = 0, size = 0, blksize = 0,
           blocks = 0;
  uint64_t atime = 0, atime_nsec = 0, mtime = 0, mtime_nsec = 0, ctime = 0, ctime_nsec = 0;
};

struct NfsDirEntry {
  std::string name;
  uint64_t inode = 0;
  uint32_t mode = 0;
};

// FSSTAT/FSINFO as statvfs (libnfs's nfs_statvfs_64).
struct NfsFsStat {
  uint64_t bsize = 0, frsize = 0, blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0, favail = 0,
           namemax = 0;
};

// An NFSv3 file handle's bytes: valid on every connection to the server, and across a
// server restart.
using NfsHandle = std::vector<char>;

// A file opened on one NfsClient; only that client uses or closes it.
class NfsOpenFile;

// One connection. Not thread-safe: NfsSession serializes the calls on each. Paths are
// relative to the export's root ("/" is the root), as FUSE gives them.
// The int-returning calls follow libnfs: >= 0 on success (a byte count for PRead), -errno
// on failure.
class NfsClient {
 public:
  virtual ~NfsClient() = default;
  virtual int LStat(const std::string& path, NfsAttr* out) = 0;
  virtual int Stat(const std::string& path, NfsAttr* out) = 0;  // follows symlinks
  virtual int FStat(NfsOpenFile* f, NfsAttr* out) = 0;
  // `flags`: open(2) flags (access mode, O_TRUNC, O_EXCL, O_SYNC, O_DSYNC, O_CREAT).
  virtual int Open(const std::string& path, int flags, NfsOpenFile** out) = 0;
  virtual int Create(const std::string& path, int flags, int mode, NfsOpenFile** out) = 0;
  virtual void Close(NfsOpenFile* f) = 0;
  virtual NfsHandle Handle(NfsOpenFile* f) = 0;
  virtual int PRead(NfsOpenFile* f, uint64_t offset, uint64_t count, char* buf) = 0;
  virtual int ReadDir(const std::string& path, std::vector<NfsDirEntry>* out) = 0;
  virtual int Truncate(const std::string& path, uint64_t size) = 0;
  virtual int FTruncate(NfsOpenFile* f, uint64_t size) = 0;
  virtual int Unlink(const std::string& path) = 0;
  virtual int Rename(const std::string& from, const std::string& to) = 0;
  virtual int Link(const std::string& from, const std::string& to) = 0;
  virtual int Symlink(const std::string& target, const std::string& path) = 0;
  // `buf` gets the target, NUL-terminated (truncated to size-1).
  virtual int ReadLink(const std::string& path, char* buf, size_t size) = 0;
  virtual int MkDir(const std::string& path, int mode) = 0;
  virtual int RmDir(const std::string& path) = 0;
  virtual int ChMod(const std::string& path, int mode) = 0;
  virtual int ChOwn(const std::string& path, int uid, int gid) = 0;
  virtual int UTimes(const std::string& path, const timeval times[2]) = 0;
  virtual int StatVfs(const std::string& path, NfsFsStat* out) = 0;
  // Raw WRITE3 and COMMIT3 by handle: libnfs's pwrite and fsync do not tell the write
  // verifier (unstable_writes.h). Errors carry an errno.
  virtual Result<FileChannel::WriteReply> Write3(const NfsHandle& handle, uint64_t offset,
                                                  std::span<const char> data, Stability how) = 0;
  virtual Result<WriteVerifier> Commit3(const NfsHandle& handle) = 0;
};

}  // namespace slacker::nfs_bridge
