// The plugin's request metrics, rendered together with the driver's own
// (GraphDriver::Metrics) in the Prometheus text exposition format, version 0.0.4.
// Transport-free: server.cc records into it, metrics_server.cc serves Render().
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slacker::plugin {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Thread-safe.
class PluginMetrics {
 public:
  // Upper bounds (seconds) of slacker_request_duration_seconds; +Inf is implied. Fine
  // below 150 ms, where a container's start and stop calls fall, so that bench/ can
  // tell a regression of a few milliseconds per call from these buckets (issue 17).
  static constexpr std::array<double, 20> kDurationBuckets = {
      .0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10};

  // One request handled by the plugin's router. `method` is the route's name ("Get",
  // "Plugin.Activate") and must come from a small fixed set: each is its own series.
  void RecordRequest(std::string_view method, int status, double seconds);
  void AddApplyBytes(uint64_t n);  // ApplyDiff request body bytes received
  void AddDiffBytes(uint64_t n);   // Diff reply bytes sent

  // Every metric with # HELP and # TYPE, series sorted by label. `driver_metrics` (from
  // GraphDriver::Metrics) follow in their order; a name that is not a valid metric name,
  // or one already given, is left out with a warning in the log.
  std::string Render(const std::vector<std::pair<std::string, double>>& driver_metrics) const;

 private:
  struct Histogram {
    std::array<uint64_t, kDurationBuckets.size() + 1> counts{};  // per bucket, not cumulative
    double sum = 0;
    uint64_t count = 0;
  };

  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (method, status) -> count
  std::map<std::string, Histogram> durations_;                // by method
  uint64_t apply_bytes_ = 0;
  uint64_t diff_bytes_ = 0;
};

}  // namespace slacker::plugin
