// The store's cluster key: created once, root-only, agreed on by racing workers, rotated
// and retired; planted links and FIFOs are not followed. No root needed.
#include "storage_backend/cluster_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "common/files.h"

namespace slacker::storage_backend {
namespace {

class ClusterKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cluster_key_test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { ASSERT_TRUE(RemoveTree(dir_).ok()); }
  std::string dir_;
};

// Scenario: a fresh store (or one from a release without keys) is opened.
TEST_F(ClusterKeyTest, FreshStoreGetsARandomRootOnlyKey) {
  auto keys = EnsureClusterKeys(dir_);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].size(), 64u);
  struct stat st;
  ASSERT_EQ(::lstat(JoinPath(dir_, kClusterKeyFile).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  auto again = EnsureClusterKeys(dir_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *keys);
  ASSERT_TRUE(MakeDirs(JoinPath(dir_, "x"), 0700).ok());
  auto other = EnsureClusterKeys(JoinPath(dir_, "x"));  // another store: another key
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0], (*keys)[0]);
}

// Scenario: eight workers start on a new store at once; they must all sign alike.
TEST_F(ClusterKeyTest, RacingWorkersAgreeOnOneKey) {
  std::vector<std::string> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] {
      auto k = EnsureClusterKeys(dir_);
      if (k.ok()) got[i] = (*k)[0];
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& k : got) EXPECT_EQ(k, got[0]);
  EXPECT_FALSE(got[0].empty());
  auto names = ListDir(dir_);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{kClusterKeyFile}) << "no temporary files left";
}

// Scenario: someone with write access to the share plants cluster.key as a link to a
// file they can read, or as a FIFO.
TEST_F(ClusterKeyTest, RefusesLinksAndFifos) {
  ASSERT_EQ(::symlink("/etc/hostname", JoinPath(dir_, kClusterKeyFile).c_str()), 0);
  auto k = EnsureClusterKeys(dir_);
  EXPECT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), ELOOP) << k.status().message();
  ASSERT_EQ(::unlink(JoinPath(dir_, kClusterKeyFile).c_str()), 0);
  ASSERT_EQ(::mkfifo(JoinPath(dir_, kClusterKeyFile).c_str(), 0600), 0);
  k = EnsureClusterKeys(dir_);
  EXPECT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("not a regular file"), std::string::npos) << k.status().message();
}

// Scenario: the operator's --cluster-key FILE, read the same way by slackerd,
// slacker-snapshotter and slackerctl (the one reader): lines are keys, current first.
TEST_F(ClusterKeyTest, KeyFileLinesAreKeysCurrentFirst) {
  std::string path = JoinPath(dir_, "mine");
  ASSERT_TRUE(AtomicWriteFile(path, "new \r\n\n old\n").ok());
  auto keys = ReadKeyFile(path);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  EXPECT_EQ(*keys, (std::vector<std::string>{"new", " old"}));
}

// Scenario: an empty key file (or one of blank lines) would sign with an empty HMAC key:
// every program refuses it (slackerctl accepted it before issue 18).
TEST_F(ClusterKeyTest, KeyFileWithoutAKeyIsRefused) {
  for (const char* content : {"", "\n", "\r\n \n\n"}) {
    std::string path = JoinPath(dir_, "empty");
    ASSERT_TRUE(AtomicWriteFile(path, content).ok());
    auto keys = ReadKeyFile(path);
    ASSERT_FALSE(keys.ok()) << "content " << testing::PrintToString(content);
    EXPECT_EQ(keys.status().code(), EINVAL);
    EXPECT_NE(keys.status().message().find("holds no key"), std::string::npos) << keys.status().message();
  }
  EXPECT_EQ(ReadKeyFile(JoinPath(dir_, "missing")).status().code(), ENOENT);
}

// Scenario: --cluster-key pointed at a FIFO or a huge file: a clear error, no hang.
TEST_F(ClusterKeyTest, KeyFileThatIsAFifoOrHugeIsRefused) {
  std::string fifo = JoinPath(dir_, "fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_FALSE(ReadKeyFile(fifo).ok());
  std::string huge = JoinPath(dir_, "huge");
  ASSERT_TRUE(AtomicWriteFile(huge, std::string(65 * 1024, 'k')).ok());
  auto keys = ReadKeyFile(huge);
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), EFBIG);
}

TEST(KeyIdTest, IsTheFirst12HexOfTheKeysSha256) {
  EXPECT_EQ(KeyId("abc"), "ba7816bf8f01");
}

// Scenario: rotate keeps the old key accepted (second in the ring); retire drops it.
TEST_F(ClusterKeyTest, RotateThenRetire) {
  auto first = EnsureClusterKeys(dir_);
  ASSERT_TRUE(first.ok());
  auto r = RotateClusterKey(dir_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto during = ReadClusterKeys(dir_);
  ASSERT_TRUE(during.ok());
  ASSERT_EQ(during->size(), 2u);
  EXPECT_NE((*during)[0], (*first)[0]);
  EXPECT_EQ((*during)[1], (*first)[0]);
  EXPECT_EQ(r->new_key_id, KeyId((*during)[0]));
  EXPECT_EQ(r->previous_key_ids, std::vector<std::string>{KeyId((*first)[0])});
  struct stat st;
  ASSERT_EQ(::stat(JoinPath(dir_, kPreviousClusterKeysFile).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto retired = RetirePreviousClusterKeys(dir_);
  ASSERT_TRUE(retired.ok());
  EXPECT_EQ(*retired, 1u);
  auto after = ReadClusterKeys(dir_);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, std::vector<std::string>{(*during)[0]});
}

}  // namespace
}  // namespace slacker::storage_backend
