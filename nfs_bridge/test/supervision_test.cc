#include "nfs_bridge/supervision.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "common/files.h"

namespace slacker::nfs_bridge {
namespace {

TEST(ParseBridgeArgsTest, DefaultsAndPositionals) {
  auto a = ParseBridgeArgs({"nfs://h/srv/x/", "/mnt"});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(4, a->contexts);
  EXPECT_FALSE(a->fs.stable_writes);
  EXPECT_EQ(64ull << 20, a->fs.unstable_limit);
  EXPECT_EQ("", a->stats_file);
  EXPECT_EQ("nfs://h/srv/x/", a->url);
  EXPECT_EQ("h", a->nfs.server);
  EXPECT_EQ("/srv/x", a->nfs.export_path);
  EXPECT_EQ("/mnt", a->mount_point);
}

TEST(ParseBridgeArgsTest, EveryOption) {
  auto a = ParseBridgeArgs({"--contexts", "8", "--stable-writes", "--unstable-limit", "1024", "--stats-file",
                            "/s.json", "nfs://h/e", "/mnt", "-o", "allow_other"});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(8, a->contexts);
  EXPECT_TRUE(a->fs.stable_writes);
  EXPECT_EQ(1024u, a->fs.unstable_limit);
  EXPECT_EQ("/s.json", a->stats_file);
  EXPECT_EQ((std::vector<std::string>{"-o", "allow_other"}), a->fuse_options);
}

TEST(ParseBridgeArgsTest, Help) {
  auto a = ParseBridgeArgs({"--help"});
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->help);
}

// Hostile or mistaken command lines get EINVAL with a reason, never a default.
TEST(ParseBridgeArgsTest, RefusesBadCommandLines) {
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"nfs://h/e"},
      {"nfs://h/e", "/mnt", "extra"},
      {"http://h/e", "/mnt"},
      {"--contexts", "0", "nfs://h/e", "/mnt"},
      {"--contexts", "65", "nfs://h/e", "/mnt"},
      {"--contexts", "4x", "nfs://h/e", "/mnt"},
      {"--unstable-limit", "-1", "nfs://h/e", "/mnt"},
      {"--unstable-limit", "", "nfs://h/e", "/mnt"},
      {"nfs://h/e", "/mnt", "--stats-file"},
      {"--bogus", "nfs://h/e", "/mnt"},
  };
  for (const auto& args : bad) {
    auto a = ParseBridgeArgs(args);
    std::string joined;
    for (const auto& s : args) joined += s + " ";
    EXPECT_FALSE(a.ok()) << joined;
    if (!a.ok()) {
      EXPECT_EQ(EINVAL, a.status().code()) << joined;
    }
  }
}

class StatsWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stats-writer-test.XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    dir_ = tmpl;
  }
  void TearDown() override { IgnoreError(RemoveTree(dir_), "test teardown"); }
  std::string dir_;
};

// Written at start, periodically, and once more at exit with the last values.
TEST_F(StatsWriterTest, WritesPeriodicallyAndAtExit) {
  std::string path = dir_ + "/stats.json";
  std::atomic<int> renders{0};
  {
    StatsWriter w(path, [&] { return "n=" + std::to_string(++renders); }, std::chrono::milliseconds(10));
    for (int i = 0; i < 200 && renders.load() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_GE(renders.load(), 3);
  }
  auto content = ReadFileToString(path);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ("n=" + std::to_string(renders.load()), *content);
}

TEST_F(StatsWriterTest, NoPathWritesNothing) {
  std::atomic<int> renders{0};
  {
    StatsWriter w("", [&] { return std::to_string(++renders); }, std::chrono::milliseconds(1));
    EXPECT_TRUE(w.WriteNow().ok());
  }
  EXPECT_EQ(0, renders.load());
}

TEST_F(StatsWriterTest, AnUnwritablePathIsAnError) {
  StatsWriter w(dir_ + "/missing/dir/stats.json", [] { return std::string("x"); }, std::chrono::hours(1));
  Status st = w.WriteNow();
  EXPECT_FALSE(st.ok());
}

}  // namespace
}  // namespace slacker::nfs_bridge
