// The bookkeeping of the thread-per-connection server (server.h): which connections are
// open and whether each is inside a request, admission (stopping, a connection limit),
// one detached thread per connection with nothing escaping it, per-connection deadlines,
// and Stop()'s "close the idle ones, give the busy ones a grace period, then shut them
// down too".
//
// Descriptor reuse: a connection's socket is closed inside Release(), under the same
// lock ShutdownAndWait() and ExpireDeadlines() hold while they shut descriptors down, so
// neither ever shuts down a descriptor number the kernel has already handed to someone else.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace slacker::http {

class Connections {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts a connection's thread. May throw std::system_error as std::thread does.
  using Spawner = std::function<void(std::function<void()>)>;

  // `what` names the server in log events ("connection", "metrics_connection").
  // `spawn` defaults to a detached std::thread.
  Connections(std::string what, size_t limit, Spawner spawn = {});

  // False if the server was already started.
  bool MarkStarted();
  // Sets stopping; false if it was already set.
  bool BeginStop();
  bool stopping() const;

  // Records whether connection `id` is inside a request. Returns false once the server
  // is stopping: the connection must end.
  bool SetBusy(uint64_t id, bool busy);

  // Ends connection `id`: runs `close` (which closes its socket) under the lock, forgets
  // the connection and wakes ShutdownAndWait().
  void Release(uint64_t id, const std::function<void()>& close);

  // Shuts idle connections down, waits up to `grace` for all to end, then shuts the busy
  // ones down too and waits one more second. Returns how many are still open (their
  // threads are stuck in a handler and keep the server's shared state alive).
  size_t ShutdownAndWait(std::chrono::milliseconds grace);

  // Connection `id`'s current phase must end by `when` (Clock::time_point::max(): no
  // deadline). Blocking Beast reads cannot time out (Asio ignores SO_RCVTIMEO), so
  // ExpireDeadlines(), called periodically, shuts a late connection's socket down and
  // its blocked read or write fails.
  void SetDeadline(uint64_t id, Clock::time_point when);
  void ExpireDeadlines();

  // Admits the accepted descriptor `fd` and runs serve(id) on a detached thread that
  // holds `keep_alive` (the server's shared state). serve must arrange Release(id, ...)
  // (its connection object's destructor does). Refused (fd closed, a warning logged)
  // while stopping or at the limit; at the limit `refuse(fd)`, when set, runs first (to
  // write a 503, say). Exceptions from serve are logged, never propagated.
  // The thread touches nothing of this object outside serve: once every connection has
  // Released (ShutdownAndWait returned 0), the object may be destroyed.
  void Spawn(int fd, std::shared_ptr<void> keep_alive, std::function<void(uint64_t id)> serve,
             const std::function<void(int fd)>& refuse = {});

 private:
  struct Conn {
    int fd;
    bool busy;
    Clock::time_point deadline = Clock::time_point::max();
  };
  // Shuts down the busy connections too when `busy_too`, else only the idle ones.
  void ShutdownWhere(bool busy_too) REQUIRES(mu_);
  // Waits until every connection has ended or `deadline` passes; true if all ended.
  bool WaitAllEnded(Clock::time_point deadline) REQUIRES(mu_);

  const std::string what_;
  const size_t limit_;
  const Spawner spawn_;
  mutable common::Mutex mu_;
  std::condition_variable_any cv_;  // signalled when a connection ends
  std::map<uint64_t, Conn> conns_ GUARDED_BY(mu_);
  uint64_t next_ GUARDED_BY(mu_) = 0;
  bool started_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
};

}  // namespace slacker::http
