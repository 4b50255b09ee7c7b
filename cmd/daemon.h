// What slacker's daemons (slackerd, slacker-snapshotter) share at start-up (their
// command lines: common/flags.h): the host id, the cluster key, and opening the shared store in
// all its forms (storage_backend/open_store.h).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "driver/slacker_driver.h"
#include "common/status.h"
#include "os/os.h"
#include "storage_backend/backend.h"
#include "storage_backend/lease.h"
#include "storage_backend/open_store.h"

namespace slacker::cmd {

// The hostname followed by `suffix`.
std::string DefaultHostId(const std::string& suffix = "");

// Logs startup_failed and prints "PROGRAM: WHAT: message" to stderr; returns 1.
int StartupFailed(const char* program, const Status& s, const char* what);

// Default initializers let callers name only the fields they set.
struct StoreFlags {
  std::string store = {};       // "" (embedded), DIR, nfs://HOST/EXPORT, http[s]://HOST:PORT
  std::string state = {};       // host-local state: embedded store, NFS bridge mount point
  std::string host_id = {};
  std::string token_file = {};  // snapshot service bearer token (http[s]:// only)
  std::string ca_file = {};     // CA for https://
  std::string nfs_bridge = {};  // slacker-nfs-fuse binary; "" finds it (BridgePath)
  std::string max_spool = {};   // DriverOptions::max_spool_bytes as a size ("" = default)
  std::string unmount_delay = {};  // DriverOptions::park_time in seconds ("" = 0)
  bool share_page_cache = false;   // DriverOptions::share_page_cache
  std::string prefetch = {};       // DriverOptions::prefetch: "on" or "off" ("" = off)
};

// The store part of the flags, for storage_backend::OpenStore.
storage_backend::StoreSpec SpecOf(const StoreFlags& flags);

// What a daemon serves from. Members are destroyed in reverse order: the driver before
// the lease, the lease before the store it lives on, the state lock last.
struct DaemonCore {
  std::unique_ptr<os::Os> os;
  std::optional<storage_backend::StateDirLock> state_lock;  // <state>/lock
  storage_backend::OpenedStore store;
  registry_shim::ReferenceTrust trust;  // as read at start
  // Reads the keys again (null with --cluster-key FILE: fixed keys).
  std::function<Result<std::vector<std::string>>()> reload_keys;
  std::unique_ptr<storage_backend::Lease> lease;  // leases/<host id>.json on the store
  std::unique_ptr<driver::SlackerDriver> driver;
};

struct KeyFlags {
  std::string cluster_key_file = {};  // --cluster-key FILE: overrides the store's keys
  bool allow_unsigned_references = false;
};

// The keys reference tars are signed (the first) and verified with: the file's when
// flags.cluster_key_file is set (its lines, current first), else the store's cluster.key
// and cluster.key.prev, created when the store has none (storage_backend/cluster_key.h).
// With flags.allow_unsigned_references, logs a loud warning. `*reload` (if not null) is
// set to a function that reads the store's keys again (null with --cluster-key).
Result<registry_shim::ReferenceTrust> LoadReferenceTrust(
    const KeyFlags& flags, const std::string& store_root,
    std::function<Result<std::vector<std::string>>()>* reload);

// Creates flags.state and locks it (<state>/lock), opens the store, takes the lease of
// flags.host_id on it (refreshed until the core is destroyed; if it is ever lost the
// process sends itself SIGTERM), loads the keys (LoadReferenceTrust) and opens a
// SlackerDriver with host id flags.host_id and its state in `driver_state` (created): its
// recovery runs under the lease. `program` names this process in the lease and the lock.
// On failure `*step` names the step that failed ("open store", ...), for StartupFailed; a
// second process for the same state directory or host id fails here with an error naming
// the holder.
Result<DaemonCore> OpenDaemonCore(const char* program, const StoreFlags& flags, const std::string& driver_state,
                                  const KeyFlags& keys, std::string* step);

// The end of a clean stop, once nothing is served any more: records it in <state>/lock
// (the next start warns "previous_run_unclean" when a run did not get here) and logs
// event=stopped.
void LogCleanStop(DaemonCore& core);

// Applies --log-level VALUE; on an unknown value prints "PROGRAM: unknown --log-level
// VALUE" to stderr and returns false.
bool ApplyLogLevel(const char* program, const std::string& value);

}  // namespace slacker::cmd
