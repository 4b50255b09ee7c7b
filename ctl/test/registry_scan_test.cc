// ScanRegistry against a fake registry (the project's own HTTP server with canned
// routes): what gc learns from a registry while workers push into it.
#include <gtest/gtest.h>

#include <memory>

#include "ctl/registry.h"
#include "http/server.h"

namespace slacker::ctl {
namespace {

class FakeRegistry {
 public:
  // `tags_status`: what /v2/b/tags/list answers (repository "a" is always tagged).
  explicit FakeRegistry(int tags_status) {
    auto router = std::make_shared<http::Router>([](int status, std::string message, const http::Request&) {
      http::Reply r;
      r.status = status;
      r.body = message;
      return r;
    });
    auto json = [](std::string body) {
      return [body](http::Request&) {
        http::Reply r;
        r.content_type = "application/json";
        r.body = body;
        return r;
      };
    };
    EXPECT_TRUE(router->Add("GET", "/v2/_catalog", json(R"({"repositories":["a","b"]})")).ok());
    EXPECT_TRUE(router->Add("GET", "/v2/a/tags/list", json(R"({"name":"a","tags":["1"]})")).ok());
    EXPECT_TRUE(router->Add("GET", "/v2/a/manifests/1",
                            json(R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]})"))
                    .ok());
    EXPECT_TRUE(router
                    ->Add("GET", "/v2/b/tags/list",
                          [tags_status](http::Request&) {
                            http::Reply r;
                            r.status = tags_status;
                            r.content_type = "application/json";
                            r.body = R"({"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]})";
                            return r;
                          })
                    .ok());
    http::ServerOptions o;
    o.name = "fake_registry";
    server_ = std::make_unique<http::Server>(router, o);
    Status s = server_->Start();
    EXPECT_TRUE(s.ok()) << s.message();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

 private:
  std::unique_ptr<http::Server> server_;
};

// Registry 2.8 lists a repository in the catalog once a push uploaded its first blob and
// answers 404 for its tags until the manifest arrives: gc running then must go on.
TEST(ScanRegistry, ARepositoryBeingPushedHasNoTagsYet) {
  FakeRegistry reg(404);
  auto scan = ScanRegistry(reg.url());
  ASSERT_TRUE(scan.ok()) << scan.status().message();
  EXPECT_EQ(scan->repositories, 2);
  EXPECT_EQ(scan->manifests, 1);
  EXPECT_EQ(scan->untagged, 1);
}

// Any other failure still stops the walk: a partial walk must not let gc delete.
TEST(ScanRegistry, AnyOtherFailureStopsTheWalk) {
  FakeRegistry reg(500);
  auto scan = ScanRegistry(reg.url());
  ASSERT_FALSE(scan.ok());
  EXPECT_NE(scan.status().message().find("HTTP 500"), std::string::npos) << scan.status().message();
}

}  // namespace
}  // namespace slacker::ctl
