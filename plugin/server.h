// The plugin's HTTP server: serves the graphdriver protocol (PROTOCOL.md) on a unix
// socket through the shared http::Server (http/server.h): one thread per connection, so a
// slow ApplyDiff never holds up a Get arriving on another connection; ApplyDiff bodies and
// Diff replies are streamed, never buffered.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "driver/graph_driver.h"
#include "http/server.h"
#include "plugin/metrics.h"

namespace slacker::plugin {

struct ServerOptions {
  std::string socket_path;  // e.g. /run/docker/plugins/slacker.sock
  // JSON request bodies beyond this answer 413.
  size_t max_json_body = 1 << 20;
  // When a handler returns without reading its whole request body (an ApplyDiff that
  // failed early), the reply is sent and then up to this many more body bytes are read
  // and discarded, so the client finishes sending and reads the reply; beyond it the
  // connection is closed.
  uint64_t max_drain_bytes = uint64_t{64} << 20;
  // Stop() waits this long for in-flight requests, then shuts their connections down and
  // gives them one more second before abandoning any still stuck inside the driver.
  std::chrono::milliseconds stop_grace{10'000};
  // When set, every request is counted here (method, status, duration, bytes).
  std::shared_ptr<PluginMetrics> metrics;
};

class Server {
 public:
  // REQUIRES: `driver` outlives the server (and, after a Stop() that timed out, the
  // process: a request stuck inside the driver keeps its thread).
  Server(driver::GraphDriver& driver, ServerOptions opts);
  ~Server();  // Stop()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the socket's parent directory, replaces a stale socket (EADDRINUSE if a live
  // server answers on it; EEXIST if the path is not a socket), binds with mode 0600 and
  // starts accepting. REQUIRES: called once.
  Status Start();

  // Stops accepting and unlinks the socket, closes idle connections, and waits up to
  // stop_grace for in-flight requests before shutting their connections down. Idempotent.
  void Stop();

 private:
  const std::string socket_path_;
  Status routes_status_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace slacker::plugin
