// The server over real sockets: unix and TCP, streamed bodies and replies, the connection
// limit, timeouts, malformed requests and Stop() with a request in flight.
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "common/fd.h"
#include "common/files.h"

namespace slacker::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Reply Plain(int status, std::string message, const Request&) {
  Reply r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::to_string(status) + " " + message;
  return r;
}

UniqueFd ConnectUnix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fd.Reset();
  return fd;
}

UniqueFd ConnectTcp(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fd.Reset();
  return fd;
}

void Send(int fd, const std::string& data) {
  ASSERT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
}

// Everything the server sends until it closes, or until `seconds` pass.
std::string ReadAll(int fd, double seconds) {
  std::string out;
  auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, n);
  }
  return out;
}

double SecondsUntilClosed(int fd, double limit) {
  auto start = Clock::now();
  ReadAll(fd, limit);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/http_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    router_ = std::make_shared<Router>(Plain);
    ASSERT_TRUE(router_->Add("GET", "/hello", [](Request&) {
      Reply r;
      r.body = "hi";
      return r;
    }).ok());
    // Reads the whole body, answers it back as a chunked stream.
    ASSERT_TRUE(router_->Add("POST", "/echo", [](Request& req) {
      auto body = ReadAtMost(req.body, 1 << 20, "body");
      Reply r;
      if (!body.ok()) return Plain(400, body.status().message(), req);
      r.stream = std::make_unique<StringSource>("echo:" + *body);
      return r;
    }).ok());
    // Blocks until released (or 5 s pass).
    ASSERT_TRUE(router_->Add("GET", "/slow", [this](Request&) {
      auto released = release_.get_future().wait_for(5s);
      Reply r;
      r.body = released == std::future_status::ready ? "released" : "timed out";
      return r;
    }).ok());
  }
  void TearDown() override {
    server_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }
  ServerOptions UnixOptions() {
    ServerOptions o;
    o.unix_path = dir_ + "/sub/http.sock";
    return o;
  }
  void Start(ServerOptions o) {
    server_ = std::make_unique<Server>(router_, std::move(o));
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.message();
  }

  std::string dir_;
  std::shared_ptr<Router> router_;
  std::promise<void> release_;
  std::unique_ptr<Server> server_;
};

const char kHello[] = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

// A unix socket is created with its directory, mode 0600, and answers.
TEST_F(HttpServerTest, UnixSocketIsPrivateAndServes) {
  Start(UnixOptions());
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/sub/http.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  UniqueFd c = ConnectUnix(dir_ + "/sub/http.sock");
  ASSERT_TRUE(c.valid());
  Send(c.get(), kHello);
  std::string reply = ReadAll(c.get(), 5);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
  EXPECT_TRUE(reply.ends_with("\r\n\r\nhi")) << reply;
  EXPECT_EQ(server_->address(), "unix:" + dir_ + "/sub/http.sock");
}

// A socket file nobody answers on (a crashed predecessor) is replaced; a live one is not.
TEST_F(HttpServerTest, ReplacesStaleSocketButNotALiveOne) {
  ASSERT_TRUE(MakeDirs(dir_ + "/sub", 0755).ok());
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = dir_ + "/sub/http.sock";
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  Start(UnixOptions());
  Server second(router_, UnixOptions());
  EXPECT_EQ(second.Start().code(), EADDRINUSE);
}

// TCP on loopback with a kernel-picked port; the request log hook sees each request.
TEST_F(HttpServerTest, TcpServesAndReportsEachRequest) {
  std::atomic<int> seen{0};
  ServerOptions o;
  o.reply_headers = {{"Server", "test"}};
  o.on_request = [&seen](const Request& req, const Reply& reply, const Exchange& x) {
    if (req.path == "/hello" && reply.status == 200 && x.number >= 1) ++seen;
  };
  Start(o);
  ASSERT_NE(server_->port(), 0);
  EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(server_->port()));
  UniqueFd c = ConnectTcp(server_->port());
  ASSERT_TRUE(c.valid());
  Send(c.get(), kHello);
  std::string reply = ReadAll(c.get(), 5);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
  EXPECT_NE(reply.find("Server: test\r\n"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Content-Type: application/json\r\n"), std::string::npos) << reply;
  EXPECT_EQ(seen.load(), 1);
}

// The body reaches the handler as a stream and a stream reply goes out chunked.
TEST_F(HttpServerTest, StreamsBodyInAndChunksReplyOut) {
  Start(UnixOptions());
  UniqueFd c = ConnectUnix(dir_ + "/sub/http.sock");
  ASSERT_TRUE(c.valid());
  Send(c.get(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  std::string reply = ReadAll(c.get(), 5);
  EXPECT_NE(reply.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << reply;
  EXPECT_TRUE(reply.ends_with("\r\n\r\na\r\necho:hello\r\n0\r\n\r\n")) << reply;
}

// Unknown path and wrong method are the router's 404 and 405 on the wire.
TEST_F(HttpServerTest, RouterErrorsOnTheWire) {
  Start(UnixOptions());
  UniqueFd c = ConnectUnix(dir_ + "/sub/http.sock");
  Send(c.get(), "DELETE /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string reply = ReadAll(c.get(), 5);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 405 ")) << reply;
  EXPECT_NE(reply.find("Allow: GET\r\n"), std::string::npos) << reply;
  c = ConnectUnix(dir_ + "/sub/http.sock");
  Send(c.get(), "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(ReadAll(c.get(), 5).starts_with("HTTP/1.1 404 "));
}

// A malformed request is answered 400 by default, or just closed when told so.
TEST_F(HttpServerTest, MalformedRequestIs400OrClosed) {
  Start(UnixOptions());
  UniqueFd c = ConnectUnix(dir_ + "/sub/http.sock");
  Send(c.get(), "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_TRUE(ReadAll(c.get(), 5).starts_with("HTTP/1.1 400 "));
  server_.reset();
  ServerOptions o = UnixOptions();
  o.reply_to_malformed = false;
  Start(o);
  c = ConnectUnix(dir_ + "/sub/http.sock");
  Send(c.get(), "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(ReadAll(c.get(), 5), "");
}

// Beyond the limit a connection gets the refusal bytes and is closed; those within it
// are served.
TEST_F(HttpServerTest, LimitRefusesWithTheRefusal) {
  ServerOptions o;
  o.max_connections = 1;
  o.refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  Start(o);
  UniqueFd first = ConnectTcp(server_->port());
  ASSERT_TRUE(first.valid());
  std::this_thread::sleep_for(300ms);  // accepted
  UniqueFd second = ConnectTcp(server_->port());
  ASSERT_TRUE(second.valid());
  EXPECT_TRUE(ReadAll(second.get(), 5).starts_with("HTTP/1.1 503")) ;
  Send(first.get(), kHello);
  EXPECT_TRUE(ReadAll(first.get(), 5).starts_with("HTTP/1.1 200"));
}

// A header that stops half-way is dropped at the header deadline; an idle connection at
// the idle one.
TEST_F(HttpServerTest, HeaderAndIdleTimeoutsDropSlowClients) {
  ServerOptions o;
  o.header_timeout = 300ms;
  o.idle_timeout = 300ms;
  Start(o);
  UniqueFd half = ConnectTcp(server_->port());
  Send(half.get(), "GET /hello HTTP/1.1\r\nHo");
  EXPECT_LT(SecondsUntilClosed(half.get(), 5), 2.0);
  UniqueFd idle = ConnectTcp(server_->port());
  EXPECT_LT(SecondsUntilClosed(idle.get(), 5), 2.0);
  UniqueFd fine = ConnectTcp(server_->port());
  Send(fine.get(), kHello);
  EXPECT_TRUE(ReadAll(fine.get(), 5).starts_with("HTTP/1.1 200"));
}

// A body that trickles in slower than the body deadline is dropped.
TEST_F(HttpServerTest, BodyTimeoutDropsSlowBody) {
  ServerOptions o;
  o.body_timeout = 300ms;
  Start(o);
  UniqueFd c = ConnectTcp(server_->port());
  Send(c.get(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
  EXPECT_LT(SecondsUntilClosed(c.get(), 5), 2.0);
}

// Stop() closes idle connections at once, lets a request in flight finish within the
// grace period, and unlinks the socket.
TEST_F(HttpServerTest, StopLetsABusyRequestFinishWithinGrace) {
  ServerOptions o = UnixOptions();
  o.stop_grace = 3s;
  Start(o);
  UniqueFd idle = ConnectUnix(dir_ + "/sub/http.sock");
  UniqueFd busy = ConnectUnix(dir_ + "/sub/http.sock");
  Send(busy.get(), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  std::this_thread::sleep_for(300ms);  // inside the handler
  auto stopped = std::async(std::launch::async, [this] { server_->Stop(); });
  EXPECT_LT(SecondsUntilClosed(idle.get(), 5), 1.0);
  release_.set_value();
  std::string reply = ReadAll(busy.get(), 5);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
  EXPECT_NE(reply.find("Connection: close\r\n"), std::string::npos) << reply;
  EXPECT_TRUE(reply.ends_with("released")) << reply;
  stopped.get();
  EXPECT_FALSE(PathExists(dir_ + "/sub/http.sock"));
}

// A request still busy when the grace period ends has its connection shut down, and
// Stop() returns instead of waiting for the handler.
TEST_F(HttpServerTest, StopShutsDownABusyRequestAfterGrace) {
  ServerOptions o = UnixOptions();
  o.stop_grace = 200ms;
  Start(o);
  UniqueFd busy = ConnectUnix(dir_ + "/sub/http.sock");
  Send(busy.get(), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  std::this_thread::sleep_for(300ms);
  auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 3.0);
  EXPECT_LT(SecondsUntilClosed(busy.get(), 5), 1.0);
  release_.set_value();  // the abandoned handler ends; its thread keeps the state alive
}

// A connection whose thread cannot be created is closed; the next one is served.
TEST_F(HttpServerTest, SurvivesThreadCreationFailure) {
  std::atomic<int> calls{0};
  ServerOptions o;
  o.spawn = [&calls](std::function<void()> run) {
    if (calls.fetch_add(1) == 0) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    std::thread(std::move(run)).detach();
  };
  Start(o);
  UniqueFd first = ConnectTcp(server_->port());
  EXPECT_LT(SecondsUntilClosed(first.get(), 5), 4.0);
  UniqueFd second = ConnectTcp(server_->port());
  Send(second.get(), kHello);
  EXPECT_TRUE(ReadAll(second.get(), 5).starts_with("HTTP/1.1 200"));
}

}  // namespace
}  // namespace slacker::http
