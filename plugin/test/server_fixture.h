// A Server on a unix socket in a fresh temp dir, in front of a FakeGraphDriver.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/files.h"
#include "plugin/server.h"
#include "plugin/test/fake_graph_driver.h"
#include "plugin/test/test_client.h"

namespace slacker::plugin {

class PluginServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-plugin-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fake_.state_dir = dir_ + "/state";
    opts_.socket_path = dir_ + "/plugins/slacker.sock";
    StartServer();
  }
  void TearDown() override {
    server_.reset();
    (void)RemoveTree(dir_);
  }

  // (Re)starts the server with opts_.
  void StartServer() {
    server_.reset();
    server_ = std::make_unique<Server>(fake_, opts_);
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.message();
  }

  TestClient Client() const { return TestClient(opts_.socket_path); }

  // POSTs `body` to `target` on a fresh connection and checks the exact reply.
  void ExpectCall(const std::string& target, const std::string& body, int status,
                  const std::string& expected_json) {
    SCOPED_TRACE("POST " + target + " " + body);
    HttpReply r = Client().Post(target, body);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.content_type, "application/vnd.docker.plugins.v1+json");
    auto got = nlohmann::json::parse(r.body, nullptr, false);
    EXPECT_EQ(got, nlohmann::json::parse(expected_json)) << "body: " << r.body;
  }

  std::string dir_;
  ServerOptions opts_;
  FakeGraphDriver fake_;
  std::unique_ptr<Server> server_;
};

}  // namespace slacker::plugin
