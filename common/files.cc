#include "common/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/fd.h"
#include "common/hash.h"

namespace slacker {

std::string JoinPath(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  std::string out(a);
  if (out.back() != '/') out += '/';
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  out += b;
  return out;
}

static std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

Status AtomicWriteFile(const std::string& path, std::string_view content, bool durable,
                       unsigned mode) {
  std::string tmp = fmt::format("{}.tmp-{}", path, getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + tmp);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (durable && ::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "fsync " + tmp);
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "rename " + tmp + " to " + path);
  }
  if (durable) {
    UniqueFd dir(::open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.valid()) ::fsync(dir.get());
  }
  return Status::Ok();
}

Result<std::string> ReadFileToString(const std::string& path) {
  return ReadFileAtMost(path, std::numeric_limits<size_t>::max());
}

Result<std::string> ReadFileAtMost(const std::string& path, size_t limit, int flags) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | flags));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  return ReadFdAtMost(fd.get(), limit, path);
}

Status MakeDirs(const std::string& path, unsigned mode) {
  if (path.empty()) return Status::Ok();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    return Errorf(ENOTDIR, "{} exists and is not a directory", path);
  }
  std::string parent = DirName(path);
  if (parent != path) SLACKER_RETURN_IF_ERROR(MakeDirs(parent, mode));
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return Status::FromErrno(errno, "mkdir " + path);
  return Status::Ok();
}

Result<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "open directory " + path);
  std::vector<std::string> out;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

Status CloseToOthers(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), st.st_mode & 07700) != 0)
    return Status::FromErrno(errno, "chmod " + path);
  return Status::Ok();
}

Status RemoveFileIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno(errno, "remove " + path);
  return Status::Ok();
}

static Status RemoveTreeOnDev(int parent_fd, const char* name, dev_t dev) {
  struct stat st;
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, std::string("stat ") + name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name, 0) != 0 && errno != ENOENT)
      return Status::FromErrno(errno, std::string("remove ") + name);
    return Status::Ok();
  }
  if (st.st_dev != dev) return Errorf(EBUSY, "{} is a mount point; not removing it", name);
  int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, std::string("open ") + name);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return Status::FromErrno(errno, std::string("open ") + name);
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  Status st_out;
  for (const auto& n : names) {
    Status s = RemoveTreeOnDev(::dirfd(d), n.c_str(), dev);
    if (!s.ok()) {
      st_out = s.Context(name);
      break;
    }
  }
  ::closedir(d);
  if (!st_out.ok()) return st_out;
  if (::unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
    return Status::FromErrno(errno, std::string("rmdir ") + name);
  return Status::Ok();
}

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "stat " + path);
  }
  return RemoveTreeOnDev(AT_FDCWD, path.c_str(), st.st_dev).Context("remove " + path);
}

Status RemoveTreeAt(int dir_fd, const std::string& name) {
  struct stat st;
  if (::fstat(dir_fd, &st) != 0) return Status::FromErrno(errno, "stat the directory of " + name);
  return RemoveTreeOnDev(dir_fd, name.c_str(), st.st_dev).Context("remove " + name);
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string RandomHex(size_t nbytes) {
  std::string raw(nbytes, '\0');
  size_t got = 0;
  while (got < nbytes) {
    ssize_t n = ::getrandom(raw.data() + got, nbytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return HexEncode(raw);
}

std::vector<std::string> SplitNonEmpty(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

Result<uint64_t> ParseSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return Errorf(EINVAL, "invalid size {:?}: expected a number with an optional unit", text);
  double num = std::strtod(std::string(text.substr(0, i)).c_str(), nullptr);
  std::string unit;
  for (char c : text.substr(i)) {
    if (c != ' ') unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (unit.ends_with("ib")) unit = unit.substr(0, unit.size() - 2);
  else if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();
  double mult;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k") mult = 1024.0;
  else if (unit == "m") mult = 1024.0 * 1024;
  else if (unit == "g") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t") mult = 1024.0 * 1024 * 1024 * 1024;
  else return Errorf(EINVAL, "invalid size {:?}: unknown unit {:?}", text, unit);
  return static_cast<uint64_t>(std::llround(num * mult));
}

Result<UniqueFd> OpenBeneath(int dir_fd, const std::string& rel, int flags, unsigned mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const char* p = rel.empty() ? "." : rel.c_str();
  long fd = -1;
  // EAGAIN: a concurrent rename raced the resolution; retrying is the documented answer.
  for (int attempt = 0; attempt < 16; attempt++) {
    fd = ::syscall(SYS_openat2, dir_fd, p, &how, sizeof how);
    if (fd >= 0 || (errno != EINTR && errno != EAGAIN)) break;
  }
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  int err = errno;
  if (err == ELOOP) return Status::FromErrno(err, fmt::format("open {}: a symbolic link is on the path (refused)", rel));
  if (err == EXDEV) return Status::FromErrno(err, fmt::format("open {}: the path leads outside its directory (refused)", rel));
  return Status::FromErrno(err, "open " + rel);
}

Result<UniqueFd> OpenRegularBeneath(int dir_fd, const std::string& rel, int flags) {
  bool path_only = (flags & O_PATH) != 0;
  SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, OpenBeneath(dir_fd, rel, path_only ? flags : flags | O_NONBLOCK));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + rel);
  if (!S_ISREG(st.st_mode)) return Errorf(EINVAL, "{} is not a regular file (refused)", rel);
  if (!path_only && (flags & O_NONBLOCK) == 0 && ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK & ~O_CREAT & ~O_EXCL & ~O_TRUNC) != 0)
    return Status::FromErrno(errno, "fcntl " + rel);
  return fd;
}

Result<ParentDir> OpenParentBeneath(int dir_fd, const std::string& rel) {
  auto slash = rel.rfind('/');
  ParentDir out;
  out.name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  std::string parent = slash == std::string::npos ? "" : rel.substr(0, slash);
  if (out.name.empty() || out.name == "." || out.name == "..")
    return Errorf(EINVAL, "{:?} does not name a file", rel);
  SLACKER_ASSIGN_OR_RETURN(out.dir, OpenBeneath(dir_fd, parent, O_RDONLY | O_DIRECTORY));
  return out;
}

Result<UniqueFd> MakeDirsBeneath(int dir_fd, const std::string& rel, unsigned mode) {
  SLACKER_ASSIGN_OR_RETURN(UniqueFd cur, OpenBeneath(dir_fd, "", O_RDONLY | O_DIRECTORY));
  for (const std::string& part : SplitNonEmpty(rel, '/')) {
    if (part == "." || part == "..") return Errorf(EINVAL, "make directory {:?}: \".\" and \"..\" are refused", rel);
    if (::mkdirat(cur.get(), part.c_str(), mode) == 0) {
      // A new directory gets exactly `mode`, whatever the umask.
      SLACKER_ASSIGN_OR_RETURN(UniqueFd made, OpenBeneath(cur.get(), part, O_RDONLY | O_DIRECTORY));
      if (::fchmod(made.get(), mode) != 0) return Status::FromErrno(errno, "chmod " + rel);
      cur = std::move(made);
      continue;
    }
    if (errno != EEXIST) return Status::FromErrno(errno, fmt::format("mkdir {} (in {})", part, rel));
    SLACKER_ASSIGN_OR_RETURN(cur, OpenBeneath(cur.get(), part, O_RDONLY | O_DIRECTORY));
  }
  return cur;
}

Result<std::vector<std::string>> ListDirFd(int dir_fd, const std::string& what) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open directory " + what);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, "open directory " + what);
  }
  std::vector<std::string> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.emplace_back(e->d_name);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return Status::FromErrno(err, "read directory " + what);
  return out;
}

Result<std::string> ReadFdToString(int fd, const std::string& what) {
  return ReadFdAtMost(fd, std::numeric_limits<size_t>::max(), what);
}

Result<std::string> ReadFdAtMost(int fd, size_t limit, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read " + what);
    }
    if (n == 0) return out;
    if (static_cast<size_t>(n) > limit - out.size()) return Errorf(EFBIG, "{} is larger than {} bytes", what, limit);
    out.append(buf, static_cast<size_t>(n));
  }
}

Result<std::string> ReadFileBeneath(const std::string& dir, const std::string& rel, size_t limit) {
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid()) return Status::FromErrno(errno, "open " + dir);
  SLACKER_ASSIGN_OR_RETURN(UniqueFd f, OpenRegularBeneath(d.get(), rel, O_RDONLY));
  return ReadFdAtMost(f.get(), limit, rel);
}

Status AtomicWriteFileAt(int dir_fd, const std::string& name, std::string_view content, unsigned mode) {
  std::string tmp = fmt::format("{}.tmp-{}", name, RandomHex(4));
  UniqueFd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + tmp);
  auto fail = [&](int err, const std::string& what) {
    ::unlinkat(dir_fd, tmp.c_str(), 0);
    return Status::FromErrno(err, what + " " + tmp);
  };
  if (::fchmod(fd.get(), mode) != 0) return fail(errno, "chmod");
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(errno, "fsync");
  fd.Reset();
  if (::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) return fail(errno, "rename to " + name + ":");
  if (::fsync(dir_fd) != 0) return Status::FromErrno(errno, "fsync the directory of " + name);
  return Status::Ok();
}

Status UnlinkAtIfExists(int dir_fd, const std::string& name, const std::string& what) {
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return Status::FromErrno(errno, "remove " + what);
  return Status::Ok();
}

}  // namespace slacker
