// The plugin's route table: maps request paths ("/GraphDriver.Get", "/Plugin.Activate")
// to handlers. Transport-free (no Beast here), so routes and handlers are testable
// without a socket; server.cc feeds it requests read off the wire.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "common/io.h"
#include "common/status.h"

namespace slacker::plugin {

inline constexpr std::string_view kJsonContentType = "application/vnd.docker.plugins.v1+json";
inline constexpr std::string_view kTarContentType = "application/x-tar";

// One request as a handler sees it. `body` streams the request body; a handler reads
// as much as it needs (the server discards or refuses the rest).
struct Request {
  std::string path;                          // "/GraphDriver.ApplyDiff"
  std::map<std::string, std::string> query;  // URL-decoded: {"id": "…", "parent": "…"}
  ByteSource& body;
};

struct Reply {
  int status = 200;
  std::string content_type = std::string(kJsonContentType);
  std::string body;  // ignored when `stream` is set
  // When set, the reply is 200 with a chunked body read from this stream (Diff). The
  // server destroys it once sent, releasing what the driver holds for it.
  std::unique_ptr<ByteSource> stream;
  // For the request log line only.
  std::string layer_id;
  std::string error;  // the Err message when status != 200
};

// {"Err": message} with `status`.
Reply ErrorReply(int status, std::string_view message);

// Serializes without throwing: invalid UTF-8 (a file name in Changes, say) becomes U+FFFD,
// as Go's encoding/json does.
std::string DumpJson(const nlohmann::json& value);

// Splits a request target "/p?a=1&b=%2F" into path and decoded query. '+' decodes to a
// space; a malformed %-escape is kept literally rather than rejected (layer ids are hex,
// so dockerd never sends one). For a repeated key the first value wins, as Go's Get.
void SplitTarget(std::string_view target, std::string* path,
                 std::map<std::string, std::string>* query);

using Handler = std::function<Reply(Request&)>;

class Router {
 public:
  // EEXIST if `path` already has a handler; EINVAL unless `path` starts with '/'.
  Status Add(std::string path, Handler handler);

  // Runs the handler for req.path. An unknown path answers 404, a known one with an HTTP
  // method other than POST 405. An exception escaping a handler (Boost and nlohmann
  // throw) becomes a 500 naming the route: this is the dispatch boundary.
  Reply Dispatch(std::string_view http_method, Request& req) const;

  // Whether `path` has a handler.
  bool Has(std::string_view path) const { return routes_.find(path) != routes_.end(); }

 private:
  std::map<std::string, Handler, std::less<>> routes_;
};

}  // namespace slacker::plugin
