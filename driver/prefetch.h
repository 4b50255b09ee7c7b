// Start-up prefetch by record and replay (issue 20; driver/README.md "Start-up
// prefetch"). When a container layer's volume, a clone of image snapshot S, is mounted,
// the driver hands the mount to the Prefetcher (Start), which, off the Get's path:
// - reads S's trace from the store (snapshots/<S>.trace, prefetch_trace.h) and, when it
//   is valid, replays it: its extents are read in a bounded pool of threads into the
//   caches ext4 reads from (prefetch_io.h), while the container starts;
// - when there is none (or it is refused), records one: `record_after` later, or when the
//   mount is about to go (Settle) if that comes first and the mount is old enough, the
//   pages the container has read are written to the store as S's trace.
// Nothing here can change what a container reads: a replay only reads, a trace only
// decides what is read ahead. A stale, truncated or hostile trace is ignored with a
// warning (or costs the reads it names, within the caps).
//
// Thread-safety: every public method may be called from any thread. Settle may block
// for a recording (bounded by its walk) and for in-flight reads (at most one 1 MiB read
// per thread, bounded by kSettleWait).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/mutex.h"
#include "driver/prefetch_io.h"
#include "storage_backend/backend.h"

namespace slacker::driver {

struct PrefetchOptions {
  bool enabled = false;
  std::chrono::milliseconds record_after{10'000};  // a recording waits this long for the start-up
  std::chrono::milliseconds min_record_age{1'000};  // Settle records a mount at least this old
  int threads = 4;                                 // replay readers
  RecordLimits limits;
};

struct PrefetchStats {
  uint64_t trace_hits = 0;       // mounts whose snapshot had a valid trace (replayed)
  uint64_t trace_misses = 0;     // mounts whose snapshot had none
  uint64_t traces_rejected = 0;  // traces refused by DecodeTrace (ignored, then re-recorded)
  uint64_t traces_recorded = 0;  // traces written to the store
  uint64_t extents = 0;          // extents replayed
  uint64_t bytes = 0;            // bytes read by replays
  uint64_t cancelled = 0;        // replays cut short by Settle
};

class Prefetcher {
 public:
  // REQUIRES: `backend` outlives the prefetcher. Starts its threads when enabled.
  Prefetcher(storage_backend::Backend& backend, PrefetchOptions options);
  // Cancels every replay and pending recording, joins the threads.
  ~Prefetcher();

  bool enabled() const { return opts_.enabled; }
  // The volume of `layer`, a clone of snapshot `snap`, was just mounted at `mountpoint`
  // on /dev/loop<loop_index>. Pins the mount (descriptors of its root and its device) and
  // returns; the store is read by the prefetcher's thread. A session of `layer` still
  // open is settled first.
  void Start(const std::string& layer, const std::string& snap, const std::string& mountpoint, int loop_index);
  // `layer`'s mount is about to go: its replay stops, a recording not begun runs now (if
  // the mount is at least min_record_age old, else it is dropped), and the pins are let go.
  void Settle(const std::string& layer);
  PrefetchStats stats() const;

  static constexpr std::chrono::milliseconds kSettleWait{2'000};

 private:
  enum class Phase { kLoad, kReplay, kRecordPending, kRecording, kDone };
  struct Session {
    std::string layer, snap;
    UniqueFd root_fd, loop_fd;
    std::chrono::steady_clock::time_point started, record_at;
    timespec started_wall{};  // CLOCK_REALTIME: files changed after it are the container's
    Phase phase = Phase::kLoad;  // guarded by Prefetcher::mu_
    Trace trace;                 // set before kReplay; read-only afterwards
    std::atomic<size_t> next{0};     // next extent to replay
    std::atomic<int> readers{0};     // replay threads inside this session
    std::atomic<bool> cancel{false};
  };

  void Control();      // loads traces, runs due recordings
  void ReplayWorker();  // reads extents of replaying sessions
  void Load(const std::shared_ptr<Session>& s);
  void Record(Session& s);
  void Finish(const std::shared_ptr<Session>& s) REQUIRES(mu_);
  std::shared_ptr<Session> NextReplay() REQUIRES(mu_);
  void Add(uint64_t PrefetchStats::*field, uint64_t n = 1);

  storage_backend::Backend& backend_;
  const PrefetchOptions opts_;
  mutable common::Mutex mu_;
  std::condition_variable_any cv_;
  std::map<std::string, std::shared_ptr<Session>> sessions_ GUARDED_BY(mu_);  // by layer
  std::deque<std::shared_ptr<Session>> replaying_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  mutable common::Mutex stats_mu_;
  PrefetchStats stats_ GUARDED_BY(stats_mu_);
  std::vector<std::thread> threads_;
};

}  // namespace slacker::driver
