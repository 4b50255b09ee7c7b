#include "registry_shim/in_root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

namespace slacker::registry_shim {

Result<std::string> CleanTarPath(std::string_view name, std::string_view what) {
  if (name.empty()) return Errorf(EINVAL, "{} has an empty name", what);
  if (name.front() == '/')
    return Errorf(EINVAL, "{} {} escapes the layer root (absolute path)", what, name);
  if (name.find('\0') != std::string_view::npos)
    return Errorf(EINVAL, "{} {:?} contains a NUL byte", what, name);
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    if (slash == std::string_view::npos) slash = name.size();
    std::string_view part = name.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return Errorf(EINVAL, "{} {} escapes the layer root", what, name);
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (std::string_view p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out;
}

Result<UniqueFd> OpenInRoot(int root_fd, const std::string& path, uint64_t flags,
                            uint64_t extra_resolve) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra_resolve;
  const char* p = path.empty() ? "." : path.c_str();
  long fd = -1;
  // EAGAIN: a concurrent rename raced the in-root resolution; retrying is the documented fix.
  for (int attempt = 0; attempt < 16; attempt++) {
    fd = syscall(SYS_openat2, root_fd, p, &how, sizeof how);
    if (fd >= 0 || (errno != EINTR && errno != EAGAIN)) break;
  }
  if (fd < 0)
    return Status::FromErrno(errno, fmt::format("open {:?} beneath the layer root", path));
  return UniqueFd(static_cast<int>(fd));
}

std::pair<std::string, std::string> SplitParent(const std::string& clean_path) {
  size_t slash = clean_path.rfind('/');
  if (slash == std::string::npos) return {"", clean_path};
  return {clean_path.substr(0, slash), clean_path.substr(slash + 1)};
}

}  // namespace slacker::registry_shim
