#include "plugin/test/test_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <limits>

namespace slacker::plugin {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct TestClient::Impl {
  std::string path;
  net::io_context ioc;
  net::local::stream_protocol::socket sock{ioc};
  beast::flat_buffer buffer;

  bool Connect(HttpReply* out) {
    if (sock.is_open()) return true;
    beast::error_code ec;
    sock.connect(net::local::stream_protocol::endpoint(path), ec);
    if (ec) out->error = "connect: " + ec.message();
    return !ec;
  }

  template <typename Request>
  void Prepare(Request& req, std::string_view method, std::string_view target) {
    req.method_string(beast::string_view(method.data(), method.size()));
    req.target(beast::string_view(target.data(), target.size()));
    req.version(11);
    req.set(http::field::host, "plugin");
    req.set(http::field::accept, "application/vnd.docker.plugins.v1.2+json");
  }

  HttpReply ReadReply(HttpReply out) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // not none: Boost 1.74 bug
    beast::error_code ec;
    http::read(sock, buffer, parser, ec);
    auto& res = parser.get();
    out.status = res.result_int();
    out.content_type = std::string(res[http::field::content_type]);
    out.body = std::move(res.body());
    out.chunked = res.chunked();
    out.keep_alive = res.keep_alive();
    if (ec) out.error = "read reply: " + ec.message();
    if (ec || !out.keep_alive) Close();
    return out;
  }

  void Close() {
    beast::error_code ec;
    sock.close(ec);
    buffer.clear();
  }
};

TestClient::TestClient(std::string socket_path) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(socket_path);
}
TestClient::~TestClient() = default;
TestClient::TestClient(TestClient&&) noexcept = default;

HttpReply TestClient::Send(std::string_view method, std::string_view target,
                           std::string_view body) {
  HttpReply out;
  if (!impl_->Connect(&out)) return out;
  http::request<http::string_body> req;
  impl_->Prepare(req, method, target);
  req.set(http::field::content_type, "application/json");
  req.body() = std::string(body);
  req.prepare_payload();
  beast::error_code ec;
  http::write(impl_->sock, req, ec);
  if (ec) out.error = "write request: " + ec.message();
  return impl_->ReadReply(std::move(out));
}

HttpReply TestClient::PostChunked(std::string_view target, std::string_view body, size_t chunk) {
  HttpReply out;
  if (!impl_->Connect(&out)) return out;
  http::request<http::empty_body> req;
  impl_->Prepare(req, "POST", target);
  req.set(http::field::content_type, "application/x-tar");
  req.chunked(true);
  http::request_serializer<http::empty_body> serializer{req};
  beast::error_code ec;
  http::write_header(impl_->sock, serializer, ec);
  for (size_t pos = 0; !ec && pos < body.size(); pos += chunk) {
    size_t n = std::min(chunk, body.size() - pos);
    net::write(impl_->sock, http::make_chunk(net::buffer(body.data() + pos, n)), ec);
  }
  if (!ec) net::write(impl_->sock, http::make_chunk_last(), ec);
  // A server that refused the body early may have replied already: read it regardless.
  if (ec) out.error = "write request: " + ec.message();
  return impl_->ReadReply(std::move(out));
}

HttpReply TestClient::SendRaw(std::string_view bytes) {
  HttpReply out;
  if (!impl_->Connect(&out)) return out;
  beast::error_code ec;
  net::write(impl_->sock, net::buffer(bytes.data(), bytes.size()), ec);
  if (ec) out.error = "write request: " + ec.message();
  return impl_->ReadReply(std::move(out));
}

bool TestClient::ServerClosed() {
  if (!impl_->sock.is_open()) return true;
  pollfd p{impl_->sock.native_handle(), POLLIN, 0};
  if (::poll(&p, 1, 1000) <= 0) return false;
  char c;
  return ::recv(p.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

}  // namespace slacker::plugin
