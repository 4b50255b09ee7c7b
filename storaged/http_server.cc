#include "storaged/http_server.h"

#include <chrono>
#include <cstdlib>

#include <fmt/format.h>

#include "common/io.h"
#include "common/log.h"

namespace slacker::storaged {
namespace {

http::Reply ToHttp(const Reply& r) {
  http::Reply out;
  out.status = r.status;
  out.body = r.body + "\n";
  if (r.status == 401) out.headers.emplace_back("WWW-Authenticate", "Bearer");
  return out;
}

// Over the connection limit: a short 503 (plain HTTP only; a TLS client just sees the
// close), without a thread and without waiting for the client.
std::string Busy() {
  static const std::string kBody = R"({"error":"too many connections; retry later","code":"unavailable"})" "\n";
  return fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nServer: slacker-storaged\r\nContent-Type: application/json\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
      kBody.size(), kBody);
}

// Every request, whatever its path, goes to Service::Handle: it authenticates first.
http::Reply Handle(Service& service, http::Request& req) {
  auto body = ReadAtMost(req.body, Service::kMaxBody, "request body");
  if (!body.ok()) {
    if (body.status().code() == EFBIG)
      return ToHttp(Service::Error(413, "too_large", fmt::format("request body over {} bytes", Service::kMaxBody)));
    return ToHttp(Service::Error(400, "bad_request", body.status().message()));
  }
  Request r{req.method, req.target, req.Header("Authorization"), req.Header("Idempotency-Key"), std::move(*body)};
  auto start = std::chrono::steady_clock::now();
  Reply reply = service.Handle(r);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  log::Debug("storaged_request", {{"method", r.method}, {"target", r.target}, {"status", std::to_string(reply.status)},
                                  {"ms", std::to_string(ms.count())}});
  return ToHttp(reply);
}

}  // namespace

HttpServer::HttpServer(Service& service, ServerOptions opts) {
  auto router = std::make_shared<http::Router>([](int status, std::string message, const http::Request&) {
    return ToHttp(Service::Error(status, "internal", message));
  });
  router->SetFallback([&service](http::Request& req) { return Handle(service, req); });
  http::ServerOptions o;
  o.name = "storaged_connection";
  o.host = opts.host;
  o.port = opts.port;
  o.tls_cert_file = opts.tls_cert_file;
  o.tls_key_file = opts.tls_key_file;
  o.max_connections = opts.max_connections > 0 ? static_cast<size_t>(opts.max_connections) : 0;
  o.refusal = Busy();
  o.max_drain_bytes = Service::kMaxBody;
  o.idle_timeout = std::chrono::seconds(opts.read_timeout_seconds);
  o.header_timeout = std::chrono::seconds(opts.header_timeout_seconds);
  o.body_timeout = std::chrono::seconds(opts.body_timeout_seconds);
  o.stop_grace = std::chrono::seconds(5);
  o.reply_to_malformed = false;
  o.default_content_type = "application/json";
  o.reply_headers = {{"Server", "slacker-storaged"}};
  o.spawn = std::move(opts.spawn);
  server_ = std::make_unique<http::Server>(std::move(router), std::move(o));
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() { return server_->Start(); }

void HttpServer::Stop() { server_->Stop(); }

Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& addr) {
  std::string host = "127.0.0.1";
  std::string port = addr;
  auto colon = addr.rfind(':');
  if (colon != std::string::npos) {
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) host = "127.0.0.1";
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) return Errorf(EINVAL, "bad listen address {:?} (HOST:PORT)", addr);
  return std::make_pair(host, static_cast<uint16_t>(p));
}

}  // namespace slacker::storaged
