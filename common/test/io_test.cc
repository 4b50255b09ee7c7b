#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/files.h"
#include "common/io.h"

namespace slacker {
namespace {

// A source that yields its data `chunk` bytes at a time and counts what it handed out.
class ChunkSource : public ByteSource {
 public:
  ChunkSource(std::string data, size_t chunk) : data_(std::move(data)), chunk_(chunk) {}
  Result<size_t> Read(void* buf, size_t n) override {
    size_t k = std::min({n, chunk_, data_.size() - pos_});
    std::copy_n(data_.data() + pos_, k, static_cast<char*>(buf));
    pos_ += k;
    return k;
  }
  size_t pos_ = 0;

 private:
  std::string data_;
  size_t chunk_;
};

TEST(ReadAtMostTest, ReadsEverythingUpToTheLimit) {
  for (size_t chunk : {1u, 7u, 100000u}) {
    ChunkSource src(std::string(1000, 'a'), chunk);
    auto r = ReadAtMost(src, 1000, "stream");
    ASSERT_TRUE(r.ok()) << chunk;
    EXPECT_EQ(1000u, r->size());
  }
  StringSource empty("");
  auto r = ReadAtMost(empty, 0, "stream");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ("", *r);
}

// One byte over is EFBIG, and the source is not drained to its end.
TEST(ReadAtMostTest, OneByteOverIsEfbigWithoutReadingEverything) {
  ChunkSource over(std::string(1001, 'a'), 100);
  auto r = ReadAtMost(over, 1000, "reference tar");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(EFBIG, r.status().code());
  EXPECT_EQ("reference tar is larger than 1000 bytes", r.status().message());
  ChunkSource huge(std::string(1 << 20, 'a'), 4096);
  EXPECT_FALSE(ReadAtMost(huge, 10, "x").ok());
  EXPECT_LT(huge.pos_, 8192u + 10);
}

class ReadFileAtMostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/read-at-most.XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    dir_ = tmpl;
  }
  void TearDown() override { IgnoreError(RemoveTree(dir_), "test teardown"); }
  std::string dir_;
};

TEST_F(ReadFileAtMostTest, LimitIsInclusive) {
  std::string path = dir_ + "/f";
  ASSERT_TRUE(AtomicWriteFile(path, "12345", false).ok());
  auto ok = ReadFileAtMost(path, 5);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ("12345", *ok);
  auto over = ReadFileAtMost(path, 4);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(EFBIG, over.status().code());
  EXPECT_NE(std::string::npos, over.status().message().find(path));
}

TEST_F(ReadFileAtMostTest, NoFollowRefusesASymlink) {
  std::string path = dir_ + "/f", link = dir_ + "/l";
  ASSERT_TRUE(AtomicWriteFile(path, "x", false).ok());
  ASSERT_EQ(0, ::symlink(path.c_str(), link.c_str()));
  EXPECT_TRUE(ReadFileAtMost(link, 10).ok());
  auto r = ReadFileAtMost(link, 10, O_NOFOLLOW);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ELOOP, r.status().code());
}

TEST_F(ReadFileAtMostTest, MissingFileIsEnoent) {
  EXPECT_EQ(ENOENT, ReadFileAtMost(dir_ + "/missing", 10).status().code());
}

}  // namespace
}  // namespace slacker
