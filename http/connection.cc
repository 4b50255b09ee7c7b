// One client connection of a Server: requests in turn (keep-alive) until the client
// closes, a request ends the connection, a deadline passes or the server stops.
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <vector>

#include "common/log.h"
#include "http/server_state.h"

namespace slacker::http {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = beast::http;
// A socket (not a posix::stream_descriptor): Asio sends with MSG_NOSIGNAL, so a peer that
// went away is an error, not SIGPIPE.
using Descriptor = net::generic::stream_protocol::socket;
using TlsStream = ssl::stream<Descriptor&>;
using Parser = bhttp::request_parser<bhttp::buffer_body>;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadBufferLimit = 64 * 1024;  // bytes held per connection while parsing
constexpr size_t kStreamPiece = 64 * 1024;

std::string Str(beast::string_view s) { return {s.data(), s.size()}; }

bool IsDisconnect(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == net::error::operation_aborted || ec == net::error::bad_descriptor ||
         ec == ssl::error::stream_truncated;
}

// Asio's blocking reads ignore SO_RCVTIMEO, so an idle keep-alive connection is bounded
// here, before each request.
bool WaitReadable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

// A connection's deadline for its current phase (Connections::SetDeadline).
class Deadline {
 public:
  Deadline(Connections& conns, uint64_t id) : conns_(conns), id_(id) {}
  ~Deadline() { Disarm(); }
  void Arm(std::chrono::milliseconds timeout) {
    if (timeout.count() <= 0) return Disarm();
    conns_.SetDeadline(id_, Clock::now() + timeout);
    armed_ = true;
  }
  void Disarm() {
    if (armed_) conns_.SetDeadline(id_, Clock::time_point::max());
    armed_ = false;
  }

 private:
  Connections& conns_;
  uint64_t id_;
  bool armed_ = false;
};

// The request body as a ByteSource, read off the stream as the handler asks for it. Each
// Read returns what one stream read yields, so nothing beyond kReadBufferLimit is held.
template <class Stream>
class BodySource : public ByteSource {
 public:
  BodySource(Stream& stream, beast::flat_buffer& buffer, Parser& parser, Deadline& deadline)
      : stream_(stream), buffer_(buffer), parser_(parser), deadline_(deadline) {}

  Result<size_t> Read(void* out, size_t n) override {
    if (!error_.ok()) return error_;
    while (n > 0 && !parser_.is_done()) {
      auto& body = parser_.get().body();
      body.data = out;
      body.size = n;
      beast::error_code ec;
      bhttp::read_some(stream_, buffer_, parser_, ec);
      size_t got = n - body.size;
      body.data = nullptr;
      body.size = 0;
      if (parser_.is_done()) deadline_.Disarm();
      if (ec && ec != bhttp::error::need_buffer) {
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
  Stream& stream_;
  beast::flat_buffer& buffer_;
  Parser& parser_;
  Deadline& deadline_;
  uint64_t total_ = 0;
  Status error_;
};

// The request loop over a plain or TLS stream.
template <class Stream>
class Session {
 public:
  Session(Server::State& st, uint64_t id, int fd, Stream& stream, Deadline& deadline)
      : st_(st), opts_(st.opts), id_(id), fd_(fd), stream_(stream), deadline_(deadline) {}

  void Run() {
    beast::flat_buffer buffer(kReadBufferLimit);
    while (st_.conns.SetBusy(id_, false)) {
      if (buffer.size() == 0 && opts_.idle_timeout.count() > 0 &&
          !WaitReadable(fd_, opts_.idle_timeout)) {
        return;
      }
      Parser parser;
      parser.header_limit(opts_.header_limit);
      // Bodies may be layer-sized; handlers cap their own. Not boost::none: Boost 1.74
      // then refuses every Content-Length body (it compares len > none).
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      beast::error_code ec;
      deadline_.Arm(opts_.header_timeout);
      bhttp::read_header(stream_, buffer, parser, ec);
      deadline_.Disarm();
      if (ec) return Malformed(ec);
      st_.conns.SetBusy(id_, true);
      // curl sends this for large bodies and waits a second for it; dockerd never does.
      if (beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
        bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, 11};
        bhttp::write(stream_, go_on, ec);
        if (ec) return;
      }
      if (!Serve(parser, buffer)) return;
    }
  }

 private:
  void Malformed(const beast::error_code& ec) {
    if (IsDisconnect(ec) || !opts_.reply_to_malformed) {
      log::Debug(opts_.name + "_read_failed", {{"err", ec.message()}});
      return;
    }
    StringSource none("");
    Request req{.method = {}, .target = {}, .path = {}, .query = {}, .params = {}, .headers = {},
                .body = none};
    Reply reply = st_.router->Error(400, "malformed HTTP request: " + ec.message(), req);
    log::Warn("bad_request", {{"server", opts_.name}, {"err", ec.message()}});
    SendBuffered(reply, 11, /*keep_alive=*/false);
  }

  // Serves one request; false when the connection must close afterwards.
  bool Serve(Parser& parser, beast::flat_buffer& buffer) {
    auto start = Clock::now();
    uint64_t number = ++st_.requests;
    auto& header = parser.get();
    BodySource<Stream> body(stream_, buffer, parser, deadline_);
    Request req{.method = Str(header.method_string()), .target = Str(header.target()), .path = {},
                .query = {}, .params = {}, .headers = {}, .body = body};
    for (const auto& field : header) req.headers.emplace_back(Str(field.name_string()), Str(field.value()));
    SplitTarget(req.target, &req.path, &req.query);
    if (!parser.is_done()) deadline_.Arm(opts_.body_timeout);
    Reply reply = st_.router->Dispatch(req);
    deadline_.Disarm();

    bool body_done = parser.is_done();
    bool keep_alive = header.keep_alive() && body_done && !st_.conns.stopping();
    uint64_t sent = 0;
    bool streamed = reply.stream != nullptr;
    bool ok = reply.stream != nullptr ? SendStream(reply, keep_alive, &sent)
                                      : SendBuffered(reply, header.version(), keep_alive);
    // The client may still be sending a body the handler refused; let it finish so it
    // reads the reply instead of failing on a reset connection.
    if (ok && !body_done) {
      deadline_.Arm(opts_.body_timeout);
      body.Drain(opts_.max_drain_bytes);
      deadline_.Disarm();
    }
    Exchange x{.number = number,
               .seconds = std::chrono::duration<double>(Clock::now() - start).count(),
               .body_bytes = body.total(),
               .streamed = streamed,
               .sent_bytes = sent};
    if (opts_.on_request) opts_.on_request(req, reply, x);
    return ok && keep_alive;
  }

  template <class Message>
  void SetHeaders(Message& res, const Reply& reply, bool keep_alive) {
    for (const auto& [name, value] : opts_.reply_headers) res.set(name, value);
    res.set(bhttp::field::content_type,
            reply.content_type.empty() ? opts_.default_content_type : reply.content_type);
    for (const auto& [name, value] : reply.headers) res.set(name, value);
    res.keep_alive(keep_alive);
  }

  bool SendBuffered(Reply& reply, unsigned version, bool keep_alive) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(reply.status), version};
    SetHeaders(res, reply, keep_alive);
    res.body() = std::move(reply.body);
    res.prepare_payload();
    beast::error_code ec;
    deadline_.Arm(opts_.body_timeout);  // a client that does not read its reply
    bhttp::write(stream_, res, ec);
    deadline_.Disarm();
    if (ec && reply.error.empty()) reply.error = "write reply: " + ec.message();
    return !ec;
  }

  // Streams reply.stream as a chunked body. On a failure mid-way the connection is closed
  // without the final chunk, so the client sees a truncated stream, not a short one.
  bool SendStream(Reply& reply, bool keep_alive, uint64_t* sent) {
    bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(reply.status), 11};
    SetHeaders(res, reply, keep_alive);
    res.chunked(true);
    bhttp::response_serializer<bhttp::empty_body> serializer{res};
    beast::error_code ec;
    deadline_.Arm(opts_.body_timeout);
    bhttp::write_header(stream_, serializer, ec);
    std::vector<char> piece(kStreamPiece);
    while (!ec) {
      deadline_.Disarm();  // reading the stream may take its time; writing may not
      auto n = reply.stream->Read(piece.data(), piece.size());
      if (!n.ok()) {
        reply.error =
            fmt::format("reply stream failed after {} bytes: {}", *sent, n.status().message());
        reply.stream.reset();
        return false;
      }
      if (*n == 0) break;
      deadline_.Arm(opts_.body_timeout);
      net::write(stream_, bhttp::make_chunk(net::buffer(piece.data(), *n)), ec);
      if (!ec) *sent += *n;
    }
    // Release what the handler holds for the stream before the client can see the end of
    // it: its next call (Put, Remove) must not find the stream's subject still busy.
    reply.stream.reset();
    deadline_.Arm(opts_.body_timeout);
    if (!ec) net::write(stream_, bhttp::make_chunk_last(), ec);
    deadline_.Disarm();
    if (ec) reply.error = fmt::format("send reply stream after {} bytes: {}", *sent, ec.message());
    return !ec;
  }

  Server::State& st_;
  const ServerOptions& opts_;
  uint64_t id_;
  int fd_;
  Stream& stream_;
  Deadline& deadline_;
};

// Owns the connection's descriptor; Releases it from the Connections on destruction.
class Connection {
 public:
  Connection(Server::State& st, uint64_t id, int fd)
      : st_(st), id_(id), fd_(fd), sock_(st.ioc), deadline_(st.conns, id) {
    beast::error_code ec;
    int domain = AF_UNIX;
    socklen_t len = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
      ec = beast::error_code(errno, boost::system::system_category());
    } else {
      sock_.assign(net::generic::stream_protocol(domain, SOCK_STREAM), fd, ec);
    }
    if (ec) {
      unassigned_fd_.Reset(fd);
      log::Error(st.opts.name + "_failed", {{"err", "register socket: " + ec.message()}});
    }
  }
  ~Connection() {
    deadline_.Disarm();
    st_.conns.Release(id_, [this] {
      beast::error_code ec;
      sock_.close(ec);
      unassigned_fd_.Reset();
    });
  }

  void Run() {
    if (!sock_.is_open()) return;
    if (!st_.tls) {
      Session<Descriptor>(st_, id_, fd_, sock_, deadline_).Run();
      ::shutdown(fd_, SHUT_WR);
      return;
    }
    TlsStream tls(sock_, *st_.tls);
    beast::error_code ec;
    if (st_.opts.idle_timeout.count() > 0 && !WaitReadable(fd_, st_.opts.idle_timeout)) return;
    deadline_.Arm(st_.opts.header_timeout);
    tls.handshake(ssl::stream_base::server, ec);
    deadline_.Disarm();
    if (ec) {
      log::Debug(st_.opts.name + "_tls_handshake_failed", {{"err", ec.message()}});
      return;
    }
    Session<TlsStream>(st_, id_, fd_, tls, deadline_).Run();
    deadline_.Arm(st_.opts.body_timeout);
    tls.shutdown(ec);
  }

 private:
  Server::State& st_;
  uint64_t id_;
  int fd_;
  Descriptor sock_;
  UniqueFd unassigned_fd_;  // only if the socket could not take the descriptor
  Deadline deadline_;
};

}  // namespace

void ServeConnection(Server::State& st, uint64_t id, int fd) { Connection(st, id, fd).Run(); }

}  // namespace slacker::http
