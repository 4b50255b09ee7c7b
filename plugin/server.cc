#include "plugin/server.h"

#include <fmt/format.h>

#include "common/log.h"
#include "plugin/graphdriver_routes.h"
#include "plugin/router.h"

namespace slacker::plugin {
namespace {

// Route "/GraphDriver.Get" logs as method=Get.
std::string_view MethodName(std::string_view path) {
  if (path.starts_with("/GraphDriver.")) return path.substr(13);
  return path.starts_with('/') ? path.substr(1) : path;
}

void Log(const Request& req, const Reply& reply, const http::Exchange& x, uint64_t bytes) {
  std::string method(MethodName(req.path));
  std::string ms = fmt::format("{:.1f}", x.seconds * 1000);
  if (reply.error.empty()) {
    log::Info("request", {{"method", method},
                          {"id", reply.log_id},
                          {"status", std::to_string(reply.status)},
                          {"ms", ms},
                          {"bytes", std::to_string(bytes)},
                          {"req", std::to_string(x.number)}});
  } else {
    log::Warn("request", {{"method", method},
                          {"id", reply.log_id},
                          {"status", std::to_string(reply.status)},
                          {"ms", ms},
                          {"bytes", std::to_string(bytes)},
                          {"req", std::to_string(x.number)},
                          {"err", reply.error}});
  }
}

void Count(PluginMetrics& metrics, const Router& router, const Request& req, const Reply& reply,
           double seconds, uint64_t bytes) {
  // Only routes name their own series: arbitrary paths must not grow the label set.
  std::string_view method = router.Has(req.path) ? MethodName(req.path) : "unknown";
  metrics.RecordRequest(method, reply.status, seconds);
  if (req.path == "/GraphDriver.ApplyDiff") metrics.AddApplyBytes(bytes);
  if (req.path == "/GraphDriver.Diff") metrics.AddDiffBytes(bytes);
}

}  // namespace

Server::Server(driver::GraphDriver& driver, ServerOptions opts)
    : socket_path_(opts.socket_path) {
  auto router = std::make_shared<Router>(NewRouter());
  routes_status_ = AddGraphDriverRoutes(*router, driver, opts.max_json_body);
  http::ServerOptions o;
  o.name = "connection";
  o.unix_path = opts.socket_path;
  o.max_drain_bytes = opts.max_drain_bytes;
  o.stop_grace = opts.stop_grace;
  o.default_content_type = std::string(kJsonContentType);
  o.on_request = [router = router.get(), metrics = opts.metrics](
                     const Request& req, const Reply& reply, const http::Exchange& x) {
    uint64_t bytes = x.streamed ? x.sent_bytes : x.body_bytes;
    Log(req, reply, x, bytes);
    if (metrics) Count(*metrics, *router, req, reply, x.seconds, bytes);
  };
  server_ = std::make_unique<http::Server>(std::move(router), std::move(o));
}

Server::~Server() { Stop(); }

Status Server::Start() {
  SLACKER_RETURN_IF_ERROR(routes_status_.Context("register routes"));
  SLACKER_RETURN_IF_ERROR(server_->Start());
  log::Info("listening", {{"socket", socket_path_}});
  return Status::Ok();
}

void Server::Stop() { server_->Stop(); }

}  // namespace slacker::plugin
