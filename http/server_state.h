// Internal to the http module: the state a Server shares with its connection threads.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>

#include "common/fd.h"
#include "http/connections.h"
#include "http/router.h"
#include "http/server.h"

namespace slacker::http {

struct Server::State {
  State(std::shared_ptr<const Router> r, ServerOptions o)
      : router(std::move(r)),
        opts(std::move(o)),
        conns(opts.name, opts.max_connections, opts.spawn) {}

  const std::shared_ptr<const Router> router;
  ServerOptions opts;  // port: the one bound, after Start()
  boost::asio::io_context ioc;  // only owns the sockets: every operation is synchronous
  std::unique_ptr<boost::asio::ssl::context> tls;  // set when serving TLS
  UniqueFd listen_fd;
  UniqueFd wake_fd;  // eventfd that tells the accept loop to return
  ino_t socket_inode = 0;
  std::atomic<uint64_t> requests{0};
  Connections conns;
};

// Serves the accepted connection `fd` (admitted as `id`) until it ends; Releases it.
void ServeConnection(Server::State& st, uint64_t id, int fd);

}  // namespace slacker::http
