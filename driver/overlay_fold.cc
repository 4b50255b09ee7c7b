#include "driver/overlay_fold.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <utility>
#include <string_view>
#include <vector>

#include "common/files.h"

namespace slacker::driver {
namespace {

constexpr std::string_view kOverlayXattrPrefix = "trusted.overlay.";

bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

// The path that names entry `name` of the open directory `dir_fd` for the l*xattr calls:
// /proc/self/fd/N is our own descriptor, `name` one component they do not follow.
std::string EntryPath(int dir_fd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dir_fd) + "/" + name;
}

Result<std::vector<std::string>> XattrNames(const std::string& path) {
  std::vector<char> buf(4096);
  for (;;) {
    ssize_t n = ::llistxattr(path.c_str(), buf.data(), buf.size());
    if (n >= 0) {
      std::vector<std::string> names;
      for (size_t i = 0; i < static_cast<size_t>(n);) {
        std::string name(buf.data() + i);
        i += name.size() + 1;
        if (!name.empty()) names.push_back(std::move(name));
      }
      return names;
    }
    if (errno == ENOTSUP) return std::vector<std::string>{};
    if (errno != ERANGE || buf.size() >= (1u << 20)) return Status::FromErrno(errno, "list the xattrs of " + path);
    buf.resize(buf.size() * 4);
  }
}

Result<std::string> XattrValue(const std::string& path, const std::string& name) {
  std::string value(256, '\0');
  for (;;) {
    ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<size_t>(n));
      return value;
    }
    if (errno != ERANGE || value.size() >= (1u << 20)) return Status::FromErrno(errno, "read xattr " + name);
    value.resize(value.size() * 4);
  }
}

// Drops overlayfs's xattrs from one entry.
Status StripOverlayXattrs(int dir_fd, const std::string& name) {
  std::string path = EntryPath(dir_fd, name);
  SLACKER_ASSIGN_OR_RETURN(auto names, XattrNames(path));
  for (const auto& x : names) {
    if (!x.starts_with(kOverlayXattrPrefix)) continue;
    if (::lremovexattr(path.c_str(), x.c_str()) != 0 && errno != ENODATA)
      return Status::FromErrno(errno, "remove xattr " + x + " of " + name);
  }
  return Status::Ok();
}

Result<UniqueFd> OpenDirAt(int dir_fd, const std::string& name) {
  int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open directory " + name);
  return UniqueFd(fd);
}

class Folder {
 public:
  // Readies a subtree that moves whole into the root: no overlay xattrs, no whiteouts
  // (under a directory new to the root, or opaque, they hide nothing).
  Status Clean(int dir_fd, const std::string& name, int depth) {
    if (depth > kMaxFoldDepth) return Errorf(EINVAL, "the layer's upper directory is deeper than {} levels", kMaxFoldDepth);
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::FromErrno(errno, "stat " + name);
    if (IsWhiteout(st)) return UnlinkAtIfExists(dir_fd, name, name);
    SLACKER_RETURN_IF_ERROR(StripOverlayXattrs(dir_fd, name));
    if (!S_ISDIR(st.st_mode)) return Status::Ok();
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenDirAt(dir_fd, name));
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(dir.get(), name));
    for (const auto& n : names) SLACKER_RETURN_IF_ERROR(Clean(dir.get(), n, depth + 1).Context(name));
    return Status::Ok();
  }

  // Folds every entry of the upper directory `upper_fd` into `target_fd` (the same path
  // in the root), then removes the entries from the upper.
  Status Merge(int upper_fd, int target_fd, int depth) {
    if (depth > kMaxFoldDepth) return Errorf(EINVAL, "the layer's upper directory is deeper than {} levels", kMaxFoldDepth);
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(upper_fd, "the upper directory"));
    for (const auto& n : names) SLACKER_RETURN_IF_ERROR(FoldEntry(upper_fd, target_fd, n, depth).Context(n));
    return Status::Ok();
  }

 private:
  Status FoldEntry(int upper_fd, int target_fd, const std::string& name, int depth) {
    struct stat st;
    if (::fstatat(upper_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::FromErrno(errno, "stat");
    if (IsWhiteout(st)) {
      SLACKER_RETURN_IF_ERROR(RemoveTreeAt(target_fd, name));
      return UnlinkAtIfExists(upper_fd, name, name);
    }
    struct stat tst;
    bool target_dir = ::fstatat(target_fd, name.c_str(), &tst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(tst.st_mode);
    if (S_ISDIR(st.st_mode) && target_dir) {
      auto opaque = XattrValue(EntryPath(upper_fd, name), "trusted.overlay.opaque");
      if (!(opaque.ok() && *opaque == "y")) return MergeDir(upper_fd, target_fd, name, depth);
    }
    // Replaces the root's entry whole. The root's goes first and the opaque mark last
    // (in Clean): the fold is idempotent up to the rename.
    SLACKER_RETURN_IF_ERROR(RemoveTreeAt(target_fd, name));
    SLACKER_RETURN_IF_ERROR(Clean(upper_fd, name, depth + 1));
    if (::renameat(upper_fd, name.c_str(), target_fd, name.c_str()) != 0) return Status::FromErrno(errno, "move into place");
    return Status::Ok();
  }

  // A directory over a directory: its entries fold into the root's, then it gives the
  // root's its owner, mode, xattrs and times (a chmod in the container changed only the
  // upper's copy), and goes.
  Status MergeDir(int upper_fd, int target_fd, const std::string& name, int depth) {
    SLACKER_ASSIGN_OR_RETURN(UniqueFd up, OpenDirAt(upper_fd, name));
    SLACKER_ASSIGN_OR_RETURN(UniqueFd down, OpenDirAt(target_fd, name));
    SLACKER_RETURN_IF_ERROR(Merge(up.get(), down.get(), depth + 1));
    struct stat st;
    if (::fstat(up.get(), &st) != 0) return Status::FromErrno(errno, "stat");
    SLACKER_RETURN_IF_ERROR(CopyXattrs(upper_fd, target_fd, name));
    if (::fchown(down.get(), st.st_uid, st.st_gid) != 0) return Status::FromErrno(errno, "chown");
    if (::fchmod(down.get(), st.st_mode & 07777) != 0) return Status::FromErrno(errno, "chmod");
    timespec ts[2] = {st.st_atim, st.st_mtim};
    if (::futimens(down.get(), ts) != 0) return Status::FromErrno(errno, "set times");
    if (::unlinkat(upper_fd, name.c_str(), AT_REMOVEDIR) != 0) return Status::FromErrno(errno, "remove the folded directory");
    return Status::Ok();
  }

  // The root entry's xattrs become the upper entry's (overlayfs's own excepted).
  static Status CopyXattrs(int upper_fd, int target_fd, const std::string& name) {
    std::string from = EntryPath(upper_fd, name), to = EntryPath(target_fd, name);
    SLACKER_ASSIGN_OR_RETURN(auto want, XattrNames(from));
    SLACKER_ASSIGN_OR_RETURN(auto have, XattrNames(to));
    for (const auto& x : have) {
      if (x.starts_with(kOverlayXattrPrefix)) continue;
      if (std::find(want.begin(), want.end(), x) != want.end()) continue;
      if (::lremovexattr(to.c_str(), x.c_str()) != 0 && errno != ENODATA) return Status::FromErrno(errno, "remove xattr " + x);
    }
    for (const auto& x : want) {
      if (x.starts_with(kOverlayXattrPrefix)) continue;
      SLACKER_ASSIGN_OR_RETURN(std::string v, XattrValue(from, x));
      if (::lsetxattr(to.c_str(), x.c_str(), v.data(), v.size(), 0) != 0) return Status::FromErrno(errno, "set xattr " + x);
    }
    return Status::Ok();
  }
};

Status SumUpper(int dir_fd, int depth, std::set<std::pair<dev_t, ino_t>>& seen, int64_t& total) {
  if (depth > kMaxFoldDepth) return Errorf(EINVAL, "the layer's upper directory is deeper than {} levels", kMaxFoldDepth);
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(dir_fd, "the upper directory"));
  for (const auto& n : names) {
    struct stat st;
    if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::FromErrno(errno, "stat " + n);
    if (S_ISDIR(st.st_mode)) {
      SLACKER_ASSIGN_OR_RETURN(UniqueFd sub, OpenDirAt(dir_fd, n));
      SLACKER_RETURN_IF_ERROR(SumUpper(sub.get(), depth + 1, seen, total));
      continue;
    }
    if (IsWhiteout(st)) continue;
    if (st.st_nlink > 1 && !seen.insert({st.st_dev, st.st_ino}).second) continue;
    total += st.st_size;
  }
  return Status::Ok();
}

}  // namespace

Result<int64_t> UpperBytes(int root_fd) {
  int fd = ::openat(root_fd, (std::string(kOverlayDirName) + "/" + kOverlayUpperName).c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return int64_t{0};
    return Status::FromErrno(errno, "open the upper directory");
  }
  UniqueFd upper(fd);
  std::set<std::pair<dev_t, ino_t>> seen;
  int64_t total = 0;
  SLACKER_RETURN_IF_ERROR(SumUpper(upper.get(), 0, seen, total));
  return total;
}

Status FoldOverlay(int root_fd) {
  struct stat st;
  if (::fstatat(root_fd, kOverlayDirName, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, std::string("stat ") + kOverlayDirName);
  }
  if (!S_ISDIR(st.st_mode)) return Errorf(EINVAL, "{} in the volume's root is not a directory", kOverlayDirName);
  SLACKER_ASSIGN_OR_RETURN(UniqueFd ovl, OpenDirAt(root_fd, kOverlayDirName));
  if (::fstatat(ovl.get(), kOverlayUpperName, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISDIR(st.st_mode)) return Errorf(EINVAL, "{}/{} is not a directory", kOverlayDirName, kOverlayUpperName);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd upper, OpenDirAt(ovl.get(), kOverlayUpperName));
    Folder f;
    SLACKER_RETURN_IF_ERROR(f.Merge(upper.get(), root_fd, 0).Context("fold the layer's overlay upper directory"));
    // The root directory's own metadata, as MergeDir gives every other directory.
    // (AttachOverlay made the upper directory with the snapshot root's metadata.)
    struct stat ust;
    if (::fstat(upper.get(), &ust) != 0) return Status::FromErrno(errno, "stat the upper directory");
    if (::fchown(root_fd, ust.st_uid, ust.st_gid) != 0) return Status::FromErrno(errno, "chown /");
    if (::fchmod(root_fd, ust.st_mode & 07777) != 0) return Status::FromErrno(errno, "chmod /");
    SLACKER_RETURN_IF_ERROR(RemoveTreeAt(root_fd, kOverlayDirName));
    timespec ts[2] = {ust.st_atim, ust.st_mtim};
    if (::futimens(root_fd, ts) != 0) return Status::FromErrno(errno, "set the times of /");
    return Status::Ok();
  }
  return RemoveTreeAt(root_fd, kOverlayDirName);
}

}  // namespace slacker::driver
