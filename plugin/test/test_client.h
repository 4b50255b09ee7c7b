// An HTTP/1.1 client over a unix socket for the plugin's tests, speaking to the server as
// dockerd's plugin client does (POST, keep-alive, chunked ApplyDiff bodies).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace slacker::plugin {

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
  bool keep_alive = false;
  bool chunked = false;
  std::string error;  // a transport failure (refused, reset, truncated body); "" if none
};

class TestClient {
 public:
  // Connects on first use; reuses the connection while the server keeps it alive.
  explicit TestClient(std::string socket_path);
  ~TestClient();
  TestClient(TestClient&&) noexcept;

  HttpReply Post(std::string_view target, std::string_view body) {
    return Send("POST", target, body);
  }
  HttpReply Send(std::string_view method, std::string_view target, std::string_view body);
  // POSTs `body` with Transfer-Encoding: chunked, `chunk` bytes per chunk.
  HttpReply PostChunked(std::string_view target, std::string_view body, size_t chunk);
  // Writes `bytes` as they are (a hand-made request) and reads one reply.
  HttpReply SendRaw(std::string_view bytes);
  // True if the server closed the connection within a second.
  bool ServerClosed();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slacker::plugin
