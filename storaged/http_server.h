// The snapshot service's HTTP/1.1 transport: the shared http::Server (http/server.h) on
// TCP, optionally TLS, one thread per connection, bodies bounded by Service::kMaxBody,
// idle and slow connections closed after timeouts, 503 beyond a connection limit. Every
// request goes to Service::Handle, which authenticates it and then routes it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "http/server.h"
#include "storaged/service.h"

namespace slacker::storaged {

struct ServerOptions {
  std::string host = "127.0.0.1";  // numeric address to bind
  uint16_t port = 0;               // 0: the kernel picks (see HttpServer::port())
  std::string tls_cert_file;       // PEM; both set: serve HTTPS only
  std::string tls_key_file;
  int read_timeout_seconds = 30;   // idle keep-alive connections are closed after this
  // A request's header must arrive within this many seconds of its first byte, and its
  // body within body_timeout_seconds after the header; a slower client is dropped.
  int header_timeout_seconds = 10;
  int body_timeout_seconds = 30;
  // Connections served at once; one more is answered 503 and closed.
  int max_connections = 128;
  // Starts a connection's thread (default: a detached std::thread). May throw
  // std::system_error as std::thread does; tests substitute a failing one.
  std::function<void(std::function<void()>)> spawn;
};

class HttpServer {
 public:
  // REQUIRES: `service` outlives the server.
  HttpServer(Service& service, ServerOptions opts);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting on a background thread.
  Status Start();
  // Stops accepting, closes idle connections and gives in-flight requests up to 5 s to
  // finish. Idempotent.
  void Stop();
  uint16_t port() const { return server_->port(); }

 private:
  std::unique_ptr<http::Server> server_;
};

// "HOST:PORT" / ":PORT" / "PORT" -> host (default 127.0.0.1) and port.
Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& addr);

}  // namespace slacker::storaged
