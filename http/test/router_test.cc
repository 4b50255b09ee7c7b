// The route table on its own, without a socket.
#include "http/router.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace slacker::http {
namespace {

// Errors as "<status> <message>", so each test sees what the router said.
Reply Plain(int status, std::string message, const Request&) {
  Reply r;
  r.status = status;
  r.body = std::to_string(status) + " " + message;
  return r;
}

Reply Dispatch(const Router& router, std::string method, std::string path,
               std::map<std::string, std::string>* params = nullptr) {
  StringSource body("");
  Request req{.method = std::move(method), .target = path, .path = path, .query = {},
              .params = {}, .headers = {}, .body = body};
  Reply r = router.Dispatch(req);
  if (params != nullptr) *params = req.params;
  return r;
}

Handler Says(std::string text) {
  return [text](Request&) {
    Reply r;
    r.body = text;
    return r;
  };
}

std::string HeaderOf(const Reply& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

// Registering a second handler for a method and path is a wiring bug, reported at startup.
TEST(Router, RejectsDuplicateRoute) {
  Router router(Plain);
  ASSERT_TRUE(router.Add("POST", "/GraphDriver.Get", Says("a")).ok());
  Status s = router.Add("POST", "/GraphDriver.Get", Says("b"));
  EXPECT_EQ(s.code(), EEXIST);
  EXPECT_EQ(s.message(), "route POST /GraphDriver.Get is already registered");
}

// The same path with another method is another route.
TEST(Router, SamePathOtherMethodIsAnotherRoute) {
  Router router(Plain);
  ASSERT_TRUE(router.Add("GET", "/v1/snapshots", Says("list")).ok());
  ASSERT_TRUE(router.Add("POST", "/v1/snapshots", Says("create")).ok());
  EXPECT_EQ(Dispatch(router, "GET", "/v1/snapshots").body, "list");
  EXPECT_EQ(Dispatch(router, "POST", "/v1/snapshots").body, "create");
}

// Paths are matched against request targets, which always start with '/'.
TEST(Router, RejectsPatternWithoutSlashOrMethod) {
  Router router(Plain);
  EXPECT_EQ(router.Add("POST", "GraphDriver.Get", Says("a")).code(), EINVAL);
  EXPECT_EQ(router.Add("", "/GraphDriver.Get", Says("a")).code(), EINVAL);
}

// A path no route matches answers 404 through the front end's ErrorFormat.
TEST(Router, UnknownPathIs404) {
  Router router(Plain);
  ASSERT_TRUE(router.Add("GET", "/metrics", Says("m")).ok());
  Reply r = Dispatch(router, "GET", "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "404 unknown route /nope");
  EXPECT_EQ(Dispatch(router, "GET", "/metrics/").status, 404) << "a trailing '/' is another path";
}

// A known path with a method it does not take answers 405 and says which it takes.
TEST(Router, WrongMethodIs405WithAllow) {
  Router router(Plain);
  ASSERT_TRUE(router.Add("GET", "/v1/snapshots/{id}", Says("get")).ok());
  ASSERT_TRUE(router.Add("DELETE", "/v1/snapshots/{id}", Says("delete")).ok());
  Reply r = Dispatch(router, "POST", "/v1/snapshots/abc");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.body, "405 /v1/snapshots/abc takes DELETE or GET, not POST");
  EXPECT_EQ(HeaderOf(r, "Allow"), "DELETE, GET");
}

// An exception escaping a handler is answered, not propagated: dispatch is the boundary.
TEST(Router, HandlerExceptionBecomes500) {
  Router router(Plain);
  ASSERT_TRUE(
      router.Add("POST", "/GraphDriver.Get", [](Request&) -> Reply { throw std::runtime_error("boom"); })
          .ok());
  Reply r = Dispatch(router, "POST", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "500 GraphDriver.Get: internal error: boom");
}

// "{name}" segments match one non-empty segment and reach the handler as params.
TEST(Router, ParamsFromPatternSegments) {
  Router router(Plain);
  ASSERT_TRUE(router.Add("DELETE", "/v1/volumes/{host}/{volume}", Says("del")).ok());
  std::map<std::string, std::string> params;
  EXPECT_EQ(Dispatch(router, "DELETE", "/v1/volumes/h1/l2", &params).body, "del");
  std::map<std::string, std::string> want = {{"host", "h1"}, {"volume", "l2"}};
  EXPECT_EQ(params, want);
  EXPECT_EQ(Dispatch(router, "DELETE", "/v1/volumes/h1/").status, 404);
  EXPECT_EQ(Dispatch(router, "DELETE", "/v1/volumes/h1").status, 404);
}

// A literal route wins over a pattern that also matches, whatever the order of Add.
TEST(Router, LiteralWinsOverPattern) {
  Router router(Plain);
  ASSERT_TRUE(router.Add("GET", "/v1/{what}", Says("pattern")).ok());
  ASSERT_TRUE(router.Add("GET", "/v1/store", Says("literal")).ok());
  EXPECT_EQ(Dispatch(router, "GET", "/v1/store").body, "literal");
  EXPECT_EQ(Dispatch(router, "GET", "/v1/other").body, "pattern");
}

// With a fallback, unmatched paths reach it instead of a 404; its exceptions are a 500.
TEST(Router, FallbackTakesUnmatchedPaths) {
  Router router(Plain);
  router.SetFallback([](Request& req) -> Reply {
    if (req.path == "/throw") throw std::runtime_error("bad");
    Reply r;
    r.body = "fallback " + req.method;
    return r;
  });
  EXPECT_EQ(Dispatch(router, "PUT", "/anything").body, "fallback PUT");
  Reply r = Dispatch(router, "GET", "/throw");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "500 throw: internal error: bad");
}

// Header lookup is case-insensitive and takes the first of repeated headers.
TEST(Request, HeaderIsCaseInsensitive) {
  StringSource body("");
  Request req{.method = "GET", .target = "/", .path = "/", .query = {}, .params = {},
              .headers = {{"Authorization", "Bearer a"}, {"authorization", "Bearer b"}},
              .body = body};
  EXPECT_EQ(req.Header("AUTHORIZATION"), "Bearer a");
  EXPECT_EQ(req.Header("Idempotency-Key"), "");
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
}  // namespace slacker::http
