// libFuzzer target: the plugin's request decoding and route dispatch (http/router.h,
// plugin/router.h, plugin/graphdriver_routes.h) in front of a driver without side effects. Input layout:
// byte 0 picks the route, byte 1 the HTTP method, then a request target suffix up to the
// first '\n' (query string), then the body. Every reply must be a valid HTTP status and,
// for JSON routes, a JSON body.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "common/io.h"
#include "driver/graph_driver.h"
#include "plugin/graphdriver_routes.h"
#include "plugin/router.h"

namespace {

using namespace slacker;

// Answers every call from its arguments alone: ids starting with 'e' fail, others work.
class NullDriver : public driver::GraphDriver {
 public:
  Status Init(const std::string&, const std::vector<std::string>&) override { return Status::Ok(); }
  driver::Capabilities GetCapabilities() override { return {}; }
  std::vector<std::pair<std::string, std::string>> StatusRows() override { return {{"k", "v"}}; }
  Result<std::map<std::string, std::string>> GetMetadata(const std::string& id) override {
    if (Fails(id)) return Errorf(ENOENT, "layer {} does not exist", id);
    return std::map<std::string, std::string>{{"id", id}};
  }
  Status Create(const driver::CreateRequest& r) override { return Check(r.id); }
  Status CreateReadWrite(const driver::CreateRequest& r) override { return Check(r.id); }
  Status Remove(const std::string& id) override { return Check(id); }
  Result<std::string> Get(const std::string& id, const std::string&) override {
    if (Fails(id)) return Errorf(ENOENT, "get {}", id);
    return "/mnt/" + id;
  }
  Status Put(const std::string& id) override { return Check(id); }
  bool Exists(const std::string& id) override { return !Fails(id); }
  Result<driver::DiffStream> Diff(const std::string& id, const std::string&) override {
    if (Fails(id)) return Errorf(EIO, "diff {}", id);
    return driver::DiffStream(std::make_unique<StringSource>(std::string(1024, '\0')));
  }
  Result<std::vector<driver::Change>> Changes(const std::string& id, const std::string&) override {
    if (Fails(id)) return Errorf(EIO, "changes {}", id);
    return std::vector<driver::Change>{{"/" + id, driver::ChangeKind::kAdd}};
  }
  Result<int64_t> ApplyDiff(const std::string& id, const std::string&, ByteSource& tar) override {
    char buf[4096];
    int64_t total = 0;
    for (;;) {
      SLACKER_ASSIGN_OR_RETURN(size_t n, tar.Read(buf, sizeof buf));
      if (n == 0) break;
      total += static_cast<int64_t>(n);
    }
    if (Fails(id)) return Errorf(EINVAL, "apply {}", id);
    return total;
  }
  Result<int64_t> DiffSize(const std::string& id, const std::string&) override {
    if (Fails(id)) return Errorf(EIO, "diff size {}", id);
    return 0;
  }
  Status Cleanup() override { return Status::Ok(); }

 private:
  static bool Fails(const std::string& id) { return !id.empty() && id[0] == 'e'; }
  static Status Check(const std::string& id) {
    return Fails(id) ? Errorf(EIO, "layer {}", id) : Status::Ok();
  }
};

const char* kRoutes[] = {"/Plugin.Activate",      "/GraphDriver.Init",
                         "/GraphDriver.Create",   "/GraphDriver.CreateReadWrite",
                         "/GraphDriver.Remove",   "/GraphDriver.Get",
                         "/GraphDriver.Put",      "/GraphDriver.Exists",
                         "/GraphDriver.Status",   "/GraphDriver.GetMetadata",
                         "/GraphDriver.Cleanup",  "/GraphDriver.Diff",
                         "/GraphDriver.Changes",  "/GraphDriver.ApplyDiff",
                         "/GraphDriver.DiffSize", "/GraphDriver.Capabilities",
                         "/GraphDriver.Nope",     "/"};
const char* kMethods[] = {"POST", "GET", "PUT", ""};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static NullDriver driver;
  static plugin::Router* router = [] {
    auto* r = new plugin::Router(plugin::NewRouter());
    if (!plugin::AddGraphDriverRoutes(*r, driver, 1 << 16).ok()) std::abort();
    return r;
  }();
  if (size < 2) return 0;
  std::string route = kRoutes[data[0] % (sizeof kRoutes / sizeof kRoutes[0])];
  const char* method = kMethods[data[1] % 4];
  std::string rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t nl = rest.find('\n');
  std::string target = route + (nl == std::string::npos ? "" : rest.substr(0, nl));
  std::string body = nl == std::string::npos ? rest : rest.substr(nl + 1);

  StringSource src(body);
  plugin::Request req{.method = method, .target = target, .path = {}, .query = {}, .params = {},
                      .headers = {}, .body = src};
  http::SplitTarget(target, &req.path, &req.query);
  plugin::Reply reply = router->Dispatch(req);
  if (reply.status < 200 || reply.status > 599) std::abort();
  if (reply.stream) {
    char buf[4096];
    for (;;) {
      auto n = reply.stream->Read(buf, sizeof buf);
      if (!n.ok() || *n == 0) break;
    }
  } else if (reply.content_type == plugin::kJsonContentType) {
    if (!nlohmann::json::accept(reply.body)) std::abort();
  }
  return 0;
}
