// snapshots/<snap>.trace through the Backend (local store on FakeOs): written atomically
// beside a published snapshot only, read back bounded, never through a link, and gone
// with its snapshot.
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "os/fake_os.h"
#include "storage_backend/local_backend.h"

namespace slacker::storage_backend {
namespace {

template <typename T>
T Or(Result<T> r, T otherwise) {
  return r.ok() ? std::move(r).value() : otherwise;
}

class SnapshotTraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-trace-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = OpenLocalStore(os_, dir_ + "/store", "hostA");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    ASSERT_TRUE(AtomicWriteFile(store_->VolumePath("c1"), "image", false, 0600).ok());
    auto snap = store_->SnapshotVolume("c1", nlohmann::json::object());
    ASSERT_TRUE(snap.ok()) << snap.status().message();
    snap_ = *snap;
  }
  void TearDown() override {
    store_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }

  os::FakeOs os_;
  std::string dir_, snap_;
  std::unique_ptr<Backend> store_;
};

TEST_F(SnapshotTraceTest, WrittenTraceReadsBackAndReplacesTheOldOne) {
  ASSERT_TRUE(store_->WriteSnapshotTrace(snap_, "first").ok());
  ASSERT_TRUE(store_->WriteSnapshotTrace(snap_, "second").ok());
  auto t = store_->ReadSnapshotTrace(snap_, 1 << 20);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(*t, "second");
  EXPECT_EQ(Or<std::string>(ReadFileToString(store_->SnapshotFilePath(snap_, kTraceSuffix)), ""), "second");
  // A trace is a companion, not a snapshot: the listing is unchanged.
  EXPECT_EQ(Or(store_->ListSnapshots(), std::vector<std::string>{}), std::vector<std::string>{snap_});
}

TEST_F(SnapshotTraceTest, NoTraceIsENOENTAndALargerOneEFBIG) {
  auto none = store_->ReadSnapshotTrace(snap_, 1 << 20);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), ENOENT);
  ASSERT_TRUE(store_->WriteSnapshotTrace(snap_, std::string(100, 'x')).ok());
  auto big = store_->ReadSnapshotTrace(snap_, 99);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), EFBIG);
}

TEST_F(SnapshotTraceTest, NoTraceForAMissingSnapshotOrABadId) {
  EXPECT_EQ(store_->WriteSnapshotTrace(std::string(32, 'a'), "t").code(), ENOENT);
  EXPECT_EQ(store_->WriteSnapshotTrace("../../etc/passwd", "t").code(), EINVAL);
  EXPECT_EQ(store_->ReadSnapshotTrace("../x", 10).status().code(), EINVAL);
}

TEST_F(SnapshotTraceTest, ALinkPlantedAsTheTraceIsNeitherReadNorFollowed) {
  std::string secret = dir_ + "/secret";
  ASSERT_TRUE(AtomicWriteFile(secret, "host file", false, 0600).ok());
  ASSERT_EQ(::symlink(secret.c_str(), store_->SnapshotFilePath(snap_, kTraceSuffix).c_str()), 0);
  auto read = store_->ReadSnapshotTrace(snap_, 1 << 20);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), ELOOP);
  ASSERT_TRUE(store_->WriteSnapshotTrace(snap_, "trace").ok());  // replaces the link
  EXPECT_EQ(Or<std::string>(ReadFileToString(secret), ""), "host file");
  EXPECT_EQ(Or<std::string>(store_->ReadSnapshotTrace(snap_, 1 << 20), ""), "trace");
}

TEST_F(SnapshotTraceTest, RemoveSnapshotRemovesItsTrace) {
  ASSERT_TRUE(store_->WriteSnapshotTrace(snap_, "trace").ok());
  ASSERT_TRUE(store_->RemoveSnapshot(snap_).ok());
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(snap_, kTraceSuffix)));
}

}  // namespace
}  // namespace slacker::storage_backend
