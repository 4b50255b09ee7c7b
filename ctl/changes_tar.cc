#include "ctl/changes_tar.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <utility>

#include "ctl/file_stream.h"
#include "driver/changes.h"
#include "registry_shim/tar.h"

namespace slacker::ctl {

using registry_shim::TarEntry;

namespace {

Status ReadXattrs(const std::string& path, TarEntry* e) {
  ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) return errno == ENOTSUP ? Status::Ok() : Status::FromErrno(errno, "llistxattr " + path);
  std::string names(static_cast<size_t>(n), '\0');
  n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) return Status::FromErrno(errno, "llistxattr " + path);
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t len = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (len < 0) return Status::FromErrno(errno, "lgetxattr " + name + " of " + path);
    std::string value(static_cast<size_t>(len), '\0');
    len = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (len < 0) return Status::FromErrno(errno, "lgetxattr " + name + " of " + path);
    value.resize(static_cast<size_t>(len));
    e->xattrs.emplace_back(std::move(name), std::move(value));
  }
  return Status::Ok();
}

// A deleted path /a/b becomes the whiteout a/.wh.b.
std::string WhiteoutName(const std::string& path) {
  size_t slash = path.rfind('/');
  return path.substr(1, slash) + ".wh." + path.substr(slash + 1);
}

}  // namespace

Status WriteChangesTar(const std::string& new_root, const std::string& old_root, ByteSink& out) {
  SLACKER_ASSIGN_OR_RETURN(auto changes, driver::ComputeChanges(new_root, old_root));
  registry_shim::TarWriter tar(out);
  std::map<std::pair<dev_t, ino_t>, std::string> written_inodes;
  for (const auto& c : changes) {
    TarEntry e;
    if (c.kind == driver::ChangeKind::kDelete) {
      e.name = WhiteoutName(c.path);
      e.mode = 0;
      SLACKER_RETURN_IF_ERROR(tar.Add(e));
      continue;
    }
    std::string path = new_root + c.path;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "lstat " + path);
    e.name = c.path.substr(1);
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_sec = st.st_mtim.tv_sec;
    e.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
    SLACKER_RETURN_IF_ERROR(ReadXattrs(path, &e));
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, first] = written_inodes.try_emplace({st.st_dev, st.st_ino}, e.name);
      if (!first) {
        e.typeflag = registry_shim::kTarHardlink;
        e.linkname = it->second;
        SLACKER_RETURN_IF_ERROR(tar.Add(e).Context("tar " + path));
        continue;
      }
    }
    Status s;
    switch (st.st_mode & S_IFMT) {
      case S_IFREG: {
        e.typeflag = registry_shim::kTarRegular;
        SLACKER_ASSIGN_OR_RETURN(auto body, MappedFile::Open(path));
        s = tar.Add(e, body.bytes());
        break;
      }
      case S_IFDIR:
        e.typeflag = registry_shim::kTarDirectory;
        e.name += "/";
        s = tar.Add(e);
        break;
      case S_IFLNK: {
        e.typeflag = registry_shim::kTarSymlink;
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
        if (n < 0) return Status::FromErrno(errno, "readlink " + path);
        target.resize(static_cast<size_t>(n));
        e.linkname = target;
        s = tar.Add(e);
        break;
      }
      case S_IFCHR:
      case S_IFBLK:
        e.typeflag = S_ISCHR(st.st_mode) ? registry_shim::kTarCharDevice : registry_shim::kTarBlockDevice;
        e.devmajor = major(st.st_rdev);
        e.devminor = minor(st.st_rdev);
        s = tar.Add(e);
        break;
      case S_IFIFO:
        e.typeflag = registry_shim::kTarFifo;
        s = tar.Add(e);
        break;
      default:
        continue;  // sockets are not carried by layer tars (moby skips them too)
    }
    SLACKER_RETURN_IF_ERROR(s.Context("tar " + path));
  }
  return tar.Finish();
}

}  // namespace slacker::ctl
