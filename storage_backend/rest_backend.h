// The rest backend (DESIGN.md §7): the store's files are reached through this host's view
// of an NFS export (a kernel NFS mount, or slacker-nfs-fuse), while snapshot, promote and
// clone run on the storage host through slacker-storaged's HTTP API
// (storage_backend/API.md), where FICLONE works. Reads (metadata, listings), ref markers
// and volume removal go through the file view directly.
//
// Every call to the service carries an Idempotency-Key that stays the same across its
// retries: a request whose reply was lost is not executed twice. Connection failures,
// timeouts and 5xx replies are retried with exponential backoff (bounded: `attempts`);
// 4xx replies are not retried and come back as a Status naming the service and its error.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "os/os.h"
#include "storage_backend/backend.h"

namespace slacker::storage_backend {

struct RestOptions {
  std::string url;          // http://HOST:PORT or https://HOST:PORT (no path)
  std::string token;        // bearer token
  std::string ca_file;      // https: trust these CAs (PEM); empty: the system's default paths
  int timeout_ms = 10'000;  // per attempt: connect + request + reply
  int attempts = 5;         // first try + retries (backoff 250 ms, doubling, max 4 s)
};

// A client of slacker-storaged.
class StoreServiceClient {
 public:
  explicit StoreServiceClient(RestOptions opts);

  // Sends METHOD target with `body` (JSON; null: no body) and returns the reply's JSON.
  // `idempotency_key` non-empty: sent as Idempotency-Key on every attempt.
  // Errors: EACCES (401), EINVAL (400), ENOENT (404), ENOSPC (507), ECONNREFUSED /
  // ETIMEDOUT / EIO when the service cannot be reached after all attempts.
  Result<nlohmann::json> Call(const std::string& method, const std::string& target, const nlohmann::json& body,
                              const std::string& idempotency_key = "") const;

  const RestOptions& options() const { return opts_; }

 private:
  const RestOptions opts_;
  std::string host_, port_;
  bool tls_ = false;
};

// GET /v1/store: {"format","uuid","created","export"}.
Result<nlohmann::json> FetchStoreDescription(const StoreServiceClient& client);

// Opens the store whose files are at `files_dir` (this host's view of the export the
// service advertises) with the service doing the clones. Fails with EINVAL if the
// store.json under files_dir names a different store than the service (wrong mount).
Result<std::unique_ptr<Backend>> OpenRestStore(os::Os& os, RestOptions opts, const std::string& files_dir,
                                               const std::string& host_id);

}  // namespace slacker::storage_backend
