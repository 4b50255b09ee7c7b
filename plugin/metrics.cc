#include "plugin/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/log.h"

namespace slacker::plugin {
namespace {

struct DriverMetricInfo {
  std::string_view name;
  std::string_view type;
  std::string_view help;
};

// What SlackerDriver reports. slacker_store_size_bytes is the store's size, a gauge
// despite the suffix.
constexpr DriverMetricInfo kDriverMetrics[] = {
    {"slacker_clones_total", "counter", "Layer volumes cloned from a snapshot."},
    {"slacker_snapshots_total", "counter", "Snapshots taken of layer volumes."},
    {"slacker_snapshot_cache_hits_total", "counter",
     "Diffs that reused the last snapshot because the volume was not written."},
    {"slacker_dedup_hits_total", "counter",
     "Applied layer tars found already unpacked on the store."},
    {"slacker_mounts_rw_total", "counter", "Read-write mounts of layer volumes."},
    {"slacker_mounts_ro_total", "counter", "Read-only mounts of layer snapshots."},
    {"slacker_parked_reuses_total", "counter", "Gets served by a parked mount (no mount needed)."},
    {"slacker_handovers_total", "counter",
     "Container layers that took over their parked init layer's file system (no clone mounted)."},
    {"slacker_handovers_prepared_total", "counter",
     "Hand-over clones made ahead by the preparer thread right after an init layer's Put."},
    {"slacker_prepared_handovers_used_total", "counter",
     "Hand-overs that found their clone prepared (the Get only renamed)."},
    {"slacker_spares_made_total", "counter",
     "Spare volumes (a clone of an image's snapshot, mounted) made ready for the next init layer."},
    {"slacker_spare_hits_total", "counter", "Init layers whose first Get took a spare volume (no clone, no mount)."},
    {"slacker_prefetch_trace_hits_total", "counter", "Container mounts whose image snapshot had a valid start-up trace (replayed)."},
    {"slacker_prefetch_trace_misses_total", "counter", "Container mounts whose image snapshot had no start-up trace."},
    {"slacker_prefetch_traces_rejected_total", "counter", "Start-up traces refused as invalid (ignored, then recorded again)."},
    {"slacker_prefetch_traces_recorded_total", "counter", "Start-up traces this host recorded and wrote to the store."},
    {"slacker_prefetch_extents_total", "counter", "Trace extents replayed (read ahead)."},
    {"slacker_prefetch_bytes_total", "counter", "Bytes read ahead by start-up trace replays."},
    {"slacker_prefetch_cancelled_total", "counter", "Replays cut short because the mount went away."},
    {"slacker_teardowns_pending", "gauge", "Removed layers whose unmount and file deletion are still running."},
    {"slacker_layers", "gauge", "Layers known to the driver."},
    {"slacker_layers_mounted", "gauge", "Layers mounted at least once (Get without Put)."},
    {"slacker_store_size_bytes", "gauge", "Size of the file system holding the store."},
    {"slacker_store_bytes_free", "gauge", "Free bytes on the file system holding the store."},
};

bool ValidName(std::string_view name) {
  auto head = [](char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  return !name.empty() && head(name[0]) && std::all_of(name.begin(), name.end(), [&](char c) {
    return head(c) || (c >= '0' && c <= '9');
  });
}

// A sample value as Prometheus parses it (Go's ParseFloat plus NaN/+Inf/-Inf).
std::string Value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

void Header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

void PluginMetrics::RecordRequest(std::string_view method, int status, double seconds) {
  auto bucket = std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds) -
                kDurationBuckets.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{std::string(method), status}];
  Histogram& h = durations_[std::string(method)];
  ++h.counts[bucket];
  h.sum += seconds;
  ++h.count;
}

void PluginMetrics::AddApplyBytes(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  apply_bytes_ += n;
}

void PluginMetrics::AddDiffBytes(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  diff_bytes_ += n;
}

std::string PluginMetrics::Render(
    const std::vector<std::pair<std::string, double>>& driver_metrics) const {
  std::string out;
  auto put = std::back_inserter(out);
  {
    std::lock_guard<std::mutex> lock(mu_);
    Header(out, "slacker_requests_total", "counter",
           "Graphdriver requests handled by the plugin, by method and HTTP status.");
    for (const auto& [key, n] : requests_) {
      fmt::format_to(put, "slacker_requests_total{{method=\"{}\",status=\"{}\"}} {}\n",
                     LabelValue(key.first), key.second, n);
    }
    Header(out, "slacker_request_duration_seconds", "histogram",
           "Time from reading a request's header to sending its reply, by method.");
    for (const auto& [method, h] : durations_) {
      std::string m = LabelValue(method);
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        std::string le = i < kDurationBuckets.size() ? Value(kDurationBuckets[i]) : "+Inf";
        fmt::format_to(put,
                       "slacker_request_duration_seconds_bucket{{method=\"{}\",le=\"{}\"}} {}\n", m,
                       le, cumulative);
      }
      fmt::format_to(put, "slacker_request_duration_seconds_sum{{method=\"{}\"}} {}\n", m,
                     Value(h.sum));
      fmt::format_to(put, "slacker_request_duration_seconds_count{{method=\"{}\"}} {}\n", m,
                     h.count);
    }
    Header(out, "slacker_apply_bytes_total", "counter",
           "Bytes of ApplyDiff request bodies received.");
    fmt::format_to(put, "slacker_apply_bytes_total {}\n", apply_bytes_);
    Header(out, "slacker_diff_bytes_total", "counter", "Bytes of Diff replies sent.");
    fmt::format_to(put, "slacker_diff_bytes_total {}\n", diff_bytes_);
  }
  std::set<std::string_view> seen = {"slacker_requests_total", "slacker_request_duration_seconds",
                                     "slacker_apply_bytes_total", "slacker_diff_bytes_total"};
  for (const auto& [name, value] : driver_metrics) {
    if (!ValidName(name) || !seen.insert(name).second) {
      log::Warn("metric_skipped",
                {{"name", name}, {"err", "invalid or repeated metric name from the driver"}});
      continue;
    }
    auto info = std::find_if(std::begin(kDriverMetrics), std::end(kDriverMetrics),
                             // A named copy: clang 14 cannot capture a structured binding.
                             [&, &n = name](const DriverMetricInfo& i) { return i.name == n; });
    if (info != std::end(kDriverMetrics)) {
      Header(out, name, info->type, info->help);
    } else {
      Header(out, name, name.ends_with("_total") ? "counter" : "gauge",
             "Reported by the graph driver.");
    }
    fmt::format_to(put, "{} {}\n", name, Value(value));
  }
  return out;
}

}  // namespace slacker::plugin
