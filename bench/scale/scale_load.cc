// slacker-scale-load: N concurrent "workers" against one slacker-storaged, each making
// the storage calls a worker's driver makes, through the worker's own backend
// (storage_backend::OpenRestStore, i.e. RestBackend): the HTTP requests are byte for
// byte those slackerd sends (same client, same bodies, a fresh Idempotency-Key per call,
// Connection: close), and volume removal goes through the file view as on a worker.
//
//   start:   a container start on a rest store (driver/quota.cc CloneBase and
//            driver/mounts.cc CloneIdleParentVolume): POST /v1/clones of the image's
//            snapshot into the `-init` layer's volume, then POST /v1/files:clone of that
//            volume into the container layer's volume; later (timed apart) both volumes
//            removed through the file view (docker rm).
//   commit:  a commit (driver/snapshot.cc TakeSnapshot): POST /v1/snapshots of a volume
//            with the driver's meta. Each client first gets its own volume (a clone).
//   publish: one snapshot of --layer under --host; prints its id (the fixture).
//
// Output (--out, JSON): per kind of call, count and latency percentiles; per sequence
// (start / commit), ops/s over the wall time of the run, and per-client times. Used by
// bench/scale/measure and bench/scale/validate (bench/scale/README.md).
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/flags.h"
#include "os/os.h"
#include "storage_backend/rest_backend.h"

namespace {

using namespace slacker;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kUsage = R"(usage: slacker-scale-load --url URL --token-file F --store DIR --mode MODE [options]

  --mode start|commit|publish
  --snapshot ID      the image snapshot clients clone (start, commit)
  --clients N        concurrent clients, each its own host id PREFIX-<i> (default 1)
  --duration S       run each client for S seconds (default 3) ...
  --count K          ... or K sequences per client (overrides --duration)
  --host-prefix P    host ids of the clients (default scale)
  --start-at MS      begin the timed loop at this unix time in ms (several processes as one load)
  --host H --layer L publish: snapshot volumes/H/L.img and print the snapshot id
  --out FILE         write the results as JSON (default: stdout)
)";

struct Options {
  std::string url, token_file, store, mode, snapshot, host_prefix = "scale", host, layer, out;
  int clients = 1;
  int count = 0;  // 0: run for duration_s
  long long start_at_ms = 0;  // unix ms: begin the timed loop then (0: when set up)
  double duration_s = 3;
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// What one client saw: latencies (ms) per kind of call, and its sequences' bounds.
struct ClientLog {
  std::map<std::string, std::vector<double>> ms;
  int sequences = 0;
  int errors = 0;
  std::string first_error;
  double busy_ms = 0;  // first sequence start to last sequence end
  std::vector<Clock::time_point> ends;  // when each sequence ended
};

class Timer {
 public:
  Timer() : t0_(Clock::now()) {}
  double Ms() const { return ::Ms(Clock::now() - t0_); }

 private:
  Clock::time_point t0_;
};

bool Record(ClientLog* log, const std::string& kind, const Timer& t, const Status& s) {
  if (s.ok()) {
    log->ms[kind].push_back(t.Ms());
    return true;
  }
  if (log->errors++ == 0) log->first_error = kind + ": " + s.message();
  return false;
}

Result<std::unique_ptr<storage_backend::Backend>> OpenAs(os::Os& os, const Options& o, const std::string& host) {
  auto token = ReadFileToString(o.token_file);
  if (!token.ok()) return token.status();
  storage_backend::RestOptions ro;
  ro.url = o.url;
  ro.token = token->substr(0, token->find('\n'));
  return storage_backend::OpenRestStore(os, ro, o.store, host);
}

// One container start and, after it, its removal (the `-init` layer and the container
// layer, named as dockerd names them).
bool StartOnce(storage_backend::Backend& b, const Options& o, int seq, ClientLog* log) {
  std::string ctr = fmt::format("c{}-{}", seq, RandomHex(4));
  std::string init = ctr + "-init";
  Timer start;
  Timer t;
  if (!Record(log, "clone", t, b.CloneSnapshot(o.snapshot, init))) return false;
  Timer t2;
  if (!Record(log, "file_clone", t2, b.CloneFile(b.VolumePath(init), b.VolumePath(ctr)))) return false;
  log->ms["start"].push_back(start.Ms());
  Timer t3;
  Status rm = b.RemoveVolume(ctr);
  if (rm.ok()) rm = b.RemoveVolume(init);
  return Record(log, "remove", t3, rm);
}

bool CommitOnce(storage_backend::Backend& b, const std::string& host, const std::string& layer, ClientLog* log) {
  json meta = {{"parent_layer", layer + "-parent"}, {"source", "commit"}, {"layer", layer}, {"host", host}};
  Timer t;
  auto snap = b.SnapshotVolume(layer, meta);
  if (!Record(log, "snapshot", t, snap.status())) return false;
  log->ms["commit"].push_back(t.Ms());
  return true;
}

bool KeepGoing(const Options& o, int done, Clock::time_point deadline) {
  return o.count > 0 ? done < o.count : Clock::now() < deadline;
}

// The clients start their timed loops together, after each one's setup (open, and for
// commit the volume it snapshots): the barrier's completion sets the common start.
struct Start {
  Clock::time_point t0, deadline;
};

template <class Barrier>
void RunClient(os::Os& os, const Options& o, int index, Barrier* ready, const Start* start, ClientLog* log) {
  std::string host = fmt::format("{}-{}", o.host_prefix, index);
  auto b = OpenAs(os, o, host);
  std::string vol = "commitvol";
  Timer setup;
  bool ok = b.ok() && (o.mode != "commit" || Record(log, "setup_clone", setup, (*b)->CloneSnapshot(o.snapshot, vol)));
  if (!b.ok()) {
    log->errors++;
    log->first_error = "open: " + b.status().message();
  }
  if (!ok) {
    ready->arrive_and_drop();
    return;
  }
  ready->arrive_and_wait();
  Timer busy;
  while (KeepGoing(o, log->sequences, start->deadline)) {
    bool done = o.mode == "start" ? StartOnce(**b, o, log->sequences, log) : CommitOnce(**b, host, vol, log);
    if (!done) break;
    log->sequences++;
    log->ends.push_back(Clock::now());
  }
  log->busy_ms = busy.Ms();
  if (o.mode == "commit") IgnoreError((*b)->RemoveVolume(vol), "the run's result does not depend on it");
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(rank);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

json Summary(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return {{"n", v.size()}, {"mean_ms", v.empty() ? 0 : sum / static_cast<double>(v.size())},
          {"p50_ms", Percentile(v, 50)}, {"p95_ms", Percentile(v, 95)}, {"p99_ms", Percentile(v, 99)}};
}

// Up to `keep` samples, evenly spaced over the run (for the model's service-time
// distribution).
std::vector<double> Thin(const std::vector<double>& v, size_t keep) {
  if (v.size() <= keep) return v;
  std::vector<double> out;
  for (size_t i = 0; i < keep; ++i) out.push_back(v[i * v.size() / keep]);
  return out;
}

// Throughput: with --duration, the sequences that ended within it over its length (the
// clients' last sequences, which end after it with fewer clients running, would bias it
// low); with --count, all of them over the wall time.
json Report(const Options& o, const std::vector<ClientLog>& logs, double wall_ms, Clock::time_point t0) {
  std::map<std::string, std::vector<double>> all;
  int sequences = 0, errors = 0, in_window = 0;
  double window_s = o.count > 0 ? wall_ms / 1000 : o.duration_s;
  auto window_end = t0 + std::chrono::milliseconds(static_cast<long long>(window_s * 1000));
  std::string first_error;
  json clients = json::array();
  for (const auto& l : logs) {
    for (const auto& [k, v] : l.ms) all[k].insert(all[k].end(), v.begin(), v.end());
    sequences += l.sequences;
    for (auto t : l.ends) in_window += o.count > 0 || t <= window_end ? 1 : 0;
    errors += l.errors;
    if (first_error.empty()) first_error = l.first_error;
    clients.push_back({{"sequences", l.sequences}, {"busy_ms", l.busy_ms}});
  }
  json calls = json::object();
  for (const auto& [k, v] : all) {
    calls[k] = Summary(v);
    calls[k]["samples_ms"] = Thin(v, 400);
  }
  int storaged_calls_per_seq = o.mode == "start" ? 2 : 1;
  double load[1] = {0};
  if (getloadavg(load, 1) != 1) load[0] = -1;  // the machine is shared: say how busy it was
  return {{"mode", o.mode}, {"clients", o.clients}, {"count_per_client", o.count},
          {"wall_s", wall_ms / 1000}, {"sequences", sequences}, {"window_s", window_s},
          {"sequences_in_window", in_window}, {"sequences_per_s", in_window / window_s},
          {"storaged_ops_per_s", in_window * storaged_calls_per_seq / window_s},
          {"storaged_calls_per_sequence", storaged_calls_per_seq}, {"calls", calls}, {"per_client", clients},
          {"errors", errors}, {"first_error", first_error}, {"loadavg_1m_at_end", load[0]}};
}

int Publish(os::Os& os, const Options& o) {
  auto b = OpenAs(os, o, o.host);
  if (!b.ok()) {
    std::fprintf(stderr, "slacker-scale-load: %s\n", b.status().message().c_str());
    return 1;
  }
  auto snap = (*b)->SnapshotVolume(o.layer, {{"source", "commit"}, {"layer", o.layer}, {"host", o.host}});
  if (!snap.ok()) {
    std::fprintf(stderr, "slacker-scale-load: %s\n", snap.status().message().c_str());
    return 1;
  }
  std::printf("%s\n", snap->c_str());
  return 0;
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  FlagSet cli;
  for (auto [name, target] : {std::pair{"--url", &o.url}, {"--token-file", &o.token_file}, {"--store", &o.store},
                              {"--mode", &o.mode}, {"--snapshot", &o.snapshot}, {"--host-prefix", &o.host_prefix},
                              {"--host", &o.host}, {"--layer", &o.layer}, {"--out", &o.out}})
    cli.String(name, target);
  auto int_flag = [&cli](const char* name, int* target, long long min) {
    cli.Custom(name, [name, target, min](const std::string& v) {
      SLACKER_ASSIGN_OR_RETURN(long long n, ParseIntFlag(name, v, min, 100000));
      *target = static_cast<int>(n);
      return Status::Ok();
    });
  };
  int_flag("--clients", &o.clients, 1);
  int_flag("--count", &o.count, 1);
  cli.Custom("--start-at", [&o](const std::string& v) {
    SLACKER_ASSIGN_OR_RETURN(long long ms, ParseIntFlag("--start-at", v, 0, 1LL << 50));
    o.start_at_ms = ms;
    return Status::Ok();
  });
  int duration = 3;
  int_flag("--duration", &duration, 1);
  ParseCommandLineOrExit(cli, {argv + 1, argv + argc}, "slacker-scale-load", kUsage, false);
  o.duration_s = duration;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseOptions(argc, argv);
  bool known = o.mode == "start" || o.mode == "commit" || o.mode == "publish";
  if (o.url.empty() || o.token_file.empty() || o.store.empty() || !known ||
      (o.mode == "publish" ? o.host.empty() || o.layer.empty() : o.snapshot.empty())) {
    std::fprintf(stderr, "slacker-scale-load: missing or bad arguments\n%s", kUsage);
    return 2;
  }
  auto os = os::NewRealOs();
  if (o.mode == "publish") return Publish(*os, o);
  std::vector<ClientLog> logs(static_cast<size_t>(o.clients));
  Start start;
  auto begin = [&start, &o]() noexcept {
    // Several processes that make one load start their loops at the same moment.
    auto wait = std::chrono::system_clock::time_point(std::chrono::milliseconds(o.start_at_ms)) -
                std::chrono::system_clock::now();
    if (o.start_at_ms > 0 && wait > wait.zero()) std::this_thread::sleep_for(wait);
    start.t0 = Clock::now();
    start.deadline = start.t0 + std::chrono::milliseconds(static_cast<long long>(o.duration_s * 1000));
  };
  std::barrier ready(o.clients, begin);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i)
    threads.emplace_back(RunClient<decltype(ready)>, std::ref(*os), std::cref(o), i, &ready, &start,
                         &logs[static_cast<size_t>(i)]);
  for (auto& t : threads) t.join();
  if (start.t0 == Clock::time_point{}) begin();  // every client failed its setup
  json report = Report(o, logs, Ms(Clock::now() - start.t0), start.t0);
  // How late this process began after --start-at (it was still setting up).
  auto late = std::chrono::system_clock::now() - std::chrono::system_clock::time_point(
                                                      std::chrono::milliseconds(o.start_at_ms));
  report["late_s"] = o.start_at_ms > 0 ? std::max(0.0, std::chrono::duration<double>(late).count() -
                                                           report["wall_s"].get<double>())
                                       : 0.0;
  std::string text = report.dump(1) + "\n";
  if (o.out.empty()) {
    std::fputs(text.c_str(), stdout);
  } else if (Status s = AtomicWriteFile(o.out, text, false, 0644); !s.ok()) {
    std::fprintf(stderr, "slacker-scale-load: %s\n", s.message().c_str());
    return 1;
  }
  return report["errors"].get<int>() == 0 ? 0 : 1;
}
