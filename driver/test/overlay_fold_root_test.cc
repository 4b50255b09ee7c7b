// FoldOverlay against the kernel's overlayfs: a tree is changed through a real overlay
// (what a container does), and the fold of a copy of the lower plus the upper must equal
// what the overlay showed, entry by entry (type, mode, owner, content, link target,
// xattrs). Root: overlayfs, whiteout devices, trusted.* xattrs.
#include "driver/overlay_fold.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "common/files.h"
#include "loopdev/test/root_fixture.h"

namespace slacker::driver {
namespace {

using loopdev::testing::RootFixture;

void Write(const std::string& path, const std::string& body) {
  ASSERT_TRUE(AtomicWriteFile(path, body, false, 0644).ok()) << path;
}

void Shell(const std::string& cmd) { ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd; }

// path -> a line describing the entry, for every entry under `root` (root itself as ".").
std::map<std::string, std::string> Describe(const std::string& root) {
  std::map<std::string, std::string> out;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::string path = rel == "." ? root : root + "/" + rel;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return;
    std::string d = fmt::format("mode={:o} uid={} gid={}", st.st_mode, st.st_uid, st.st_gid);
    if (S_ISREG(st.st_mode)) {
      auto body = ReadFileToString(path);
      d += " body=" + (body.ok() ? *body : "?") + " nlink=" + std::to_string(st.st_nlink);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
      d += " -> " + std::string(buf, n > 0 ? n : 0);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      d += fmt::format(" dev={}:{}", major(st.st_rdev), minor(st.st_rdev));
    }
    char names[4096];
    ssize_t n = ::llistxattr(path.c_str(), names, sizeof names);
    for (ssize_t i = 0; i < n;) {
      std::string name(names + i);
      i += static_cast<ssize_t>(name.size()) + 1;
      char value[256];
      ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
      d += " " + name + "=" + std::string(value, v > 0 ? v : 0);
    }
    out[rel] = d;
    if (S_ISDIR(st.st_mode)) {
      auto names_or = ListDir(path);
      if (!names_or.ok()) return;
      for (const auto& c : *names_or) walk(rel == "." ? c : rel + "/" + c);
    }
  };
  walk(".");
  return out;
}

class OverlayFoldRootTest : public RootFixture {
 protected:
  void SetUp() override {
    RootFixture::SetUp();
    if (IsSkipped()) return;
    fs_ = MountScratchXfs(512ull << 20);
    lower_ = fs_ + "/lower";
    merged_ = fs_ + "/merged";
    volume_ = fs_ + "/volume";  // the clone: a copy of the lower, plus .slacker-overlay
    ovl_ = volume_ + "/" + kOverlayDirName;
    for (const auto& d : {lower_, merged_}) ASSERT_TRUE(MakeDirs(d, 0755).ok());
    // The image.
    ASSERT_TRUE(MakeDirs(lower_ + "/etc/conf.d", 0755).ok());
    ASSERT_TRUE(MakeDirs(lower_ + "/var/cache/apt", 0755).ok());
    ASSERT_TRUE(MakeDirs(lower_ + "/opt/tool", 0755).ok());
    Write(lower_ + "/etc/passwd", "root:x:0:0\n");
    Write(lower_ + "/etc/conf.d/a", "a\n");
    Write(lower_ + "/etc/conf.d/b", "b\n");
    Write(lower_ + "/var/cache/apt/pkgcache", "cache\n");
    Write(lower_ + "/opt/tool/bin", "tool\n");
    Write(lower_ + "/keep", "keep\n");
    ASSERT_EQ(::symlink("/etc/passwd", (lower_ + "/link").c_str()), 0);
    ASSERT_EQ(::lsetxattr((lower_ + "/keep").c_str(), "user.tag", "v1", 2, 0), 0);
  }

  // Mounts the overlay as the driver does (upper and work inside the volume).
  void MountOverlay() {
    Shell("cp -a " + lower_ + " " + volume_);
    ASSERT_TRUE(MakeDirs(ovl_ + "/upper", 0755).ok());
    ASSERT_TRUE(MakeDirs(ovl_ + "/work", 0700).ok());
    std::string data = fmt::format("lowerdir={},upperdir={}/upper,workdir={}/work,index=off,redirect_dir=off,metacopy=off",
                                   lower_, ovl_, ovl_);
    ASSERT_EQ(::mount("overlay", merged_.c_str(), "overlay", 0, data.c_str()), 0) << strerror(errno);
  }

  void Fold() {
    UniqueFd root(::open(volume_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    ASSERT_TRUE(root.valid());
    Status s = FoldOverlay(root.get());
    ASSERT_TRUE(s.ok()) << s.message();
  }

  std::string fs_, lower_, merged_, volume_, ovl_;
};

TEST_F(OverlayFoldRootTest, TheFoldEqualsWhatTheOverlayShowed) {
  MountOverlay();
  const std::string& m = merged_;
  Write(m + "/new-file", "new\n");                                // added
  Write(m + "/etc/passwd", "root:x:0:0\nuser:x:1000:1000\n");     // modified (copy-up)
  ASSERT_EQ(::unlink((m + "/keep").c_str()), 0);                 // deleted: a whiteout
  Shell("rm -rf " + m + "/var/cache/apt");                          // a deleted directory
  Shell("rm -rf " + m + "/etc/conf.d && mkdir " + m + "/etc/conf.d");  // recreated: opaque
  Write(m + "/etc/conf.d/c", "c\n");
  ASSERT_EQ(::chmod((m + "/opt/tool").c_str(), 0700), 0);        // a directory's mode only
  ASSERT_EQ(::chown((m + "/opt/tool/bin").c_str(), 1000, 1000), 0);  // metadata-only change
  ASSERT_EQ(::mkdir((m + "/new-dir").c_str(), 0750), 0);
  Write(m + "/new-dir/f", "f\n");
  ASSERT_EQ(::link((m + "/new-dir/f").c_str(), (m + "/new-dir/g").c_str()), 0);  // a hardlink
  ASSERT_EQ(::unlink((m + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("/new-file", (m + "/link").c_str()), 0);   // a link replaced
  ASSERT_EQ(::lsetxattr((m + "/new-file").c_str(), "user.kind", "x", 1, 0), 0);
  ASSERT_EQ(::chmod(m.c_str(), 0711), 0);                        // the root directory itself
  auto want = Describe(merged_);
  ASSERT_EQ(::umount(merged_.c_str()), 0);

  Fold();

  auto got = Describe(volume_);
  EXPECT_EQ(got.count(kOverlayDirName), 0u) << "the overlay directory must go";
  for (const auto& [path, d] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      ADD_FAILURE() << path << " is missing after the fold";
      continue;
    }
    if (path == ".") {
      // mtime aside (it is not described), mode and owner must match.
      EXPECT_EQ(it->second, d) << "/";
      continue;
    }
    EXPECT_EQ(it->second, d) << path;
  }
  for (const auto& [path, d] : got) EXPECT_TRUE(want.count(path)) << path << " appeared in the fold: " << d;
  // The hardlink survives as one inode.
  struct stat f, g;
  ASSERT_EQ(::stat((volume_ + "/new-dir/f").c_str(), &f), 0);
  ASSERT_EQ(::stat((volume_ + "/new-dir/g").c_str(), &g), 0);
  EXPECT_EQ(f.st_ino, g.st_ino);
}

TEST_F(OverlayFoldRootTest, NoOverlayDirectoryIsNothingToFold) {
  Shell("cp -a " + lower_ + " " + volume_);
  auto before = Describe(volume_);
  Fold();
  EXPECT_EQ(Describe(volume_), before);
}

// What a container can plant in its upper must not lead the fold outside the volume.
TEST_F(OverlayFoldRootTest, LinksInTheUpperAreMovedNeverFollowed) {
  std::string canary = fs_ + "/canary";
  ASSERT_TRUE(MakeDirs(canary, 0700).ok());
  Write(canary + "/secret", "secret\n");
  ASSERT_EQ(::chmod((canary + "/secret").c_str(), 0600), 0);
  Shell("cp -a " + lower_ + " " + volume_);
  ASSERT_TRUE(MakeDirs(ovl_ + "/upper", 0755).ok());
  // etc is a link to the canary in the upper, over a real directory in the root: it
  // replaces etc (as the overlay showed it); nothing is written through it.
  ASSERT_EQ(::symlink(canary.c_str(), (ovl_ + "/upper/etc").c_str()), 0);
  // A whiteout named like a file the canary holds, beside it.
  ASSERT_EQ(::mknod((ovl_ + "/upper/secret").c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
  Fold();
  struct stat st;
  ASSERT_EQ(::lstat((volume_ + "/etc").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(::stat((canary + "/secret").c_str(), &st), 0) << "the canary must survive";
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(*ReadFileToString(canary + "/secret"), "secret\n");
  ASSERT_TRUE(ListDir(canary).ok());
  EXPECT_EQ(ListDir(canary)->size(), 1u);
}

TEST_F(OverlayFoldRootTest, AnUpperDeeperThanTheLimitIsRefused) {
  Shell("cp -a " + lower_ + " " + volume_);
  std::string path = ovl_ + "/upper";
  ASSERT_TRUE(MakeDirs(path, 0755).ok());
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < kMaxFoldDepth + 5; ++i) {
    ASSERT_EQ(::mkdirat(dir.get(), "d", 0755), 0);
    UniqueFd next(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    dir = std::move(next);
  }
  UniqueFd root(::open(volume_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  Status s = FoldOverlay(root.get());
  EXPECT_EQ(s.code(), EINVAL) << s.message();
}

}  // namespace
}  // namespace slacker::driver
