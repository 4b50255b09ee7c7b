#include "http/server.h"

#include <sys/eventfd.h>
#include <sys/socket.h>

#include <boost/asio/ssl/context.hpp>
#include <system_error>

#include <fmt/format.h>

#include "common/log.h"
#include "http/listener.h"
#include "http/server_state.h"

namespace slacker::http {
namespace {

namespace ssl = boost::asio::ssl;

// Connections' deadlines are checked this often (when the server has timeouts).
constexpr std::chrono::milliseconds kDeadlineTick{200};

Result<std::unique_ptr<ssl::context>> LoadTls(const ServerOptions& o) {
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return Errorf(EINVAL, "TLS needs both a certificate and a key file");
  }
  if (!o.unix_path.empty()) return Errorf(EINVAL, "TLS is for TCP, not unix:{}", o.unix_path);
  auto tls = std::make_unique<ssl::context>(ssl::context::tls_server);
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  tls->use_certificate_chain_file(o.tls_cert_file, ec);
  if (!ec) tls->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
  if (ec) {
    return Errorf(EINVAL, "load TLS certificate {} / key {}: {}", o.tls_cert_file, o.tls_key_file,
                  ec.message());
  }
  return tls;
}

// Writes `refusal` without waiting for the client (best effort: the connection is closed
// either way).
void Refuse(const std::string& refusal, int fd) {
  if (!refusal.empty()) {
    ssize_t n = ::send(fd, refusal.data(), refusal.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;  // best effort, see above
  }
  ::shutdown(fd, SHUT_RDWR);
}

void AcceptLoop(std::shared_ptr<Server::State> st) {
  const ServerOptions& o = st->opts;
  bool timeouts = o.header_timeout.count() > 0 || o.body_timeout.count() > 0;
  std::function<void()> expire;
  if (timeouts) expire = [&st] { st->conns.ExpireDeadlines(); };
  std::function<void(int)> refuse;
  if (!st->tls && !o.refusal.empty()) refuse = [&o](int fd) { Refuse(o.refusal, fd); };
  auto on_accept = [&st, &refuse](int fd) {
    st->conns.Spawn(
        fd, st, [st = st.get(), fd](uint64_t id) { ServeConnection(*st, id, fd); }, refuse);
  };
  AcceptUntilWoken(st->listen_fd.get(), st->wake_fd.get(), on_accept, kDeadlineTick, expire);
}

}  // namespace

Server::Server(std::shared_ptr<const Router> router, ServerOptions opts)
    : state_(std::make_shared<State>(std::move(router), std::move(opts))) {}

Server::~Server() { Stop(); }

std::string Server::address() const {
  const ServerOptions& o = state_->opts;
  if (!o.unix_path.empty()) return "unix:" + o.unix_path;
  return o.host.find(':') == std::string::npos ? fmt::format("{}:{}", o.host, o.port)
                                               : fmt::format("[{}]:{}", o.host, o.port);
}

uint16_t Server::port() const { return state_->opts.port; }

Status Server::Start() {
  State& st = *state_;
  if (!st.conns.MarkStarted()) return Errorf(EINVAL, "server on {} was already started", address());
  if (!st.opts.tls_cert_file.empty() || !st.opts.tls_key_file.empty()) {
    SLACKER_ASSIGN_OR_RETURN(st.tls, LoadTls(st.opts));
  }
  st.wake_fd.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!st.wake_fd.valid()) return Status::FromErrno(errno, "create eventfd");
  if (!st.opts.unix_path.empty()) {
    SLACKER_ASSIGN_OR_RETURN(st.listen_fd, ListenUnix(st.opts.unix_path, &st.socket_inode));
  } else {
    SLACKER_ASSIGN_OR_RETURN(st.listen_fd, ListenTcp(st.opts.host, st.opts.port, &st.opts.port));
  }
  try {
    accept_thread_ = std::thread(AcceptLoop, state_);
  } catch (const std::system_error& e) {
    return Errorf(EAGAIN, "start accept thread: {}", e.what());
  }
  return Status::Ok();
}

void Server::Stop() {
  State& st = *state_;
  if (!st.conns.BeginStop()) return;
  StopAccepting(st.wake_fd.get(), accept_thread_);
  if (st.listen_fd.valid()) {
    st.listen_fd.Reset();
    if (!st.opts.unix_path.empty()) RemoveSocketIfOurs(st.opts.unix_path, st.socket_inode);
  }
  // Requests still stuck inside a handler keep their threads and the shared state.
  if (size_t left = st.conns.ShutdownAndWait(st.opts.stop_grace); left > 0) {
    log::Error(st.opts.name + "_stop_abandoned", {{"count", std::to_string(left)}});
  }
}

}  // namespace slacker::http
