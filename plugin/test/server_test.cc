// Socket set-up, concurrency and shutdown.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>

#include "plugin/test/server_fixture.h"

namespace slacker::plugin {
namespace {

using Clock = std::chrono::steady_clock;

class ServerLifecycle : public PluginServerTest {
 protected:
  void SetUp() override {
    PluginServerTest::SetUp();
    fake_.AddLayer("l1");
    fake_.apply_size = 0;  // the ApplyDiff bodies here are not tars
  }

  // Starts a blocked ApplyDiff on its own connection and waits until it is in the driver.
  std::future<HttpReply> StartBlockedApplyDiff() {
    fake_.BlockApplyDiff();
    auto reply = std::async(std::launch::async, [path = opts_.socket_path] {
      return TestClient(path).PostChunked("/GraphDriver.ApplyDiff?id=slow", "tar", 3);
    });
    fake_.WaitApplyDiffEntered();
    return reply;
  }
};

// Only root (dockerd) may talk to the plugin.
TEST_F(ServerLifecycle, SocketModeIs0600) {
  struct stat st;
  ASSERT_EQ(::stat(opts_.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// A socket left by a crashed plugin is replaced.
TEST_F(ServerLifecycle, ReplacesStaleSocket) {
  server_.reset();
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(opts_.socket_path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, opts_.socket_path.c_str(), opts_.socket_path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);  // the file stays, nobody listens
  StartServer();
  EXPECT_EQ(Client().Post("/Plugin.Activate", "null").status, 200);
}

// A second plugin must not steal the socket of a running one.
TEST_F(ServerLifecycle, RefusesSocketOfLiveServer) {
  FakeGraphDriver other;
  Server second(other, opts_);
  Status s = second.Start();
  EXPECT_EQ(s.code(), EADDRINUSE) << s.message();
  EXPECT_EQ(Client().Post("/Plugin.Activate", "null").status, 200);
}

// Something that is not a socket is never deleted.
TEST_F(ServerLifecycle, RefusesPathThatIsNotASocket) {
  ServerOptions o = opts_;
  o.socket_path = dir_ + "/not-a-socket";
  std::ofstream(o.socket_path) << "data";
  Server second(fake_, o);
  EXPECT_EQ(second.Start().code(), EEXIST);
  EXPECT_TRUE(PathExists(o.socket_path));
}

TEST_F(ServerLifecycle, RefusesOverlongSocketPath) {
  ServerOptions o = opts_;
  o.socket_path = dir_ + "/" + std::string(120, 's');
  Server second(fake_, o);
  EXPECT_EQ(second.Start().code(), ENAMETOOLONG);
}

// Bytes that are not HTTP get a 400 and a closed connection.
TEST_F(ServerLifecycle, MalformedHttpIs400) {
  TestClient client = Client();
  HttpReply r = client.SendRaw("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_FALSE(r.keep_alive);
}

// curl (for manual testing) waits for 100 Continue before sending a large body.
TEST_F(ServerLifecycle, ExpectContinueIsAnswered) {
  TestClient client = Client();
  HttpReply go_on = client.SendRaw(
      "POST /GraphDriver.ApplyDiff?id=l1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 3\r\n\r\n");
  EXPECT_EQ(go_on.status, 100);
  HttpReply r = client.SendRaw("tar");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(fake_.applied(), "tar");
}

TEST_F(ServerLifecycle, StartTwiceFails) { EXPECT_EQ(server_->Start().code(), EINVAL); }

// A slow ApplyDiff occupies only its own connection.
TEST_F(ServerLifecycle, BlockedApplyDiffDoesNotBlockGet) {
  auto apply = StartBlockedApplyDiff();
  HttpReply get = Client().Post("/GraphDriver.Get", R"({"ID":"l1"})");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(apply.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  fake_.ReleaseApplyDiff();
  HttpReply r = apply.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(fake_.applied(), "tar");
}

// Idle keep-alive connections (dockerd keeps them) do not hold up Stop().
TEST_F(ServerLifecycle, StopClosesIdleConnectionsPromptly) {
  TestClient client = Client();
  ASSERT_EQ(client.Post("/GraphDriver.Get", R"({"ID":"l1"})").status, 200);
  auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_TRUE(client.ServerClosed());
  EXPECT_FALSE(PathExists(opts_.socket_path));
}

// Stop() lets a request already in the driver finish.
TEST_F(ServerLifecycle, StopWaitsForInFlightRequest) {
  auto apply = StartBlockedApplyDiff();
  auto release = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fake_.ReleaseApplyDiff();
  });
  server_->Stop();
  EXPECT_EQ(fake_.applied(), "tar");  // the driver finished before Stop() returned
  HttpReply r = apply.get();
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
}

// A request stuck in the driver holds Stop() up only for the grace period.
TEST_F(ServerLifecycle, StopIsBoundedByGracePeriod) {
  opts_.stop_grace = std::chrono::milliseconds(100);
  StartServer();
  auto apply = StartBlockedApplyDiff();
  auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1500));
  fake_.ReleaseApplyDiff();
  fake_.WaitApplyDiffReturned();  // the abandoned thread is done with fake_
  EXPECT_NE(apply.get().error, "");
}

// After Stop() nothing listens: dockerd's retries see a refused or missing socket.
TEST_F(ServerLifecycle, StopRefusesNewConnections) {
  server_->Stop();
  HttpReply r = Client().Post("/Plugin.Activate", "null");
  EXPECT_NE(r.error, "");
}

}  // namespace
}  // namespace slacker::plugin
