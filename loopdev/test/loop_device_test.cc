// LoopDevice attach/detach, FindLoopsBacking and WriteSectors on FakeOs.
#include <unistd.h>

#include <fcntl.h>

#include <gtest/gtest.h>

#include "common/files.h"
#include "loopdev/ext4_format.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"
#include "loopdev/test/scratch_dir.h"
#include "os/fake_os.h"

namespace slacker::loopdev {
namespace {

class LoopFakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(AtomicWriteFile(a_, "a", false).ok());
    ASSERT_TRUE(AtomicWriteFile(b_, "b", false).ok());
  }
  os::FakeOs os_;
  testing::ScratchDir scratch_{"loop-test"};
  std::string dir_ = scratch_.path(), a_ = scratch_ / "a.img", b_ = scratch_ / "b.img";
};

TEST_F(LoopFakeTest, AttachBindsAFreeDevice) {
  auto loop = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  ASSERT_TRUE(loop.ok()) << loop.status().message();
  EXPECT_EQ(loop->index(), 0);
  EXPECT_EQ(loop->path(), "/dev/loop0");
  EXPECT_EQ(os_.Loops().at(0).backing_file, a_);
}

TEST_F(LoopFakeTest, AttachRetriesWhenAnotherAttacherWinsTheRace) {
  os_.FailNext("LoopConfigure", EBUSY);
  auto loop = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  ASSERT_TRUE(loop.ok()) << loop.status().message();
  EXPECT_EQ(os_.Calls("LoopGetFree"), 2);
}

TEST_F(LoopFakeTest, AttachOfAMissingFileFailsWithItsName) {
  auto loop = LoopDevice::Attach(os_, dir_ + "/missing.img", os::LoopConfig{});
  ASSERT_FALSE(loop.ok());
  EXPECT_EQ(loop.status().code(), ENOENT);
  EXPECT_NE(loop.status().message().find("missing.img"), std::string::npos);
}

TEST_F(LoopFakeTest, DetachClearsTheDevice) {
  auto loop = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  ASSERT_TRUE(loop.ok());
  EXPECT_TRUE(loop->Detach().ok());
  EXPECT_TRUE(os_.Loops().empty());
  EXPECT_EQ(loop->index(), -1);
}

TEST_F(LoopFakeTest, MovedFromDeviceIsEmpty) {
  auto loop = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  ASSERT_TRUE(loop.ok());
  LoopDevice first = std::move(loop).value();
  LoopDevice second = std::move(first);
  EXPECT_EQ(first.index(), -1);  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(second.index(), 0);
  EXPECT_FALSE(first.Detach().ok());
}

TEST_F(LoopFakeTest, FindLoopsBackingMatchesCanonicalPaths) {
  auto l0 = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  auto l1 = LoopDevice::Attach(os_, b_, os::LoopConfig{});
  auto l2 = LoopDevice::Attach(os_, dir_ + "/./a.img", os::LoopConfig{});
  ASSERT_TRUE(l0.ok() && l1.ok() && l2.ok());
  ASSERT_EQ(::symlink(a_.c_str(), (dir_ + "/link.img").c_str()), 0);
  auto found = FindLoopsBacking(os_, dir_ + "/link.img");
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(*found, (std::vector<int>{0, 2}));
}

// A loop device still holding a deleted file matches that path for cleanup only: the file
// made since at the same path is another inode, whose file system it is not.
TEST_F(LoopFakeTest, ALoopOfADeletedFileIsNotTheNewFileAtItsPath) {
  auto l0 = LoopDevice::Attach(os_, a_, os::LoopConfig{});  // held while the test runs
  ASSERT_TRUE(l0.ok());
  // The kernel's loop device holds the file open: its inode cannot be reused.
  UniqueFd held(::open(a_.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(held.valid());
  ASSERT_EQ(::unlink(a_.c_str()), 0);
  ASSERT_TRUE(AtomicWriteFile(a_, "a again", false).ok());
  auto live = FindLoopsBacking(os_, a_, Deleted::kNo);
  ASSERT_TRUE(live.ok()) << live.status().message();
  EXPECT_TRUE(live->empty());
  auto all = FindLoopsBacking(os_, a_);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, std::vector<int>{0});
}

TEST_F(LoopFakeTest, FindLoopsBackingOfAnUnusedFileIsEmpty) {
  auto l0 = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  ASSERT_TRUE(l0.ok());
  auto found = FindLoopsBacking(os_, b_);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->empty());
}

TEST_F(LoopFakeTest, WriteSectorsReadsField7OfStat) {
  ASSERT_TRUE(MakeDirs(dir_ + "/mnt").ok());
  auto loop = LoopDevice::Attach(os_, a_, os::LoopConfig{});
  ASSERT_TRUE(loop.ok());
  ASSERT_TRUE(MountExt4(os_, loop->path(), dir_ + "/mnt", false).ok());
  auto before = WriteSectors(os_, 0);
  ASSERT_TRUE(before.ok()) << before.status().message();
  os_.RecordWrite(dir_ + "/mnt", 16);
  auto after = WriteSectors(os_, 0);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after - *before, 16u);
}

TEST_F(LoopFakeTest, WriteSectorsOfAnUnboundDeviceFails) {
  EXPECT_FALSE(WriteSectors(os_, 7).ok());
}

TEST_F(LoopFakeTest, GrowExt4RefusesShrinking) {
  ASSERT_TRUE(AtomicWriteFile(a_, std::string(8192, 'a'), false).ok());
  Status s = GrowExt4(os_, dir_ + "/mnt", a_, 4096);
  EXPECT_EQ(s.code(), EINVAL) << s.message();
}

}  // namespace
}  // namespace slacker::loopdev
