#include "driver/prefetch.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "common/log.h"

namespace slacker::driver {

using common::MutexLock;
using Clock = std::chrono::steady_clock;

Prefetcher::Prefetcher(storage_backend::Backend& backend, PrefetchOptions options)
    : backend_(backend), opts_(std::move(options)) {
  if (!opts_.enabled) return;
  threads_.emplace_back([this] { Control(); });
  for (int i = 0; i < std::max(1, opts_.threads); ++i) threads_.emplace_back([this] { ReplayWorker(); });
}

Prefetcher::~Prefetcher() {
  {
    MutexLock l(mu_);
    stopping_ = true;
    for (auto& [id, s] : sessions_) s->cancel.store(true);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Prefetcher::Start(const std::string& layer, const std::string& snap, const std::string& mountpoint,
                       int loop_index) {
  if (!opts_.enabled || loop_index < 0) return;
  Settle(layer);
  auto s = std::make_shared<Session>();
  s->layer = layer;
  s->snap = snap;
  s->root_fd.Reset(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::string dev = fmt::format("/dev/loop{}", loop_index);
  s->loop_fd.Reset(::open(dev.c_str(), O_RDONLY | O_CLOEXEC));
  if (!s->root_fd.valid() || !s->loop_fd.valid()) {
    log::Warn("prefetch_not_started", {{"layer", layer}, {"mount", mountpoint}, {"device", dev},
                                       {"err", std::strerror(errno)}});
    return;
  }
  s->started = Clock::now();
  ::clock_gettime(CLOCK_REALTIME, &s->started_wall);
  s->record_at = s->started + opts_.record_after;
  {
    MutexLock l(mu_);
    if (stopping_) return;
    sessions_[layer] = s;
  }
  cv_.notify_all();
}

void Prefetcher::Settle(const std::string& layer) {
  if (!opts_.enabled) return;
  std::shared_ptr<Session> s;
  bool record_here = false;
  {
    MutexLock l(mu_);
    auto it = sessions_.find(layer);
    if (it == sessions_.end()) return;
    s = it->second;
    sessions_.erase(it);
    switch (s->phase) {
      case Phase::kRecordPending:
        record_here = Clock::now() - s->started >= opts_.min_record_age;
        if (record_here) {
          s->phase = Phase::kRecording;
        } else {
          Finish(s);
        }
        break;
      case Phase::kRecording: {
        // The control thread records it now: the mount must stay until it is done.
        while (s->phase != Phase::kDone) cv_.wait(mu_);
        break;
      }
      case Phase::kReplay: {
        s->cancel.store(true);
        Add(&PrefetchStats::cancelled);
        auto deadline = Clock::now() + kSettleWait;
        while (s->readers.load() > 0 && Clock::now() < deadline) cv_.wait_until(mu_, deadline);
        if (s->readers.load() == 0) Finish(s);  // else the last reader finishes it
        break;
      }
      case Phase::kLoad:  // the control thread drops it when the load returns
      case Phase::kDone:
        s->cancel.store(true);
        if (s->readers.load() == 0) Finish(s);
        break;
    }
  }
  if (record_here) {
    Record(*s);
    MutexLock l(mu_);
    Finish(s);
  }
  cv_.notify_all();
}

void Prefetcher::Finish(const std::shared_ptr<Session>& s) {
  s->phase = Phase::kDone;
  s->root_fd.Reset();
  s->loop_fd.Reset();
  auto it = sessions_.find(s->layer);
  if (it != sessions_.end() && it->second == s) sessions_.erase(it);
}

void Prefetcher::Control() {
  mu_.Lock();
  while (!stopping_) {
    std::shared_ptr<Session> job;
    auto wake = Clock::time_point::max();
    for (auto& [id, s] : sessions_) {
      if (s->phase == Phase::kLoad) {
        job = s;
        break;
      }
      if (s->phase != Phase::kRecordPending) continue;
      if (s->record_at <= Clock::now()) {
        job = s;
        s->phase = Phase::kRecording;
        break;
      }
      wake = std::min(wake, s->record_at);
    }
    if (!job) {
      if (wake == Clock::time_point::max()) {
        cv_.wait(mu_);
      } else {
        cv_.wait_until(mu_, wake);
      }
      continue;
    }
    bool record = job->phase == Phase::kRecording;
    mu_.Unlock();
    if (record) {
      Record(*job);
    } else {
      Load(job);
    }
    mu_.Lock();
    if (record || job->phase == Phase::kLoad) Finish(job);  // recorded, or settled while loading
    cv_.notify_all();
  }
  mu_.Unlock();
}

// Runs on the control thread without mu_. On return the session is replaying (queued),
// waiting to record, or done.
void Prefetcher::Load(const std::shared_ptr<Session>& s) {
  struct stat st;
  std::string image = backend_.SnapshotPath(s->snap);
  if (::stat(image.c_str(), &st) != 0) {
    log::Warn("prefetch_no_image", {{"snapshot", s->snap}, {"err", std::strerror(errno)}});
    return;
  }
  Trace trace;
  bool valid = false;
  auto bytes = backend_.ReadSnapshotTrace(s->snap, kMaxTraceFileBytes);
  if (bytes.ok()) {
    auto decoded = DecodeTrace(*bytes, static_cast<uint64_t>(st.st_size));
    if (decoded.ok()) {
      trace = std::move(decoded).value();
      valid = true;
    } else {
      Add(&PrefetchStats::traces_rejected);
      log::Warn("prefetch_trace_ignored", {{"snapshot", s->snap}, {"err", decoded.status().message()},
                                           {"action", "none: a new trace replaces it after this start"}});
    }
  } else if (bytes.status().code() != ENOENT) {
    Add(&PrefetchStats::traces_rejected);
    log::Warn("prefetch_trace_unreadable", {{"snapshot", s->snap}, {"err", bytes.status().message()}});
  }
  MutexLock l(mu_);
  // Counted once the session's next phase is set: a caller that saw the count then
  // settles a session that is replaying or waiting to record (the root tests rely on it).
  Add(valid ? &PrefetchStats::trace_hits : &PrefetchStats::trace_misses);
  if (s->phase != Phase::kLoad) return;  // settled meanwhile
  if (valid && trace.extents.empty()) return;  // nothing to read; the caller finishes it
  if (valid) {
    log::Debug("prefetch_replay", {{"layer", s->layer}, {"snapshot", s->snap},
                                   {"extents", std::to_string(trace.extents.size())},
                                   {"bytes", std::to_string(trace.TotalBytes())}});
    s->trace = std::move(trace);
    s->phase = Phase::kReplay;
    replaying_.push_back(s);
    return;
  }
  // One recording per snapshot at a time: another container of the image records it.
  for (auto& [id, other] : sessions_) {
    if (other != s && other->snap == s->snap &&
        (other->phase == Phase::kRecordPending || other->phase == Phase::kRecording))
      return;  // the caller finishes it
  }
  s->phase = Phase::kRecordPending;
}

// Runs without mu_, on the control thread or in Settle; the session is kRecording.
void Prefetcher::Record(Session& s) {
  struct stat st;
  if (::stat(backend_.SnapshotPath(s.snap).c_str(), &st) != 0) return;
  auto trace = RecordResidency(s.root_fd.get(), s.loop_fd.get(), static_cast<uint64_t>(st.st_size),
                               s.started_wall, opts_.limits, s.cancel);
  Status written = trace.status();
  if (trace.ok()) {
    auto bytes = EncodeTrace(*trace);
    written = bytes.ok() ? backend_.WriteSnapshotTrace(s.snap, *bytes) : bytes.status();
  }
  if (!written.ok()) {
    log::Warn("prefetch_record_failed", {{"layer", s.layer}, {"snapshot", s.snap}, {"err", written.message()}});
    return;
  }
  Add(&PrefetchStats::traces_recorded);
  log::Info("prefetch_trace_recorded", {{"layer", s.layer}, {"snapshot", s.snap},
                                        {"extents", std::to_string(trace->extents.size())},
                                        {"bytes", std::to_string(trace->TotalBytes())}});
}

std::shared_ptr<Prefetcher::Session> Prefetcher::NextReplay() {
  while (!replaying_.empty()) {
    auto s = replaying_.front();
    if (!s->cancel.load() && s->next.load() < s->trace.extents.size()) return s;
    replaying_.pop_front();
  }
  return nullptr;
}

void Prefetcher::ReplayWorker() {
  mu_.Lock();
  while (!stopping_) {
    auto s = NextReplay();
    if (!s) {
      cv_.wait(mu_);
      continue;
    }
    size_t i = s->next.fetch_add(1);
    s->readers.fetch_add(1);
    mu_.Unlock();
    if (i < s->trace.extents.size() && !s->cancel.load()) {
      auto n = ReplayExtent(s->root_fd.get(), s->loop_fd.get(), s->trace.extents[i], s->cancel);
      if (n.ok()) {
        Add(&PrefetchStats::extents);
        Add(&PrefetchStats::bytes, *n);
      } else {
        log::Debug("prefetch_extent_skipped", {{"layer", s->layer}, {"err", n.status().message()}});
      }
    }
    mu_.Lock();
    if (s->readers.fetch_sub(1) == 1 && (s->cancel.load() || s->next.load() >= s->trace.extents.size())) {
      if (s->phase == Phase::kReplay && !s->cancel.load())
        log::Debug("prefetch_replayed", {{"layer", s->layer}, {"snapshot", s->snap}});
      Finish(s);
      cv_.notify_all();
    }
  }
  mu_.Unlock();
}

void Prefetcher::Add(uint64_t PrefetchStats::*field, uint64_t n) {
  MutexLock l(stats_mu_);
  stats_.*field += n;
}

PrefetchStats Prefetcher::stats() const {
  MutexLock l(stats_mu_);
  return stats_;
}

}  // namespace slacker::driver
