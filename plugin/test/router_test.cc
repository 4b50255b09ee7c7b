// The plugin's route table on its own, without a socket: its errors are {"Err": …}
// (http/test/router_test.cc tests the table itself).
#include "plugin/router.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace slacker::plugin {
namespace {

using nlohmann::json;

Reply Dispatch(const Router& router, std::string_view method, std::string path) {
  StringSource body("");
  Request req{.method = std::string(method), .target = path, .path = path, .query = {},
              .params = {}, .headers = {}, .body = body};
  return router.Dispatch(req);
}

Reply Hello(Request&) {
  Reply r;
  r.body = "{}";
  return r;
}

// An unknown path answers 404 with an Err body, which dockerd tolerates for optional calls.
TEST(Router, UnknownRouteIs404) {
  Router router = NewRouter();
  Reply r = Dispatch(router, "POST", "/GraphDriver.Nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"unknown route /GraphDriver.Nope"})"));
}

// A known path with another HTTP method answers 405.
TEST(Router, NonPostIs405) {
  Router router = NewRouter();
  ASSERT_TRUE(router.Add("POST", "/GraphDriver.Get", Hello).ok());
  Reply r = Dispatch(router, "GET", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"/GraphDriver.Get takes POST, not GET"})"));
}

// A registered route with POST reaches its handler.
TEST(Router, PostReachesHandler) {
  Router router = NewRouter();
  ASSERT_TRUE(router.Add("POST", "/GraphDriver.Get", Hello).ok());
  Reply r = Dispatch(router, "POST", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
}

// An exception escaping a handler is answered, not propagated: dispatch is the boundary.
TEST(Router, HandlerExceptionBecomes500) {
  Router router = NewRouter();
  ASSERT_TRUE(
      router.Add("POST", "/GraphDriver.Get", [](Request&) -> Reply { throw std::runtime_error("boom"); })
          .ok());
  Reply r = Dispatch(router, "POST", "/GraphDriver.Get");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"GraphDriver.Get: internal error: boom"})"));
}

}  // namespace
}  // namespace slacker::plugin
