// An in-memory NFSv3 export for the bridge's tests: files by path, handles that are the
// path's bytes, UNSTABLE writes that a Crash() loses (and that changes the write
// verifier), and an errno to fail the next call with. One FakeExport is shared by all
// the FakeNfsClients of a session, as one server serves all the connections.
#pragma once

#include <cerrno>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "nfs_bridge/nfs_client.h"

namespace slacker::nfs_bridge {

struct FakeExport {
  struct Node {
    std::string cached;   // what reads see
    std::string durable;  // what survives a Crash()
    uint64_t mode = 0100644;
    int uid = 0, gid = 0;
    std::string link;  // symlink target
  };
  std::mutex mu;
  std::map<std::string, Node> nodes;
  WriteVerifier verifier{7};
  int fail_next = 0;  // the next call fails with -fail_next (then 0 again)
  std::vector<std::string> calls;  // "OPEN /f", "WRITE3 /f 0 5", ... in order
  std::vector<timeval> last_utimes;
  int opens = 0, closes = 0;

  void Crash() {
    std::lock_guard<std::mutex> g(mu);
    for (auto& [path, n] : nodes) n.cached = n.durable;
    ++verifier[0];
  }
};

class FakeNfsClient : public NfsClient {
 public:
  explicit FakeNfsClient(FakeExport* e) : e_(e) {}

  int LStat(const std::string& path, NfsAttr* out) override { return Attr("LSTAT", path, out); }
  int Stat(const std::string& path, NfsAttr* out) override { return Attr("STAT", path, out); }
  int FStat(NfsOpenFile* f, NfsAttr* out) override { return Attr("FSTAT", PathOf(f), out); }
  int Open(const std::string& path, int flags, NfsOpenFile** out) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("OPEN " + path + " " + std::to_string(flags)); rc < 0) return rc;
    if (!e_->nodes.contains(path)) return -ENOENT;
    ++e_->opens;
    *out = New(path);
    return 0;
  }
  int Create(const std::string& path, int flags, int mode, NfsOpenFile** out) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("CREATE " + path + " " + std::to_string(flags) + " " + std::to_string(mode)); rc < 0)
      return rc;
    e_->nodes[path].mode = 0100000 | static_cast<uint64_t>(mode);
    ++e_->opens;
    *out = New(path);
    return 0;
  }
  void Close(NfsOpenFile* f) override {
    std::lock_guard<std::mutex> g(e_->mu);
    ++e_->closes;
    delete reinterpret_cast<std::string*>(f);
  }
  NfsHandle Handle(NfsOpenFile* f) override {
    const std::string& p = PathOf(f);
    return NfsHandle(p.begin(), p.end());
  }
  int PRead(NfsOpenFile* f, uint64_t offset, uint64_t count, char* buf) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("READ " + PathOf(f) + " " + std::to_string(offset) + " " + std::to_string(count)); rc < 0)
      return rc;
    const std::string& c = e_->nodes[PathOf(f)].cached;
    if (offset >= c.size()) return 0;
    size_t n = std::min<uint64_t>(count, c.size() - offset);
    std::copy_n(c.data() + offset, n, buf);
    return static_cast<int>(n);
  }
  int ReadDir(const std::string& path, std::vector<NfsDirEntry>* out) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("READDIR " + path); rc < 0) return rc;
    uint64_t ino = 1;
    for (auto& [p, n] : e_->nodes) out->push_back({p.substr(p.rfind('/') + 1), ino++, static_cast<uint32_t>(n.mode)});
    return 0;
  }
  int Truncate(const std::string& path, uint64_t size) override { return Resize("TRUNCATE", path, size); }
  int FTruncate(NfsOpenFile* f, uint64_t size) override { return Resize("FTRUNCATE", PathOf(f), size); }
  int Unlink(const std::string& path) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("UNLINK " + path); rc < 0) return rc;
    return e_->nodes.erase(path) == 1 ? 0 : -ENOENT;
  }
  int Rename(const std::string& from, const std::string& to) override { return Simple("RENAME " + from + " " + to); }
  int Link(const std::string& from, const std::string& to) override { return Simple("LINK " + from + " " + to); }
  int Symlink(const std::string& target, const std::string& path) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("SYMLINK " + target + " " + path); rc < 0) return rc;
    e_->nodes[path].link = target;
    return 0;
  }
  int ReadLink(const std::string& path, char* buf, size_t size) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("READLINK " + path); rc < 0) return rc;
    std::string t = e_->nodes[path].link.substr(0, size - 1);
    std::copy(t.begin(), t.end(), buf);
    buf[t.size()] = '\0';
    return 0;
  }
  int MkDir(const std::string& path, int mode) override { return Simple("MKDIR " + path + " " + std::to_string(mode)); }
  int RmDir(const std::string& path) override { return Simple("RMDIR " + path); }
  int ChMod(const std::string& path, int mode) override { return Simple("CHMOD " + path + " " + std::to_string(mode)); }
  int ChOwn(const std::string& path, int uid, int gid) override {
    return Simple("CHOWN " + path + " " + std::to_string(uid) + " " + std::to_string(gid));
  }
  int UTimes(const std::string& path, const timeval times[2]) override {
    std::lock_guard<std::mutex> g(e_->mu);
    e_->last_utimes = {times[0], times[1]};
    return Begin("UTIMES " + path);
  }
  int StatVfs(const std::string& path, NfsFsStat* out) override {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin("STATVFS " + path); rc < 0) return rc;
    *out = {4096, 4096, 1000, 500, 400, 100, 50, 40, 255};
    return 0;
  }
  Result<FileChannel::WriteReply> Write3(const NfsHandle& handle, uint64_t offset, std::span<const char> data,
                                         Stability how) override {
    std::lock_guard<std::mutex> g(e_->mu);
    std::string path(handle.begin(), handle.end());
    if (int rc = Begin("WRITE3 " + path + " " + std::to_string(offset) + " " + std::to_string(data.size()) +
                       (how == Stability::kFileSync ? " FILE_SYNC" : " UNSTABLE"));
        rc < 0)
      return Status::Error(-rc, "fake WRITE3 failed");
    FakeExport::Node& n = e_->nodes[path];
    Put(&n.cached, offset, data);
    if (how == Stability::kFileSync) Put(&n.durable, offset, data);
    return FileChannel::WriteReply{data.size(), how == Stability::kFileSync, e_->verifier};
  }
  Result<WriteVerifier> Commit3(const NfsHandle& handle) override {
    std::lock_guard<std::mutex> g(e_->mu);
    std::string path(handle.begin(), handle.end());
    if (int rc = Begin("COMMIT3 " + path); rc < 0) return Status::Error(-rc, "fake COMMIT3 failed");
    e_->nodes[path].durable = e_->nodes[path].cached;
    return e_->verifier;
  }

 private:
  // REQUIRES: e_->mu held. Logs the call; -errno if it is to fail.
  int Begin(const std::string& call) {
    e_->calls.push_back(call);
    int rc = -e_->fail_next;
    e_->fail_next = 0;
    return rc;
  }
  int Simple(const std::string& call) {
    std::lock_guard<std::mutex> g(e_->mu);
    return Begin(call);
  }
  int Attr(const std::string& what, const std::string& path, NfsAttr* out) {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin(what + " " + path); rc < 0) return rc;
    auto it = e_->nodes.find(path);
    if (it == e_->nodes.end()) return -ENOENT;
    out->mode = it->second.mode;
    out->size = it->second.cached.size();
    out->uid = static_cast<uint64_t>(it->second.uid);
    out->gid = static_cast<uint64_t>(it->second.gid);
    out->mtime = 1700000000;
    out->mtime_nsec = 5;
    return 0;
  }
  int Resize(const std::string& what, const std::string& path, uint64_t size) {
    std::lock_guard<std::mutex> g(e_->mu);
    if (int rc = Begin(what + " " + path + " " + std::to_string(size)); rc < 0) return rc;
    e_->nodes[path].cached.resize(size);
    e_->nodes[path].durable.resize(size);
    return 0;
  }
  static NfsOpenFile* New(const std::string& path) { return reinterpret_cast<NfsOpenFile*>(new std::string(path)); }
  static const std::string& PathOf(NfsOpenFile* f) { return *reinterpret_cast<std::string*>(f); }
  static void Put(std::string* s, uint64_t offset, std::span<const char> data) {
    if (s->size() < offset + data.size()) s->resize(offset + data.size(), '\0');
    std::copy(data.begin(), data.end(), s->begin() + static_cast<std::ptrdiff_t>(offset));
  }

  FakeExport* const e_;
};

}  // namespace slacker::nfs_bridge
