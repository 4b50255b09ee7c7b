#include "nfs_bridge/libnfs_client.h"

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <nfsc/libnfs-raw.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "nfs_bridge/nfs_session.h"

// libnfs 4.0's struct nfs_fh (include/libnfs-private.h; the public headers declare it
// only): the bytes of an open file's NFSv3 handle, for the raw WRITE and COMMIT calls.
struct nfs_fh {
  int len;
  char* val;
};

namespace slacker::nfs_bridge {
namespace {

nfsfh* Fh(NfsOpenFile* f) { return reinterpret_cast<nfsfh*>(f); }

NfsAttr FromLibnfs(const nfs_stat_64& n) {
  NfsAttr a;
  a.dev = n.nfs_dev;
  a.ino = n.nfs_ino;
  a.mode = n.nfs_mode;
  a.nlink = n.nfs_nlink;
  a.uid = n.nfs_uid;
  a.gid = n.nfs_gid;
  a.rdev = n.nfs_rdev;
  a.size = n.nfs_size;
  a.blksize = n.nfs_blksize;
  a.blocks = n.nfs_blocks;
  a.atime = n.nfs_atime;
  a.atime_nsec = n.nfs_atime_nsec;
  a.mtime = n.nfs_mtime;
  a.mtime_nsec = n.nfs_mtime_nsec;
  a.ctime = n.nfs_ctime;
  a.ctime_nsec = n.nfs_ctime_nsec;
  return a;
}

// What an RPC callback reports: done, and an error or the reply's fields.
struct Call {
  bool done = false;
  Status status;
  FileChannel::WriteReply write;
  WriteVerifier verifier{};
};

// The common part of the WRITE3 and COMMIT3 callbacks; true if the call failed.
bool Failed(Call* c, const char* what, int rpc_status, void* data, int nfs_status) {
  c->done = true;
  RpcOutcome rpc = rpc_status == RPC_STATUS_SUCCESS ? RpcOutcome::kSuccess
                   : rpc_status == RPC_STATUS_ERROR ? RpcOutcome::kError
                                                    : RpcOutcome::kCancelled;
  bool nfs_ok = rpc != RpcOutcome::kSuccess || nfs_status == NFS3_OK;
  c->status = NfsCallStatus(what, rpc, rpc == RpcOutcome::kError ? static_cast<const char*>(data) : nullptr,
                            nfs_ok, nfs_ok ? 0 : nfsstat3_to_errno(nfs_status),
                            nfs_ok ? "" : nfsstat3_to_str(nfs_status));
  return !c->status.ok();
}

void WriteDone(rpc_context*, int rpc_status, void* data, void* private_data) {
  auto* c = static_cast<Call*>(private_data);
  auto* res = static_cast<WRITE3res*>(data);
  if (Failed(c, "WRITE", rpc_status, data, rpc_status == RPC_STATUS_SUCCESS ? res->status : NFS3_OK)) return;
  const WRITE3resok& ok = res->WRITE3res_u.resok;
  c->write.count = ok.count;
  c->write.durable = ok.committed != UNSTABLE;
  std::memcpy(c->write.verifier.data(), ok.verf, c->write.verifier.size());
}

void CommitDone(rpc_context*, int rpc_status, void* data, void* private_data) {
  auto* c = static_cast<Call*>(private_data);
  auto* res = static_cast<COMMIT3res*>(data);
  if (Failed(c, "COMMIT", rpc_status, data, rpc_status == RPC_STATUS_SUCCESS ? res->status : NFS3_OK)) return;
  std::memcpy(c->verifier.data(), res->COMMIT3res_u.resok.verf, c->verifier.size());
}

nfs_fh3 ToFh3(const NfsHandle& handle) {
  nfs_fh3 fh{};
  fh.data.data_len = static_cast<u_int>(handle.size());
  fh.data.data_val = const_cast<char*>(handle.data());  // only read while encoding the call
  return fh;
}

}  // namespace

Result<std::unique_ptr<LibnfsClient>> LibnfsClient::Mount(const std::string& server,
                                                          const std::string& export_path) {
  nfs_context* nfs = nfs_init_context();
  if (nfs == nullptr) return Status::Error(ENOMEM, "cannot create an NFS context");
  std::unique_ptr<LibnfsClient> client(new LibnfsClient(nfs));
  nfs_set_version(nfs, NFS_V3);
  nfs_set_autoreconnect(nfs, -1);
  nfs_set_dircache(nfs, 0);  // other hosts and the snapshot service change directories
  if (nfs_mount(nfs, server.c_str(), export_path.c_str()) != 0) {
    return Errorf(EIO, "mount {}:{}: {} (is the NFS server up and exporting {} over NFSv3?)", server, export_path,
                  nfs_get_error(nfs), export_path);
  }
  return client;
}

LibnfsClient::~LibnfsClient() { nfs_destroy_context(nfs_); }

uint64_t LibnfsClient::read_max() const { return nfs_get_readmax(nfs_); }
uint64_t LibnfsClient::write_max() const { return nfs_get_writemax(nfs_); }

Status LibnfsClient::WaitForReply(const bool* done) {
  while (!*done) {
    pollfd pfd{nfs_get_fd(nfs_), static_cast<short>(nfs_which_events(nfs_)), 0};
    int rc = poll(&pfd, 1, 100);
    if (rc < 0 && errno == EINTR) continue;
    if (nfs_service(nfs_, rc < 0 ? -1 : pfd.revents) < 0) {
      return Status::Error(EIO, std::string("NFS connection: ") + nfs_get_error(nfs_));
    }
  }
  return Status::Ok();
}

int LibnfsClient::LStat(const std::string& path, NfsAttr* out) {
  nfs_stat_64 n;
  int rc = nfs_lstat64(nfs_, path.c_str(), &n);
  if (rc == 0) *out = FromLibnfs(n);
  return rc;
}

int LibnfsClient::Stat(const std::string& path, NfsAttr* out) {
  nfs_stat_64 n;
  int rc = nfs_stat64(nfs_, path.c_str(), &n);
  if (rc == 0) *out = FromLibnfs(n);
  return rc;
}

int LibnfsClient::FStat(NfsOpenFile* f, NfsAttr* out) {
  nfs_stat_64 n;
  int rc = nfs_fstat64(nfs_, Fh(f), &n);
  if (rc == 0) *out = FromLibnfs(n);
  return rc;
}

int LibnfsClient::Open(const std::string& path, int flags, NfsOpenFile** out) {
  nfsfh* fh = nullptr;
  int rc = nfs_open(nfs_, path.c_str(), flags, &fh);
  *out = reinterpret_cast<NfsOpenFile*>(fh);
  return rc;
}

int LibnfsClient::Create(const std::string& path, int flags, int mode, NfsOpenFile** out) {
  nfsfh* fh = nullptr;
  int rc = nfs_create(nfs_, path.c_str(), flags, mode, &fh);
  *out = reinterpret_cast<NfsOpenFile*>(fh);
  return rc;
}

void LibnfsClient::Close(NfsOpenFile* f) { nfs_close(nfs_, Fh(f)); }

NfsHandle LibnfsClient::Handle(NfsOpenFile* f) {
  const nfs_fh* h = nfs_get_fh(Fh(f));
  return NfsHandle(h->val, h->val + h->len);
}

int LibnfsClient::PRead(NfsOpenFile* f, uint64_t offset, uint64_t count, char* buf) {
  return nfs_pread(nfs_, Fh(f), offset, count, buf);
}

int LibnfsClient::ReadDir(const std::string& path, std::vector<NfsDirEntry>* out) {
  nfsdir* dir;
  int rc = nfs_opendir(nfs_, path.c_str(), &dir);
  if (rc < 0) return rc;
  while (nfsdirent* e = nfs_readdir(nfs_, dir)) {
    out->push_back({e->name, e->inode, e->mode});
  }
  nfs_closedir(nfs_, dir);
  return 0;
}

int LibnfsClient::Truncate(const std::string& path, uint64_t size) { return nfs_truncate(nfs_, path.c_str(), size); }
int LibnfsClient::FTruncate(NfsOpenFile* f, uint64_t size) { return nfs_ftruncate(nfs_, Fh(f), size); }
int LibnfsClient::Unlink(const std::string& path) { return nfs_unlink(nfs_, path.c_str()); }
int LibnfsClient::Rename(const std::string& from, const std::string& to) {
  return nfs_rename(nfs_, from.c_str(), to.c_str());
}
int LibnfsClient::Link(const std::string& from, const std::string& to) {
  return nfs_link(nfs_, from.c_str(), to.c_str());
}
int LibnfsClient::Symlink(const std::string& target, const std::string& path) {
  return nfs_symlink(nfs_, target.c_str(), path.c_str());
}
int LibnfsClient::ReadLink(const std::string& path, char* buf, size_t size) {
  return nfs_readlink(nfs_, path.c_str(), buf, static_cast<int>(size));
}
int LibnfsClient::MkDir(const std::string& path, int mode) { return nfs_mkdir2(nfs_, path.c_str(), mode); }
int LibnfsClient::RmDir(const std::string& path) { return nfs_rmdir(nfs_, path.c_str()); }
int LibnfsClient::ChMod(const std::string& path, int mode) { return nfs_chmod(nfs_, path.c_str(), mode); }
int LibnfsClient::ChOwn(const std::string& path, int uid, int gid) {
  return nfs_chown(nfs_, path.c_str(), uid, gid);
}
int LibnfsClient::UTimes(const std::string& path, const timeval times[2]) {
  timeval t[2] = {times[0], times[1]};  // libnfs takes them non-const
  return nfs_utimes(nfs_, path.c_str(), t);
}

int LibnfsClient::StatVfs(const std::string& path, NfsFsStat* out) {
  nfs_statvfs_64 s;
  int rc = nfs_statvfs64(nfs_, path.c_str(), &s);
  if (rc < 0) return rc;
  *out = {s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree, s.f_favail, s.f_namemax};
  return 0;
}

Result<FileChannel::WriteReply> LibnfsClient::Write3(const NfsHandle& handle, uint64_t offset,
                                                     std::span<const char> data, Stability how) {
  WRITE3args args{};
  args.file = ToFh3(handle);
  args.offset = offset;
  args.count = static_cast<count3>(data.size());
  args.stable = how == Stability::kFileSync ? FILE_SYNC : UNSTABLE;
  args.data.data_len = static_cast<u_int>(data.size());
  args.data.data_val = const_cast<char*>(data.data());  // encoded (copied) before the call returns
  Call c;
  if (rpc_nfs3_write_async(nfs_get_rpc_context(nfs_), WriteDone, &args, &c) != 0)
    return Status::Error(EIO, std::string("NFS WRITE: ") + nfs_get_error(nfs_));
  SLACKER_RETURN_IF_ERROR(WaitForReply(&c.done));
  SLACKER_RETURN_IF_ERROR(c.status);
  return c.write;
}

Result<WriteVerifier> LibnfsClient::Commit3(const NfsHandle& handle) {
  COMMIT3args args{};
  args.file = ToFh3(handle);
  Call c;
  if (rpc_nfs3_commit_async(nfs_get_rpc_context(nfs_), CommitDone, &args, &c) != 0)
    return Status::Error(EIO, std::string("NFS COMMIT: ") + nfs_get_error(nfs_));
  SLACKER_RETURN_IF_ERROR(WaitForReply(&c.done));
  SLACKER_RETURN_IF_ERROR(c.status);
  return c.verifier;
}

}  // namespace slacker::nfs_bridge
