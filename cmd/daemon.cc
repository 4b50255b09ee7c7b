#include "cmd/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/files.h"
#include "common/log.h"
#include "loopdev/embedded_store.h"
#include "storage_backend/cluster_key.h"
#include "storage_backend/local_backend.h"
#include "storage_backend/rest_backend.h"

namespace slacker::cmd {
namespace {

// `r`, with `context` prefixed to its error.
template <typename T>
Result<T> In(std::string_view context, Result<T> r) {
  if (!r.ok()) return r.status().Context(context);
  return r;
}

}  // namespace

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
    SLACKER_ASSIGN_OR_RETURN(trust.keys, In("read --cluster-key", storage_backend::ReadKeyFile(flags.cluster_key_file)));
    log::Info("cluster_key", {{"source", flags.cluster_key_file},
                              {"key_id", storage_backend::KeyId(trust.keys.front())},
                              {"keys", std::to_string(trust.keys.size())}});
  } else {
    SLACKER_ASSIGN_OR_RETURN(trust.keys, In("read the store's cluster key", storage_backend::EnsureClusterKeys(store_root)));
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
  *step = "open store";
  SLACKER_ASSIGN_OR_RETURN(core.store, OpenStore(*core.os, flags));
  *step = "take the lease of host id " + flags.host_id;
  SLACKER_ASSIGN_OR_RETURN(core.lease, storage_backend::Lease::Acquire(JoinPath(core.store.backend->root(), "leases"),
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

bool ApplyLogLevel(const char* program, const std::string& value) {
  log::Level level;
  if (!log::ParseLevel(value, &level)) {
    std::fprintf(stderr, "%s: unknown --log-level %s\n", program, value.c_str());
    return false;
  }
  log::SetLevel(level);
  return true;
}

std::string BridgePath(const std::string& flag) {
  if (!flag.empty()) return flag;
  char self[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string exe(self, static_cast<size_t>(n));
    std::string dir = exe.substr(0, exe.find_last_of('/'));
    for (const std::string& c : {dir + "/slacker-nfs-fuse", dir + "/../nfs_bridge/slacker-nfs-fuse"}) {
      if (::access(c.c_str(), X_OK) == 0) return c;
    }
  }
  for (const char* d : {"/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin"}) {
    std::string c = std::string(d) + "/slacker-nfs-fuse";
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "slacker-nfs-fuse";
}

Result<OpenedStore> OpenStore(os::Os& os, const StoreFlags& flags) {
  OpenedStore out;
  const std::string& store = flags.store;
  bool service = store.starts_with("http://") || store.starts_with("https://");
  if (!service && !store.starts_with("nfs://")) {
    std::string dir = store;
    if (dir.empty()) {
      SLACKER_ASSIGN_OR_RETURN(dir, In("set up the embedded store", loopdev::EnsureEmbeddedStore(os, flags.state)));
    }
    SLACKER_ASSIGN_OR_RETURN(out.backend, storage_backend::OpenLocalStore(os, dir, flags.host_id));
    out.description = dir;
    return out;
  }

  std::string export_url = store;
  storage_backend::RestOptions ropts;
  if (service) {
    if (flags.token_file.empty()) return Errorf(EINVAL, "--store {} needs --store-token-file", store);
    SLACKER_ASSIGN_OR_RETURN(std::string token,
                             In("read --store-token-file", ReadFileToString(flags.token_file)));
    ropts.url = store;
    ropts.token = token.substr(0, token.find('\n'));
    ropts.ca_file = flags.ca_file;
    SLACKER_ASSIGN_OR_RETURN(
        nlohmann::json desc,
        In("ask the snapshot service for the store",
           storage_backend::FetchStoreDescription(storage_backend::StoreServiceClient(ropts))));
    if (desc.is_object() && desc.contains("export") && desc["export"].is_string()) {
      export_url = desc["export"].get<std::string>();
    } else {
      export_url.clear();
    }
    if (export_url.empty()) {
      return Errorf(EINVAL,
                    "the snapshot service at {} advertises no NFS export (start slacker-storaged with "
                    "--export nfs://HOST/PATH)",
                    store);
    }
  }
  SLACKER_ASSIGN_OR_RETURN(out.nfs_view,
                           In("reach the NFS export",
                              NfsView::Open(os, {export_url, flags.state, BridgePath(flags.nfs_bridge)})));
  if (service) {
    SLACKER_ASSIGN_OR_RETURN(out.backend,
                             storage_backend::OpenRestStore(os, ropts, out.nfs_view->dir(), flags.host_id));
  } else {
    log::Warn("nfs_store_without_service",
              {{"store", store},
               {"action", "clones are full copies over NFS (slow); run slacker-storaged and use --store http://"}});
    SLACKER_ASSIGN_OR_RETURN(out.backend, storage_backend::OpenLocalStore(os, out.nfs_view->dir(), flags.host_id));
  }
  out.description = out.nfs_view->Describe();
  return out;
}

}  // namespace slacker::cmd
