#include "storage_backend/rest_backend.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "common/files.h"
#include "common/log.h"
#include "storage_backend/local_backend.h"

namespace slacker::storage_backend {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;

struct HttpResult {
  int status = 0;
  std::string body;
};

// Runs the queued async operation to completion (each operation carries its own
// deadline through tcp_stream::expires_after).
void RunOne(net::io_context& ioc) {
  ioc.run();
  ioc.restart();
}

template <class Stream>
beast::error_code Exchange(net::io_context& ioc, Stream& stream, http::request<http::string_body>& req,
                           HttpResult* out) {
  beast::error_code ec;
  http::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
  RunOne(ioc);
  if (ec) return ec;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  http::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  RunOne(ioc);
  if (ec) return ec;
  out->status = static_cast<int>(parser.get().result_int());
  out->body = parser.get().body();
  return ec;
}

// One attempt: connect, send, read the reply. A transport error comes back as an
// error_code (retryable); any HTTP reply as HttpResult.
beast::error_code Attempt(const RestOptions& o, const std::string& host, const std::string& port, bool tls,
                          http::request<http::string_body>& req, HttpResult* out) {
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return ec;
  auto deadline = std::chrono::milliseconds(o.timeout_ms);
  if (!tls) {
    beast::tcp_stream stream(ioc);
    stream.expires_after(deadline);
    stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    RunOne(ioc);
    if (ec) return ec;
    ec = Exchange(ioc, stream, req, out);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    return ec;
  }
  ssl::context ctx(ssl::context::tls_client);
  if (o.ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(o.ca_file, ec);
  }
  if (ec) return ec;
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) return net::error::invalid_argument;
  stream.set_verify_callback(ssl::host_name_verification(host));
  beast::get_lowest_layer(stream).expires_after(deadline);
  beast::get_lowest_layer(stream).async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
  RunOne(ioc);
  if (ec) return ec;
  stream.async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
  RunOne(ioc);
  if (ec) return ec;
  return Exchange(ioc, stream, req, out);
}

int ErrnoForStatus(int http_status) {
  switch (http_status) {
    case 400: return EINVAL;
    case 401: case 403: return EACCES;
    case 404: return ENOENT;
    case 409: return EEXIST;
    case 413: return E2BIG;
    case 507: return ENOSPC;
    default: return EIO;
  }
}

int ErrnoForTransport(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return ETIMEDOUT;
  if (ec == net::error::connection_refused) return ECONNREFUSED;
  return EIO;
}

}  // namespace

StoreServiceClient::StoreServiceClient(RestOptions opts) : opts_(std::move(opts)) {
  std::string rest = opts_.url;
  if (rest.starts_with("https://")) {
    tls_ = true;
    rest = rest.substr(8);
  } else if (rest.starts_with("http://")) {
    rest = rest.substr(7);
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    host_ = rest.substr(0, colon);
    port_ = rest.substr(colon + 1);
  } else {
    host_ = rest;
    port_ = tls_ ? "443" : "80";
  }
  if (host_.size() >= 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
}

Result<json> StoreServiceClient::Call(const std::string& method, const std::string& target, const json& body,
                                      const std::string& idempotency_key) const {
  std::string what = fmt::format("snapshot service {}: {} {}", opts_.url, method, target);
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "slackerd");
  req.set(http::field::authorization, "Bearer " + opts_.token);
  req.set(http::field::connection, "close");
  if (!idempotency_key.empty()) req.set("Idempotency-Key", idempotency_key);
  if (!body.is_null()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body.dump();
  }
  req.prepare_payload();
  auto backoff = std::chrono::milliseconds(250);
  std::string last;
  int last_errno = EIO;
  int attempts = std::max(1, opts_.attempts);
  for (int i = 0; i < attempts; ++i) {
    if (i > 0) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(4000));
    }
    HttpResult res;
    beast::error_code ec = Attempt(opts_, host_, port_, tls_, req, &res);
    if (ec) {
      last = ec.message();
      last_errno = ErrnoForTransport(ec);
      log::Warn("store_service_retry", {{"url", opts_.url}, {"target", target}, {"attempt", std::to_string(i + 1)},
                                        {"err", last}});
      continue;
    }
    json reply = json::parse(res.body, nullptr, false);
    if (res.status >= 200 && res.status < 300) {
      if (reply.is_discarded()) return Errorf(EIO, "{}: reply is not JSON", what);
      return reply;
    }
    std::string msg = reply.is_object() && reply.contains("error") && reply["error"].is_string()
                          ? reply["error"].get<std::string>()
                          : res.body;
    if (res.status >= 500 && res.status != 507) {
      last = fmt::format("HTTP {}: {}", res.status, msg);
      last_errno = EIO;
      log::Warn("store_service_retry", {{"url", opts_.url}, {"target", target}, {"attempt", std::to_string(i + 1)},
                                        {"err", last}});
      continue;
    }
    if (res.status == 401)
      return Errorf(EACCES, "{}: refused (HTTP 401): {}; check --store-token-file against the service's token", what,
                    msg);
    return Errorf(ErrnoForStatus(res.status), "{}: HTTP {}: {}", what, res.status, msg);
  }
  return Errorf(last_errno, "{}: no answer after {} attempts ({}); is slacker-storaged running and reachable?", what,
                attempts, last);
}

Result<json> FetchStoreDescription(const StoreServiceClient& client) {
  SLACKER_ASSIGN_OR_RETURN(json j, client.Call("GET", "/v1/store", nullptr));
  if (!j.is_object() || !j.contains("uuid") || !j["uuid"].is_string() || !j.contains("export") ||
      !j["export"].is_string())
    return Errorf(EIO, "snapshot service {}: GET /v1/store: reply lacks \"uuid\" or \"export\"", client.options().url);
  return j;
}

namespace {

class RestBackend : public Backend {
 public:
  RestBackend(std::unique_ptr<Backend> files, RestOptions opts, std::string host)
      : files_(std::move(files)), client_(std::move(opts)), host_(std::move(host)) {}

  const StoreInfo& info() const override { return files_->info(); }
  std::string Describe() const override {
    return fmt::format("rest store {} (uuid {}, host {}, files at {}, clone: reflink on the storage host)",
                       client_.options().url, info().uuid, host_, files_->root());
  }
  std::string root() const override { return files_->root(); }
  std::string SnapshotPath(const std::string& snap) const override { return files_->SnapshotPath(snap); }
  std::string SnapshotMetaPath(const std::string& snap) const override { return files_->SnapshotMetaPath(snap); }
  std::string SnapshotFilePath(const std::string& snap, const std::string& suffix) const override {
    return files_->SnapshotFilePath(snap, suffix);
  }
  std::string VolumePath(const std::string& layer) const override { return files_->VolumePath(layer); }
  std::string TemplatePath(uint64_t size_bytes) const override { return files_->TemplatePath(size_bytes); }

  Result<std::string> SnapshotVolume(const std::string& layer, const json& meta) override {
    return Publish(layer, meta, false);
  }
  Result<std::string> PromoteVolume(const std::string& layer, const json& meta) override {
    return Publish(layer, meta, true);
  }

  Status CloneSnapshot(const std::string& snap, const std::string& layer) override {
    if (!IsValidSnapshotId(snap) || !IsValidLayerName(layer))
      return Errorf(EINVAL, "clone snapshot {} for layer {}: invalid snapshot id or layer name", snap, layer);
    return client_.Call("POST", "/v1/clones", {{"host", host_}, {"snapshot", snap}, {"layer", layer}}, NewKey())
        .status()
        .Context(fmt::format("clone snapshot {} for layer {}", snap, layer));
  }

  Status CloneFile(const std::string& src_path, const std::string& dst_path) override {
    SLACKER_ASSIGN_OR_RETURN(std::string src, Relative(src_path));
    SLACKER_ASSIGN_OR_RETURN(std::string dst, Relative(dst_path));
    return client_.Call("POST", "/v1/files:clone", {{"src", src}, {"dst", dst}}, NewKey()).status();
  }

  Status RemoveVolume(const std::string& layer) override { return files_->RemoveVolume(layer); }

  Status RemoveSnapshot(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "remove snapshot {}: invalid snapshot id", snap);
    return client_.Call("DELETE", "/v1/snapshots/" + snap, nullptr, NewKey()).status();
  }

  bool SnapshotExists(const std::string& snap) const override { return files_->SnapshotExists(snap); }
  Result<json> ReadSnapshotMeta(const std::string& snap) const override { return files_->ReadSnapshotMeta(snap); }
  // The trace is a plain file: read and written through the view, as the indexes.
  Result<std::string> ReadSnapshotTrace(const std::string& snap, size_t limit) const override {
    return files_->ReadSnapshotTrace(snap, limit);
  }
  Status WriteSnapshotTrace(const std::string& snap, std::string_view bytes) override {
    return files_->WriteSnapshotTrace(snap, bytes);
  }
  Status AddRef(const std::string& snap) override { return files_->AddRef(snap); }
  Status DropRef(const std::string& snap) override { return files_->DropRef(snap); }
  Result<std::vector<std::string>> ListRefs() const override { return files_->ListRefs(); }
  Result<std::vector<std::string>> ListSnapshots() const override { return files_->ListSnapshots(); }
  Result<std::vector<std::string>> ListVolumes() const override { return files_->ListVolumes(); }
  Result<os::FsStats> Space() const override { return files_->Space(); }
  // The indexes are plain files: written through the view, as the ref markers.
  Result<std::string> LookupChain(const std::string& key) const override { return files_->LookupChain(key); }
  Status RecordChain(const std::string& key, const std::string& snap) override {
    return files_->RecordChain(key, snap);
  }
  Result<std::vector<ChainEntry>> ListChains() const override { return files_->ListChains(); }
  Result<bool> RemoveChain(const std::string& key, const std::string& snap) override {
    return files_->RemoveChain(key, snap);
  }
  Status PublishName(const NameEntry& e) override { return files_->PublishName(e); }
  Result<NameEntry> LookupName(const std::string& ns, const std::string& name) const override {
    return files_->LookupName(ns, name);
  }
  Result<std::vector<NameEntry>> ListNames() const override { return files_->ListNames(); }
  Result<bool> RemoveName(const std::string& ns, const std::string& name, const std::string& snap) override {
    return files_->RemoveName(ns, name, snap);
  }

 private:
  static std::string NewKey() { return "slackerd-" + RandomHex(16); }

  Result<std::string> Relative(const std::string& path) const {
    std::string prefix = files_->root() + "/";
    if (!path.starts_with(prefix)) return Errorf(EINVAL, "{} is not inside the store {}", path, files_->root());
    return path.substr(prefix.size());
  }

  Result<std::string> Publish(const std::string& layer, const json& meta, bool move) {
    std::string verb = move ? "promote" : "snapshot";
    if (!IsValidLayerName(layer)) return Errorf(EINVAL, "{} volume {}: invalid layer name", verb, layer);
    json body = {{"host", host_}, {"layer", layer}, {"move", move}};
    if (meta.is_object()) body["meta"] = meta;
    auto reply = client_.Call("POST", "/v1/snapshots", body, NewKey());
    if (!reply.ok()) return reply.status().Context(fmt::format("{} volume of layer {}", verb, layer));
    const json& r = *reply;
    if (!r.contains("snapshot") || !r["snapshot"].is_string() || !IsValidSnapshotId(r["snapshot"].get<std::string>()))
      return Errorf(EIO, "{} volume of layer {}: the snapshot service replied without a snapshot id", verb, layer);
    return r["snapshot"].get<std::string>();
  }

  std::unique_ptr<Backend> files_;
  StoreServiceClient client_;
  const std::string host_;
};

}  // namespace

Result<std::unique_ptr<Backend>> OpenRestStore(os::Os& os, RestOptions opts, const std::string& files_dir,
                                               const std::string& host_id) {
  StoreServiceClient client(opts);
  SLACKER_ASSIGN_OR_RETURN(json desc, FetchStoreDescription(client));
  if (!PathExists(JoinPath(files_dir, kStoreInfoFile)))
    return Errorf(ENOENT, "{} has no store.json: it is not a view of the store the service at {} serves", files_dir,
                  opts.url);
  // No walk of the store through the view: storaged tightens the store it serves when it
  // starts (Tightening), and over NFS the walk would cost a round trip per entry.
  SLACKER_ASSIGN_OR_RETURN(auto files, OpenLocalStore(os, files_dir, host_id, CloneMode::kAuto, Tightening::kNone));
  std::string uuid = desc["uuid"].get<std::string>();
  if (files->info().uuid != uuid)
    return Errorf(EINVAL, "{} holds store {}, but the service at {} serves store {}: wrong mount?", files_dir,
                  files->info().uuid, opts.url, uuid);
  return std::unique_ptr<Backend>(std::make_unique<RestBackend>(std::move(files), std::move(opts), host_id));
}

}  // namespace slacker::storage_backend
