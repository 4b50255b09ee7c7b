#include "os/fake_os.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace slacker::os {
namespace {

TEST(FakeOs, UnmountOfTheLastMountAutoclearsItsLoop) {
  FakeOs fos;
  char tmpl[] = "/tmp/fakeos.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  auto idx = fos.LoopGetFree();
  ASSERT_TRUE(idx.ok());
  ASSERT_TRUE(fos.LoopConfigure(*idx, dir, LoopConfig{}).ok());
  ASSERT_TRUE(fos.Mount(fmt::format("/dev/loop{}", *idx), dir, "ext4", 0, "").ok());
  EXPECT_NE(fos.ReadKernelFile("/proc/self/mountinfo")->find(dir), std::string::npos);
  EXPECT_EQ(*fos.ReadKernelFile(fmt::format("/sys/block/loop{}/loop/backing_file", *idx)), dir + "\n");
  ASSERT_TRUE(fos.Unmount(dir, 0).ok());
  EXPECT_TRUE(fos.Loops().empty());
  EXPECT_FALSE(fos.IsMounted(dir));
  ::rmdir(dir.c_str());
}

TEST(FakeOs, InjectedFailureHitsOnlyTheNextCall) {
  FakeOs fos;
  fos.FailNext("Freeze", ENOSPC);
  Status s = fos.Freeze("/x");
  EXPECT_EQ(s.code(), ENOSPC);
  EXPECT_TRUE(fos.Freeze("/x").ok());
  EXPECT_EQ(fos.Calls("Freeze"), 2);
}

}  // namespace
}  // namespace slacker::os
