// The snapshot service's request handling (storage_backend/API.md), independent of the
// transport: http_server.h feeds it parsed requests. It runs on the storage host, next to
// the exported file system, and does snapshot/clone/delete there through the local
// backend (FICLONE on XFS), for workers that reach the files only over NFSv3.
//
// Thread-safety: Handle() may be called from many threads. Mutating requests are
// serialised (each is O(1) on a reflink file system); reads run concurrently.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "common/fd.h"
#include "common/status.h"
#include "http/router.h"
#include "os/os.h"
#include "storage_backend/backend.h"

namespace slacker::storaged {

struct ServiceOptions {
  std::string root;        // the exported store directory (created with the layout if new)
  std::string export_url;  // what workers mount: "nfs://HOST/PATH"; reported by GET /v1/store
  std::string token;       // the shared bearer token; must be non-empty
  // Results of mutating requests are remembered under their Idempotency-Key this long
  // (in <root>/.storaged/requests/, mode 0600), so a retry does not act twice.
  int idempotency_ttl_seconds = 24 * 3600;
  // Expired records are pruned at start and then on a mutation at most this often.
  int prune_interval_seconds = 600;
};

struct Request {
  std::string method;  // "GET", "POST", "DELETE", ...
  std::string target;  // path, e.g. "/v1/snapshots/<id>"; a query string is ignored
  std::string authorization;    // the Authorization header, verbatim
  std::string idempotency_key;  // the Idempotency-Key header ("" = none)
  std::string body;
};

struct Reply {
  int status = 200;
  std::string body;  // JSON
};

class Service {
 public:
  // Opens (or creates) the store at opts.root. EINVAL if the token is empty.
  static Result<std::unique_ptr<Service>> Open(os::Os& os, ServiceOptions opts);

  Reply Handle(const Request& req);

  // Body limit the transport enforces (413 beyond it).
  static constexpr size_t kMaxBody = 64 * 1024;

  // {"error": message, "code": code} with `status`.
  static Reply Error(int status, const std::string& code, const std::string& message);

 private:
  Service(os::Os& os, ServiceOptions opts, storage_backend::StoreInfo info, UniqueFd requests_fd);

  // The API's routes (API.md) on router_; Dispatch checks the /v1 prefix and, for POST,
  // that the body is a JSON object, before routing.
  using Params = std::map<std::string, std::string>;
  using RouteFn = Reply (Service::*)(const Params& params, const nlohmann::json& body);
  Status AddRoute(std::string method, std::string pattern, RouteFn fn);
  Status AddRoutes();
  Reply Dispatch(const Request& req);
  static Reply NoRoute(const std::string& method, const std::string& target);
  static http::Reply ToHttp(Reply r);
  static http::Reply RouterError(int status, std::string message, const http::Request& req);
  Reply GetStore(const Params& params, const nlohmann::json& body);
  Reply ListSnapshots(const Params& params, const nlohmann::json& body);
  Reply GetSnapshot(const Params& params, const nlohmann::json& body);
  Reply PostSnapshot(const Params& params, const nlohmann::json& body);
  Reply PostClone(const Params& params, const nlohmann::json& body);
  Reply PostFileClone(const Params& params, const nlohmann::json& body);
  Reply DeleteSnapshot(const Params& params, const nlohmann::json& body);
  Reply DeleteVolume(const Params& params, const nlohmann::json& body);
  Reply Mutate(const Request& req);
  Result<storage_backend::Backend*> ForHost(const std::string& host);
  Result<std::string> StorePath(const std::string& rel, bool for_write) const;
  bool Authorized(const std::string& header) const;

  static std::string RequestRecordName(const std::string& key);
  void PruneRecords();  // REQUIRES: prune_mu_ held
  // The stripe of key_mu_ that serialises the requests carrying `key`.
  std::mutex& KeyMutex(const std::string& key);

  os::Os& os_;
  const ServiceOptions opts_;
  const storage_backend::StoreInfo info_;
  const UniqueFd requests_fd_;  // <root>/.storaged/requests, opened beneath the root
  // Mutations run in parallel: the backend is safe for concurrent calls (workers on a
  // shared directory store make them from many processes), so only the requests that
  // carry one Idempotency-Key are serialised (its check, its run and its record), by
  // a stripe of key_mu_. One lock across every mutation made storaged one server, the
  // bottleneck of bench/scale (bench/scale/README.md).
  static constexpr size_t kKeyStripes = 64;
  std::array<std::mutex, kKeyStripes> key_mu_;
  std::mutex prune_mu_;
  std::chrono::steady_clock::time_point last_prune_;  // guarded by prune_mu_
  std::mutex hosts_mu_;
  std::map<std::string, std::unique_ptr<storage_backend::Backend>> hosts_;
  http::Router router_;  // the API's routes (AddRoutes); read-only once Open() returns
};

// Maps a Status to an HTTP status and a short code ("ENOENT" -> 404 "not_found", ...).
Reply ErrorReply(const Status& s);

}  // namespace slacker::storaged
