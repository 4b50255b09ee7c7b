// The route table every HTTP front end here uses (the graphdriver socket, the metrics
// endpoint, slacker-storaged): method + path -> handler. Transport-free (no Beast here), so
// routes and handlers are testable without a socket; server.h feeds it requests read off
// the wire.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/io.h"
#include "common/status.h"

namespace slacker::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request as a handler sees it. `body` streams the request body; a handler reads as
// much as it needs (the server discards or refuses the rest).
struct Request {
  std::string method;                        // "POST"
  std::string target;                        // as sent: "/GraphDriver.ApplyDiff?id=…"
  std::string path;                          // "/GraphDriver.ApplyDiff"
  std::map<std::string, std::string> query;  // URL-decoded: {"id": "…", "parent": "…"}
  std::map<std::string, std::string> params;  // from "{name}" segments of the route
  Headers headers;                           // as sent, in order
  ByteSource& body;

  // The first header named `name` (case-insensitive), "" if there is none.
  std::string Header(std::string_view name) const;
};

struct Reply {
  int status = 200;
  std::string content_type;  // "": the server's default
  Headers headers;           // extra response headers ("Allow", "WWW-Authenticate", ...)
  std::string body;          // ignored when `stream` is set
  // When set, the reply is `status` with a chunked body read from this stream. The server
  // destroys it once sent, releasing what the handler holds for it.
  std::unique_ptr<ByteSource> stream;
  // For the request log line only: what the request was about (a layer id) and, when the
  // status is not a success, why.
  std::string log_id;
  std::string error;
};

using Handler = std::function<Reply(Request&)>;

// How a front end words the router's own errors (404, 405, 500, and the server's 400 for
// a malformed request): `message` says what went wrong, `req` is the request (its method
// and path are set).
using ErrorFormat = std::function<Reply(int status, std::string message, const Request& req)>;

// Splits a request target "/p?a=1&b=%2F" into path and decoded query. '+' decodes to a
// space; a malformed %-escape is kept literally rather than rejected. For a repeated key
// the first value wins, as Go's Get.
void SplitTarget(std::string_view target, std::string* path,
                 std::map<std::string, std::string>* query);

class Router {
 public:
  explicit Router(ErrorFormat format) : format_(std::move(format)) {}

  // Registers `handler` for `method` on `pattern`: a path whose segments are literal or
  // "{name}" (matches any one non-empty segment; Dispatch puts it in req.params[name]).
  // EEXIST if the method already has a handler there; EINVAL unless `pattern` starts
  // with '/' and `method` is non-empty.
  Status Add(std::string method, std::string pattern, Handler handler);

  // Requests no route matches go to `handler` instead of answering 404: for a front end
  // whose checks come before any routing (slacker-storaged authenticates every request,
  // then routes through its own table).
  void SetFallback(Handler handler) { fallback_ = std::move(handler); }

  // Runs the handler for req.method and req.path. A path no route matches answers 404, a
  // matched one without a handler for the method 405 (with "Allow"). An exception
  // escaping a handler (Boost and nlohmann throw) becomes a 500 naming the route: this
  // is the dispatch boundary.
  Reply Dispatch(Request& req) const;

  // Whether some route matches `path` (for any method).
  bool Has(std::string_view path) const { return Find(path, nullptr) != nullptr; }

  // The front end's reply for an error of the transport itself (a malformed request).
  Reply Error(int status, std::string message, const Request& req) const {
    return format_(status, std::move(message), req);
  }

 private:
  struct Route {
    std::string pattern;
    std::vector<std::string> segments;
    std::map<std::string, Handler, std::less<>> by_method;
  };
  const Route* Find(std::string_view path, std::map<std::string, std::string>* params) const;
  Reply Run(const Handler& handler, Request& req) const;

  ErrorFormat format_;
  Handler fallback_;
  std::vector<Route> routes_;  // in registration order; literal matches win (see Find)
};

}  // namespace slacker::http
