// ReadExt4RegularFile on images built with FormatExt4 and debugfs: no root, no mount.
#include "loopdev/ext4_read.h"

#include <gtest/gtest.h>

#include "common/files.h"
#include "loopdev/ext4_format.h"
#include "loopdev/run_tool.h"
#include "loopdev/test/scratch_dir.h"

namespace slacker::loopdev {
namespace {

class Ext4ReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(scratch_.path().empty());
    ASSERT_TRUE(FormatExt4(image_, 32ull << 20).ok());
    ASSERT_TRUE(AtomicWriteFile(scratch_ / "body", "{\"format\":2}").ok());
    ASSERT_TRUE(AtomicWriteFile(scratch_ / "big", std::string(5000, 'x')).ok());
  }
  // Runs debugfs -w commands against the image.
  void Debugfs(const std::string& commands) {
    ASSERT_TRUE(AtomicWriteFile(scratch_ / "cmds", commands).ok());
    auto out = RunTool({"debugfs", "-w", "-f", scratch_ / "cmds", image_});
    ASSERT_TRUE(out.ok()) << out.status().message();
    ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
  }
  Result<std::string> Read() { return ReadExt4RegularFile(image_, ".slacker/ref.json", 4096); }

  testing::ScratchDir scratch_{"ext4-read-test"};
  std::string image_ = scratch_ / "layer.img";
};

TEST_F(Ext4ReadTest, ReadsARegularFile) {
  Debugfs("mkdir .slacker\nwrite " + (scratch_ / "body") + " .slacker/ref.json\n");
  auto got = Read();
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, "{\"format\":2}");
}

TEST_F(Ext4ReadTest, MissingIsEnoent) {
  EXPECT_EQ(Read().status().code(), ENOENT);
  Debugfs("mkdir .slacker\n");
  EXPECT_EQ(Read().status().code(), ENOENT);
}

// Scenario (issue 15): a layer puts a FIFO, a symlink to /dev/zero or to a host file, or a
// huge file at .slacker/ref.json, or makes .slacker a symlink: each is refused at once.
TEST_F(Ext4ReadTest, RefusesFifoSymlinksAndOversizeWithoutBlocking) {
  struct Case {
    const char* scenario;
    std::string commands;
    int code;
  };
  std::vector<Case> cases = {
      {"fifo", "mkdir .slacker\ncd .slacker\nmknod ref.json p\n", EINVAL},
      {"symlink to /dev/zero", "mkdir .slacker\nsymlink .slacker/ref.json /dev/zero\n", EINVAL},
      {"symlinked directory", "mkdir real\nwrite " + (scratch_ / "body") + " real/ref.json\nsymlink .slacker real\n",
       EINVAL},
      {"character device", "mkdir .slacker\ncd .slacker\nmknod ref.json c 1 5\n", EINVAL},
      {"directory", "mkdir .slacker\nmkdir .slacker/ref.json\n", EINVAL},
      {"over the limit", "mkdir .slacker\nwrite " + (scratch_ / "big") + " .slacker/ref.json\n", EFBIG},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scenario);
    ASSERT_TRUE(FormatExt4(image_, 32ull << 20).ok());
    Debugfs(c.commands);
    auto got = Read();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), c.code) << got.status().message();
  }
  EXPECT_EQ(ReadExt4RegularFile(image_, "../x", 10).status().code(), EINVAL);
}

}  // namespace
}  // namespace slacker::loopdev
