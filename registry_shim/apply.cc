#include "registry_shim/apply.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/fd.h"
#include "common/log.h"
#include "registry_shim/in_root.h"
#include "registry_shim/tar.h"

namespace slacker::registry_shim {
namespace {

constexpr size_t kHoleBlock = 4096;  // zero runs of this size become holes
constexpr size_t kCopyBuffer = size_t{1} << 20;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kWhiteoutOpaque = ".wh..wh..opq";

bool IsZero(const char* p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    if (w != 0) return false;
  }
  for (; n > 0; p++, n--) {
    if (*p != 0) return false;
  }
  return true;
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

Status PwriteAll(int fd, const char* p, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::FromErrno(errno, "write file body");
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ListNames(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open directory to list it");
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, "fdopendir");
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    dirent* d = ::readdir(dir);
    if (d == nullptr) {
      if (errno != 0) return Status::FromErrno(errno, "readdir");
      return names;
    }
    if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0)
      names.emplace_back(d->d_name);
  }
}

enum class Kind { kFile, kDir, kSymlink, kHardlink, kNode };

// A directory entry's times, set after every entry (children change them). `ino` is the
// directory the entry made or kept: a path that leads elsewhere by then is skipped.
struct DirTimes {
  std::string path;
  ino_t ino;
  timespec times[2];
};

class Applier {
 public:
  Applier(int root_fd, dev_t root_dev, SkeletonWriter* skel)
      : root_fd_(root_fd), root_dev_(root_dev), skel_(skel) {}

  Result<ApplyStats> Run(ByteSource& tar) {
    reader_ = std::make_unique<TarReader>(tar, skel_ != nullptr ? skel_->raw_sink() : nullptr);
    buf_.resize(kCopyBuffer);
    for (;;) {
      TarEntry e;
      SLACKER_ASSIGN_OR_RETURN(bool more, reader_->Next(&e));
      if (!more) break;
      stats_.entries++;
      SLACKER_RETURN_IF_ERROR(ApplyEntry(e));
    }
    auto drained = reader_->Drain();
    if (!drained.ok()) return drained.status();
    SLACKER_RETURN_IF_ERROR(SetDirTimes());
    SLACKER_RETURN_IF_ERROR(VerifyTreeBodies());
    return stats_;
  }

 private:
  Status ApplyEntry(const TarEntry& e) {
    Result<std::string> clean = CleanTarPath(e.name);
    if (!clean.ok()) return clean.status();
    const std::string& path = *clean;
    if (path.empty()) return Status::Ok();  // "." / "./": the root itself is not touched
    // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) is not layer content, as in UnpackLayer.
    if (path.starts_with(kWhiteoutMetaPrefix) && path != kWhiteoutOpaque) return Status::Ok();
    return ApplyAt(e, path).Context(fmt::format("tar entry {}", e.name));
  }

  Status ApplyAt(const TarEntry& e, const std::string& path) {
    auto [parent, base] = SplitParent(path);
    bool via_symlink = false;
    SLACKER_ASSIGN_OR_RETURN(UniqueFd pfd, OpenParent(parent, &via_symlink));
    if (base.starts_with(kWhiteoutPrefix)) {
      if (base == kWhiteoutOpaque) return Opaque(pfd.get(), parent);
      std::string victim = base.substr(kWhiteoutPrefix.size());
      if (victim.empty() || victim == "." || victim == "..")
        return Errorf(EINVAL, "invalid whiteout name");
      return RemoveAt(pfd.get(), victim, Join(parent, victim));
    }
    struct stat st;
    bool exists = ::fstatat(pfd.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) return Status::FromErrno(errno, "stat existing " + path);
    bool is_dir = e.typeflag == kTarDirectory;
    if (exists && !(is_dir && S_ISDIR(st.st_mode))) {
      SLACKER_RETURN_IF_ERROR(RemoveAt(pfd.get(), base, path));
      exists = false;
    }
    int p = pfd.get();
    const char* b = base.c_str();
    if (is_dir) {
      if (!exists && ::mkdirat(p, b, 0700) != 0) return Status::FromErrno(errno, "mkdir");
      int fd = ::openat(p, b, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return Status::FromErrno(errno, "open new directory");
      UniqueFd dir(fd);
      SLACKER_RETURN_IF_ERROR(SetMetadata(e, p, base, dir.get(), Kind::kDir));
      struct stat dst;
      if (::fstat(dir.get(), &dst) != 0) return Status::FromErrno(errno, "stat new directory");
      dirs_.push_back({path, dst.st_ino, {AccessTime(e), ModTime(e)}});
    } else if (e.IsRegular()) {
      if (e.sparse) {
        return Errorf(
            EOPNOTSUPP,
            "GNU sparse tar entries are not supported (re-create the layer without --sparse)");
      }
      int fd = ::openat(p, b, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) return Status::FromErrno(errno, "create file");
      UniqueFd file(fd);
      SLACKER_RETURN_IF_ERROR(WriteBody(e, path, file.get(), via_symlink));
      SLACKER_RETURN_IF_ERROR(SetMetadata(e, p, base, file.get(), Kind::kFile));
      stats_.size += static_cast<int64_t>(e.size);
    } else if (e.typeflag == kTarHardlink) {
      SLACKER_ASSIGN_OR_RETURN(std::string target, CleanTarPath(e.linkname, "hardlink target"));
      if (target.empty())
        return Errorf(EINVAL, "hardlink target {:?} is the layer root", e.linkname);
      auto [tparent, tbase] = SplitParent(target);
      auto tdir = OpenInRoot(root_fd_, tparent, O_PATH | O_DIRECTORY);
      if (!tdir.ok()) return tdir.status().Context("hardlink target " + e.linkname);
      if (::linkat(tdir->get(), tbase.c_str(), p, b, 0) != 0) {
        return Status::FromErrno(errno, "link to " + e.linkname);
      }
      SLACKER_RETURN_IF_ERROR(SetMetadata(e, p, base, -1, Kind::kHardlink));
    } else if (e.typeflag == kTarSymlink) {
      if (::symlinkat(e.linkname.c_str(), p, b) != 0) return Status::FromErrno(errno, "symlink");
      SLACKER_RETURN_IF_ERROR(SetMetadata(e, p, base, -1, Kind::kSymlink));
    } else if (e.typeflag == kTarCharDevice || e.typeflag == kTarBlockDevice ||
               e.typeflag == kTarFifo) {
      mode_t type = e.typeflag == kTarCharDevice    ? S_IFCHR
                    : e.typeflag == kTarBlockDevice ? S_IFBLK
                                                    : S_IFIFO;
      dev_t dev = e.typeflag == kTarFifo ? 0 : makedev(e.devmajor, e.devminor);
      if (::mknodat(p, b, type | 0600, dev) != 0) return Status::FromErrno(errno, "mknod");
      SLACKER_RETURN_IF_ERROR(SetMetadata(e, p, base, -1, Kind::kNode));
    } else {
      return Errorf(EINVAL, "unsupported tar entry type '{}'", e.typeflag);
    }
    unpacked_.insert(path);
    return Status::Ok();
  }

  // Opens the entry's parent directory beneath the root, creating missing directories
  // (0755, as UnpackLayer does). A symlink on the way is followed inside the root
  // (RESOLVE_IN_ROOT: as moby's chrooted unpack would) when it leads to a directory there;
  // one that does not (dangling, aimed outside the layer, at a non-directory) and any
  // other non-directory refuse the entry, as UnpackLayer fails on them: never followed on
  // the host, never replaced by a directory behind the tar's back. *via_symlink tells
  // whether resolving it crossed a symlink (then the entry's path does not name where it
  // lands).
  Result<UniqueFd> OpenParent(const std::string& parent, bool* via_symlink) {
    *via_symlink = false;
    auto direct = OpenInRoot(root_fd_, parent, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS);
    if (direct.ok()) return direct;
    int code = direct.status().code();
    if (code != ENOENT && code != ELOOP && code != ENOTDIR)
      return direct.status().Context("parent directory");
    // Walk it component by component: each one is looked at without following it first.
    SLACKER_ASSIGN_OR_RETURN(UniqueFd cur, OpenInRoot(root_fd_, "", O_PATH | O_DIRECTORY));
    std::string prefix;
    size_t pos = 0;
    while (pos < parent.size()) {
      size_t slash = std::min(parent.find('/', pos), parent.size());
      std::string comp = parent.substr(pos, slash - pos);
      pos = slash + 1;
      prefix = Join(prefix, comp);
      struct stat st;
      if (::fstatat(cur.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) return Status::FromErrno(errno, "stat parent directory " + prefix);
        SLACKER_ASSIGN_OR_RETURN(cur, MakeParentDir(cur.get(), comp, prefix));
      } else if (S_ISDIR(st.st_mode)) {
        int fd = ::openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return Status::FromErrno(errno, "open parent directory " + prefix);
        cur.Reset(fd);
      } else if (S_ISLNK(st.st_mode)) {
        auto followed = OpenInRoot(root_fd_, prefix, O_PATH | O_DIRECTORY);
        if (!followed.ok()) {
          return Errorf(followed.status().code(),
                        "parent directory {} is a symlink to {:?}, which is not a directory "
                        "inside the layer root ({}); refusing the entry",
                        prefix, ReadLinkAt(cur.get(), comp),
                        std::strerror(followed.status().code()));
        }
        cur = std::move(followed).value();
        *via_symlink = true;
      } else {
        return Errorf(ENOTDIR, "parent directory {} is not a directory; refusing the entry",
                      prefix);
      }
    }
    return cur;
  }

  // mkdir comp in dirfd (it must not exist) and returns it opened; 0755 whatever the umask.
  static Result<UniqueFd> MakeParentDir(int dirfd, const std::string& comp,
                                        const std::string& prefix) {
    if (::mkdirat(dirfd, comp.c_str(), 0755) != 0)
      return Status::FromErrno(errno, "create parent directory " + prefix);
    int fd = ::openat(dirfd, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "open new parent directory " + prefix);
    UniqueFd dir(fd);
    if (::fchmod(dir.get(), 0755) != 0)
      return Status::FromErrno(errno, "chmod parent directory " + prefix);
    return dir;
  }

  // The target of the symlink `name` in dirfd, for messages ("?" when unreadable).
  static std::string ReadLinkAt(int dirfd, const std::string& name) {
    char buf[4096];
    ssize_t n = ::readlinkat(dirfd, name.c_str(), buf, sizeof buf);
    return n < 0 ? std::string("?") : std::string(buf, static_cast<size_t>(n));
  }

  Status WriteBody(const TarEntry& e, const std::string& path, int fd, bool inline_body) {
    bool tree_body = skel_ != nullptr && !inline_body && e.size > 0;
    uint64_t index = 0;
    if (tree_body) {
      SLACKER_ASSIGN_OR_RETURN(index, skel_->AddTreeBody(path, e.size));
    }
    uint64_t off = 0;
    while (off < e.size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf_.size(), e.size - off));
      for (size_t got = 0; got < want;) {
        SLACKER_ASSIGN_OR_RETURN(size_t n, reader_->ReadBody(buf_.data() + got, want - got));
        got += n;
      }
      if (skel_ != nullptr && !tree_body) SLACKER_RETURN_IF_ERROR(skel_->AddRaw(buf_.data(), want));
      const char* p = buf_.data();
      for (size_t i = 0; i < want;) {
        size_t blk = std::min(kHoleBlock, want - i);
        if (IsZero(p + i, blk)) {
          i += blk;
          continue;
        }
        size_t start = i;
        while (i < want && !IsZero(p + i, std::min(kHoleBlock, want - i)))
          i += std::min(kHoleBlock, want - i);
        SLACKER_RETURN_IF_ERROR(PwriteAll(fd, p + start, i - start, off + start));
      }
      off += want;
    }
    if (e.size > 0 && ::ftruncate(fd, static_cast<off_t>(e.size)) != 0) {
      return Status::FromErrno(errno, "set file size");
    }
    if (tree_body) {
      struct stat st;
      if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat written file");
      tree_bodies_[index] = TreeBody{path, e.size, st.st_dev, st.st_ino};
      bodies_by_ino_.emplace(st.st_ino, index);
    }
    return Status::Ok();
  }

  static timespec ModTime(const TarEntry& e) {
    return timespec{static_cast<time_t>(e.mtime_sec), static_cast<long>(e.mtime_nsec)};
  }
  // As UnpackLayer: the access time is never before the modification time.
  static timespec AccessTime(const TarEntry& e) {
    if (!e.has_atime || e.atime_sec < e.mtime_sec ||
        (e.atime_sec == e.mtime_sec && e.atime_nsec < e.mtime_nsec)) {
      return ModTime(e);
    }
    return timespec{static_cast<time_t>(e.atime_sec), static_cast<long>(e.atime_nsec)};
  }

  // Owner, then xattrs (chown drops security.capability), then mode (chown drops
  // setuid/setgid), then times. fd < 0: operate on (pfd, base) without following it.
  Status SetMetadata(const TarEntry& e, int pfd, const std::string& base, int fd, Kind kind) {
    if (e.uid > UINT32_MAX - 1 || e.gid > UINT32_MAX - 1)
      return Errorf(EINVAL, "uid/gid out of range");
    auto uid = static_cast<uid_t>(e.uid);
    auto gid = static_cast<gid_t>(e.gid);
    int rc = fd >= 0 ? ::fchown(fd, uid, gid)
                     : ::fchownat(pfd, base.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return Status::FromErrno(errno, fmt::format("chown {}:{}", uid, gid));
    bool links_symlink = false;
    if (kind == Kind::kHardlink) {
      struct stat st;
      if (::fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return Status::FromErrno(errno, "stat link");
      links_symlink = S_ISLNK(st.st_mode);
    }
    std::string proc_path = fmt::format("/proc/self/fd/{}/{}", pfd, base);
    for (const auto& [key, value] : e.xattrs) {
      rc = fd >= 0 ? ::fsetxattr(fd, key.c_str(), value.data(), value.size(), 0)
                   : ::lsetxattr(proc_path.c_str(), key.c_str(), value.data(), value.size(), 0);
      if (rc != 0 && (errno == ENOTSUP || errno == EPERM)) {
        // UnpackLayer ignores these too: not every file system takes every namespace.
        log::Warn("xattr_skipped",
                  {{"entry", e.name}, {"xattr", key}, {"error", std::strerror(errno)}});
        continue;
      }
      if (rc != 0) return Status::FromErrno(errno, "set xattr " + key);
    }
    if (kind != Kind::kSymlink && !links_symlink) {
      // AT_SYMLINK_NOFOLLOW: glibc re-opens base O_PATH|O_NOFOLLOW, refuses a symlink and
      // chmods the inode through its /proc/self/fd link; nothing is resolved on the host.
      rc = fd >= 0 ? ::fchmod(fd, e.mode & 07777)
                   : ::fchmodat(pfd, base.c_str(), e.mode & 07777, AT_SYMLINK_NOFOLLOW);
      if (rc != 0) return Status::FromErrno(errno, fmt::format("chmod {:o}", e.mode & 07777));
    }
    if (kind == Kind::kDir || links_symlink) return Status::Ok();  // dirs: after all entries
    timespec ts[2] = {AccessTime(e), ModTime(e)};
    rc = fd >= 0 ? ::futimens(fd, ts) : ::utimensat(pfd, base.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return Status::FromErrno(errno, "set times");
    return Status::Ok();
  }

  // Removes `name` in dirfd (a whole tree for a directory) if it exists. Regular files
  // whose bodies the skeleton expects in the tree are copied into the skeleton first.
  Status RemoveAt(int dirfd, const std::string& name, const std::string& path) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Status::Ok();
      return Status::FromErrno(errno, "stat " + path);
    }
    if (st.st_dev != root_dev_) {
      return Errorf(EXDEV, "refusing to remove {}: another file system is mounted there", path);
    }
    if (S_ISDIR(st.st_mode)) {
      int fd = ::openat(dirfd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return Status::FromErrno(errno, "open " + path);
      UniqueFd dir(fd);
      SLACKER_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir.get()));
      for (const std::string& child : names)
        SLACKER_RETURN_IF_ERROR(RemoveAt(dir.get(), child, Join(path, child)));
      if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0)
        return Status::FromErrno(errno, "rmdir " + path);
      return Status::Ok();
    }
    if (S_ISREG(st.st_mode)) SLACKER_RETURN_IF_ERROR(SpillBodiesOf(dirfd, name, st));
    if (::unlinkat(dirfd, name.c_str(), 0) != 0) return Status::FromErrno(errno, "remove " + path);
    return Status::Ok();
  }

  Status SpillBodiesOf(int dirfd, const std::string& name, const struct stat& st) {
    auto [first, last] = bodies_by_ino_.equal_range(st.st_ino);
    if (first == last) return Status::Ok();
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      return Status::FromErrno(errno, "open " + name + " to keep its body in the skeleton");
    UniqueFd file(fd);
    for (auto it = first; it != last;) {
      auto body = tree_bodies_.find(it->second);
      if (body == tree_bodies_.end() || body->second.dev != st.st_dev) {
        ++it;
        continue;
      }
      SLACKER_RETURN_IF_ERROR(skel_->SpillTreeBody(it->second, file.get(), body->second.size));
      tree_bodies_.erase(body);
      it = bodies_by_ino_.erase(it);
    }
    return Status::Ok();
  }

  // `.wh..wh..opq` in dir_path: removes, recursively, every path under it this tar has
  // not written so far (UnpackLayer's unpackedPaths rule).
  Status Opaque(int dirfd, const std::string& dir_path) {
    SLACKER_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dirfd));
    for (const std::string& child : names) {
      std::string child_path = Join(dir_path, child);
      if (!unpacked_.contains(child_path)) {
        SLACKER_RETURN_IF_ERROR(RemoveAt(dirfd, child, child_path));
        continue;
      }
      int fd = ::openat(dirfd, child.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) continue;
      if (fd < 0) return Status::FromErrno(errno, "open " + child_path);
      UniqueFd sub(fd);
      SLACKER_RETURN_IF_ERROR(Opaque(sub.get(), child_path));
    }
    return Status::Ok();
  }

  // The last entry for a directory decides its times; children no longer touch them. The
  // path is resolved again inside the root without following its last component, and the
  // times go only to the directory that entry made: one since removed, replaced or moved
  // behind a symlink (the tar's own later entries did that) is skipped.
  Status SetDirTimes() {
    std::unordered_set<std::string> done;
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      if (!done.insert(it->path).second) continue;
      auto dir = OpenInRoot(root_fd_, it->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!dir.ok()) {
        int code = dir.status().code();
        if (code == ENOENT || code == ENOTDIR || code == ELOOP)
          continue;  // replaced later in the tar
        return dir.status().Context("set directory times");
      }
      struct stat st;
      if (::fstat(dir->get(), &st) != 0) return Status::FromErrno(errno, "stat " + it->path);
      if (st.st_ino != it->ino || st.st_dev != root_dev_) continue;
      if (::futimens(dir->get(), it->times) != 0)
        return Status::FromErrno(errno, "set times of " + it->path);
    }
    return Status::Ok();
  }

  // Every body the skeleton leaves in the tree must be readable back at its path.
  Status VerifyTreeBodies() {
    for (const auto& [index, body] : tree_bodies_) {
      auto fd = OpenInRoot(root_fd_, body.path, O_PATH | O_NOFOLLOW);
      struct stat st;
      bool same = fd.ok() && ::fstat(fd->get(), &st) == 0 && S_ISREG(st.st_mode) &&
                  st.st_ino == body.ino && st.st_dev == body.dev &&
                  static_cast<uint64_t>(st.st_size) == body.size;
      if (!same) {
        return Errorf(
            EIO,
            "skeleton: body {} of {} cannot be read back from the applied tree (internal error)",
            index, body.path);
      }
    }
    return Status::Ok();
  }

  struct TreeBody {
    std::string path;
    uint64_t size;
    dev_t dev;
    ino_t ino;
  };

  int root_fd_;
  dev_t root_dev_;
  SkeletonWriter* skel_;
  std::unique_ptr<TarReader> reader_;
  std::vector<char> buf_;
  std::unordered_set<std::string> unpacked_;  // clean paths this tar has written
  std::vector<DirTimes> dirs_;
  std::unordered_map<uint64_t, TreeBody> tree_bodies_;  // skeleton index → body left in the tree
  std::unordered_multimap<ino_t, uint64_t> bodies_by_ino_;
  ApplyStats stats_;
};

}  // namespace

Result<ApplyStats> ApplyTar(ByteSource& tar, const std::string& root_dir,
                            SkeletonWriter* skeleton) {
  int fd = ::open(root_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open layer root " + root_dir);
  UniqueFd root(fd);
  struct stat st;
  if (::fstat(root.get(), &st) != 0) return Status::FromErrno(errno, "stat layer root " + root_dir);
  Applier applier(root.get(), st.st_dev, skeleton);
  auto stats = applier.Run(tar);
  if (!stats.ok()) return stats.status().Context("apply tar to " + root_dir);
  return stats;
}

}  // namespace slacker::registry_shim
