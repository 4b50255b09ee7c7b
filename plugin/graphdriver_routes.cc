#include "plugin/graphdriver_routes.h"

#include <nlohmann/json.hpp>
#include <utility>

namespace slacker::plugin {
namespace {

using json = nlohmann::json;

// Records the parser's own description of a syntax error, which json::parse(body,
// nullptr, false) throws away.
class SyntaxErrorCatcher : public nlohmann::json_sax<json> {
 public:
  std::string error;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    return false;
  }
};

// A decoded JSON request. Field getters record the first problem instead of failing, so
// a handler reads all its fields and then checks ok() once.
class Args {
 public:
  Args(std::string method, json body) : method_(std::move(method)), body_(std::move(body)) {}

  bool ok() const { return problem_.empty(); }
  Reply BadRequest() const { return ErrorReply(400, method_ + ": " + problem_); }
  const std::string& id() const { return id_; }

  // The layer id: a required, non-empty string.
  std::string Id() {
    id_ = String("ID", /*required=*/true);
    if (ok() && id_.empty()) Problem("field ID must not be empty");
    return id_;
  }
  // A string field; absent or null reads as "" unless required.
  std::string String(const char* name, bool required = false) {
    const json* v = Find(name);
    if (v == nullptr) {
      if (required && body_.empty()) {
        // What dockerd's plugin client sends when it retries a call whose connection
        // broke (the plugin restarted mid-call): the body reader was already consumed.
        Problem(fmt::format("missing field {}: the request body was empty (dockerd retries a call with an "
                            "empty body after the plugin restarted during it); run the docker command again",
                            name));
      } else if (required) {
        Problem(fmt::format("missing field {}", name));
      }
      return "";
    }
    if (!v->is_string()) {
      Problem(fmt::format("field {} must be a string", name));
      return "";
    }
    return v->get<std::string>();
  }
  // {"k": "v", …}; absent or null reads as empty.
  std::map<std::string, std::string> StringMap(const char* name) {
    std::map<std::string, std::string> out;
    const json* v = Find(name);
    if (v == nullptr) return out;
    bool valid = v->is_object();
    for (auto it = v->begin(); valid && it != v->end(); ++it) {
      valid = it->is_string();
      if (valid) out.emplace(it.key(), it->get<std::string>());
    }
    if (!valid) Problem(fmt::format("field {} must be an object of strings", name));
    return out;
  }
  // ["a", …]; absent or null reads as empty.
  std::vector<std::string> StringList(const char* name) {
    std::vector<std::string> out;
    const json* v = Find(name);
    if (v == nullptr) return out;
    bool valid = v->is_array();
    for (auto it = v->begin(); valid && it != v->end(); ++it) {
      valid = it->is_string();
      if (valid) out.push_back(it->get<std::string>());
    }
    if (!valid) Problem(fmt::format("field {} must be an array of strings", name));
    return out;
  }

 private:
  const json* Find(const char* name) const {
    auto it = body_.find(name);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }
  void Problem(std::string p) {
    if (problem_.empty()) problem_ = std::move(p);
  }

  std::string method_;
  json body_;
  std::string problem_;
  std::string id_;
};

// Reads the whole body, refusing more than `max` bytes.
Result<std::string> ReadBody(ByteSource& src, size_t max) {
  std::string body;
  char buf[16 * 1024];
  for (;;) {
    auto n = src.Read(buf, sizeof buf);
    if (!n.ok()) return n.status();
    if (*n == 0) return body;
    if (body.size() + *n > max) return Errorf(EFBIG, "request body exceeds {} bytes", max);
    body.append(buf, *n);
  }
}

// Reads and parses the request body. dockerd sends "null" for calls without arguments;
// that and an empty body decode as an empty object.
Result<json> ParseBody(ByteSource& src, size_t max) {
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadBody(src, max));
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  SyntaxErrorCatcher catcher;
  json::sax_parse(text, &catcher);
  if (!catcher.error.empty()) {
    return Errorf(EINVAL, "request body is not valid JSON: {}", catcher.error);
  }
  json body = json::parse(text, nullptr, false);
  if (body.is_null()) return json::object();
  if (!body.is_object()) return Errorf(EINVAL, "request body must be a JSON object");
  return body;
}

Reply Ok(const json& body) {
  Reply r;
  r.content_type = std::string(kJsonContentType);
  r.body = DumpJson(body);
  return r;
}

Reply DriverError(const Status& s) { return ErrorReply(500, s.message()); }

// {} for success, else the driver's error.
Reply Done(const Status& s) { return s.ok() ? Ok(json::object()) : DriverError(s); }

using JsonHandler = std::function<Reply(Args&)>;

// A route whose request is a JSON object: decodes it, runs `fn`, and tags the reply with
// the layer id for the request log.
Status AddJsonRoute(Router& router, std::string path, size_t max_body, JsonHandler fn) {
  std::string method = path.substr(1);
  return router.Add("POST", std::move(path), [method, max_body, fn = std::move(fn)](Request& req) {
    auto body = ParseBody(req.body, max_body);
    if (!body.ok()) {
      int status = body.status().code() == EFBIG ? 413 : 400;
      return ErrorReply(status, fmt::format("{}: {}", method, body.status().message()));
    }
    Args args(method, std::move(*body));
    Reply reply = fn(args);
    reply.log_id = args.id();
    return reply;
  });
}

json ToJson(const std::vector<driver::Change>& changes) {
  json out = json::array();
  for (const auto& c : changes) {
    out.push_back({{"Path", c.path}, {"Kind", static_cast<int>(c.kind)}});
  }
  return out;
}

// Rows as [["k","v"], …], the shape `docker info` expects.
json ToJson(const std::vector<std::pair<std::string, std::string>>& rows) {
  json out = json::array();
  for (const auto& [k, v] : rows) out.push_back(json::array({k, v}));
  return out;
}

Reply ApplyDiff(driver::GraphDriver& d, Request& req) {
  auto id = req.query.find("id");
  if (id == req.query.end() || id->second.empty()) {
    return ErrorReply(400, "GraphDriver.ApplyDiff: missing query parameter id");
  }
  auto parent = req.query.find("parent");
  auto size = d.ApplyDiff(id->second, parent == req.query.end() ? "" : parent->second, req.body);
  Reply r = size.ok() ? Ok({{"Size", *size}}) : DriverError(size.status());
  r.log_id = id->second;
  return r;
}

}  // namespace

Status AddGraphDriverRoutes(Router& router, driver::GraphDriver& d, size_t max_json_body) {
  // Every route captures `d` by reference: REQUIRES in the header.
  auto add = [&](std::string path, JsonHandler fn) {
    return AddJsonRoute(router, std::move(path), max_json_body, std::move(fn));
  };
  SLACKER_RETURN_IF_ERROR(add("/Plugin.Activate", [](Args&) {
    return Ok({{"Implements", json::array({"GraphDriver"})}});
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Init", [&d](Args& a) {
    std::string home = a.String("Home", /*required=*/true);
    std::vector<std::string> opts = a.StringList("Opts");
    // UIDMaps/GIDMaps: the driver runs without user namespaces, so they are not passed on.
    if (!a.ok()) return a.BadRequest();
    return Done(d.Init(home, opts));
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Capabilities", [&d](Args&) {
    driver::Capabilities caps = d.GetCapabilities();
    return Ok({{"Capabilities", {{"ReproducesExactDiffs", caps.reproduces_exact_diffs}}}});
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Status", [&d](Args&) {
    return Ok({{"Status", ToJson(d.StatusRows())}});
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.GetMetadata", [&d](Args& a) {
    std::string id = a.Id();
    if (!a.ok()) return a.BadRequest();
    auto md = d.GetMetadata(id);
    return md.ok() ? Ok({{"Metadata", json(*md)}}) : DriverError(md.status());
  }));
  for (bool rw : {false, true}) {
    std::string path = rw ? "/GraphDriver.CreateReadWrite" : "/GraphDriver.Create";
    SLACKER_RETURN_IF_ERROR(add(path, [&d, rw](Args& a) {
      driver::CreateRequest req;
      req.id = a.Id();
      req.parent = a.String("Parent");
      req.mount_label = a.String("MountLabel");
      req.storage_opt = a.StringMap("StorageOpt");
      if (!a.ok()) return a.BadRequest();
      return Done(rw ? d.CreateReadWrite(req) : d.Create(req));
    }));
  }
  // Remove and Put: {"ID"} in, {} out.
  for (const auto& route : {std::pair{"/GraphDriver.Remove", &driver::GraphDriver::Remove},
                            std::pair{"/GraphDriver.Put", &driver::GraphDriver::Put}}) {
    auto call = route.second;  // not a structured binding: clang < 16 cannot capture those
    SLACKER_RETURN_IF_ERROR(add(route.first, [&d, call](Args& a) {
      std::string id = a.Id();
      if (!a.ok()) return a.BadRequest();
      return Done((d.*call)(id));
    }));
  }
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Get", [&d](Args& a) {
    std::string id = a.Id();
    std::string label = a.String("MountLabel");
    if (!a.ok()) return a.BadRequest();
    auto dir = d.Get(id, label);
    return dir.ok() ? Ok({{"Dir", *dir}}) : DriverError(dir.status());
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Exists", [&d](Args& a) {
    std::string id = a.Id();
    if (!a.ok()) return a.BadRequest();
    return Ok({{"Exists", d.Exists(id)}});
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Diff", [&d](Args& a) {
    std::string id = a.Id();
    std::string parent = a.String("Parent");
    if (!a.ok()) return a.BadRequest();
    auto stream = d.Diff(id, parent);
    if (!stream.ok()) return DriverError(stream.status());
    Reply r;
    r.content_type = std::string(kTarContentType);
    r.stream = std::move(*stream);
    return r;
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Changes", [&d](Args& a) {
    std::string id = a.Id();
    std::string parent = a.String("Parent");
    if (!a.ok()) return a.BadRequest();
    auto changes = d.Changes(id, parent);
    return changes.ok() ? Ok({{"Changes", ToJson(*changes)}}) : DriverError(changes.status());
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.DiffSize", [&d](Args& a) {
    std::string id = a.Id();
    std::string parent = a.String("Parent");
    if (!a.ok()) return a.BadRequest();
    auto size = d.DiffSize(id, parent);
    return size.ok() ? Ok({{"Size", *size}}) : DriverError(size.status());
  }));
  SLACKER_RETURN_IF_ERROR(add("/GraphDriver.Cleanup", [&d](Args&) { return Done(d.Cleanup()); }));
  return router.Add("POST", "/GraphDriver.ApplyDiff", [&d](Request& req) { return ApplyDiff(d, req); });
}

}  // namespace slacker::plugin
