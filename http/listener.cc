#include "http/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/files.h"
#include "common/log.h"

namespace slacker::http {
namespace {

Status CheckStaleSocket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, fmt::format("stat {}", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Errorf(EEXIST, "{} exists and is not a socket; move it away or pick another path", path);
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return Status::FromErrno(errno, "create probe socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    return Errorf(EADDRINUSE, "another server is listening on {}; stop it first", path);
  }
  if (errno != ECONNREFUSED) {
    return Status::FromErrno(errno, fmt::format("probe existing socket {}", path));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, fmt::format("remove stale socket {}", path));
  }
  return Status::Ok();
}

}  // namespace

Result<UniqueFd> ListenUnix(const std::string& path, ino_t* inode) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Errorf(ENAMETOOLONG, "socket path '{}' must be 1..{} bytes", path,
                  sizeof addr.sun_path - 1);
  }
  std::string parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    SLACKER_RETURN_IF_ERROR(MakeDirs(parent, 0755).Context("create socket directory"));
  }
  SLACKER_RETURN_IF_ERROR(CheckStaleSocket(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "create listening socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::FromErrno(errno, fmt::format("bind {}", path));
  }
  // No connection can succeed before listen(), so tightening the mode here leaves no window.
  struct stat st;
  if (::chmod(path.c_str(), 0600) != 0 || ::stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(errno, fmt::format("chmod 0600 {}", path));
  }
  *inode = st.st_ino;
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    return Status::FromErrno(errno, fmt::format("listen on {}", path));
  }
  return fd;
}

void RemoveSocketIfOurs(const std::string& path, ino_t inode) {
  struct stat sb;
  if (::lstat(path.c_str(), &sb) == 0 && sb.st_ino == inode) ::unlink(path.c_str());
}

Result<UniqueFd> ListenTcp(const std::string& host, uint16_t port, uint16_t* bound_port) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    return Errorf(EINVAL, "'{}' is not a numeric IPv4 or IPv6 address", host);
  }
  std::string where = fmt::format("{}:{}", host, port);
  UniqueFd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "create listening socket");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return Status::FromErrno(errno, "set SO_REUSEADDR");
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Status::FromErrno(errno, fmt::format("bind {}", where));
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    return Status::FromErrno(errno, fmt::format("listen on {}", where));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return Status::FromErrno(errno, fmt::format("getsockname of {}", where));
  }
  *bound_port =
      ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return fd;
}

void AcceptUntilWoken(int listen_fd, int wake_fd, const std::function<void(int fd)>& on_accept,
                      std::chrono::milliseconds tick, const std::function<void()>& on_tick) {
  pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  int timeout_ms = on_tick ? static_cast<int>(tick.count()) : -1;
  for (;;) {
    if (on_tick) on_tick();
    int ready = ::poll(fds, 2, timeout_ms);
    if (ready == 0) continue;
    if (ready < 0) {
      if (errno == EINTR) continue;
      log::Error("accept_failed", {{"err", Status::FromErrno(errno, "poll").message()}});
      return;
    }
    if (fds[1].revents != 0) return;
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      on_accept(fd);
    } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
      // Out of descriptors or memory: say so and back off instead of spinning.
      log::Error("accept_failed", {{"err", Status::FromErrno(errno, "accept").message()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void StopAccepting(int wake_fd, std::thread& accept_thread) {
  if (!accept_thread.joinable()) return;
  uint64_t one = 1;
  if (::write(wake_fd, &one, sizeof one) != sizeof one) {
    log::Error("stop_failed", {{"err", Status::FromErrno(errno, "wake accept thread").message()}});
  }
  accept_thread.join();
}

}  // namespace slacker::http
