#include "http/connections.h"

#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"

namespace slacker::http {

Connections::Connections(std::string what, size_t limit, Spawner spawn)
    : what_(std::move(what)), limit_(limit), spawn_(std::move(spawn)) {}

bool Connections::MarkStarted() {
  common::MutexLock lock(mu_);
  if (started_) return false;
  started_ = true;
  return true;
}

bool Connections::BeginStop() {
  common::MutexLock lock(mu_);
  if (stopping_) return false;
  stopping_ = true;
  return true;
}

bool Connections::stopping() const {
  common::MutexLock lock(mu_);
  return stopping_;
}

bool Connections::SetBusy(uint64_t id, bool busy) {
  common::MutexLock lock(mu_);
  if (auto it = conns_.find(id); it != conns_.end()) it->second.busy = busy;
  return !stopping_;
}

void Connections::Release(uint64_t id, const std::function<void()>& close) {
  common::MutexLock lock(mu_);
  close();
  conns_.erase(id);
  cv_.notify_all();
}

void Connections::ShutdownWhere(bool busy_too) {
  for (const auto& [id, conn] : conns_) {
    if (busy_too || !conn.busy) ::shutdown(conn.fd, SHUT_RDWR);
  }
}

bool Connections::WaitAllEnded(Clock::time_point deadline) {
  while (!conns_.empty()) {
    if (cv_.wait_until(mu_, deadline) == std::cv_status::timeout) return conns_.empty();
  }
  return true;
}

size_t Connections::ShutdownAndWait(std::chrono::milliseconds grace) {
  common::MutexLock lock(mu_);
  ShutdownWhere(/*busy_too=*/false);
  if (WaitAllEnded(Clock::now() + grace)) return 0;
  log::Warn(what_ + "_stop_grace_exceeded", {{"in_flight", std::to_string(conns_.size())},
                                             {"grace_ms", std::to_string(grace.count())}});
  ShutdownWhere(/*busy_too=*/true);
  WaitAllEnded(Clock::now() + std::chrono::seconds(1));
  return conns_.size();
}

void Connections::SetDeadline(uint64_t id, Clock::time_point when) {
  common::MutexLock lock(mu_);
  if (auto it = conns_.find(id); it != conns_.end()) it->second.deadline = when;
}

void Connections::ExpireDeadlines() {
  auto now = Clock::now();
  common::MutexLock lock(mu_);
  for (auto& [id, conn] : conns_) {
    if (conn.deadline > now) continue;
    ::shutdown(conn.fd, SHUT_RDWR);
    conn.deadline = Clock::time_point::max();
    log::Debug(what_ + "_deadline_passed", {{"conn", std::to_string(id)}});
  }
}

void Connections::Spawn(int fd, std::shared_ptr<void> keep_alive,
                        std::function<void(uint64_t id)> serve,
                        const std::function<void(int fd)>& refuse) {
  uint64_t id;
  {
    common::MutexLock lock(mu_);
    if (stopping_ || conns_.size() >= limit_) {
      if (!stopping_ && refuse) refuse(fd);
      ::close(fd);
      if (!stopping_) {
        log::Warn(what_ + "_refused",
                  {{"err", fmt::format("{} connections already open; close idle ones", limit_)}});
      }
      return;
    }
    id = ++next_;
    conns_[id] = {fd, false};
  }
  // The thread's body is the connection boundary: nothing may escape it. It captures no
  // `this`: once serve() has Released, the owner may destroy this object (ShutdownAndWait
  // returned 0) while the thread is still unwinding and logging.
  auto body = [event = what_ + "_failed", id, serve = std::move(serve), keep_alive = std::move(keep_alive)] {
    try {
      serve(id);
    } catch (const std::exception& e) {
      log::Error(event, {{"err", e.what()}});
    }
  };
  try {
    if (spawn_) {
      spawn_(std::move(body));
    } else {
      std::thread(std::move(body)).detach();
    }
  } catch (const std::system_error& e) {
    common::MutexLock lock(mu_);
    conns_.erase(id);
    ::close(fd);
    log::Error(what_ + "_failed", {{"err", fmt::format("start connection thread: {}", e.what())}});
  }
}

}  // namespace slacker::http
