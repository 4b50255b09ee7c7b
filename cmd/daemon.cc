#include "cmd/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/files.h"
#include "common/log.h"
#include "storage_backend/cluster_key.h"

namespace slacker::cmd {
std::string DefaultHostId(const std::string& suffix) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + suffix;
}

int StartupFailed(const char* program, const Status& s, const char* what) {
  log::Error("startup_failed", {{"step", what}, {"err", s.message()}});
  std::fprintf(stderr, "%s: %s: %s\n", program, what, s.message().c_str());
  return 1;
}

Result<registry_shim::ReferenceTrust> LoadReferenceTrust(
    const KeyFlags& flags, const std::string& store_root,
    std::function<Result<std::vector<std::string>>()>* reload) {
  registry_shim::ReferenceTrust trust;
  trust.allow_unsigned = flags.allow_unsigned_references;
  if (reload) *reload = nullptr;
  if (!flags.cluster_key_file.empty()) {
    SLACKER_ASSIGN_OR_RETURN(trust.keys, WithContext("read --cluster-key", storage_backend::ReadKeyFile(flags.cluster_key_file)));
    log::Info("cluster_key", {{"source", flags.cluster_key_file},
                              {"key_id", storage_backend::KeyId(trust.keys.front())},
                              {"keys", std::to_string(trust.keys.size())}});
  } else {
    SLACKER_ASSIGN_OR_RETURN(trust.keys, WithContext("read the store's cluster key", storage_backend::EnsureClusterKeys(store_root)));
    log::Info("cluster_key", {{"source", JoinPath(store_root, storage_backend::kClusterKeyFile)},
                              {"key_id", storage_backend::KeyId(trust.keys.front())},
                              {"keys", std::to_string(trust.keys.size())}});
    if (reload) *reload = [store_root] { return storage_backend::ReadClusterKeys(store_root); };
  }
  if (trust.allow_unsigned) {
    log::Warn("unsigned_references_allowed",
              {{"risk", "anyone who can push an image and read a snapshot id (every container can) reads any "
                        "image on this store"},
               {"action", "remove --allow-unsigned-references once every image is re-pushed or converted"}});
  }
  return trust;
}

Result<DaemonCore> OpenDaemonCore(const char* program, const StoreFlags& flags, const std::string& driver_state,
                                  const KeyFlags& keys, std::string* step) {
  DaemonCore core;
  core.os = os::NewRealOs();
  *step = "create state directory";
  SLACKER_RETURN_IF_ERROR(MakeDirs(flags.state, 0700));
  // Not traversable by other users (mount points, the embedded store, layer records live
  // here); a state directory made by an older release (0755) is tightened.
  SLACKER_RETURN_IF_ERROR(CloseToOthers(flags.state));
  *step = "lock state directory";
  SLACKER_ASSIGN_OR_RETURN(core.state_lock, storage_backend::StateDirLock::Acquire(flags.state, program));
  if (core.state_lock->previous_run() == storage_backend::StateDirLock::PreviousRun::kRunning)
    log::Warn("previous_run_unclean", {{"previous", core.state_lock->previous_line()},
                                       {"note", "it did not record a clean stop (crash, SIGKILL or power loss); "
                                                "recovery checks the state directory and the store"}});
  *step = "open store";
  SLACKER_ASSIGN_OR_RETURN(core.store, storage_backend::OpenStore(*core.os, SpecOf(flags)));
  *step = "take the lease of host id " + flags.host_id;
  SLACKER_ASSIGN_OR_RETURN(core.lease, storage_backend::Lease::Acquire(JoinPath(core.store.backend->root(), storage_backend::kLeasesDir),
                                                                       flags.host_id, {.program = program}));
  core.lease->StartRefresher([host_id = flags.host_id](const Status& s) {
    // Another process acts for this host id now: stop before doing anything in its name.
    log::Error("lease_lost", {{"host_id", host_id}, {"err", s.message()},
                              {"action", "stopping; check that one process per host id uses the store"}});
    ::kill(::getpid(), SIGTERM);
  });
  driver::DriverOptions opts;
  opts.state_dir = driver_state;
  opts.host_id = flags.host_id;
  if (!flags.max_spool.empty()) {
    *step = "parse --max-spool";
    SLACKER_ASSIGN_OR_RETURN(opts.max_spool_bytes, ParseSize(flags.max_spool));
  }
  if (!flags.unmount_delay.empty()) {
    *step = "parse --unmount-delay";
    char* end = nullptr;
    double sec = std::strtod(flags.unmount_delay.c_str(), &end);
    if (end == flags.unmount_delay.c_str() || *end != '\0' || !(sec >= 0 && sec <= 3600)) {
      return Errorf(EINVAL, "--unmount-delay {:?}: want seconds between 0 and 3600", flags.unmount_delay);
    }
    opts.park_time = std::chrono::milliseconds(static_cast<int64_t>(sec * 1000));
  }
  opts.share_page_cache = flags.share_page_cache;
  if (!flags.prefetch.empty()) {
    *step = "parse --prefetch";
    if (flags.prefetch != "on" && flags.prefetch != "off")
      return Errorf(EINVAL, "--prefetch {:?}: want on or off", flags.prefetch);
    opts.prefetch.enabled = flags.prefetch == "on";
  }
  *step = "read cluster key";
  SLACKER_ASSIGN_OR_RETURN(opts.trust, LoadReferenceTrust(keys, core.store.backend->root(), &opts.reload_keys));
  *step = "create driver state directory";
  SLACKER_RETURN_IF_ERROR(MakeDirs(driver_state, 0700));
  SLACKER_RETURN_IF_ERROR(CloseToOthers(driver_state));
  *step = "open driver state";
  core.trust = opts.trust;
  core.reload_keys = opts.reload_keys;
  SLACKER_ASSIGN_OR_RETURN(core.driver, driver::SlackerDriver::Open(*core.os, *core.store.backend, opts));
  step->clear();
  return core;
}

void LogCleanStop(DaemonCore& core) {
  if (core.state_lock) {
    Status s = core.state_lock->MarkStopped();
    if (!s.ok()) log::Warn("stop_not_recorded", {{"error", s.message()}});
  }
  log::Info("stopped");
}

bool ApplyLogLevel(const char* program, const std::string& value) {
  log::Level level;
  if (!log::ParseLevel(value, &level)) {
    std::fprintf(stderr, "%s: unknown --log-level %s\n", program, value.c_str());
    return false;
  }
  log::SetLevel(level);
  return true;
}

storage_backend::StoreSpec SpecOf(const StoreFlags& flags) {
  return {.store = flags.store,
          .state = flags.state,
          .host_id = flags.host_id,
          .token_file = flags.token_file,
          .ca_file = flags.ca_file,
          .nfs_bridge = flags.nfs_bridge};
}

}  // namespace slacker::cmd
