#include "common/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace slacker {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/slacker-files-test.XXXXXX";
  return std::string(::mkdtemp(tmpl));
}

TEST(Files, AtomicWriteReplacesContentAndLeavesNoTemp) {
  std::string dir = TempDir();
  std::string p = dir + "/a.json";
  ASSERT_TRUE(AtomicWriteFile(p, "one").ok());
  ASSERT_TRUE(AtomicWriteFile(p, "two").ok());
  EXPECT_EQ(*ReadFileToString(p), "two");
  EXPECT_EQ(ListDir(dir)->size(), 1u);
  ASSERT_TRUE(RemoveTree(dir).ok());
  EXPECT_FALSE(PathExists(dir));
}

TEST(Files, ParseSizeUnderstandsDockerUnits) {
  EXPECT_EQ(*ParseSize("50M"), 50ull << 20);
  EXPECT_EQ(*ParseSize("10G"), 10ull << 30);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("1GiB"), 1ull << 30);
  EXPECT_EQ(*ParseSize("2kb"), 2048u);
  EXPECT_FALSE(ParseSize("abc").ok());
  EXPECT_FALSE(ParseSize("5Q").ok());
}

TEST(Files, SplitNonEmptyDropsEmptyPieces) {
  EXPECT_EQ(SplitNonEmpty("a,,b,", ','), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(SplitNonEmpty("/v1/snapshots/x", '/'), (std::vector<std::string>{"v1", "snapshots", "x"}));
  EXPECT_TRUE(SplitNonEmpty("", ',').empty());
  EXPECT_TRUE(SplitNonEmpty(",,", ',').empty());
  EXPECT_EQ(SplitNonEmpty("one", ','), std::vector<std::string>{"one"});
}

TEST(Files, RandomHexIsHexOfTheRightLengthAndVaries) {
  std::string a = RandomHex(16), b = RandomHex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace slacker
