// Skeleton round trips: ApplyTar records a skeleton, OpenSkeletonStream must rebuild the
// exact input bytes from it and the applied tree.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <optional>
#include <random>

#include "common/hash.h"
#include "registry_shim/apply.h"
#include "registry_shim/skeleton.h"
#include "registry_shim/test/tree_test_util.h"

namespace slacker::registry_shim {
namespace {

using testing::DirEntry;
using testing::FileEntry;
using testing::HardlinkEntry;
using testing::MakeTar;
using testing::ReadFileOrDie;
using testing::ScratchDir;
using testing::Shell;
using testing::SymlinkEntry;
using testing::WriteFileOrDie;

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class SkeletonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (ApplyTar sets owners and device nodes)";
    root_ = scratch_.Sub("root");
    skel_ = scratch_.Sub("layer.skel");
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  }

  // Applies `tar` with a skeleton; returns the stream rebuilt from skeleton + tree.
  std::string ApplyAndRebuild(const std::string& tar) {
    SkeletonWriter writer;
    EXPECT_TRUE(writer.Open(skel_).ok());
    StringSource src(tar);
    auto stats = ApplyTar(src, root_, &writer);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    Status closed = writer.Close();
    EXPECT_TRUE(closed.ok()) << closed.ToString();
    return Rebuild();
  }

  std::string Rebuild(std::string* error_out = nullptr) {
    auto stream = OpenSkeletonStream(skel_, root_);
    EXPECT_TRUE(stream.ok()) << stream.status().ToString();
    if (!stream.ok()) return "";
    std::string error;
    std::string out = testing::ReadSource(**stream, &error);
    if (error_out != nullptr) {
      *error_out = error;
    } else {
      EXPECT_EQ(error, "");
    }
    return out;
  }

  uint64_t SkeletonSize() const {
    struct stat st {};
    EXPECT_EQ(::stat(skel_.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }

  ScratchDir scratch_;
  std::string root_, skel_;
};

// A source tree with every kind of entry GNU tar emits.
void MakeSourceTree(const std::string& src) {
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  WriteFileOrDie(src + "/empty", "");
  WriteFileOrDie(src + "/one", "1");
  WriteFileOrDie(src + "/b511", std::string(511, 'a'));
  WriteFileOrDie(src + "/b512", std::string(512, 'b'));
  WriteFileOrDie(src + "/b513", std::string(513, 'c'));
  WriteFileOrDie(src + "/random", RandomBytes((1 << 20) + 3, 1));
  WriteFileOrDie(src + "/zeros", std::string(64 << 10, '\0'));
  ASSERT_EQ(::mkdir((src + "/private").c_str(), 0700), 0);
  WriteFileOrDie(src + "/private/secret", "s");
  ASSERT_EQ(::chmod((src + "/private/secret").c_str(), 04755), 0);
  ASSERT_EQ(::chown((src + "/private/secret").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::symlink("one", (src + "/link").c_str()), 0);
  ASSERT_EQ(::link((src + "/b512").c_str(), (src + "/hard").c_str()), 0);
  ASSERT_EQ(::mkfifo((src + "/fifo").c_str(), 0600), 0);
  std::string deep = src + "/" + std::string(60, 'd');
  ASSERT_EQ(::mkdir(deep.c_str(), 0755), 0);
  deep += "/" + std::string(60, 'e');
  ASSERT_EQ(::mkdir(deep.c_str(), 0755), 0);
  WriteFileOrDie(deep + "/" + std::string(120, 'f'), "long name");
  ASSERT_EQ(::setxattr((src + "/one").c_str(), "user.note", "v", 1, 0), 0);
}

struct GnuTarCase {
  const char* scenario;
  const char* flags;
};

class SkeletonGnuTar : public SkeletonTest, public ::testing::WithParamInterface<GnuTarCase> {};

TEST_P(SkeletonGnuTar, RebuildsGnuTarOutputByteForByte) {
  std::string src = scratch_.Sub("src");
  MakeSourceTree(src);
  int status = 0;
  std::string tar = Shell(fmt::format("tar {} -C {} -cf - .", GetParam().flags, src), &status);
  ASSERT_EQ(status, 0);
  ASSERT_GT(tar.size(), 1u << 20);
  std::string rebuilt = ApplyAndRebuild(tar);
  EXPECT_EQ(rebuilt.size(), tar.size());
  EXPECT_EQ(Sha256Hex(rebuilt), Sha256Hex(tar));
  EXPECT_LT(SkeletonSize(), 64u << 10) << "bodies should stay in the tree";
  EXPECT_EQ(ReadFileOrDie(root_ + "/random"), ReadFileOrDie(src + "/random"));
}

INSTANTIATE_TEST_SUITE_P(
    Formats, SkeletonGnuTar,
    ::testing::Values(GnuTarCase{"gnu", ""}, GnuTarCase{"gnu_numeric", "--numeric-owner"},
                      GnuTarCase{"pax", "--format=pax"},
                      GnuTarCase{"pax_xattrs", "--format=pax --xattrs"},
                      GnuTarCase{"posix_sorted", "--format=posix --sort=name"}),
    [](const ::testing::TestParamInfo<GnuTarCase>& info) { return info.param.scenario; });

struct WriterCase {
  const char* scenario;
  std::vector<std::pair<TarEntry, std::string>> entries;
  size_t record_size;
  std::string after;  // bytes appended after the archive
  // Whether the 300000-byte body must be kept in the skeleton (removed or overwritten
  // later in the tar) or left in the tree; unset when the case has no big body.
  std::optional<bool> big_in_skeleton = std::nullopt;
};

class SkeletonWriterTar : public SkeletonTest, public ::testing::WithParamInterface<WriterCase> {};

TEST_P(SkeletonWriterTar, RebuildsByteForByte) {
  const WriterCase& c = GetParam();
  std::string tar = MakeTar(c.entries, c.record_size) + c.after;
  std::string rebuilt = ApplyAndRebuild(tar);
  EXPECT_EQ(rebuilt.size(), tar.size()) << c.scenario;
  EXPECT_TRUE(rebuilt == tar) << c.scenario;
  if (c.big_in_skeleton.has_value()) {
    EXPECT_EQ(SkeletonSize() > 300000, *c.big_in_skeleton)
        << c.scenario << ": skeleton " << SkeletonSize();
  }
}

std::vector<WriterCase> WriterCases() {
  std::string big = RandomBytes(300000, 2);
  std::string holes(1 << 20, '\0');
  holes.replace(8192, 3, "mid");
  return {
      {"duplicate_entries", {{FileEntry("a"), "first"}, {FileEntry("a"), "second version"}}, 0, ""},
      {"duplicate_big_entries",
       {{FileEntry("a"), big}, {FileEntry("a"), "second version"}},
       0,
       "",
       true},
      {"big_through_symlinked_parent",
       {{DirEntry("real"), ""}, {SymlinkEntry("sym", "real"), ""}, {FileEntry("sym/big"), big}},
       0,
       "",
       true},
      {"file_then_whiteout", {{FileEntry("f"), big}, {FileEntry(".wh.f"), ""}}, 0, "", true},
      {"file_replaced_by_dir",
       {{FileEntry("x"), "body"}, {DirEntry("x"), ""}, {FileEntry("x/y"), "y"}},
       0,
       ""},
      {"dir_whited_out_with_its_files",
       {{DirEntry("d"), ""}, {FileEntry("d/f"), big}, {FileEntry(".wh.d"), ""}},
       0,
       "",
       true},
      {"hardlinked_original_replaced",
       {{FileEntry("a"), "original"},
        {HardlinkEntry("b", "a"), ""},
        {FileEntry("a"), "replacement"}},
       0,
       ""},
      {"write_through_symlinked_parent",
       {{DirEntry("real"), ""},
        {SymlinkEntry("sym", "real"), ""},
        {FileEntry("sym/f"), "via link"}},
       0,
       ""},
      {"symlinked_parent_then_replaced",
       {{DirEntry("real"), ""},
        {SymlinkEntry("sym", "real"), ""},
        {FileEntry("sym/f"), "via link"},
        {FileEntry("real/f"), "direct"}},
       0,
       ""},
      {"opaque_keeps_same_tar_files",
       {{DirEntry("d"), ""},
        {FileEntry("d/kept"), "k"},
        {FileEntry("d/.wh..wh..opq"), ""},
        {FileEntry("d/n"), "n"}},
       0,
       ""},
      {"record_padding_10240", {{FileEntry("a"), "x"}, {FileEntry("b"), big}}, 10240, "", false},
      {"bytes_after_trailer", {{FileEntry("a"), "x"}}, 10240, std::string(5000, '\0') + "junk"},
      {"holes_and_empty_files", {{FileEntry("holes"), holes}, {FileEntry("empty"), ""}}, 0, ""},
      {"root_entry_and_whiteouts_only",
       {{DirEntry("./"), ""}, {FileEntry(".wh.nothing"), ""}},
       0,
       ""},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, SkeletonWriterTar, ::testing::ValuesIn(WriterCases()),
                         [](const ::testing::TestParamInfo<WriterCase>& info) {
                           return info.param.scenario;
                         });

TEST_F(SkeletonTest, StreamWithoutEndBlocksIsRebuilt) {
  std::string tar = MakeTar({{FileEntry("a"), "x"}});
  tar.resize(1024);
  EXPECT_TRUE(ApplyAndRebuild(tar) == tar);
}

TEST_F(SkeletonTest, ChangedTreeIsDetected) {
  std::string tar = MakeTar({{FileEntry("a"), "original"}, {FileEntry("b"), "other"}});
  ASSERT_TRUE(ApplyAndRebuild(tar) == tar);
  WriteFileOrDie(root_ + "/b", "grown since apply");
  std::string error;
  Rebuild(&error);
  EXPECT_NE(error.find("tree changed"), std::string::npos) << error;
  ASSERT_EQ(::unlink((root_ + "/b").c_str()), 0);
  Rebuild(&error);
  EXPECT_NE(error.find("No such file"), std::string::npos) << error;
}

TEST_F(SkeletonTest, TruncatedSkeletonIsRejectedUpFront) {
  std::string tar = MakeTar({{FileEntry("a"), "x"}});
  ASSERT_TRUE(ApplyAndRebuild(tar) == tar);
  ASSERT_EQ(::truncate(skel_.c_str(), static_cast<off_t>(SkeletonSize() - 3)), 0);
  auto stream = OpenSkeletonStream(skel_, root_);
  ASSERT_FALSE(stream.ok());
  EXPECT_NE(stream.status().message().find("skeleton"), std::string::npos)
      << stream.status().ToString();
}

TEST_F(SkeletonTest, NotASkeletonIsRejected) {
  WriteFileOrDie(skel_, "hello world, not a skeleton");
  EXPECT_FALSE(OpenSkeletonStream(skel_, root_).ok());
}

}  // namespace
}  // namespace slacker::registry_shim
