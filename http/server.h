// The HTTP/1.1 server every front end here runs (the graphdriver socket, the metrics
// endpoint, slacker-storaged): a unix socket (mode 0600, a stale socket replaced) or TCP,
// optionally TLS, one thread per connection, requests dispatched through a Router.
// Request bodies are streamed to the handler as it reads them and replies may be streamed
// (chunked), so a layer-sized ApplyDiff or Diff is never buffered.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "http/connections.h"
#include "http/router.h"

namespace slacker::http {

// What one request cost, for a front end's log line and metrics.
struct Exchange {
  uint64_t number = 0;      // requests served by this server so far, this one included
  double seconds = 0;       // from its header to the end of the reply
  uint64_t body_bytes = 0;  // request body bytes read
  bool streamed = false;    // the reply was a stream (Reply::stream, now destroyed)
  uint64_t sent_bytes = 0;  // streamed reply bytes sent
};

// Default initializers let front ends name only the fields they set.
struct ServerOptions {
  // Names the server in log events: "<name>_refused", "<name>_failed", ...
  std::string name = "connection";
  // Where to listen: a unix socket path, or else the numeric address host:port (port 0:
  // the kernel picks one; see Server::port()).
  std::string unix_path = {};
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // PEM files; both set: TLS only (TCP). One without the other is EINVAL at Start().
  std::string tls_cert_file = {};
  std::string tls_key_file = {};

  // Connections served at once; one more is closed on accept, after `refusal` (raw bytes,
  // e.g. a whole 503 response) is written to it when set and the server is not TLS.
  size_t max_connections = std::numeric_limits<size_t>::max();
  std::string refusal = {};
  uint32_t header_limit = 16 * 1024;
  // When a handler returns without reading its whole request body, the reply is sent and
  // then up to this many more body bytes are read and discarded, so the client finishes
  // sending and reads the reply; beyond it the connection is closed.
  uint64_t max_drain_bytes = uint64_t{64} << 20;
  // Zero: no limit. An idle keep-alive connection is closed after idle_timeout; a header
  // must arrive within header_timeout of its first byte (of the connection becoming
  // readable; without an idle_timeout, of the previous request's end), a request body
  // within body_timeout of its header, and every write of a reply within body_timeout.
  std::chrono::milliseconds idle_timeout{0};
  std::chrono::milliseconds header_timeout{0};
  std::chrono::milliseconds body_timeout{0};
  // Stop() waits this long for in-flight requests, then shuts their connections down and
  // gives them one more second before abandoning any still stuck inside a handler.
  std::chrono::milliseconds stop_grace{10'000};

  // A malformed request is answered 400 (through the router's ErrorFormat) when set;
  // otherwise the connection is just closed.
  bool reply_to_malformed = true;
  // The Content-Type of a reply that names none, and headers added to every reply.
  std::string default_content_type = "application/json";
  Headers reply_headers = {};
  // Runs after every request's reply (sent or failed), on the connection's thread.
  std::function<void(const Request&, const Reply&, const Exchange&)> on_request = {};
  // Starts connection threads (default: a detached std::thread); tests substitute one
  // that fails.
  Connections::Spawner spawn = {};
};

class Server {
 public:
  // REQUIRES: whatever the router's handlers use outlives the server (and, after a Stop()
  // that timed out, the process: a request stuck inside a handler keeps its thread).
  Server(std::shared_ptr<const Router> router, ServerOptions opts);
  ~Server();  // Stop()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (a unix socket: creates its parent directory, replaces a stale socket, EADDRINUSE
  // if a live server answers on it, EEXIST if the path is not a socket, mode 0600) and
  // starts accepting. REQUIRES: called once.
  Status Start();

  // Stops accepting and unlinks a unix socket, closes idle connections, and waits up to
  // stop_grace for in-flight requests before shutting their connections down. Idempotent.
  void Stop();

  // "unix:/path" or "host:port" ("[v6]:port") with the port actually bound (after Start()).
  std::string address() const;
  uint16_t port() const;

  struct State;  // opaque: defined in server.cc

 private:
  std::shared_ptr<State> state_;  // shared with the connection threads
  std::thread accept_thread_;
};

}  // namespace slacker::http
