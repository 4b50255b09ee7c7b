// The metrics endpoint: GET /metrics in the Prometheus text format (plugin/metrics.h) on a
// unix socket or a TCP address, apart from the plugin socket so that scrapers never need
// access to dockerd's plugin directory. Runs on the shared http::Server (http/server.h);
// anything but /metrics answers 404.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "driver/graph_driver.h"
#include "http/server.h"
#include "plugin/metrics.h"

namespace slacker::plugin {

// Where the endpoint listens, as --metrics-listen spells it.
// Default initializers let callers name only the fields they set.
struct MetricsAddress {
  std::string unix_path = {};  // set for "unix:/path.sock"
  std::string host = {};       // otherwise a numeric address; "127.0.0.1" unless given
  uint16_t port = 0;
};

// "unix:/run/slacker/metrics.sock", "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464";
// "9464" and ":9464" mean 127.0.0.1:9464 (loopback unless an address is given). EINVAL
// for anything else.
Result<MetricsAddress> ParseMetricsAddress(std::string_view text);

class MetricsServer {
 public:
  // At most this many connections at once; more are closed on accept.
  static constexpr size_t kMaxConnections = 16;

  // REQUIRES: `driver` outlives the server (and, after a Stop() that gave up waiting on a
  // scrape stuck in driver.Metrics(), the process).
  MetricsServer(driver::GraphDriver& driver, std::shared_ptr<PluginMetrics> metrics,
                MetricsAddress address);
  ~MetricsServer();  // Stop()s
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds (a unix socket as ListenUnix does: mode 0600, stale socket replaced) and starts
  // accepting. REQUIRES: called once.
  Status Start();
  // Stops accepting, unlinks a unix socket and shuts open connections down, waiting up to
  // a second for them. Idempotent.
  void Stop();

  // "unix:/path" or "host:port" with the port actually bound; valid after Start().
  std::string address() const { return server_->address(); }

 private:
  std::unique_ptr<http::Server> server_;
};

}  // namespace slacker::plugin
