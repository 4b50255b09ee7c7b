#include "registry_shim/test/canary_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common/fd.h"

namespace slacker::registry_shim::testing {
namespace {

constexpr time_t kOldTime = 1000000000;  // 2001-09-09

Status MakeCanary(const std::string& path, bool dir, const std::string& content) {
  if (dir) {
    if (::mkdir(path.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + path);
  } else {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Status::FromErrno(errno, "create " + path);
    UniqueFd file(fd);
    if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size()))
      return Status::FromErrno(errno, "write " + path);
  }
  // The umask may have dropped bits; chown before chmod would not matter here (no setuid).
  if (::chmod(path.c_str(), dir ? 0700 : 0600) != 0) return Status::FromErrno(errno, "chmod " + path);
  if (::geteuid() == 0 && ::chown(path.c_str(), CanaryTree::kUid, CanaryTree::kGid) != 0)
    return Status::FromErrno(errno, "chown " + path);
  return Status::Ok();
}

Status SetOldTimes(const std::string& path) {
  timespec ts[2] = {{kOldTime, 0}, {kOldTime, 0}};
  if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
    return Status::FromErrno(errno, "set times of " + path);
  return Status::Ok();
}

Result<std::string> Xattrs(const std::string& path) {
  std::vector<char> names(65536);
  ssize_t n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) return Status::FromErrno(errno, "list xattrs of " + path);
  std::vector<std::string> out;
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names.data() + i)) + 1) {
    std::string name(names.data() + i);
    std::string value(65536, '\0');
    ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (v < 0) return Status::FromErrno(errno, "get xattr " + name + " of " + path);
    value.resize(static_cast<size_t>(v));
    out.push_back(name + "=" + value);
  }
  std::sort(out.begin(), out.end());
  std::string joined;
  for (const std::string& x : out) joined += x + ";";
  return joined;
}

Status Describe(const std::string& path, const std::string& rel, std::string* out) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "lstat " + path);
  SLACKER_ASSIGN_OR_RETURN(std::string xattrs, Xattrs(path));
  *out += fmt::format("{} mode={:o} owner={}:{} nlink={} size={} mtime={}.{} ctime={}.{} xattrs={}",
                      rel.empty() ? "." : rel, st.st_mode, st.st_uid, st.st_gid, st.st_nlink,
                      st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                      st.st_ctim.tv_nsec, xattrs);
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(path.c_str(), target, sizeof target);
    if (n < 0) return Status::FromErrno(errno, "readlink " + path);
    *out += fmt::format(" -> {:?}\n", std::string(target, static_cast<size_t>(n)));
    return Status::Ok();
  }
  if (S_ISREG(st.st_mode)) {
    // O_NOFOLLOW|O_NONBLOCK: a canary replaced by a link or a fifo is reported, not followed.
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "open " + path);
    UniqueFd file(fd);
    std::string content(4096, '\0');
    ssize_t n = ::read(fd, content.data(), content.size());
    if (n < 0) return Status::FromErrno(errno, "read " + path);
    content.resize(static_cast<size_t>(n));
    *out += fmt::format(" content={:?}\n", content);
    return Status::Ok();
  }
  *out += "\n";
  if (!S_ISDIR(st.st_mode)) return Status::Ok();
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), &::closedir);
  if (!dir) return Status::FromErrno(errno, "opendir " + path);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    dirent* d = ::readdir(dir.get());
    if (d == nullptr) {
      if (errno != 0) return Status::FromErrno(errno, "readdir " + path);
      break;
    }
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    SLACKER_RETURN_IF_ERROR(
        Describe(path + "/" + name, rel.empty() ? name : rel + "/" + name, out));
  }
  return Status::Ok();
}

}  // namespace

Result<CanaryTree> CanaryTree::Create(const std::string& dir) {
  CanaryTree tree(dir);
  SLACKER_RETURN_IF_ERROR(MakeCanary(dir, true, ""));
  SLACKER_RETURN_IF_ERROR(MakeCanary(tree.file(), false, "canary secret\n"));
  SLACKER_RETURN_IF_ERROR(MakeCanary(tree.subdir(), true, ""));
  SLACKER_RETURN_IF_ERROR(MakeCanary(tree.subdir() + "/inner", false, "canary inner\n"));
  for (const std::string& p : {tree.subdir() + "/inner", tree.subdir(), tree.file(), dir})
    SLACKER_RETURN_IF_ERROR(SetOldTimes(p));
  return tree;
}

Result<std::string> CanaryTree::Snapshot() const {
  std::string out;
  SLACKER_RETURN_IF_ERROR(Describe(dir_, "", &out));
  return out;
}

}  // namespace slacker::registry_shim::testing
