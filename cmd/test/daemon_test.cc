#include "cmd/daemon.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

namespace slacker::cmd {
namespace {

// Scenario: a default install (no --cluster-key, no opt-out) on a store that has no key
// yet: the store gets one, mode 0600, and it is the key every process signs with.
TEST(LoadReferenceTrust, DefaultInstallSignsWithTheStoresOwnKey) {
  char dir[] = "/tmp/slacker-daemon-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::function<Result<std::vector<std::string>>()> reload;
  auto trust = LoadReferenceTrust({}, dir, &reload);
  ASSERT_TRUE(trust.ok()) << trust.status().message();
  EXPECT_FALSE(trust->allow_unsigned);
  ASSERT_EQ(trust->keys.size(), 1u);
  EXPECT_EQ(trust->keys[0].size(), 64u);
  struct stat st;
  ASSERT_EQ(::stat((std::string(dir) + "/cluster.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_TRUE(reload);
  auto again = reload();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, trust->keys);
  // --cluster-key overrides it; its lines are a key ring.
  std::ofstream(std::string(dir) + "/mine") << "new\nold\n";
  auto mine = LoadReferenceTrust({.cluster_key_file = std::string(dir) + "/mine"}, dir, &reload);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->keys, (std::vector<std::string>{"new", "old"}));
  EXPECT_FALSE(reload);
  std::system(("rm -rf " + std::string(dir)).c_str());
}

// Scenario: --cluster-key names an empty file: startup fails (slackerctl reads it with the
// same storage_backend::ReadKeyFile and fails the same way).
TEST(LoadReferenceTrust, EmptyKeyFileIsRefused) {
  char dir[] = "/tmp/slacker-daemon-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::ofstream(std::string(dir) + "/empty") << "\n";
  auto trust = LoadReferenceTrust({.cluster_key_file = std::string(dir) + "/empty"}, dir, nullptr);
  ASSERT_FALSE(trust.ok());
  EXPECT_EQ(trust.status().code(), EINVAL);
  EXPECT_NE(trust.status().message().find("holds no key"), std::string::npos) << trust.status().message();
  std::system(("rm -rf " + std::string(dir)).c_str());
}

}  // namespace
}  // namespace slacker::cmd
