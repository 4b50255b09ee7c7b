// EnsureEmbeddedStore on FakeOs: the XFS image is really made (mkfs.xfs on a plain file),
// the loop and mount are fake.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "common/files.h"
#include "loopdev/embedded_store.h"
#include "loopdev/mount.h"
#include "loopdev/test/scratch_dir.h"
#include "os/fake_os.h"

namespace slacker::loopdev {
namespace {

constexpr uint64_t kSize = 512ull << 20;  // above mkfs.xfs's minimum

class EmbeddedStoreFakeTest : public ::testing::Test {
 protected:
  os::FakeOs os_;
  testing::ScratchDir scratch_{"embedded-test"};
  std::string state_ = scratch_.path();
};

TEST_F(EmbeddedStoreFakeTest, FirstStartCreatesFormatsAndMountsTheImage) {
  auto dir = EnsureEmbeddedStore(os_, state_, kSize);
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  EXPECT_EQ(*dir, state_ + "/store");
  EXPECT_TRUE(PathExists(state_ + "/store.img"));
  EXPECT_FALSE(PathExists(state_ + "/store.img.tmp"));
  auto mounts = os_.Mounts();
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].fstype, "xfs");
  EXPECT_EQ(mounts[0].target, *dir);
  EXPECT_EQ(os_.Loops().at(0).backing_file, state_ + "/store.img");
}

TEST_F(EmbeddedStoreFakeTest, SecondCallReusesTheMount) {
  ASSERT_TRUE(EnsureEmbeddedStore(os_, state_, kSize).ok());
  auto dir = EnsureEmbeddedStore(os_, state_, kSize);
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  EXPECT_EQ(os_.Calls("Mount"), 1);
  EXPECT_EQ(os_.Mounts().size(), 1u);
}

TEST_F(EmbeddedStoreFakeTest, RemountsTheExistingImageWithoutReformatting) {
  ASSERT_TRUE(EnsureEmbeddedStore(os_, state_, kSize).ok());
  struct stat before, after;
  ASSERT_EQ(::stat((state_ + "/store.img").c_str(), &before), 0);
  ASSERT_TRUE(UnmountPath(os_, state_ + "/store").ok());
  auto dir = EnsureEmbeddedStore(os_, state_, kSize);
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  EXPECT_EQ(os_.Calls("Mount"), 2);
  ASSERT_EQ(::stat((state_ + "/store.img").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

TEST_F(EmbeddedStoreFakeTest, SomethingElseMountedThereIsRefused) {
  ASSERT_TRUE(MakeDirs(state_ + "/store").ok());
  ASSERT_TRUE(os_.Mount("/dev/sdz", state_ + "/store", "ext4", 0, "").ok());
  auto dir = EnsureEmbeddedStore(os_, state_, kSize);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), EBUSY);
  EXPECT_NE(dir.status().message().find("/dev/sdz"), std::string::npos) << dir.status().message();
}

TEST_F(EmbeddedStoreFakeTest, AStaleUnmountedLoopOfTheImageIsReleased) {
  ASSERT_TRUE(EnsureEmbeddedStore(os_, state_, kSize).ok());
  ASSERT_TRUE(UnmountPath(os_, state_ + "/store").ok());
  os::LoopConfig no_autoclear;
  no_autoclear.autoclear = false;
  ASSERT_TRUE(os_.LoopConfigure(5, state_ + "/store.img", no_autoclear).ok());
  ASSERT_TRUE(EnsureEmbeddedStore(os_, state_, kSize).ok());
  EXPECT_EQ(os_.Loops().count(5), 0u);
}

}  // namespace
}  // namespace slacker::loopdev
