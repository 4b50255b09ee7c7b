// Listening sockets (unix and TCP) and the accept loop of the HTTP server (server.h).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "common/fd.h"
#include "common/status.h"

namespace slacker::http {

// A non-blocking unix socket listening on `path`, mode 0600. Creates the parent directory
// and replaces a stale socket: EADDRINUSE if a live server answers on it, EEXIST if the
// path is not a socket, ENAMETOOLONG if it does not fit sockaddr_un. `*inode` receives
// the socket file's inode, for RemoveSocketIfOurs.
Result<UniqueFd> ListenUnix(const std::string& path, ino_t* inode);

// Unlinks `path` only if it is still the socket with `inode`: a successor may already
// have replaced it.
void RemoveSocketIfOurs(const std::string& path, ino_t inode);

// A non-blocking TCP socket listening on the numeric address `host` (IPv4, or IPv6
// without brackets) and `port` (0: the kernel picks one). `*bound_port` receives the port.
Result<UniqueFd> ListenTcp(const std::string& host, uint16_t port, uint16_t* bound_port);

// Accepts connections on `listen_fd` (non-blocking) and hands each to `on_accept`, which
// owns the descriptor from then on, until `wake_fd` becomes readable or poll fails. When
// `on_tick` is set it also runs at least every `tick`.
void AcceptUntilWoken(int listen_fd, int wake_fd, const std::function<void(int fd)>& on_accept,
                      std::chrono::milliseconds tick = std::chrono::milliseconds(200),
                      const std::function<void()>& on_tick = {});

// Wakes the AcceptUntilWoken running on `accept_thread` through the eventfd `wake_fd`
// and joins it. No-op if the thread was never started.
void StopAccepting(int wake_fd, std::thread& accept_thread);

}  // namespace slacker::http
