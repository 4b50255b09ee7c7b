// NfsClient over one libnfs 4.0 context (an NFSv3 mount of the export with its own TCP
// connection). Reconnects on its own: autoreconnect retries forever, like a "hard"
// kernel mount, so a request in flight when the server goes away is re-sent after the
// reconnect and file handles stay valid (NFSv3 handles are persistent).
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "nfs_bridge/nfs_client.h"

struct nfs_context;

namespace slacker::nfs_bridge {

class LibnfsClient : public NfsClient {
 public:
  // Mounts `export_path` of `server` over NFSv3; EIO with libnfs's message on failure.
  static Result<std::unique_ptr<LibnfsClient>> Mount(const std::string& server, const std::string& export_path);
  ~LibnfsClient() override;
  LibnfsClient(const LibnfsClient&) = delete;
  LibnfsClient& operator=(const LibnfsClient&) = delete;

  uint64_t read_max() const;
  uint64_t write_max() const;

  int LStat(const std::string& path, NfsAttr* out) override;
  int Stat(const std::string& path, NfsAttr* out) override;
  int FStat(NfsOpenFile* f, NfsAttr* out) override;
  int Open(const std::string& path, int flags, NfsOpenFile** out) override;
  int Create(const std::string& path, int flags, int mode, NfsOpenFile** out) override;
  void Close(NfsOpenFile* f) override;
  NfsHandle Handle(NfsOpenFile* f) override;
  int PRead(NfsOpenFile* f, uint64_t offset, uint64_t count, char* buf) override;
  int ReadDir(const std::string& path, std::vector<NfsDirEntry>* out) override;
  int Truncate(const std::string& path, uint64_t size) override;
  int FTruncate(NfsOpenFile* f, uint64_t size) override;
  int Unlink(const std::string& path) override;
  int Rename(const std::string& from, const std::string& to) override;
  int Link(const std::string& from, const std::string& to) override;
  int Symlink(const std::string& target, const std::string& path) override;
  int ReadLink(const std::string& path, char* buf, size_t size) override;
  int MkDir(const std::string& path, int mode) override;
  int RmDir(const std::string& path) override;
  int ChMod(const std::string& path, int mode) override;
  int ChOwn(const std::string& path, int uid, int gid) override;
  int UTimes(const std::string& path, const timeval times[2]) override;
  int StatVfs(const std::string& path, NfsFsStat* out) override;
  Result<FileChannel::WriteReply> Write3(const NfsHandle& handle, uint64_t offset, std::span<const char> data,
                                         Stability how) override;
  Result<WriteVerifier> Commit3(const NfsHandle& handle) override;

 private:
  explicit LibnfsClient(nfs_context* nfs) : nfs_(nfs) {}
  // Runs the context's event loop until `*done`, as libnfs's own synchronous calls do.
  Status WaitForReply(const bool* done);

  nfs_context* const nfs_;
};

}  // namespace slacker::nfs_bridge
