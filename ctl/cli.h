// slackerctl's command line and what every command shares: the flags, the exit
// codes, the worker (its store, keys and dockerd) a command opens, and the commands
// that live in their own files (cmd_gc.cc, cmd_images.cc). main.cc dispatches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/files.h"
#include "common/state_layout.h"
#include "common/status.h"
#include "ctl/docker.h"
#include "ctl/file_stream.h"
#include "os/os.h"
#include "registry_shim/reference.h"
#include "storage_backend/open_store.h"

namespace slacker::ctl {

struct Flags {
  std::string command;
  std::vector<std::string> args;
  std::string state = "/var/lib/slacker";
  std::string store;
  std::string store_token_file;
  std::string store_ca;
  std::string nfs_bridge;
  std::string host_id;
  std::string cluster_key_file;
  std::string registry;
  std::string output;
  std::string tmp;
  ctl::DockerTarget docker;
  long min_age_sec = 3600;
  long grace_sec = 60;
  bool json = false;
  bool do_delete = false;
  bool no_registry = false;
  bool allow_unsigned = false;
};

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2;

// The usage text (--help).
extern const char* const kUsage;
// Prints ERR and the usage to stderr; returns kExitUsage.
int Usage(const std::string& err);
// Prints the error (and {"error": ...} with --json); returns kExitError.
int Fail(const Flags& f, const Status& s);
// A progress line on stderr.
void Progress(const std::string& line);
std::string HumanBytes(uint64_t b);
uint64_t AllocatedBytes(const std::string& path);

// <state>/ctl-nfs.XXXXXX: the state of this run's own NFS bridge (its mount point, log and
// stats), removed file by file when the run ends. Never recursively: were the bridge still
// mounted, that would walk into the store.
class BridgeStateDir {
 public:
  static Result<BridgeStateDir> Make(const std::string& state) {
    std::string tmpl = JoinPath(state, "ctl-nfs.XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "create a directory in " + state);
    return BridgeStateDir(std::move(tmpl));
  }
  BridgeStateDir() = default;
  BridgeStateDir(BridgeStateDir&& o) noexcept : path_(std::exchange(o.path_, "")) {}
  BridgeStateDir& operator=(BridgeStateDir&& o) noexcept {
    std::swap(path_, o.path_);
    return *this;
  }
  ~BridgeStateDir() {
    if (path_.empty()) return;
    for (const std::string& f : {common::NfsBridgeLog(path_), common::NfsStatsFile(path_)}) ::unlink(f.c_str());
    // rmdir fails (and leaves it) if the bridge is still mounted at nfs/.
    if (::rmdir(common::NfsMountPoint(path_).c_str()) != 0 && errno != ENOENT) return;
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  explicit BridgeStateDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Everything a command needs of this worker. Members are destroyed in reverse order: the
// store and its NFS bridge, then the bridge's directory, then the Os they use.
struct Worker {
  std::unique_ptr<os::Os> os;
  BridgeStateDir bridge_state;  // set for nfs:// and http[s]:// stores
  storage_backend::OpenedStore opened;
  storage_backend::Backend* store = nullptr;  // opened.backend
  registry_shim::ReferenceTrust trust;
};

// Opens the worker's store (and its NFS bridge for nfs:// and http[s]:// stores) and
// keys; with_docker: also finds dockerd's data root and driver (convert, export).
Result<Worker> OpenWorker(Flags& f, bool with_docker = false);
// Scratch space for tarballs: --tmp, else $TMPDIR, else /var/tmp.
Result<ScratchDir> MakeScratch(const Flags& f);

// The commands in their own files.
int CmdGc(Flags& f);       // cmd_gc.cc
int CmdConvert(Flags& f);  // cmd_images.cc
int CmdExport(Flags& f);   // cmd_images.cc

}  // namespace slacker::ctl
