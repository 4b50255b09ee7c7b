#include "plugin/metrics_server.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <map>

#include "common/fd.h"
#include "common/log.h"
#include "plugin/connections.h"
#include "plugin/listener.h"
#include "plugin/router.h"

namespace slacker::plugin {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

constexpr uint32_t kHeaderLimit = 8 * 1024;
constexpr uint64_t kBodyLimit = 4 * 1024;  // a scrape has no body

Status BadAddress(std::string_view text) {
  return Errorf(EINVAL,
                "metrics address '{}' must be unix:/path.sock or HOST:PORT (e.g. 127.0.0.1:9464)",
                text);
}

}  // namespace

Result<MetricsAddress> ParseMetricsAddress(std::string_view text) {
  MetricsAddress out;
  if (text.starts_with("unix:")) {
    out.unix_path = std::string(text.substr(5));
    if (out.unix_path.empty()) return BadAddress(text);
    return out;
  }
  std::string_view host, port = text;
  if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return BadAddress(text);
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return BadAddress(text);  // an IPv6 address needs brackets
  }
  out.host = host.empty() || host == "localhost" ? "127.0.0.1" : std::string(host);
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size()) {
    return BadAddress(text);
  }
  return out;
}

struct MetricsServer::State {
  State(driver::GraphDriver& d, std::shared_ptr<PluginMetrics> m, MetricsAddress a)
      : driver(d), metrics(std::move(m)), address(std::move(a)) {}

  driver::GraphDriver& driver;
  const std::shared_ptr<PluginMetrics> metrics;
  MetricsAddress address;  // port: the one bound, after Start()
  net::io_context ioc;     // only owns the descriptors: every operation is synchronous
  UniqueFd listen_fd;
  UniqueFd wake_fd;
  ino_t socket_inode = 0;

  Connections conns{"metrics_connection", MetricsServer::kMaxConnections};
};

namespace {

// One scraper connection: answers requests in turn until either side closes.
class MetricsConnection {
 public:
  MetricsConnection(MetricsServer::State& st, uint64_t id, int fd)
      : st_(st), id_(id), stream_(st.ioc) {
    beast::error_code ec;
    stream_.assign(fd, ec);
    if (ec) {
      unassigned_fd_.Reset(fd);
      log::Error("metrics_connection_failed", {{"err", "register socket: " + ec.message()}});
    }
  }
  ~MetricsConnection() {
    st_.conns.Release(id_, [this] {
      beast::error_code ec;
      stream_.close(ec);
      unassigned_fd_.Reset();
    });
  }

  void Run() {
    beast::flat_buffer buffer;
    while (stream_.is_open()) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(kBodyLimit);
      beast::error_code ec;
      http::read(stream_, buffer, parser, ec);
      if (ec) return;  // closed, or not HTTP worth answering: a scraper reconnects
      http::response<http::string_body> res = Respond(parser.get());
      res.keep_alive(parser.get().keep_alive() && !Stopping());
      res.prepare_payload();
      http::write(stream_, res, ec);
      if (ec || !res.keep_alive()) return;
    }
  }

 private:
  http::response<http::string_body> Respond(const http::request<http::string_body>& req) {
    std::string path;
    std::map<std::string, std::string> query;
    SplitTarget(std::string_view(req.target().data(), req.target().size()), &path, &query);
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    if (path != "/metrics") {
      res.result(http::status::not_found);
      res.body() = "404 not found: the metrics are at /metrics\n";
    } else if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.body() = "405 method not allowed: use GET\n";
    } else {
      res.set(http::field::content_type, std::string(kMetricsContentType));
      res.body() = st_.metrics->Render(st_.driver.Metrics());
    }
    return res;
  }

  bool Stopping() { return st_.conns.stopping(); }

  MetricsServer::State& st_;
  uint64_t id_;
  net::posix::stream_descriptor stream_;
  UniqueFd unassigned_fd_;  // only if the stream could not take the descriptor
};

}  // namespace

MetricsServer::MetricsServer(driver::GraphDriver& driver, std::shared_ptr<PluginMetrics> metrics,
                             MetricsAddress address)
    : state_(std::make_shared<State>(driver, std::move(metrics), std::move(address))) {}

MetricsServer::~MetricsServer() { Stop(); }

std::string MetricsServer::address() const {
  const MetricsAddress& a = state_->address;
  if (!a.unix_path.empty()) return "unix:" + a.unix_path;
  return a.host.find(':') == std::string::npos ? fmt::format("{}:{}", a.host, a.port)
                                               : fmt::format("[{}]:{}", a.host, a.port);
}

Status MetricsServer::Start() {
  State& st = *state_;
  if (!st.conns.MarkStarted()) {
    return Errorf(EINVAL, "metrics server on {} was already started", address());
  }
  st.wake_fd.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!st.wake_fd.valid()) return Status::FromErrno(errno, "create eventfd");
  if (!st.address.unix_path.empty()) {
    SLACKER_ASSIGN_OR_RETURN(st.listen_fd, ListenUnix(st.address.unix_path, &st.socket_inode));
  } else {
    SLACKER_ASSIGN_OR_RETURN(st.listen_fd,
                             ListenTcp(st.address.host, st.address.port, &st.address.port));
  }
  try {
    accept_thread_ = std::thread([st = state_] {
      AcceptUntilWoken(st->listen_fd.get(), st->wake_fd.get(), [&st](int fd) {
        st->conns.Spawn(fd, st, [st = st.get(), fd](uint64_t id) {
          MetricsConnection(*st, id, fd).Run();
        });
      });
    });
  } catch (const std::system_error& e) {
    return Errorf(EAGAIN, "start metrics accept thread: {}", e.what());
  }
  log::Info("metrics_listening", {{"address", address()}});
  return Status::Ok();
}

void MetricsServer::Stop() {
  State& st = *state_;
  if (!st.conns.BeginStop()) return;
  StopAccepting(st.wake_fd.get(), accept_thread_);
  if (st.listen_fd.valid()) {
    st.listen_fd.Reset();
    if (!st.address.unix_path.empty()) RemoveSocketIfOurs(st.address.unix_path, st.socket_inode);
  }
  // A scrape is never "busy" in the Connections sense: all are shut down at once. Threads
  // still blocked in driver.Metrics() keep the shared state alive.
  if (size_t left = st.conns.ShutdownAndWait(std::chrono::milliseconds(0)); left > 0) {
    log::Error("stop_abandoned_scrapes", {{"count", std::to_string(left)}});
  }
}

}  // namespace slacker::plugin
