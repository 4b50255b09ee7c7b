#include "loopdev/loop_device.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"

namespace slacker::loopdev {
namespace {

// Dozens of attachers at once (50 parallel `docker run`, load_e2e.sh) all get the same
// lowest free index from LOOP_CTL_GET_FREE; a device udev is still probing also answers
// EBUSY. 16 immediate retries were not enough: retry longer, with a growing jittered
// pause (at most ~3 s in all), so the contenders spread out.
constexpr int kAttachAttempts = 100;
constexpr std::string_view kDeletedSuffix = " (deleted)";

// realpath(3) when the path exists, else the path unchanged (deleted backing files).
std::string Canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  return path;
}

Result<uint64_t> ParseU64(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str()) return Errorf(EINVAL, "{}: not a number: {:?}", what, text);
  return static_cast<uint64_t>(v);
}

}  // namespace

std::string LoopPath(int index) { return fmt::format("/dev/loop{}", index); }

Result<LoopDevice> LoopDevice::Attach(os::Os& os, const std::string& file, const os::LoopConfig& config) {
  Status last;
  for (int attempt = 0; attempt < kAttachAttempts; ++attempt) {
    auto free_index = os.LoopGetFree();
    if (!free_index.ok()) return free_index.status().Context("attach " + file);
    int index = *free_index;
    auto fd = os.LoopConfigure(index, file, config);
    if (fd.ok()) {
      log::Debug("loop_attached", {{"device", LoopPath(index)}, {"file", file}});
      return LoopDevice(&os, index, std::move(fd).value());
    }
    last = fd.status();
    // EBUSY: another attacher bound this index between GET_FREE and CONFIGURE.
    if (last.code() != EBUSY && last.code() != EAGAIN) return last.Context("attach " + file);
    int pause_us = std::min(attempt + 1, 20) * 1500;
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us / 2 + std::rand() % pause_us));
  }
  return last.Context(fmt::format("attach {}: still racing for a free loop device after {} attempts",
                                  file, kAttachAttempts));
}

LoopDevice::LoopDevice(LoopDevice&& other) noexcept
    : os_(other.os_), index_(std::exchange(other.index_, -1)), fd_(std::move(other.fd_)) {}

LoopDevice& LoopDevice::operator=(LoopDevice&& other) noexcept {
  if (this != &other) {
    os_ = other.os_;
    index_ = std::exchange(other.index_, -1);
    fd_ = std::move(other.fd_);
  }
  return *this;
}

LoopDevice::~LoopDevice() = default;

std::string LoopDevice::path() const { return LoopPath(index_); }

Status LoopDevice::Detach() {
  if (index_ < 0 || os_ == nullptr) return Errorf(EINVAL, "detach: no loop device attached");
  Status s = os_->LoopClear(index_);
  fd_.Reset();
  index_ = -1;
  return s;
}

Result<std::vector<int>> FindLoopsBacking(os::Os& os, const std::string& file, Deleted deleted) {
  std::string want = Canonical(file);
  SLACKER_ASSIGN_OR_RETURN(auto entries, os.ListKernelDir("/sys/block"));
  std::vector<int> out;
  for (const auto& name : entries) {
    int index = -1;
    char tail = 0;
    if (std::sscanf(name.c_str(), "loop%d%c", &index, &tail) != 1 || index < 0) continue;
    auto backing = os.ReadKernelFile(fmt::format("/sys/block/{}/loop/backing_file", name));
    if (!backing.ok()) continue;  // not bound (or unbound meanwhile)
    std::string path = *backing;
    while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.pop_back();
    if (path.ends_with(kDeletedSuffix)) {
      if (deleted == Deleted::kNo) continue;
      path.resize(path.size() - kDeletedSuffix.size());
    }
    if (path == want || Canonical(path) == want) out.push_back(index);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<uint64_t> WriteSectors(os::Os& os, int index) {
  std::string path = fmt::format("/sys/block/loop{}/stat", index);
  SLACKER_ASSIGN_OR_RETURN(std::string text, os.ReadKernelFile(path));
  std::istringstream in(text);
  std::string field;
  for (int i = 1; i <= 7; ++i) {
    if (!(in >> field)) return Errorf(EINVAL, "{}: fewer than 7 fields: {:?}", path, text);
  }
  return ParseU64(field, path);
}

Result<uint64_t> LoopSizeBytes(os::Os& os, int index) {
  std::string path = fmt::format("/sys/block/loop{}/size", index);
  SLACKER_ASSIGN_OR_RETURN(std::string text, os.ReadKernelFile(path));
  SLACKER_ASSIGN_OR_RETURN(uint64_t sectors, ParseU64(text, path));
  return sectors * 512;
}

}  // namespace slacker::loopdev
