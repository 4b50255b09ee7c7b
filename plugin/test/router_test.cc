// The route table on its own, without a socket.
#include "plugin/router.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace slacker::plugin {
namespace {

using nlohmann::json;

Reply Dispatch(const Router& router, std::string_view method, std::string path) {
  StringSource body("");
  Request req{.path = std::move(path), .query = {}, .body = body};
  return router.Dispatch(method, req);
}

Reply Hello(Request&) {
  Reply r;
  r.body = "{}";
  return r;
}

// Registering a second handler for a path is a wiring bug, reported at startup.
TEST(Router, RejectsDuplicateRoute) {
  Router router;
  ASSERT_TRUE(router.Add("/GraphDriver.Get", Hello).ok());
  Status s = router.Add("/GraphDriver.Get", Hello);
  EXPECT_EQ(s.code(), EEXIST);
  EXPECT_EQ(s.message(), "route /GraphDriver.Get is already registered");
}

// Paths are matched against request targets, which always start with '/'.
TEST(Router, RejectsPathWithoutSlash) {
  Router router;
  EXPECT_EQ(router.Add("GraphDriver.Get", Hello).code(), EINVAL);
}

// An unknown path answers 404 with an Err body, which dockerd tolerates for optional calls.
TEST(Router, UnknownRouteIs404) {
  Router router;
  Reply r = Dispatch(router, "POST", "/GraphDriver.Nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"unknown route /GraphDriver.Nope"})"));
}

// A known path with another HTTP method answers 405.
TEST(Router, NonPostIs405) {
  Router router;
  ASSERT_TRUE(router.Add("/GraphDriver.Get", Hello).ok());
  Reply r = Dispatch(router, "GET", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"/GraphDriver.Get takes POST, not GET"})"));
}

// A registered route with POST reaches its handler.
TEST(Router, PostReachesHandler) {
  Router router;
  ASSERT_TRUE(router.Add("/GraphDriver.Get", Hello).ok());
  Reply r = Dispatch(router, "POST", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
}

// An exception escaping a handler is answered, not propagated: dispatch is the boundary.
TEST(Router, HandlerExceptionBecomes500) {
  Router router;
  ASSERT_TRUE(
      router.Add("/GraphDriver.Get", [](Request&) -> Reply { throw std::runtime_error("boom"); })
          .ok());
  Reply r = Dispatch(router, "POST", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"GraphDriver.Get: internal error: boom"})"));
}

// ApplyDiff's id and parent arrive in the query string, %-encoded.
TEST(SplitTarget, DecodesQuery) {
  std::string path;
  std::map<std::string, std::string> query;
  SplitTarget("/GraphDriver.ApplyDiff?id=a%2Fb%20c&parent=&x+y=1+2&id=second", &path, &query);
  EXPECT_EQ(path, "/GraphDriver.ApplyDiff");
  std::map<std::string, std::string> want = {{"id", "a/b c"}, {"parent", ""}, {"x y", "1 2"}};
  EXPECT_EQ(query, want);
}

// A malformed %-escape is kept as written rather than dropped.
TEST(SplitTarget, KeepsMalformedEscape) {
  std::string path;
  std::map<std::string, std::string> query;
  SplitTarget("/p?id=%zz%4", &path, &query);
  EXPECT_EQ(query["id"], "%zz%4");
}

// A target without '?' is all path.
TEST(SplitTarget, NoQuery) {
  std::string path;
  std::map<std::string, std::string> query = {{"stale", "1"}};
  SplitTarget("/GraphDriver.Get", &path, &query);
  EXPECT_EQ(path, "/GraphDriver.Get");
  EXPECT_TRUE(query.empty());
}

}  // namespace
}  // namespace slacker::plugin
