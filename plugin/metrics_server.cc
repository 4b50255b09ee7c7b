#include "plugin/metrics_server.h"

#include <charconv>

#include <fmt/format.h>

#include "common/log.h"
#include "plugin/router.h"

namespace slacker::plugin {
namespace {

constexpr uint32_t kHeaderLimit = 8 * 1024;
constexpr uint64_t kBodyLimit = 4 * 1024;  // a scrape has no body

Status BadAddress(std::string_view text) {
  return Errorf(EINVAL,
                "metrics address '{}' must be unix:/path.sock or HOST:PORT (e.g. 127.0.0.1:9464)",
                text);
}

}  // namespace

Result<MetricsAddress> ParseMetricsAddress(std::string_view text) {
  MetricsAddress out;
  if (text.starts_with("unix:")) {
    out.unix_path = std::string(text.substr(5));
    if (out.unix_path.empty()) return BadAddress(text);
    return out;
  }
  std::string_view host, port = text;
  if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return BadAddress(text);
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return BadAddress(text);  // an IPv6 address needs brackets
  }
  out.host = host.empty() || host == "localhost" ? "127.0.0.1" : std::string(host);
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size()) {
    return BadAddress(text);
  }
  return out;
}

namespace {

Reply Text(int status, std::string body) {
  Reply r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

Reply MetricsError(int status, std::string message, const Request&) {
  if (status == 404) return Text(404, "404 not found: the metrics are at /metrics\n");
  if (status == 405) return Text(405, "405 method not allowed: use GET\n");
  Reply r = Text(status, fmt::format("{} {}\n", status, message));
  r.error = std::move(message);
  return r;
}

}  // namespace

MetricsServer::MetricsServer(driver::GraphDriver& driver, std::shared_ptr<PluginMetrics> metrics,
                             MetricsAddress address) {
  auto router = std::make_shared<Router>(MetricsError);
  // Registering one route on a fresh table cannot collide.
  IgnoreError(router->Add("GET", "/metrics",
                          [&driver, metrics](Request&) {
                            Reply r = Text(200, metrics->Render(driver.Metrics()));
                            r.content_type = std::string(kMetricsContentType);
                            return r;
                          }),
              "the only route of a new table");
  http::ServerOptions o;
  o.name = "metrics_connection";
  o.unix_path = address.unix_path;
  o.host = address.host;
  o.port = address.port;
  o.max_connections = kMaxConnections;
  o.header_limit = kHeaderLimit;
  o.max_drain_bytes = kBodyLimit;  // a scrape has no body
  // A scrape is never worth waiting for: Stop() shuts all connections down at once.
  o.stop_grace = std::chrono::milliseconds(0);
  o.reply_to_malformed = false;  // not HTTP worth answering: a scraper reconnects
  server_ = std::make_unique<http::Server>(std::move(router), std::move(o));
}

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::Start() {
  SLACKER_RETURN_IF_ERROR(server_->Start());
  log::Info("metrics_listening", {{"address", address()}});
  return Status::Ok();
}

void MetricsServer::Stop() { server_->Stop(); }

}  // namespace slacker::plugin
