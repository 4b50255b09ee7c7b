// mountinfo parsing, MountExt4 flags, UnmountPath retries and MountedImage on FakeOs.
#include <sys/mount.h>

#include <gtest/gtest.h>

#include "common/files.h"
#include "loopdev/freeze.h"
#include "loopdev/mount.h"
#include "loopdev/test/scratch_dir.h"
#include "os/fake_os.h"

namespace slacker::loopdev {
namespace {

TEST(ParseMountInfo, DecodesFieldsAndOctalEscapes) {
  auto r = ParseMountInfo(
      "36 35 98:0 / /var/lib/slacker/mnt/my\\040layer rw,noatime master:1 - ext4 /dev/loop3 rw,noload\n"
      "37 36 7:4 /sub /a\\011b\\134c ro shared:2 master:3 - xfs /dev/with\\040space ro\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  const auto& a = (*r)[0];
  EXPECT_EQ(a.mount_id, 36);
  EXPECT_EQ(a.parent_id, 35);
  EXPECT_EQ(a.major, 98);
  EXPECT_EQ(a.minor, 0);
  EXPECT_EQ(a.root, "/");
  EXPECT_EQ(a.mount_point, "/var/lib/slacker/mnt/my layer");
  EXPECT_EQ(a.options, "rw,noatime");
  EXPECT_EQ(a.fstype, "ext4");
  EXPECT_EQ(a.source, "/dev/loop3");
  EXPECT_EQ(a.super_options, "rw,noload");
  const auto& b = (*r)[1];
  EXPECT_EQ(b.root, "/sub");
  EXPECT_EQ(b.mount_point, "/a\tb\\c");
  EXPECT_EQ(b.fstype, "xfs");
  EXPECT_EQ(b.source, "/dev/with space");
  EXPECT_EQ(b.options, "ro");
}

TEST(ParseMountInfo, NoOptionalFieldsAndNoTrailingNewline) {
  auto r = ParseMountInfo("1 0 8:1 / / rw - ext4 /dev/vda rw");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].mount_point, "/");
  EXPECT_EQ((*r)[0].source, "/dev/vda");
}

TEST(ParseMountInfo, MalformedLineIsAnErrorNamingTheLine) {
  auto r = ParseMountInfo("1 0 8:1 / / rw - ext4 /dev/vda rw\n2 1 8:1 / /x rw ext4\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos) << r.status().message();
}

TEST(ParseMountInfo, AnIncompleteEscapeIsKeptLiterally) {
  auto r = ParseMountInfo("1 0 8:1 / /a\\04 rw - ext4 /dev/vda rw\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].mount_point, "/a\\04");
}

TEST(FindMount, ReturnsTheTopmostMount) {
  auto r = ParseMountInfo("1 0 8:1 / /m rw - ext4 /dev/a rw\n2 1 8:2 / /m rw - ext4 /dev/b rw\n");
  ASSERT_TRUE(r.ok());
  const MountInfoEntry* m = FindMount(*r, "/m");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->source, "/dev/b");
  EXPECT_EQ(FindMount(*r, "/n"), nullptr);
}

class MountFakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MakeDirs(target_).ok());
    ASSERT_TRUE(AtomicWriteFile(image_, "image", false).ok());
  }
  os::FakeOs os_;
  testing::ScratchDir scratch_{"mount-test"};
  std::string target_ = scratch_ / "mnt", image_ = scratch_ / "layer.img";
};

TEST_F(MountFakeTest, MountExt4ReadWriteUsesNoatime) {
  ASSERT_TRUE(MountExt4(os_, "/dev/loop0", target_, false).ok());
  auto m = os_.Mounts();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].fstype, "ext4");
  EXPECT_EQ(m[0].flags, static_cast<unsigned long>(MS_NOATIME));
  EXPECT_EQ(m[0].data, "");
}

TEST_F(MountFakeTest, MountExt4ReadOnlyUsesNoload) {
  ASSERT_TRUE(MountExt4(os_, "/dev/loop0", target_, true).ok());
  auto m = os_.Mounts();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].flags, static_cast<unsigned long>(MS_RDONLY));
  EXPECT_EQ(m[0].data, "noload");
}

TEST_F(MountFakeTest, UnmountPathRetriesBusyThenSucceeds) {
  ASSERT_TRUE(MountExt4(os_, "/dev/loop0", target_, false).ok());
  os_.FailNext("Unmount", EBUSY);
  EXPECT_TRUE(UnmountPath(os_, target_).ok());
  EXPECT_EQ(os_.Calls("Unmount"), 2);
  EXPECT_FALSE(os_.IsMounted(target_));
}

TEST_F(MountFakeTest, UnmountPathOfANonMountIsOk) {
  EXPECT_TRUE(UnmountPath(os_, target_).ok());
}

TEST_F(MountFakeTest, UnmountPathPassesOtherErrorsThrough) {
  os_.FailNext("Unmount", EPERM);
  EXPECT_EQ(UnmountPath(os_, target_).code(), EPERM);
}

TEST_F(MountFakeTest, MountedImageUnmountsAndReleasesTheLoopOnDestruction) {
  {
    auto m = MountedImage::Mount(os_, image_, target_);
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m->device(), "/dev/loop0");
    EXPECT_TRUE(os_.IsMounted(target_));
    EXPECT_EQ(os_.Loops().size(), 1u);
  }
  EXPECT_FALSE(os_.IsMounted(target_));
  EXPECT_TRUE(os_.Loops().empty());
}

TEST_F(MountFakeTest, MountedImageReleaseKeepsTheMount) {
  {
    auto m = MountedImage::Mount(os_, image_, target_);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->Release(), target_);
  }
  EXPECT_TRUE(os_.IsMounted(target_));
}

TEST_F(MountFakeTest, MountedImageFailedMountLeavesNothingMounted) {
  os_.FailNext("Mount", EINVAL);
  auto m = MountedImage::Mount(os_, image_, target_);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(image_), std::string::npos);
  EXPECT_FALSE(os_.IsMounted(target_));
}

TEST_F(MountFakeTest, FrozenFsThawsOnDestruction) {
  {
    auto f = FrozenFs::Freeze(os_, target_);
    ASSERT_TRUE(f.ok());
    EXPECT_TRUE(os_.IsFrozen(target_));
  }
  EXPECT_FALSE(os_.IsFrozen(target_));
}

TEST_F(MountFakeTest, FrozenFsExplicitThawIsNotRepeated) {
  auto f = FrozenFs::Freeze(os_, target_);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->Thaw().ok());
  EXPECT_TRUE(f->Thaw().ok());
  EXPECT_EQ(os_.Calls("Thaw"), 1);
}

}  // namespace
}  // namespace slacker::loopdev
