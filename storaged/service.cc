#include "storaged/service.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>
#include <functional>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/io.h"
#include "common/log.h"
#include "storage_backend/local_backend.h"

namespace slacker::storaged {
namespace {

using nlohmann::json;

bool IsValidKey(const std::string& k) {
  if (k.empty() || k.size() > 128) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// Constant-time for equal lengths: the token's content does not leak through timing.
bool SameSecret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& other = a.size() == b.size() ? b : a;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ other[i]);
  return diff == 0;
}

std::vector<std::string> SplitPath(const std::string& target) {
  return SplitNonEmpty(std::string_view(target).substr(0, target.find('?')), '/');
}

Reply Ok(int status, const json& body) { return Reply{status, body.dump()}; }

// A string field of `body`, or an error naming it.
Result<std::string> Field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string()) return Errorf(EINVAL, "field \"{}\" (string) is required", name);
  return it->get<std::string>();
}

}  // namespace

Reply Service::Error(int status, const std::string& code, const std::string& message) {
  return Reply{status, json{{"error", message}, {"code", code}}.dump()};
}

Reply ErrorReply(const Status& s) {
  switch (s.code()) {
    case EINVAL: return Service::Error(400, "invalid_argument", s.message());
    case ENOENT: return Service::Error(404, "not_found", s.message());
    case EEXIST: return Service::Error(409, "exists", s.message());
    case ENOSPC: return Service::Error(507, "no_space", s.message());
    // A link on the path, or a path leading out of the store (common/files.h OpenBeneath).
    case ELOOP:
    case EXDEV: return Service::Error(400, "refused_path", s.message());
    default: return Service::Error(500, "internal", s.message());
  }
}

Result<std::unique_ptr<Service>> Service::Open(os::Os& os, ServiceOptions opts) {
  if (opts.token.empty()) return Errorf(EINVAL, "the token is empty");
  // Opening as a placeholder host creates the layout and store.json; host backends are
  // opened per request (each host's volumes/ and refs/).
  SLACKER_ASSIGN_OR_RETURN(auto probe, storage_backend::OpenLocalStore(os, opts.root, "storaged"));
  storage_backend::StoreInfo info = probe->info();
  // The records live on the store, which workers can write: the directory is opened once
  // beneath the root (no links) and every record is acted on through it.
  UniqueFd root_fd(::open(opts.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return Status::FromErrno(errno, "open store " + opts.root);
  auto requests = MakeDirsBeneath(root_fd.get(), storage_backend::kStoragedRequestsDir, 0700);
  if (!requests.ok()) return requests.status().Context("open snapshot service state");
  std::unique_ptr<Service> service(new Service(os, std::move(opts), std::move(info), std::move(requests).value()));
  SLACKER_RETURN_IF_ERROR(service->AddRoutes().Context("register the API's routes"));
  std::lock_guard<std::mutex> l(service->prune_mu_);
  service->PruneRecords();
  return service;
}

Service::Service(os::Os& os, ServiceOptions opts, storage_backend::StoreInfo info, UniqueFd requests_fd)
    : os_(os),
      opts_(std::move(opts)),
      info_(std::move(info)),
      requests_fd_(std::move(requests_fd)),
      router_(&Service::RouterError) {}

// Forgets idempotency records older than the TTL.
void Service::PruneRecords() {
  last_prune_ = std::chrono::steady_clock::now();
  std::string dir = JoinPath(opts_.root, storage_backend::kStoragedRequestsDir);
  auto names = ListDirFd(requests_fd_.get(), dir);
  if (!names.ok()) {
    log::Warn("storaged_prune_failed", {{"dir", dir}, {"err", names.status().message()}});
    return;
  }
  time_t now = std::time(nullptr);
  for (const auto& n : *names) {
    struct stat st;
    if (::fstatat(requests_fd_.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (now - st.st_mtime <= opts_.idempotency_ttl_seconds) continue;
    Status s = UnlinkAtIfExists(requests_fd_.get(), n, JoinPath(dir, n));
    if (!s.ok()) log::Warn("storaged_prune_failed", {{"file", JoinPath(dir, n)}, {"err", s.message()}});
  }
}

bool Service::Authorized(const std::string& header) const {
  static const std::string kBearer = "Bearer ";
  if (!header.starts_with(kBearer)) return false;
  return SameSecret(header.substr(kBearer.size()), opts_.token);
}

// A host's backend, opened at its first request. The open (its volumes/ and refs/
// directories) runs outside hosts_mu_, so a new worker does not hold up the others'
// requests, and does not walk the store: Open tightened it once (Tightening). Until
// 2026-12-03 each new host id walked every entry of the store under hosts_mu_: on a store
// with a few thousand idempotency records, 16 new workers stalled every request for 2 s
// (bench/scale/README.md "Validation").
Result<storage_backend::Backend*> Service::ForHost(const std::string& host) {
  if (!storage_backend::IsValidLayerName(host)) return Errorf(EINVAL, "invalid host id {:?}", host);
  {
    std::lock_guard<std::mutex> l(hosts_mu_);
    auto it = hosts_.find(host);
    if (it != hosts_.end()) return it->second.get();
  }
  SLACKER_ASSIGN_OR_RETURN(auto b, storage_backend::OpenLocalStore(os_, opts_.root, host, storage_backend::CloneMode::kAuto,
                                                                   storage_backend::Tightening::kNone));
  std::lock_guard<std::mutex> l(hosts_mu_);
  // Another request may have opened it meanwhile: the first one in is kept.
  return hosts_.try_emplace(host, std::move(b)).first->second.get();
}

// "templates/ext4-1.img" -> <root>/templates/ext4-1.img. Only plain relative paths under
// the store's data directories; writes only into templates/ and volumes/. This is policy
// (which directories a client may name), not the guard against escapes: the backend
// resolves the path beneath the store's root fd and refuses any link on it.
Result<std::string> Service::StorePath(const std::string& rel, bool for_write) const {
  auto parts = SplitPath(rel);
  if (rel.empty() || rel[0] == '/' || parts.empty())
    return Errorf(EINVAL, "path {:?} must be relative to the store root", rel);
  for (const auto& p : parts) {
    if (p == "." || p == ".." || p.find('\0') != std::string::npos)
      return Errorf(EINVAL, "path {:?}: \".\" and \"..\" are not allowed", rel);
  }
  const std::string& top = parts[0];
  namespace sb = storage_backend;
  bool ok = top == sb::kTemplatesDir || top == sb::kVolumesDir || (!for_write && top == sb::kSnapshotsDir);
  if (!ok || parts.size() < 2)
    return Errorf(EINVAL, "path {:?} is outside {}", rel, for_write ? "templates/ and volumes/" : "the store's data");
  return JoinPath(opts_.root, rel);
}

std::string Service::RequestRecordName(const std::string& key) { return key + ".json"; }

Reply Service::Handle(const Request& req) {
  if (!Authorized(req.authorization)) {
    log::Warn("storaged_unauthorized", {{"method", req.method}, {"target", req.target}});
    return Error(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)");
  }
  if (req.body.size() > kMaxBody) return Error(413, "too_large", fmt::format("body over {} bytes", kMaxBody));
  if (req.method == "GET") return Dispatch(req);
  if (req.method != "POST" && req.method != "DELETE")
    return Error(405, "method_not_allowed", "method " + req.method + " is not allowed");
  return Mutate(req);
}

// Mutations, exactly once per Idempotency-Key: a retry of a request that already ran gets
// the first reply again (a 5xx is not remembered, so the retry runs it).
std::mutex& Service::KeyMutex(const std::string& key) {
  return key_mu_[std::hash<std::string>{}(key) % kKeyStripes];
}

Reply Service::Mutate(const Request& req) {
  std::string fingerprint = req.method + " " + req.target + "\n" + req.body;
  std::unique_lock<std::mutex> key_lock;  // held from the check to the record
  if (!req.idempotency_key.empty()) {
    if (!IsValidKey(req.idempotency_key))
      return Error(400, "invalid_argument", "Idempotency-Key must be 1-128 of [A-Za-z0-9_.:-]");
    key_lock = std::unique_lock<std::mutex>(KeyMutex(req.idempotency_key));
    auto record = OpenRegularBeneath(requests_fd_.get(), RequestRecordName(req.idempotency_key), O_RDONLY);
    auto text = record.ok() ? ReadFdToString(record->get(), RequestRecordName(req.idempotency_key))
                            : Result<std::string>(record.status());
    if (text.ok()) {
      json rec = json::parse(*text, nullptr, false);
      if (rec.is_object() && rec.value("request", "") == fingerprint && rec.contains("status") &&
          rec["status"].is_number_integer() && rec.contains("body") && rec["body"].is_string()) {
        log::Info("storaged_replay", {{"key", req.idempotency_key}, {"target", req.target}});
        return Reply{rec["status"].get<int>(), rec["body"].get<std::string>()};
      }
      if (rec.is_object() && rec.value("request", "") != fingerprint)
        return Error(422, "idempotency_key_reused", "Idempotency-Key " + req.idempotency_key +
                                                        " was used for a different request");
    }
  }
  Reply r = Dispatch(req);
  if (!req.idempotency_key.empty() && r.status < 500) {
    json rec = {{"request", fingerprint}, {"status", r.status}, {"body", r.body}};
    Status s = AtomicWriteFileAt(requests_fd_.get(), RequestRecordName(req.idempotency_key), rec.dump(), 0600);
    if (!s.ok()) log::Warn("storaged_record_failed", {{"key", req.idempotency_key}, {"err", s.message()}});
  }
  if (key_lock.owns_lock()) key_lock.unlock();
  // One pruner at a time; the others do not wait for it.
  std::unique_lock<std::mutex> prune(prune_mu_, std::try_to_lock);
  if (prune.owns_lock() &&
      std::chrono::steady_clock::now() - last_prune_ >= std::chrono::seconds(opts_.prune_interval_seconds))
    PruneRecords();
  return r;
}

Reply Service::NoRoute(const std::string& method, const std::string& target) {
  return Error(404, "no_route", "no route " + method + " " + target);
}

http::Reply Service::ToHttp(Reply r) {
  http::Reply out;
  out.status = r.status;
  out.body = std::move(r.body);
  return out;
}

// The router's own errors: API.md has 405 only for a method the API never takes (Handle
// answers that); another of GET/POST/DELETE on a known path is an unknown route.
http::Reply Service::RouterError(int status, std::string message, const http::Request& req) {
  if (status == 404 || status == 405) return ToHttp(NoRoute(req.method, req.target));
  log::Error("storaged_handler_failed", {{"target", req.target}, {"err", message}});
  return ToHttp(Error(status, "internal", message));
}

Status Service::AddRoute(std::string method, std::string pattern, RouteFn fn) {
  return router_.Add(std::move(method), std::move(pattern), [this, fn](http::Request& req) {
    json body;
    if (req.method == "POST") {  // Dispatch checked that it is a JSON object
      auto text = ReadAtMost(req.body, kMaxBody, "request body");
      body = text.ok() ? json::parse(*text, nullptr, false) : json::object();
    }
    return ToHttp((this->*fn)(req.params, body));
  });
}

Status Service::AddRoutes() {
  SLACKER_RETURN_IF_ERROR(AddRoute("GET", "/v1/store", &Service::GetStore));
  SLACKER_RETURN_IF_ERROR(AddRoute("GET", "/v1/snapshots", &Service::ListSnapshots));
  SLACKER_RETURN_IF_ERROR(AddRoute("GET", "/v1/snapshots/{id}", &Service::GetSnapshot));
  SLACKER_RETURN_IF_ERROR(AddRoute("POST", "/v1/snapshots", &Service::PostSnapshot));
  SLACKER_RETURN_IF_ERROR(AddRoute("POST", "/v1/clones", &Service::PostClone));
  SLACKER_RETURN_IF_ERROR(AddRoute("POST", "/v1/files:clone", &Service::PostFileClone));
  SLACKER_RETURN_IF_ERROR(AddRoute("DELETE", "/v1/snapshots/{id}", &Service::DeleteSnapshot));
  return AddRoute("DELETE", "/v1/volumes/{host}/{volume}", &Service::DeleteVolume);
}

Reply Service::Dispatch(const Request& req) {
  auto p = SplitPath(req.target);
  if (p.size() < 2 || p[0] != "v1") return NoRoute(req.method, req.target);
  if (req.method == "POST") {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return Error(400, "bad_json", "the body must be a JSON object");
  }
  StringSource body(req.body);
  http::Request hr{.method = req.method, .target = req.target, .path = "/" + fmt::format("{}", fmt::join(p, "/")),
                   .query = {}, .params = {}, .headers = {}, .body = body};
  http::Reply r = router_.Dispatch(hr);
  return Reply{r.status, std::move(r.body)};
}

Reply Service::GetStore(const Params&, const json&) {
  return Ok(200, {{"format", info_.format}, {"uuid", info_.uuid}, {"created", info_.created},
                  {"export", opts_.export_url}});
}

Reply Service::ListSnapshots(const Params&, const json&) {
  auto host = ForHost("storaged");
  if (!host.ok()) return ErrorReply(host.status());
  auto list = (*host)->ListSnapshots();
  if (!list.ok()) return ErrorReply(list.status());
  return Ok(200, {{"snapshots", *list}});
}

Reply Service::GetSnapshot(const Params& params, const json&) {
  const std::string& id = params.at("id");
  auto host = ForHost("storaged");
  if (!host.ok()) return ErrorReply(host.status());
  if (!(*host)->SnapshotExists(id))
    return Error(404, "not_found", fmt::format("snapshot {} not found in store {}", id, info_.uuid));
  auto meta = (*host)->ReadSnapshotMeta(id);
  if (!meta.ok()) return ErrorReply(meta.status());
  return Ok(200, {{"snapshot", id}, {"meta", *meta}});
}

Reply Service::PostSnapshot(const Params&, const json& body) {
  auto host = Field(body, "host");
  auto layer = Field(body, "layer");
  if (!host.ok() || !layer.ok()) return ErrorReply(!host.ok() ? host.status() : layer.status());
  json meta = body.contains("meta") ? body["meta"] : json::object();
  auto move_field = body.find("move");
  if (move_field != body.end() && !move_field->is_boolean())
    return Error(400, "invalid_argument", "field \"move\" must be a boolean");
  bool move = move_field != body.end() && move_field->get<bool>();
  auto b = ForHost(*host);
  if (!b.ok()) return ErrorReply(b.status());
  auto snap = move ? (*b)->PromoteVolume(*layer, meta) : (*b)->SnapshotVolume(*layer, meta);
  if (!snap.ok()) return ErrorReply(snap.status());
  log::Info("storaged_snapshot", {{"host", *host}, {"layer", *layer}, {"snapshot", *snap},
                                  {"how", move ? "promote" : "snapshot"}});
  return Ok(201, {{"snapshot", *snap}});
}

Reply Service::PostClone(const Params&, const json& body) {
  auto host = Field(body, "host");
  auto snap = Field(body, "snapshot");
  auto layer = Field(body, "layer");
  for (auto* r : {&host, &snap, &layer}) {
    if (!r->ok()) return ErrorReply(r->status());
  }
  auto b = ForHost(*host);
  if (!b.ok()) return ErrorReply(b.status());
  Status s = (*b)->CloneSnapshot(*snap, *layer);
  if (!s.ok()) return ErrorReply(s);
  log::Info("storaged_clone", {{"host", *host}, {"layer", *layer}, {"snapshot", *snap}});
  return Ok(201, {{"volume", storage_backend::VolumeFile(*host, *layer)}});
}

Reply Service::PostFileClone(const Params&, const json& body) {
  auto src = Field(body, "src");
  auto dst = Field(body, "dst");
  if (!src.ok() || !dst.ok()) return ErrorReply(!src.ok() ? src.status() : dst.status());
  auto from = StorePath(*src, false);
  auto to = StorePath(*dst, true);
  if (!from.ok() || !to.ok()) return ErrorReply(!from.ok() ? from.status() : to.status());
  // volumes/<host>/<file>: opening that host's store creates its directories.
  auto dst_parts = SplitPath(*dst);
  bool to_volume = dst_parts[0] == storage_backend::kVolumesDir;
  std::string owner = to_volume && dst_parts.size() == 3 ? dst_parts[1] : "storaged";
  if (to_volume && dst_parts.size() != 3)
    return Error(400, "invalid_argument", fmt::format("{:?} is not volumes/<host>/<file>", *dst));
  auto b = ForHost(owner);
  if (!b.ok()) return ErrorReply(b.status());
  Status s = (*b)->CloneFile(*from, *to);
  if (!s.ok()) return ErrorReply(s);
  log::Info("storaged_clone_file", {{"src", *src}, {"dst", *dst}});
  return Ok(201, {{"dst", *dst}});
}

Reply Service::DeleteSnapshot(const Params& params, const json&) {
  const std::string& id = params.at("id");
  auto b = ForHost("storaged");
  if (!b.ok()) return ErrorReply(b.status());
  Status s = (*b)->RemoveSnapshot(id);
  if (!s.ok()) return ErrorReply(s);
  log::Info("storaged_remove_snapshot", {{"snapshot", id}});
  return Ok(200, json::object());
}

Reply Service::DeleteVolume(const Params& params, const json&) {
  auto b = ForHost(params.at("host"));
  if (!b.ok()) return ErrorReply(b.status());
  Status s = (*b)->RemoveVolume(params.at("volume"));
  if (!s.ok()) return ErrorReply(s);
  return Ok(200, json::object());
}

}  // namespace slacker::storaged
