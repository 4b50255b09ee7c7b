// OpenStore's choices that need no NFS server, snapshot service or root: which form a
// --store value selects, and what "open an existing store" refuses.
#include "storage_backend/open_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "common/files.h"

namespace slacker::storage_backend {
namespace {

class OpenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-open-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { ASSERT_EQ(std::system(("rm -rf " + dir_).c_str()), 0); }
  std::unique_ptr<os::Os> os_ = os::NewRealOs();
  std::string dir_;
};

// Scenario: slackerd --store http://... without a token: the error names the flag.
TEST_F(OpenStoreTest, ServiceWithoutTokenIsAClearError) {
  auto store = OpenStore(*os_, {.store = "http://127.0.0.1:1", .state = dir_});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), EINVAL);
  EXPECT_NE(store.status().message().find("needs --store-token-file"), std::string::npos) << store.status().message();
}

// Scenario: a daemon opens a new directory store: store.json is written; slackerctl
// (must_exist) then opens the same store, with the same identity.
TEST_F(OpenStoreTest, DirectoryStoreIsCreatedByADaemonAndOpenedByTheTool) {
  std::string root = JoinPath(dir_, "store");
  ASSERT_TRUE(MakeDirs(root, 0700).ok());
  auto made = OpenStore(*os_, {.store = root, .state = dir_, .host_id = "h1"});
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(made->nfs_view, nullptr);
  EXPECT_EQ(made->description, root);
  auto again = OpenStore(*os_, {.store = root, .state = dir_, .host_id = "h1", .must_exist = true});
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->backend->info().uuid, made->backend->info().uuid);
}

// Scenario: slackerctl --store /mistyped/path: refused, and no store.json appears there.
TEST_F(OpenStoreTest, ToolRefusesADirectoryThatIsNoStore) {
  auto store = OpenStore(*os_, {.store = dir_, .state = dir_, .host_id = "h1", .must_exist = true});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), ENOENT);
  EXPECT_NE(store.status().message().find("no store.json"), std::string::npos) << store.status().message();
  EXPECT_FALSE(PathExists(JoinPath(dir_, "store.json")));
}

// Scenario: slackerctl without --store while slackerd's embedded store is not mounted:
// refused with what to do; nothing is created under the state directory.
TEST_F(OpenStoreTest, ToolNeverCreatesTheEmbeddedStore) {
  auto store = OpenStore(*os_, {.state = dir_, .host_id = "h1", .must_exist = true});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), EINVAL);
  EXPECT_NE(store.status().message().find("is not mounted"), std::string::npos) << store.status().message();
  EXPECT_FALSE(PathExists(JoinPath(dir_, "store.img")));
  EXPECT_FALSE(PathExists(JoinPath(dir_, "store")));
}

// Scenario: --store nfs://HOST with no export path: a clear error before any bridge starts.
TEST_F(OpenStoreTest, MalformedNfsUrlIsRefusedBeforeStartingABridge) {
  auto store = OpenStore(*os_, {.store = "nfs://", .state = dir_, .nfs_bridge = "/nonexistent/bridge"});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), EINVAL) << store.status().message();
  EXPECT_FALSE(PathExists(JoinPath(dir_, "nfs")));
}

}  // namespace
}  // namespace slacker::storage_backend
