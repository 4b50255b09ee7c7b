#include "loopdev/mount.h"

#include <sys/mount.h>

#include <chrono>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"
#include "loopdev/loop_device.h"

namespace slacker::loopdev {
namespace {

constexpr int kUnmountAttempts = 5;
constexpr auto kUnmountBackoff = std::chrono::milliseconds(20);

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string DecodeOctal(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    auto is_oct = [](char c) { return c >= '0' && c <= '7'; };
    if (in[i] == '\\' && i + 3 < in.size() && is_oct(in[i + 1]) && is_oct(in[i + 2]) &&
        is_oct(in[i + 3])) {
      out += static_cast<char>(((in[i + 1] - '0') << 6) | ((in[i + 2] - '0') << 3) | (in[i + 3] - '0'));
      i += 3;
      continue;
    }
    out += in[i];
  }
  return out;
}

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

Status MountExt4(os::Os& os, const std::string& device, const std::string& target, bool read_only) {
  if (read_only) return os.Mount(device, target, "ext4", MS_RDONLY, "noload");
  return os.Mount(device, target, "ext4", MS_NOATIME, "");
}

Status UnmountPath(os::Os& os, const std::string& target, BusyPolicy busy) {
  Status s;
  for (int attempt = 0; attempt < kUnmountAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(kUnmountBackoff * attempt);
    s = os.Unmount(target, 0);
    if (s.ok() || s.code() == EINVAL || s.code() == ENOENT) return Status::Ok();
    if (s.code() != EBUSY) return s;
  }
  if (busy == BusyPolicy::kDetach) {
    log::Warn("unmount_busy_detaching", {{"path", target}});
    return os.Unmount(target, MNT_DETACH);
  }
  return s.Context(fmt::format("still busy after {} attempts; close what uses {}", kUnmountAttempts, target));
}

Result<std::vector<MountInfoEntry>> ParseMountInfo(std::string_view text) {
  std::vector<MountInfoEntry> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty()) continue;
    auto f = SplitSpaces(line);
    // id parent major:minor root mount_point options [optional...] - fstype source super
    size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") ++sep;
    if (f.size() < 6 || sep + 2 >= f.size())
      return Errorf(EINVAL, "mountinfo line {}: malformed: {:?}", line_no, std::string(line));
    MountInfoEntry e;
    std::string devno(f[2]);
    if (std::sscanf(std::string(f[0]).c_str(), "%d", &e.mount_id) != 1 ||
        std::sscanf(std::string(f[1]).c_str(), "%d", &e.parent_id) != 1 ||
        std::sscanf(devno.c_str(), "%d:%d", &e.major, &e.minor) != 2) {
      return Errorf(EINVAL, "mountinfo line {}: malformed ids: {:?}", line_no, std::string(line));
    }
    e.root = DecodeOctal(f[3]);
    e.mount_point = DecodeOctal(f[4]);
    e.options = std::string(f[5]);
    e.fstype = DecodeOctal(f[sep + 1]);
    e.source = DecodeOctal(f[sep + 2]);
    if (sep + 3 < f.size()) e.super_options = std::string(f[sep + 3]);
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<MountInfoEntry>> ReadMountInfo(os::Os& os) {
  SLACKER_ASSIGN_OR_RETURN(std::string text, os.ReadKernelFile("/proc/self/mountinfo"));
  return ParseMountInfo(text);
}

const MountInfoEntry* FindMount(const std::vector<MountInfoEntry>& mounts, const std::string& mount_point) {
  const MountInfoEntry* found = nullptr;
  for (const auto& m : mounts) {
    if (m.mount_point == mount_point) found = &m;
  }
  return found;
}

Result<MountedImage> MountedImage::Mount(os::Os& os, const std::string& image, const std::string& target,
                                         const Options& options) {
  os::LoopConfig config = options.loop;
  config.read_only = options.read_only;
  SLACKER_ASSIGN_OR_RETURN(LoopDevice loop, LoopDevice::Attach(os, image, config));
  if (options.after_attach) options.after_attach();
  Status s;
  if (options.fstype == "ext4") {
    s = MountExt4(os, loop.path(), target, options.read_only);
  } else {
    s = os.Mount(loop.path(), target, options.fstype, options.read_only ? MS_RDONLY : MS_NOATIME, "");
  }
  if (!s.ok()) {
    // Without autoclear the binding would outlive the fd: clear it explicitly.
    if (!config.autoclear) IgnoreError(loop.Detach(), "rollback: the mount error is what the caller must see");
    return s.Context("mount " + image);
  }
  if (!config.autoclear) {
    log::Warn("mounted_image_without_autoclear", {{"file", image}, {"device", loop.path()}});
  }
  // The mount now holds the loop device; dropping our fd lets autoclear detach it at unmount.
  return MountedImage(&os, target, loop.path(), loop.index());
}

MountedImage::MountedImage(MountedImage&& other) noexcept
    : os_(other.os_),
      target_(std::exchange(other.target_, std::string())),
      device_(std::move(other.device_)),
      loop_index_(std::exchange(other.loop_index_, -1)) {}

MountedImage& MountedImage::operator=(MountedImage&& other) noexcept {
  if (this != &other) {
    IgnoreError(Unmount(), "a move assignment cannot fail; a mount left behind is logged and re-synced at start");
    os_ = other.os_;
    target_ = std::exchange(other.target_, std::string());
    device_ = std::move(other.device_);
    loop_index_ = std::exchange(other.loop_index_, -1);
  }
  return *this;
}

MountedImage::~MountedImage() {
  if (target_.empty()) return;
  Status s = UnmountPath(*os_, target_, BusyPolicy::kDetach);
  if (!s.ok()) log::Error("unmount_failed", {{"path", target_}, {"err", s.message()}});
}

Status MountedImage::Unmount(BusyPolicy busy) {
  if (target_.empty()) return Status::Ok();
  Status s = UnmountPath(*os_, target_, busy);
  if (s.ok()) target_.clear();
  return s;
}

std::string MountedImage::Release() { return std::exchange(target_, std::string()); }

}  // namespace slacker::loopdev
