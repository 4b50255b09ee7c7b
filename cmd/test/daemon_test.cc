#include "cmd/daemon.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

namespace slacker::cmd {
namespace {

bool Parse(std::vector<std::string> words, const std::map<std::string, std::string*>& options,
           std::vector<std::string>* positional, std::string* err) {
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  return ParseLongOptions(static_cast<int>(argv.size()), argv.data(), 1, options, positional, "usage\n", err);
}

TEST(ParseLongOptions, TakesBothSpellingsAndPositionals) {
  std::string store, state = "/default", err;
  std::vector<std::string> pos;
  ASSERT_TRUE(Parse({"prog", "--store", "nfs://h/x", "NAME", "--state=/s"},
                    {{"--store", &store}, {"--state", &state}}, &pos, &err))
      << err;
  EXPECT_EQ(store, "nfs://h/x");
  EXPECT_EQ(state, "/s");
  EXPECT_EQ(pos, std::vector<std::string>{"NAME"});
}

TEST(ParseLongOptions, RefusesUnknownMissingValueAndUnwantedPositionals) {
  std::string store, err;
  EXPECT_FALSE(Parse({"prog", "--nope", "x"}, {{"--store", &store}}, nullptr, &err));
  EXPECT_EQ(err, "unknown option --nope");
  EXPECT_FALSE(Parse({"prog", "--store"}, {{"--store", &store}}, nullptr, &err));
  EXPECT_EQ(err, "--store needs a value");
  EXPECT_FALSE(Parse({"prog", "stray"}, {{"--store", &store}}, nullptr, &err));
  EXPECT_EQ(err, "unexpected argument stray");
  EXPECT_EQ(store, "");
}

TEST(ReadClusterKey, StripsNewlinesAndRefusesEmptyKeys) {
  char dir[] = "/tmp/slacker-daemon-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string good = std::string(dir) + "/key", empty = std::string(dir) + "/empty";
  std::ofstream(good) << "s3cret\r\n\n";
  std::ofstream(empty) << "\n";
  auto key = ReadClusterKey(good);
  ASSERT_TRUE(key.ok()) << key.status().message();
  EXPECT_EQ(*key, "s3cret");
  auto none = ReadClusterKey(empty);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("is empty"), std::string::npos) << none.status().message();
  EXPECT_FALSE(ReadClusterKey(std::string(dir) + "/missing").ok());
  std::system(("rm -rf " + std::string(dir)).c_str());
}

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

TEST(TakeSwitch, RemovesTheSwitchAndKeepsTheRest) {
  std::vector<std::string> words = {"prog", "--allow-unsigned-references", "--store", "/s"};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  int argc = static_cast<int>(argv.size());
  EXPECT_TRUE(TakeSwitch(&argc, argv.data(), 1, "--allow-unsigned-references"));
  EXPECT_EQ(argc, 3);
  EXPECT_EQ(std::string(argv[1]), "--store");
  EXPECT_FALSE(TakeSwitch(&argc, argv.data(), 1, "--allow-unsigned-references"));
}

TEST(OpenStore, ServiceWithoutTokenIsAClearError) {
  auto os = os::NewRealOs();
  auto store = OpenStore(*os, {.store = "http://127.0.0.1:1", .state = "/nonexistent"});
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("needs --store-token-file"), std::string::npos)
      << store.status().message();
}

}  // namespace
}  // namespace slacker::cmd
