#include "http/connections.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

namespace slacker::http {
namespace {

using namespace std::chrono_literals;

// A connection thread that reads its end of a socketpair until it is shut down, with its
// busy flag set as told, then releases itself the way the servers' destructors do.
struct Pair {
  int server = -1;
  int client = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    server = fds[0];
    client = fds[1];
  }
  ~Pair() { ::close(client); }
};

void ReadUntilShutdown(Connections& conns, uint64_t id, int fd, bool busy,
                       std::atomic<int>* ended) {
  conns.SetBusy(id, busy);
  char c;
  while (::read(fd, &c, 1) > 0) {
  }
  conns.Release(id, [fd, ended] {
    ::close(fd);
    ++*ended;  // under Connections' lock: done before ShutdownAndWait() can return
  });
}

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(ConnectionsTest, StartsOnceAndStopsOnce) {
  Connections conns("test", 4);
  EXPECT_TRUE(conns.MarkStarted());
  EXPECT_FALSE(conns.MarkStarted());
  EXPECT_FALSE(conns.stopping());
  EXPECT_TRUE(conns.BeginStop());
  EXPECT_FALSE(conns.BeginStop());
  EXPECT_TRUE(conns.stopping());
}

TEST(ConnectionsTest, RefusesBeyondTheLimitAndWhileStopping) {
  Connections conns("test", 1);
  auto keep = std::make_shared<int>(0);
  std::atomic<int> ended{0};
  Pair first, second, third;
  conns.Spawn(first.server, keep, [&](uint64_t id) {
    ReadUntilShutdown(conns, id, first.server, false, &ended);
  });
  bool second_served = false;
  conns.Spawn(second.server, keep, [&](uint64_t) { second_served = true; });
  EXPECT_FALSE(IsOpen(second.server)) << "a refused descriptor is closed";
  EXPECT_EQ(conns.ShutdownAndWait(1000ms), 0u);
  EXPECT_EQ(ended.load(), 1);
  ASSERT_TRUE(conns.BeginStop());
  conns.Spawn(third.server, keep, [&](uint64_t) { second_served = true; });
  EXPECT_FALSE(IsOpen(third.server));
  EXPECT_FALSE(second_served);
}

TEST(ConnectionsTest, BusyConnectionsGetTheGracePeriodThenAreShutDown) {
  Connections conns("test", 8);
  auto keep = std::make_shared<int>(0);
  std::atomic<int> ended{0};
  Pair idle, busy;
  std::atomic<bool> busy_set{false};
  conns.Spawn(idle.server, keep, [&](uint64_t id) {
    ReadUntilShutdown(conns, id, idle.server, false, &ended);
  });
  conns.Spawn(busy.server, keep, [&](uint64_t id) {
    conns.SetBusy(id, true);
    busy_set = true;
    ReadUntilShutdown(conns, id, busy.server, true, &ended);
  });
  while (!busy_set) std::this_thread::sleep_for(1ms);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(conns.ShutdownAndWait(200ms), 0u);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(ended.load(), 2);
  EXPECT_GE(took, 200ms) << "the busy connection was shut down before its grace period";
}

TEST(ConnectionsTest, ExceptionsStayInsideTheConnectionThread) {
  Connections conns("test", 8);
  auto keep = std::make_shared<int>(0);
  Pair p;
  std::atomic<bool> ran{false};
  conns.Spawn(p.server, keep, [&](uint64_t id) {
    conns.Release(id, [&] { ::close(p.server); });
    ran = true;
    throw std::runtime_error("boom");
  });
  EXPECT_EQ(conns.ShutdownAndWait(1000ms), 0u);
  while (!ran) std::this_thread::sleep_for(1ms);
}

// The owner may destroy Connections as soon as every connection has Released: a thread
// still unwinding (logging the exception) must not touch it. Under ASan, reading the freed
// object's name is a heap-use-after-free; the thread throws only after the object is gone.
TEST(ConnectionsTest, ThreadOutlivingTheObjectTouchesNothingOfIt) {
  auto conns = std::make_unique<Connections>(std::string(64, 'n'), 8);  // name on the heap
  auto keep = std::make_shared<int>(0);
  std::weak_ptr<int> thread_alive = keep;
  Pair p;
  std::promise<void> destroyed;
  auto destroyed_future = destroyed.get_future().share();
  Connections* raw = conns.get();
  raw->Spawn(p.server, std::move(keep), [raw, &p, destroyed_future](uint64_t id) {
    raw->Release(id, [&] { ::close(p.server); });
    destroyed_future.wait();
    throw std::runtime_error("boom after the owner is gone");
  });
  EXPECT_EQ(conns->ShutdownAndWait(1000ms), 0u);
  conns.reset();
  destroyed.set_value();
  // The thread drops `keep` when its body (and the logging) is done.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!thread_alive.expired() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(thread_alive.expired()) << "the connection thread did not end";
}

}  // namespace
}  // namespace slacker::http
