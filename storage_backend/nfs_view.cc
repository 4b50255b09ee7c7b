#include "storage_backend/nfs_view.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "common/files.h"
#include "common/nfs_url.h"
#include "common/state_layout.h"
#include "common/log.h"

extern char** environ;

namespace slacker::storage_backend {
namespace {

constexpr const char* kBridgeFsType = "fuse.slacker-nfs";

bool BridgeMounted(os::Os& os, const std::string& dir) {
  auto mounts = loopdev::ReadMountInfo(os);
  if (!mounts.ok()) return false;
  const auto* m = loopdev::FindMount(*mounts, dir);
  return m != nullptr && m->fstype == kBridgeFsType;
}

bool Exited(pid_t pid, int* status) { return ::waitpid(pid, status, WNOHANG) == pid; }

}  // namespace

std::string FindKernelNfsMount(const std::vector<loopdev::MountInfoEntry>& mounts, const std::string& host,
                               const std::string& path) {
  std::string want = host + ":" + path;
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    if ((it->fstype == "nfs" || it->fstype == "nfs4") && (it->source == want || it->source == want + "/") &&
        it->root == "/")
      return it->mount_point;
  }
  return "";
}

Result<std::unique_ptr<NfsView>> NfsView::Open(os::Os& os, Options opts) {
  SLACKER_ASSIGN_OR_RETURN(NfsUrl parts, ParseNfsUrl(opts.url));
  std::unique_ptr<NfsView> v(new NfsView(os, std::move(opts)));
  SLACKER_ASSIGN_OR_RETURN(auto mounts, loopdev::ReadMountInfo(os));
  std::string kernel = FindKernelNfsMount(mounts, parts.server, parts.export_path);
  if (!kernel.empty()) {
    v->dir_ = kernel;
    v->kernel_ = true;
    log::Info("nfs_view", {{"url", v->opts_.url}, {"how", "kernel NFS mount"}, {"dir", kernel}});
    return v;
  }
  v->dir_ = common::NfsMountPoint(v->opts_.state_dir);
  SLACKER_RETURN_IF_ERROR(MakeDirs(v->dir_, 0700));
  if (BridgeMounted(os, v->dir_)) {
    // A bridge of a previous run that crashed: its FUSE connection is dead.
    log::Warn("nfs_bridge_stale_mount", {{"dir", v->dir_}});
    IgnoreError(os.Unmount(v->dir_, MNT_DETACH), "a stale bridge mount that will not detach is replaced by the new mount on top");
  }
  SLACKER_RETURN_IF_ERROR(v->StartBridge());
  v->supervisor_ = std::thread([raw = v.get()] { raw->Supervise(); });
  return v;
}

Status NfsView::StartBridge() {
  std::string log_path = common::NfsBridgeLog(opts_.state_dir);
  std::vector<std::string> args = {opts_.bridge_path, "--stats-file", common::NfsStatsFile(opts_.state_dir),
                                   opts_.url, dir_};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // slackerd blocks SIGTERM/SIGINT in all threads; the bridge must not inherit that.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid;
  int rc = posix_spawn(&pid, opts_.bridge_path.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::FromErrno(rc, "start NFS bridge " + opts_.bridge_path);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (!BridgeMounted(os_, dir_)) {
    if (Exited(pid, &status)) {
      auto tail = ReadFileToString(log_path);
      std::string last = tail.ok() ? tail->substr(tail->size() > 600 ? tail->size() - 600 : 0) : "";
      return Errorf(EIO, "NFS bridge for {} exited (status {}) before mounting at {}: {}", opts_.url, status, dir_,
                    last);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return Errorf(ETIMEDOUT, "NFS bridge for {} did not mount at {} within 30 s; see {}", opts_.url, dir_, log_path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    pid_ = pid;
  }
  log::Info("nfs_view", {{"url", opts_.url}, {"how", "slacker-nfs-fuse"}, {"dir", dir_},
                         {"pid", std::to_string(pid)}, {"log", log_path}});
  return Status::Ok();
}

// Restarts a bridge that died. Loop devices attached through the dead one stay broken
// (their FUSE connection is gone): the log says so; new attaches use the new bridge.
void NfsView::Supervise() {
  while (!closing_.load()) {
    pid_t pid;
    {
      std::lock_guard<std::mutex> l(mu_);
      pid = pid_;
    }
    int status = 0;
    if (pid > 0 && Exited(pid, &status) && !closing_.load()) {
      log::Error("nfs_bridge_exited", {{"pid", std::to_string(pid)}, {"status", std::to_string(status)},
                                       {"log", common::NfsBridgeLog(opts_.state_dir)},
                                       {"action", "restarting it; containers started before keep I/O errors: restart them"}});
      {
        std::lock_guard<std::mutex> l(mu_);
        pid_ = -1;
      }
      IgnoreError(os_.Unmount(dir_, MNT_DETACH), "shutting down: the bridge exits anyway, which ends the mount");
      Status s = StartBridge();
      if (!s.ok()) log::Error("nfs_bridge_restart_failed", {{"err", s.message()}});
    }
    for (int i = 0; i < 10 && !closing_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string NfsView::Describe() const {
  if (kernel_) return fmt::format("kernel NFS mount of {} at {}", opts_.url, dir_);
  return fmt::format("{} through slacker-nfs-fuse at {}", opts_.url, dir_);
}

void NfsView::Close() {
  if (closing_.exchange(true)) return;
  if (supervisor_.joinable()) supervisor_.join();
  if (kernel_) return;
  pid_t pid;
  {
    std::lock_guard<std::mutex> l(mu_);
    pid = pid_;
    pid_ = -1;
  }
  Status s = os_.Unmount(dir_, 0);
  if (!s.ok()) {
    log::Warn("nfs_bridge_busy", {{"dir", dir_}, {"err", s.message()},
                                  {"action", "detaching lazily; layers still attached lose their store"}});
    IgnoreError(os_.Unmount(dir_, MNT_DETACH), "shutting down: the bridge exits anyway, which ends the mount");
  }
  if (pid <= 0) return;
  int status = 0;
  for (int i = 0; i < 100; ++i) {
    if (Exited(pid, &status)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 40; ++i) {
    if (Exited(pid, &status)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
}

NfsView::~NfsView() { Close(); }

}  // namespace slacker::storage_backend
