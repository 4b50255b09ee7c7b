#include "plugin/server.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <vector>

#include "common/fd.h"
#include "common/log.h"
#include "plugin/connections.h"
#include "plugin/graphdriver_routes.h"
#include "plugin/listener.h"
#include "plugin/metrics.h"
#include "plugin/router.h"

namespace slacker::plugin {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Socket = net::local::stream_protocol::socket;
using Parser = http::request_parser<http::buffer_body>;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadBufferLimit = 64 * 1024;  // bytes held per connection while parsing
constexpr uint32_t kHeaderLimit = 16 * 1024;
constexpr size_t kDiffPiece = 64 * 1024;

std::string_view View(beast::string_view s) { return {s.data(), s.size()}; }

// The request body as a ByteSource, read off the socket as the handler asks for it.
// Each Read returns what one socket read yields, so nothing beyond kReadBufferLimit is
// ever held here.
class BodySource : public ByteSource {
 public:
  BodySource(Socket& sock, beast::flat_buffer& buffer, Parser& parser)
      : sock_(sock), buffer_(buffer), parser_(parser) {}

  Result<size_t> Read(void* out, size_t n) override {
    if (!error_.ok()) return error_;
    while (n > 0 && !parser_.is_done()) {
      auto& body = parser_.get().body();
      body.data = out;
      body.size = n;
      beast::error_code ec;
      http::read_some(sock_, buffer_, parser_, ec);
      size_t got = n - body.size;
      body.data = nullptr;
      body.size = 0;
      if (ec && ec != http::error::need_buffer) {
        error_ = Errorf(EIO, "read request body after {} bytes: {}", total_ + got, ec.message());
        if (got == 0) return error_;
      }
      if (got > 0) {
        total_ += got;
        return got;
      }
    }
    return size_t{0};
  }

  // Reads and discards the rest of the body; false if it fails or exceeds `limit` bytes.
  bool Drain(uint64_t limit) {
    std::vector<char> sink(kReadBufferLimit);
    uint64_t drained = 0;
    while (drained <= limit) {
      auto n = Read(sink.data(), sink.size());
      if (!n.ok()) return false;
      if (*n == 0) return true;
      drained += *n;
    }
    return false;
  }

  uint64_t total() const { return total_; }

 private:
  Socket& sock_;
  beast::flat_buffer& buffer_;
  Parser& parser_;
  uint64_t total_ = 0;
  Status error_;
};

bool IsDisconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == net::error::operation_aborted || ec == net::error::bad_descriptor;
}

// Route "/GraphDriver.Get" logs as method=Get.
std::string_view MethodName(std::string_view path) {
  if (path.starts_with("/GraphDriver.")) return path.substr(13);
  return path.starts_with('/') ? path.substr(1) : path;
}

}  // namespace

struct Server::State {
  explicit State(ServerOptions o) : opts(std::move(o)) {}

  const ServerOptions opts;
  Router router;
  Status routes_status;
  net::io_context ioc;  // only owns the sockets: every operation is synchronous
  UniqueFd listen_fd;
  UniqueFd wake_fd;  // eventfd that tells the accept loop to return
  ino_t socket_inode = 0;
  std::atomic<uint64_t> requests{0};
  Connections conns{"connection", std::numeric_limits<size_t>::max()};
};

namespace {

// One client connection: serves requests in turn (keep-alive) until the client closes,
// a request ends the connection, or the server stops.
class Connection {
 public:
  Connection(Server::State& st, uint64_t id, int fd) : st_(st), id_(id), sock_(st.ioc) {
    beast::error_code ec;
    sock_.assign(net::local::stream_protocol(), fd, ec);
    if (ec) {
      unassigned_fd_.Reset(fd);
      log::Error("connection_failed", {{"err", "register socket: " + ec.message()}});
    }
  }
  ~Connection() {
    st_.conns.Release(id_, [this] {
      beast::error_code ec;
      sock_.close(ec);
      unassigned_fd_.Reset();
    });
  }

  void Run() {
    beast::flat_buffer buffer(kReadBufferLimit);
    while (sock_.is_open() && SetBusy(false)) {
      Parser parser;
      parser.header_limit(kHeaderLimit);
      // ApplyDiff bodies are layer-sized; JSON routes cap their own. Not boost::none: Boost
      // 1.74 then refuses every Content-Length body (it compares len > none).
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      beast::error_code ec;
      http::read_header(sock_, buffer, parser, ec);
      if (ec) {
        if (IsDisconnect(ec)) return;
        Reply reply = ErrorReply(400, "malformed HTTP request: " + ec.message());
        log::Warn("bad_request", {{"err", reply.error}});
        SendJson(reply, /*keep_alive=*/false);
        return;
      }
      SetBusy(true);
      // curl sends this for large bodies and waits a second for it; dockerd never does.
      if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        http::write(sock_, go_on, ec);
        if (ec) return;
      }
      if (!Serve(parser, buffer)) return;
    }
  }

 private:
  // Returns false when the server is stopping and the connection must end.
  bool SetBusy(bool busy) { return st_.conns.SetBusy(id_, busy); }
  bool Stopping() { return st_.conns.stopping(); }

  // Serves one request; false when the connection must close afterwards.
  bool Serve(Parser& parser, beast::flat_buffer& buffer) {
    auto start = Clock::now();
    uint64_t number = ++st_.requests;
    auto& header = parser.get();
    BodySource body(sock_, buffer, parser);
    Request req{.path = {}, .query = {}, .body = body};
    SplitTarget(View(header.target()), &req.path, &req.query);
    Reply reply = st_.router.Dispatch(View(header.method_string()), req);

    bool body_done = parser.is_done();
    bool keep_alive = header.keep_alive() && body_done && !Stopping();
    uint64_t sent = 0;
    bool streamed = reply.stream != nullptr;
    bool ok = streamed ? SendStream(reply, keep_alive, &sent) : SendJson(reply, keep_alive);
    // The client may still be sending a body the handler refused; let it finish so it
    // reads the reply instead of failing on a reset connection.
    if (ok && !body_done) body.Drain(st_.opts.max_drain_bytes);
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    Log(req, reply, number, seconds, streamed ? sent : body.total());
    if (st_.opts.metrics) Count(req, reply, seconds, streamed ? sent : body.total());
    return ok && keep_alive;
  }

  void Count(const Request& req, const Reply& reply, double seconds, uint64_t bytes) {
    // Only routes name their own series: arbitrary paths must not grow the label set.
    std::string_view method = st_.router.Has(req.path) ? MethodName(req.path) : "unknown";
    st_.opts.metrics->RecordRequest(method, reply.status, seconds);
    if (req.path == "/GraphDriver.ApplyDiff") st_.opts.metrics->AddApplyBytes(bytes);
    if (req.path == "/GraphDriver.Diff") st_.opts.metrics->AddDiffBytes(bytes);
  }

  bool SendJson(Reply& reply, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
    res.set(http::field::content_type, reply.content_type);
    if (reply.status == 405) res.set(http::field::allow, "POST");
    res.keep_alive(keep_alive);
    res.body() = std::move(reply.body);
    res.prepare_payload();
    beast::error_code ec;
    http::write(sock_, res, ec);
    if (ec && reply.error.empty()) reply.error = "write reply: " + ec.message();
    return !ec;
  }

  // Streams reply.stream as a chunked body. On a failure mid-way the connection is
  // closed without the final chunk, so the client sees a truncated stream, not a short tar.
  bool SendStream(Reply& reply, bool keep_alive, uint64_t* sent) {
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::content_type, reply.content_type);
    res.keep_alive(keep_alive);
    res.chunked(true);
    http::response_serializer<http::empty_body> serializer{res};
    beast::error_code ec;
    http::write_header(sock_, serializer, ec);
    std::vector<char> piece(kDiffPiece);
    while (!ec) {
      auto n = reply.stream->Read(piece.data(), piece.size());
      if (!n.ok()) {
        reply.error =
            fmt::format("diff stream failed after {} bytes: {}", *sent, n.status().message());
        reply.stream.reset();
        return false;
      }
      if (*n == 0) break;
      net::write(sock_, http::make_chunk(net::buffer(piece.data(), *n)), ec);
      if (!ec) *sent += *n;
    }
    // Release what the driver holds for the stream before the client can see the end of
    // it: its next call (Put, Remove) must not find the layer still busy.
    reply.stream.reset();
    if (!ec) net::write(sock_, http::make_chunk_last(), ec);
    if (ec) reply.error = fmt::format("send diff after {} bytes: {}", *sent, ec.message());
    return !ec;
  }

  void Log(const Request& req, const Reply& reply, uint64_t number, double seconds,
           uint64_t bytes) {
    double ms = seconds * 1000;
    std::string method(MethodName(req.path));
    if (reply.error.empty()) {
      log::Info("request", {{"method", method},
                            {"id", reply.layer_id},
                            {"status", std::to_string(reply.status)},
                            {"ms", fmt::format("{:.1f}", ms)},
                            {"bytes", std::to_string(bytes)},
                            {"req", std::to_string(number)}});
    } else {
      log::Warn("request", {{"method", method},
                            {"id", reply.layer_id},
                            {"status", std::to_string(reply.status)},
                            {"ms", fmt::format("{:.1f}", ms)},
                            {"bytes", std::to_string(bytes)},
                            {"req", std::to_string(number)},
                            {"err", reply.error}});
    }
  }

  Server::State& st_;
  uint64_t id_;
  Socket sock_;
  UniqueFd unassigned_fd_;  // only if the socket could not take the descriptor
};

void AcceptLoop(std::shared_ptr<Server::State> st) {
  AcceptUntilWoken(st->listen_fd.get(), st->wake_fd.get(), [&st](int fd) {
    st->conns.Spawn(fd, st, [st = st.get(), fd](uint64_t id) { Connection(*st, id, fd).Run(); });
  });
}

}  // namespace

Server::Server(driver::GraphDriver& driver, ServerOptions opts)
    : state_(std::make_shared<State>(std::move(opts))) {
  state_->routes_status = AddGraphDriverRoutes(state_->router, driver, state_->opts.max_json_body);
}

Server::~Server() { Stop(); }

Status Server::Start() {
  State& st = *state_;
  if (!st.conns.MarkStarted()) {
    return Errorf(EINVAL, "server on {} was already started", st.opts.socket_path);
  }
  SLACKER_RETURN_IF_ERROR(st.routes_status.Context("register routes"));
  st.wake_fd.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!st.wake_fd.valid()) return Status::FromErrno(errno, "create eventfd");
  SLACKER_ASSIGN_OR_RETURN(st.listen_fd, ListenUnix(st.opts.socket_path, &st.socket_inode));
  try {
    accept_thread_ = std::thread(AcceptLoop, state_);
  } catch (const std::system_error& e) {
    return Errorf(EAGAIN, "start accept thread: {}", e.what());
  }
  log::Info("listening", {{"socket", st.opts.socket_path}});
  return Status::Ok();
}

void Server::Stop() {
  State& st = *state_;
  if (!st.conns.BeginStop()) return;
  StopAccepting(st.wake_fd.get(), accept_thread_);
  if (st.listen_fd.valid()) {
    st.listen_fd.Reset();
    RemoveSocketIfOurs(st.opts.socket_path, st.socket_inode);
  }
  // Requests still stuck inside the driver keep their threads and the shared state.
  if (size_t left = st.conns.ShutdownAndWait(st.opts.stop_grace); left > 0) {
    log::Error("stop_abandoned_requests", {{"count", std::to_string(left)}});
  }
}

}  // namespace slacker::plugin
