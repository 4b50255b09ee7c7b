#include "storaged/http_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"

namespace slacker::storaged {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct HttpServer::Impl {
  Service& service;
  ServerOptions opts;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::unique_ptr<ssl::context> tls;
  std::atomic<bool> stopping{false};
  std::atomic<int> live{0};
  std::thread accept_thread;
  uint16_t port = 0;

  // Deadlines of the connections' current phase. Blocking Beast reads cannot time out
  // (Asio ignores SO_RCVTIMEO), so the accept thread, which wakes every 200 ms, shuts
  // down the socket of a connection past its deadline: the blocked read then fails.
  // A connection removes its entry before its socket closes, so a reused fd number is
  // never shut down by mistake.
  std::mutex deadlines_mu;
  std::map<uint64_t, std::pair<int, std::chrono::steady_clock::time_point>> deadlines;
  uint64_t next_conn = 0;

  Impl(Service& s, ServerOptions o) : service(s), opts(std::move(o)) {}

  void ExpireDeadlines() {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> l(deadlines_mu);
    for (auto& [id, entry] : deadlines) {
      if (entry.second > now) continue;
      ::shutdown(entry.first, SHUT_RDWR);
      entry.second = std::chrono::steady_clock::time_point::max();
      log::Debug("storaged_deadline_passed", {{"conn", std::to_string(id)}});
    }
  }
};

namespace {

using Clock = std::chrono::steady_clock;

// A connection's entry in Impl::deadlines for its lifetime.
class Deadline {
 public:
  Deadline(HttpServer::Impl& impl, int fd) : impl_(impl) {
    std::lock_guard<std::mutex> l(impl_.deadlines_mu);
    id_ = impl_.next_conn++;
    impl_.deadlines[id_] = {fd, Clock::time_point::max()};
  }
  ~Deadline() {
    std::lock_guard<std::mutex> l(impl_.deadlines_mu);
    impl_.deadlines.erase(id_);
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  // The current phase must end within `seconds` (<= 0: no deadline).
  void Set(int seconds) {
    std::lock_guard<std::mutex> l(impl_.deadlines_mu);
    impl_.deadlines[id_].second = seconds > 0 ? Clock::now() + std::chrono::seconds(seconds) : Clock::time_point::max();
  }

 private:
  HttpServer::Impl& impl_;
  uint64_t id_ = 0;
};

std::string Header(const http::request<http::string_body>& req, http::field f) {
  auto it = req.find(f);
  return it == req.end() ? std::string() : std::string(it->value());
}

// Asio's blocking reads ignore SO_RCVTIMEO (they poll without a timeout after EAGAIN),
// so an idle keep-alive connection is bounded here, before each request.
bool WaitReadable(int fd, int seconds) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, seconds * 1000) > 0;
}

template <class Stream>
void Serve(HttpServer::Impl& impl, Stream& stream, int fd, Deadline& deadline) {
  beast::flat_buffer buffer;
  for (;;) {
    if (buffer.size() == 0 && !WaitReadable(fd, impl.opts.read_timeout_seconds)) return;
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(Service::kMaxBody);
    beast::error_code ec;
    // Each phase has its deadline, from its first byte: a client that trickles a header
    // or a body is dropped (before authentication it costs us only this thread).
    deadline.Set(impl.opts.header_timeout_seconds);
    http::read_header(stream, buffer, parser, ec);
    if (!ec) {
      deadline.Set(impl.opts.body_timeout_seconds);
      http::read(stream, buffer, parser, ec);
    }
    deadline.Set(0);
    Reply reply;
    bool keep_alive = false;
    unsigned version = 11;
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::ssl::error::stream_truncated) return;
    if (ec == http::error::body_limit) {
      reply = Service::Error(413, "too_large", fmt::format("request body over {} bytes", Service::kMaxBody));
    } else if (ec) {
      if (ec != net::error::would_block && ec != net::error::try_again && ec != net::error::connection_reset)
        log::Debug("storaged_read_failed", {{"err", ec.message()}});
      return;
    } else {
      auto& req = parser.get();
      version = req.version();
      keep_alive = req.keep_alive();
      Request r{std::string(req.method_string()), std::string(req.target()), Header(req, http::field::authorization),
                "", std::move(req.body())};
      auto idem = req.find("Idempotency-Key");
      if (idem != req.end()) r.idempotency_key = std::string(idem->value());
      auto start = std::chrono::steady_clock::now();
      reply = impl.service.Handle(r);
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
      log::Debug("storaged_request", {{"method", r.method}, {"target", r.target}, {"status", std::to_string(reply.status)},
                                      {"ms", std::to_string(ms.count())}});
    }
    http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
    res.set(http::field::server, "slacker-storaged");
    res.set(http::field::content_type, "application/json");
    if (reply.status == 401) res.set(http::field::www_authenticate, "Bearer");
    res.keep_alive(keep_alive);
    res.body() = reply.body + "\n";
    res.prepare_payload();
    deadline.Set(impl.opts.body_timeout_seconds);  // a client that does not read the reply
    http::write(stream, res, ec);
    deadline.Set(0);
    if (ec || !keep_alive) return;
  }
}

void Connection(std::shared_ptr<HttpServer::Impl> impl, tcp::socket sock) {
  int fd = sock.native_handle();
  if (impl->tls) {
    ssl::stream<tcp::socket> stream(std::move(sock), *impl->tls);
    {
      Deadline deadline(*impl, fd);  // destroyed before the stream closes fd
      beast::error_code ec;
      deadline.Set(impl->opts.header_timeout_seconds);
      if (WaitReadable(fd, impl->opts.read_timeout_seconds)) stream.handshake(ssl::stream_base::server, ec);
      else ec = net::error::timed_out;
      if (ec) {
        log::Debug("storaged_tls_handshake_failed", {{"err", ec.message()}});
      } else {
        Serve(*impl, stream, fd, deadline);
        deadline.Set(impl->opts.body_timeout_seconds);
        stream.shutdown(ec);
      }
    }
  } else {
    {
      Deadline deadline(*impl, fd);
      Serve(*impl, sock, fd, deadline);
    }
    beast::error_code ec;
    sock.shutdown(tcp::socket::shutdown_send, ec);
  }
  impl->live--;
}

// Over the connection limit: a short 503 (plain HTTP only; a TLS client just sees the
// close), without a thread and without waiting for the client.
void Refuse(HttpServer::Impl& impl, tcp::socket& sock) {
  if (!impl.tls) {
    static const std::string kBody = R"({"error":"too many connections; retry later","code":"unavailable"})" "\n";
    static const std::string kBusy = fmt::format(
        "HTTP/1.1 503 Service Unavailable\r\nServer: slacker-storaged\r\nContent-Type: application/json\r\n"
        "Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        kBody.size(), kBody);
    ssize_t n = ::send(sock.native_handle(), kBusy.data(), kBusy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;  // best effort: the connection is closed either way
  }
  beast::error_code ec;
  sock.shutdown(tcp::socket::shutdown_both, ec);
  sock.close(ec);
}

}  // namespace

HttpServer::HttpServer(Service& service, ServerOptions opts) : impl_(std::make_shared<Impl>(service, std::move(opts))) {}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const { return impl_->port; }

Status HttpServer::Start() {
  auto& im = *impl_;
  if (!im.opts.tls_cert_file.empty() || !im.opts.tls_key_file.empty()) {
    if (im.opts.tls_cert_file.empty() || im.opts.tls_key_file.empty())
      return Errorf(EINVAL, "TLS needs both a certificate and a key file");
    im.tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    im.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    im.tls->use_certificate_chain_file(im.opts.tls_cert_file, ec);
    if (!ec) im.tls->use_private_key_file(im.opts.tls_key_file, ssl::context::pem, ec);
    if (ec) return Errorf(EINVAL, "load TLS certificate {} / key {}: {}", im.opts.tls_cert_file, im.opts.tls_key_file,
                          ec.message());
  }
  beast::error_code ec;
  auto addr = net::ip::make_address(im.opts.host, ec);
  if (ec) return Errorf(EINVAL, "listen address {:?} is not a numeric IP address", im.opts.host);
  tcp::endpoint ep(addr, im.opts.port);
  im.acceptor.open(ep.protocol(), ec);
  if (!ec) im.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(ep, ec);
  if (!ec) im.acceptor.listen(64, ec);
  if (ec) return Errorf(ec.value() ? ec.value() : EIO, "listen on {}:{}: {}", im.opts.host, im.opts.port, ec.message());
  im.acceptor.non_blocking(true, ec);
  im.port = im.acceptor.local_endpoint().port();
  if (!im.opts.spawn) im.opts.spawn = [](std::function<void()> run) { std::thread(std::move(run)).detach(); };
  auto impl = impl_;
  im.accept_thread = std::thread([impl] {
    while (!impl->stopping.load()) {
      impl->ExpireDeadlines();
      pollfd p{impl->acceptor.native_handle(), POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      beast::error_code aec;
      auto sock = std::make_shared<tcp::socket>(impl->ioc);
      impl->acceptor.accept(*sock, aec);
      if (aec) continue;
      if (impl->live.load() >= impl->opts.max_connections) {
        log::Warn("storaged_connection_refused", {{"reason", "connection limit"},
                                                  {"limit", std::to_string(impl->opts.max_connections)}});
        Refuse(*impl, *sock);
        continue;
      }
      sock->non_blocking(false, aec);
      impl->live++;
      try {
        impl->opts.spawn([impl, sock] { Connection(impl, std::move(*sock)); });
      } catch (const std::system_error& e) {
        // No thread for it (EAGAIN: thread or memory limits): drop this connection, keep
        // serving the others.
        impl->live--;
        log::Error("storaged_thread_failed", {{"err", e.what()}, {"action", "raise the thread limit or lower load"}});
        beast::error_code ec;
        sock->close(ec);
      }
    }
  });
  return Status::Ok();
}

void HttpServer::Stop() {
  auto& im = *impl_;
  if (im.stopping.exchange(true)) return;
  if (im.accept_thread.joinable()) im.accept_thread.join();
  beast::error_code ec;
  im.acceptor.close(ec);
  // Let in-flight requests finish (bounded); connection threads own a reference to impl.
  for (int i = 0; i < 50 && im.live.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& addr) {
  std::string host = "127.0.0.1";
  std::string port = addr;
  auto colon = addr.rfind(':');
  if (colon != std::string::npos) {
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) host = "127.0.0.1";
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) return Errorf(EINVAL, "bad listen address {:?} (HOST:PORT)", addr);
  return std::make_pair(host, static_cast<uint16_t>(p));
}

}  // namespace slacker::storaged
