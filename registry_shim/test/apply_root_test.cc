// Root tests of ApplyTar on a scratch directory standing in for the mounted layer root
// (/tmp is ext4 here, like production layer roots).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "registry_shim/apply.h"
#include "registry_shim/test/canary_tree.h"
#include "registry_shim/test/tree_test_util.h"

namespace slacker::registry_shim {
namespace {

using testing::CanaryTree;
using testing::DirEntry;
using testing::FileEntry;
using testing::HardlinkEntry;
using testing::MakeTar;
using testing::ReadFileOrDie;
using testing::ScratchDir;
using testing::SymlinkEntry;
using testing::WriteFileOrDie;

class ApplyTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown, mknod, security.* xattrs)";
    root_ = scratch_.Sub("root");
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  }

  Result<ApplyStats> Apply(const std::string& tar) {
    StringSource src(tar);
    return ApplyTar(src, root_, nullptr);
  }
  std::string P(const std::string& rel) const { return root_ + "/" + rel; }
  struct stat Lstat(const std::string& rel) const {
    struct stat st {};
    EXPECT_EQ(::lstat(P(rel).c_str(), &st), 0) << rel;
    return st;
  }
  bool Exists(const std::string& rel) const {
    struct stat st;
    return ::lstat(P(rel).c_str(), &st) == 0;
  }
  void MkdirLower(const std::string& rel, mode_t mode = 0755) {
    ASSERT_EQ(::mkdir(P(rel).c_str(), mode), 0) << rel;
  }

  ScratchDir scratch_;
  std::string root_;
};

TEST_F(ApplyTarTest, RegularFileGetsContentModeAndSize) {
  auto stats = Apply(MakeTar({{DirEntry("etc"), ""}, {FileEntry("etc/motd", 0640), "hello\n"}}));
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->size, 6);
  EXPECT_EQ(stats->entries, 2u);
  EXPECT_EQ(ReadFileOrDie(P("etc/motd")), "hello\n");
  EXPECT_EQ(Lstat("etc/motd").st_mode & 07777, 0640u);
}

TEST_F(ApplyTarTest, MissingParentsAreCreated) {
  ASSERT_TRUE(Apply(MakeTar({{FileEntry("a/b/c"), "x"}})).ok());
  EXPECT_TRUE(S_ISDIR(Lstat("a/b").st_mode));
  EXPECT_EQ(Lstat("a/b").st_mode & 07777, 0755u);
}

TEST_F(ApplyTarTest, ExistingDirectoryIsMergedAndUpdated) {
  MkdirLower("d", 0700);
  WriteFileOrDie(P("d/lower"), "l");
  TarEntry d = DirEntry("d", 0751);
  d.uid = 12;
  d.gid = 34;
  ASSERT_TRUE(Apply(MakeTar({{d, ""}, {FileEntry("d/upper"), "u"}})).ok());
  struct stat st = Lstat("d");
  EXPECT_EQ(st.st_mode & 07777, 0751u);
  EXPECT_EQ(st.st_uid, 12u);
  EXPECT_EQ(st.st_gid, 34u);
  EXPECT_TRUE(Exists("d/lower"));
  EXPECT_TRUE(Exists("d/upper"));
}

TEST_F(ApplyTarTest, SymlinkIsCreatedVerbatim) {
  ASSERT_TRUE(Apply(MakeTar({{SymlinkEntry("bin", "usr/bin"), ""},
                             {SymlinkEntry("abs", "/etc/passwd"), ""}}))
                  .ok());
  char buf[64] = {};
  ASSERT_GT(::readlink(P("bin").c_str(), buf, sizeof buf), 0);
  EXPECT_STREQ(buf, "usr/bin");
  EXPECT_TRUE(S_ISLNK(Lstat("abs").st_mode));
}

TEST_F(ApplyTarTest, HardlinksToSameTarAndLowerFiles) {
  WriteFileOrDie(P("lower"), "from lower");
  ASSERT_TRUE(Apply(MakeTar({{FileEntry("a"), "A"},
                             {HardlinkEntry("b", "a"), ""},
                             {HardlinkEntry("c", "./lower"), ""}}))
                  .ok());
  EXPECT_EQ(Lstat("a").st_ino, Lstat("b").st_ino);
  EXPECT_EQ(Lstat("lower").st_ino, Lstat("c").st_ino);
  EXPECT_EQ(ReadFileOrDie(P("c")), "from lower");
}

TEST_F(ApplyTarTest, WhiteoutRemovesLowerTreeAndFile) {
  MkdirLower("a");
  MkdirLower("a/sub");
  WriteFileOrDie(P("a/sub/f"), "x");
  WriteFileOrDie(P("a/file"), "x");
  WriteFileOrDie(P("a/keep"), "x");
  ASSERT_TRUE(Apply(MakeTar({{FileEntry("a/.wh.sub"), ""}, {FileEntry("a/.wh.file"), ""}})).ok());
  EXPECT_FALSE(Exists("a/sub"));
  EXPECT_FALSE(Exists("a/file"));
  EXPECT_TRUE(Exists("a/keep"));
  EXPECT_FALSE(Exists("a/.wh.sub"));  // whiteouts are never materialised
}

TEST_F(ApplyTarTest, OpaqueDirectoryDropsLowerChildrenKeepsSameTarChildren) {
  MkdirLower("d");
  MkdirLower("d/lowerdir");
  WriteFileOrDie(P("d/lowerdir/f"), "x");
  WriteFileOrDie(P("d/lowerfile"), "x");
  ASSERT_TRUE(Apply(MakeTar({{DirEntry("d"), ""},
                             {FileEntry("d/before"), "b"},
                             {FileEntry("d/.wh..wh..opq"), ""},
                             {FileEntry("d/after"), "a"}}))
                  .ok());
  EXPECT_FALSE(Exists("d/lowerdir"));
  EXPECT_FALSE(Exists("d/lowerfile"));
  EXPECT_TRUE(Exists("d/before"));
  EXPECT_TRUE(Exists("d/after"));
  EXPECT_FALSE(Exists("d/.wh..wh..opq"));
}

TEST_F(ApplyTarTest, XattrsIncludingSecurityCapability) {
  TarEntry f = FileEntry("ping", 04755);
  f.uid = 0;
  // VFS_CAP_REVISION_2, cap_net_raw effective+permitted.
  std::string cap(
      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  f.xattrs = {{"user.origin", "tar"}, {"security.capability", cap}, {"trusted.t", "1"}};
  TarEntry d = DirEntry("dir");
  d.xattrs = {{"user.d", "dv"}};
  ASSERT_TRUE(Apply(MakeTar({{f, "elf"}, {d, ""}})).ok());
  char buf[64];
  ssize_t n = ::lgetxattr(P("ping").c_str(), "security.capability", buf, sizeof buf);
  ASSERT_EQ(n, 20) << strerror(errno);
  EXPECT_EQ(std::string(buf, 20), cap);
  n = ::lgetxattr(P("ping").c_str(), "user.origin", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "tar");
  n = ::lgetxattr(P("ping").c_str(), "trusted.t", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "1");
  n = ::lgetxattr(P("dir").c_str(), "user.d", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "dv");
  EXPECT_EQ(Lstat("ping").st_mode & 07777, 04755u);  // chmod after the capability
}

TEST_F(ApplyTarTest, XattrsOnEntriesWithoutAnOpenFd) {
  // Symlinks, fifos and hardlinks get their xattrs through the parent fd, never by path.
  TarEntry l = SymlinkEntry("l", "target");
  l.xattrs = {{"trusted.l", "1"}};
  TarEntry f = FileEntry("fifo");
  f.typeflag = kTarFifo;
  f.xattrs = {{"trusted.f", "2"}};
  TarEntry h = HardlinkEntry("h", "file");
  h.xattrs = {{"user.h", "3"}};
  ASSERT_TRUE(Apply(MakeTar({{FileEntry("file"), "x"}, {l, ""}, {f, ""}, {h, ""}})).ok());
  char buf[8];
  EXPECT_EQ(::lgetxattr(P("l").c_str(), "trusted.l", buf, sizeof buf), 1) << strerror(errno);
  EXPECT_EQ(::lgetxattr(P("fifo").c_str(), "trusted.f", buf, sizeof buf), 1) << strerror(errno);
  EXPECT_EQ(::lgetxattr(P("file").c_str(), "user.h", buf, sizeof buf), 1) << strerror(errno);
}

TEST_F(ApplyTarTest, CharDeviceAndFifo) {
  TarEntry c = FileEntry("dev/null", 0666);
  c.typeflag = kTarCharDevice;
  c.devmajor = 1;
  c.devminor = 3;
  TarEntry b = FileEntry("dev/loop9", 0660);
  b.typeflag = kTarBlockDevice;
  b.devmajor = 7;
  b.devminor = 9;
  TarEntry f = FileEntry("run/fifo", 0620);
  f.typeflag = kTarFifo;
  ASSERT_TRUE(Apply(MakeTar({{c, ""}, {b, ""}, {f, ""}})).ok());
  struct stat st = Lstat("dev/null");
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_TRUE(S_ISBLK(Lstat("dev/loop9").st_mode));
  EXPECT_EQ(Lstat("dev/loop9").st_rdev, makedev(7, 9));
  EXPECT_TRUE(S_ISFIFO(Lstat("run/fifo").st_mode));
  EXPECT_EQ(Lstat("run/fifo").st_mode & 07777, 0620u);
}

TEST_F(ApplyTarTest, OwnerAndSetuidSetgidStickyModes) {
  TarEntry f = FileEntry("su", 06755);
  f.uid = 1234;
  f.gid = 5678;
  TarEntry d = DirEntry("tmp", 01777);
  d.uid = 7;
  TarEntry l = SymlinkEntry("link", "su");
  l.uid = 42;
  l.gid = 43;
  ASSERT_TRUE(Apply(MakeTar({{f, "x"}, {d, ""}, {l, ""}})).ok());
  struct stat st = Lstat("su");
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode & 07777, 06755u);
  EXPECT_EQ(Lstat("tmp").st_mode & 07777, 01777u);
  EXPECT_EQ(Lstat("tmp").st_uid, 7u);
  EXPECT_EQ(Lstat("link").st_uid, 42u);  // the link itself, not its target
  EXPECT_EQ(Lstat("su").st_uid, 1234u);
}

TEST_F(ApplyTarTest, MtimesOfFilesSymlinksAndDirectories) {
  TarEntry d = DirEntry("d");
  d.mtime_sec = 1000;
  TarEntry f = FileEntry("d/f");
  f.mtime_sec = 2000;
  f.mtime_nsec = 500;
  TarEntry l = SymlinkEntry("d/l", "f");
  l.mtime_sec = 3000;
  TarEntry sub = DirEntry("d/sub");
  sub.mtime_sec = 4000;
  ASSERT_TRUE(
      Apply(MakeTar({{d, ""}, {f, "x"}, {l, ""}, {sub, ""}, {FileEntry("d/sub/g"), "y"}})).ok());
  EXPECT_EQ(Lstat("d").st_mtim.tv_sec, 1000);  // set after its children were written
  EXPECT_EQ(Lstat("d/sub").st_mtim.tv_sec, 4000);
  EXPECT_EQ(Lstat("d/f").st_mtim.tv_sec, 2000);
  EXPECT_EQ(Lstat("d/f").st_mtim.tv_nsec, 500);
  EXPECT_EQ(Lstat("d/l").st_mtim.tv_sec, 3000);
}

TEST_F(ApplyTarTest, DirectoryTimesGoOnlyToTheDirectoryTheEntryMade) {
  // p/d's times are set at the end, when p has become a symlink to q: q/d, a lower
  // directory the tar never named, keeps its times.
  MkdirLower("q");
  MkdirLower("q/d");
  timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, P("q/d").c_str(), old, AT_SYMLINK_NOFOLLOW), 0);
  TarEntry d = DirEntry("p/d");
  d.mtime_sec = 5000;
  ASSERT_TRUE(Apply(MakeTar({{DirEntry("p"), ""}, {d, ""}, {SymlinkEntry("p", "q"), ""}})).ok());
  EXPECT_EQ(Lstat("q/d").st_mtim.tv_sec, 1000);
}

TEST_F(ApplyTarTest, ZeroRunsBecomeHoles) {
  std::string body(8 << 20, '\0');
  body.replace(0, 4, "head");
  body.replace(body.size() - 4, 4, "tail");
  ASSERT_TRUE(Apply(MakeTar({{FileEntry("sparse"), body}})).ok());
  struct stat st = Lstat("sparse");
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "zeros were written instead of skipped";
  EXPECT_EQ(ReadFileOrDie(P("sparse")), body);
}

TEST_F(ApplyTarTest, EntryOfAnotherTypeReplacesExisting) {
  MkdirLower("was_dir");
  WriteFileOrDie(P("was_dir/child"), "x");
  WriteFileOrDie(P("was_file"), "x");
  ASSERT_EQ(::symlink("/etc", P("was_link").c_str()), 0);
  ASSERT_TRUE(Apply(MakeTar({{FileEntry("was_dir"), "now a file"},
                             {DirEntry("was_file"), ""},
                             {FileEntry("was_link"), "now a file"}}))
                  .ok());
  EXPECT_EQ(ReadFileOrDie(P("was_dir")), "now a file");
  EXPECT_TRUE(S_ISDIR(Lstat("was_file").st_mode));
  EXPECT_TRUE(S_ISREG(Lstat("was_link").st_mode));
}

TEST_F(ApplyTarTest, RootEntryIsSkipped) {
  ASSERT_EQ(::chmod(root_.c_str(), 0700), 0);
  ASSERT_TRUE(Apply(MakeTar({{DirEntry("./", 0777), ""}, {DirEntry(".", 0777), ""}})).ok());
  struct stat st;
  ASSERT_EQ(::stat(root_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(ApplyTarTest, TruncatedTarFailsNamingTheProblem) {
  std::string tar = MakeTar({{FileEntry("f"), std::string(2000, 'x')}});
  auto stats = Apply(tar.substr(0, 1000));
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("truncated"), std::string::npos)
      << stats.status().ToString();
}

// Hostile tars: each must be rejected, or must land inside the root; nothing outside the
// root may change.
struct HostileCase {
  const char* scenario;
  std::vector<std::pair<TarEntry, std::string>> entries;
  std::string error;     // substring of the error; empty: must succeed
  std::string lands_at;  // when it succeeds: relative path inside the root that got the file
};

class ApplyTarHostile : public ApplyTarTest, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(ApplyTarHostile, NeverTouchesTheHost) {
  const HostileCase& c = GetParam();
  std::string outside = scratch_.Sub("outside");
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  WriteFileOrDie(outside + "/passwd", "host secret");
  std::string host_passwd = ReadFileOrDie("/etc/passwd");
  struct stat host_before;
  ASSERT_EQ(::stat("/etc/passwd", &host_before), 0);
  std::vector<std::pair<TarEntry, std::string>> entries = c.entries;
  for (auto& [e, body] : entries) {  // "@OUT@" stands for the scratch dir outside the root
    if (auto pos = e.linkname.find("@OUT@"); pos != std::string::npos)
      e.linkname.replace(pos, 5, outside);
  }
  auto stats = Apply(MakeTar(entries));
  if (c.error.empty()) {
    ASSERT_TRUE(stats.ok()) << c.scenario << ": " << stats.status().ToString();
    EXPECT_EQ(ReadFileOrDie(P(c.lands_at)), "pwned") << c.scenario;
  } else {
    ASSERT_FALSE(stats.ok()) << c.scenario;
    EXPECT_NE(stats.status().message().find(c.error), std::string::npos)
        << c.scenario << ": " << stats.status().message();
  }
  EXPECT_EQ(ReadFileOrDie(outside + "/passwd"), "host secret") << c.scenario;
  int ls_status = 0;
  EXPECT_EQ(testing::Shell("ls -A " + outside, &ls_status), "passwd\n") << c.scenario;
  EXPECT_EQ(ReadFileOrDie("/etc/passwd"), host_passwd) << c.scenario;
  struct stat host_after;
  ASSERT_EQ(::stat("/etc/passwd", &host_after), 0);
  EXPECT_EQ(host_after.st_nlink, host_before.st_nlink) << c.scenario;
  EXPECT_EQ(host_after.st_mtim.tv_sec, host_before.st_mtim.tv_sec) << c.scenario;
}

std::vector<HostileCase> HostileCases() {
  return {
      {"dotdot", {{FileEntry("../x"), "pwned"}}, "tar entry ../x escapes the layer root", ""},
      {"dotdot deep",
       {{FileEntry("a/../../../etc/passwd"), "pwned"}},
       "escapes the layer root",
       ""},
      {"absolute", {{FileEntry("/abs"), "pwned"}}, "tar entry /abs escapes the layer root", ""},
      {"symlink to / then write through it",
       {{SymlinkEntry("evil", "/"), ""}, {FileEntry("evil/etc/passwd"), "pwned"}},
       "",
       "etc/passwd"},
      {"symlink to outside dir then write through it",
       // RESOLVE_IN_ROOT resolves the absolute target against the layer root, where it
       // does not exist: the dangling link cannot be made a directory either.
       {{SymlinkEntry("evil", "@OUT@"), ""}, {FileEntry("evil/passwd"), "pwned"}},
       "No such file",
       ""},
      {"symlink dotdot chain",
       {{DirEntry("etc"), ""},
        {SymlinkEntry("l1", "../../../.."), ""},
        {SymlinkEntry("l2", "l1/etc"), ""},
        {FileEntry("l2/passwd"), "pwned"}},
       "",
       "etc/passwd"},
      {"hardlink to absolute",
       {{HardlinkEntry("h", "/etc/passwd"), ""}},
       "hardlink target /etc/passwd escapes",
       ""},
      {"hardlink dotdot",
       {{HardlinkEntry("h", "../../../../etc/passwd"), ""}},
       "escapes the layer root",
       ""},
      {"hardlink through symlink to /",
       {{SymlinkEntry("s", "/etc"), ""}, {HardlinkEntry("h", "s/passwd"), ""}},
       "No such file",
       ""},
      {"symlink replaced final component is not followed",
       {{SymlinkEntry("p", "@OUT@/passwd"), ""}, {FileEntry("p"), "pwned"}},
       "",
       "p"},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, ApplyTarHostile, ::testing::ValuesIn(HostileCases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           std::string name = info.param.scenario;
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

// Tars that aim at canaries outside the root (a mode-0600 file, a mode-0700 directory)
// through symlinks, hardlinks, whiteouts and opaque markers: each is refused or lands
// inside the root, and the canaries keep their mode, owner, times, xattrs and content.
struct CanaryCase {
  const char* scenario;
  // Symlinks the lower tree already holds (name, target); "@OUT@" in a target or a tar
  // linkname stands for the canary directory outside the root.
  std::vector<std::pair<std::string, std::string>> lower_symlinks;
  std::vector<std::pair<TarEntry, std::string>> entries;
  std::string error;  // substring of the error; empty: the apply must succeed
};

void PrintTo(const CanaryCase& c, std::ostream* os) { *os << c.scenario; }

class ApplyTarCanary : public ApplyTarTest, public ::testing::WithParamInterface<CanaryCase> {};

std::string WithOut(std::string s, const std::string& out) {
  if (auto pos = s.find("@OUT@"); pos != std::string::npos) s.replace(pos, 5, out);
  return s;
}

TEST_P(ApplyTarCanary, CanariesOutsideTheRootAreUnchanged) {
  const CanaryCase& c = GetParam();
  auto canaries = CanaryTree::Create(scratch_.Sub("outside"));
  ASSERT_TRUE(canaries.ok()) << canaries.status().ToString();
  const std::string& out = canaries->path();
  for (const auto& [name, target] : c.lower_symlinks)
    ASSERT_EQ(::symlink(WithOut(target, out).c_str(), P(name).c_str()), 0) << name;
  std::vector<std::pair<TarEntry, std::string>> entries = c.entries;
  for (auto& [e, body] : entries) e.linkname = WithOut(e.linkname, out);
  auto before = canaries->Snapshot();
  ASSERT_TRUE(before.ok()) << before.status().ToString();

  auto stats = Apply(MakeTar(entries));
  if (c.error.empty()) {
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  } else {
    ASSERT_FALSE(stats.ok()) << "must be refused";
    EXPECT_NE(stats.status().message().find(c.error), std::string::npos)
        << stats.status().message();
  }
  auto after = canaries->Snapshot();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(*before, *after) << "the canaries outside the root changed";
}

// The entry with every kind of metadata a write through a link would carry to the host.
TarEntry WithMetadata(TarEntry e) {
  e.mode = 0777;
  e.uid = 1234;
  e.gid = 1235;
  e.mtime_sec = 2000000000;
  e.xattrs = {{"trusted.pwned", "1"}};
  return e;
}

TarEntry Fifo(std::string name) {
  TarEntry e = FileEntry(std::move(name));
  e.typeflag = kTarFifo;
  return e;
}

std::vector<CanaryCase> CanaryCases() {
  const std::string kRefused = "evil is a symlink";
  const std::pair<std::string, std::string> evil_file{"evil", "@OUT@/secret"};
  const std::pair<std::string, std::string> evil_dir{"evil", "@OUT@/dir"};
  return {
      // Parents that are symlinks leading out of the layer: refused, never followed.
      {"file under a symlink to a host file", {evil_file},
       {{WithMetadata(FileEntry("evil/x")), "pwned"}}, kRefused},
      {"file under a symlink to a host dir", {evil_dir},
       {{WithMetadata(FileEntry("evil/x")), "pwned"}}, kRefused},
      {"file deep under a symlink to a host dir", {evil_dir},
       {{WithMetadata(FileEntry("evil/a/b/x")), "pwned"}}, kRefused},
      {"symlink from this tar then a file under it", {},
       {{SymlinkEntry("evil", "@OUT@/dir"), ""}, {WithMetadata(FileEntry("evil/x")), "pwned"}},
       kRefused},
      {"relative dotdot symlink as parent", {},
       {{SymlinkEntry("evil", "../../../../../../../..@OUT@/dir"), ""},
        {WithMetadata(FileEntry("evil/x")), "pwned"}},
       kRefused},
      {"chain of symlinks as parent", {{"a", "evil"}, evil_dir},
       {{WithMetadata(FileEntry("a/x")), "pwned"}}, "a is a symlink"},
      {"directory under a symlink to a host dir", {evil_dir},
       {{WithMetadata(DirEntry("evil/sub")), ""}}, kRefused},
      {"symlink under a symlink to a host dir", {evil_dir},
       {{WithMetadata(SymlinkEntry("evil/l", "/")), ""}}, kRefused},
      {"hardlink under a symlink to a host dir", {evil_dir},
       {{FileEntry("f"), "x"}, {WithMetadata(HardlinkEntry("evil/h", "f")), ""}}, kRefused},
      {"fifo under a symlink to a host dir", {evil_dir}, {{WithMetadata(Fifo("evil/p")), ""}},
       kRefused},
      {"whiteout under a symlink to a host dir", {evil_dir},
       {{FileEntry("evil/.wh.inner"), ""}}, kRefused},
      {"opaque marker under a symlink to a host dir", {evil_dir},
       {{FileEntry("evil/.wh..wh..opq"), ""}}, kRefused},
      // Final components that are symlinks to the host: replaced or removed, never followed.
      {"directory entry named like a symlink to a host dir", {evil_dir},
       {{WithMetadata(DirEntry("evil")), ""}}, ""},
      {"file entry named like a symlink to a host file", {evil_file},
       {{WithMetadata(FileEntry("evil")), "pwned"}}, ""},
      {"fifo entry named like a symlink to a host file", {evil_file},
       {{WithMetadata(Fifo("evil")), ""}}, ""},
      {"whiteout of a symlink to a host file", {evil_file}, {{FileEntry(".wh.evil"), ""}}, ""},
      {"whiteout of a symlink to a host dir", {evil_dir}, {{FileEntry(".wh.evil"), ""}}, ""},
      {"opaque directory holding a symlink to a host dir", {},
       {{DirEntry("d"), ""}, {SymlinkEntry("d/evil", "@OUT@/dir"), ""},
        {FileEntry("other"), "x"}, {FileEntry("d/.wh..wh..opq"), ""}},
       ""},
      // Hardlinks: to a symlink (links the symlink itself), through a symlink (refused).
      {"hardlink to a symlink to a host file", {evil_file},
       {{WithMetadata(HardlinkEntry("h", "evil")), ""}}, ""},
      {"hardlink target under a symlink to a host dir", {evil_dir},
       {{WithMetadata(HardlinkEntry("h", "evil/inner")), ""}}, "No such file"},
      // Deferred directory times: the directory was replaced by a symlink to the host
      // (itself, or a parent) after its entry.
      {"directory replaced by a symlink before its times are set", {},
       {{WithMetadata(DirEntry("d")), ""}, {SymlinkEntry("d", "@OUT@/dir"), ""}}, ""},
      {"parent replaced by a symlink before the directory's times are set", {},
       {{DirEntry("p"), ""}, {WithMetadata(DirEntry("p/dir")), ""}, {SymlinkEntry("p", "@OUT@"), ""}},
       ""},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, ApplyTarCanary, ::testing::ValuesIn(CanaryCases()),
                         [](const ::testing::TestParamInfo<CanaryCase>& info) {
                           std::string name = info.param.scenario;
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace slacker::registry_shim
