// Parked mounts (issue 17): a Put that releases a layer's last reference leaves the mount
// for DriverOptions::park_time; the reaper thread unmounts it then. And MountFile: never a
// second file system on one file. Why: driver/README.md "Start and stop".
#include <algorithm>

#include "common/fault.h"
#include "common/log.h"
#include "driver/slacker_driver.h"

namespace slacker::driver {

using common::MutexLock;

void SlackerDriver::Park(Layer& layer) {
  layer.parked = true;
  layer.park_until = std::chrono::steady_clock::now() + opts_.park_time;
  {
    MutexLock l(park_mu_);
    parked_[layer.rec.id] = layer.park_until;
  }
  park_cv_.notify_one();
}

void SlackerDriver::Unpark(Layer& layer) {
  if (!layer.parked) return;
  layer.parked = false;
  MutexLock l(park_mu_);
  parked_.erase(layer.rec.id);
}

void SlackerDriver::ReapParked() {
  park_mu_.Lock();
  while (!stop_reaper_) {
    if (parked_.empty()) {
      park_cv_.wait(park_mu_);
      continue;
    }
    auto next = std::min_element(parked_.begin(), parked_.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    // A copy: the wait releases park_mu_, and an Unpark meanwhile erases the entry (the
    // wait reads its deadline again when it wakes).
    const auto deadline = next->second;
    if (std::chrono::steady_clock::now() < deadline) {
      park_cv_.wait_until(park_mu_, deadline);
      continue;
    }
    std::string id = next->first;
    parked_.erase(next);
    park_mu_.Unlock();  // a leaf lock: never held while taking a layer's mutex
    if (auto layer = layers_.Find(id)) {
      MutexLock l(layer->mu);
      // Re-checked under the layer's mutex: a Get may have taken it back, or a later Put
      // parked it again with a later time.
      if (layer->parked && layer->refs == 0 && !layer->removed) {
        if (std::chrono::steady_clock::now() >= layer->park_until) {
          Status s = UnmountLocked(*layer);
          if (!s.ok()) log::Warn("parked_unmount_failed", {{"layer", id}, {"err", s.message()}});
        } else {
          MutexLock pl(park_mu_);
          parked_[id] = layer->park_until;
        }
      }
    }
    park_mu_.Lock();
  }
  park_mu_.Unlock();
}

// A loop device that already backs `file` carries a file system of it that may still be
// alive (the mount of a container whose mount namespace outlived our unmount, a lazily
// detached one, a parked mount adopted after a crash). Mounting that device joins the
// same file system (the kernel finds its super block by the device); a second loop
// device would start a second ext4 on the same blocks, each overwriting the other's
// metadata. The kernel refuses to join when the modes differ (a read-only mount of a
// file system alive read-write: EBUSY), and so do we, naming the device.
Result<loopdev::MountedImage> SlackerDriver::MountFile(const std::string& file, const std::string& target,
                                                       const loopdev::MountedImage::Options& options) {
  std::vector<int> live = LoopsBacking(file);
  if (live.empty()) return loopdev::MountedImage::Mount(os_, file, target, options);
  std::string dev = fmt::format("/dev/loop{}", live.front());
  log::Warn("mount_joins_live_loop", {{"file", file}, {"device", dev}});
  Status s = loopdev::MountExt4(os_, dev, target, options.read_only);
  if (!s.ok()) {
    return Errorf(s.code() ? s.code() : EBUSY,
                  "{} is still in use through {} (a file system of it is alive, e.g. a mount in another "
                  "mount namespace) and joining it failed: {}; refusing to start a second file system on it",
                  file, dev, s.message());
  }
  return loopdev::MountedImage::Adopt(os_, target, dev, live.front());
}

}  // namespace slacker::driver
