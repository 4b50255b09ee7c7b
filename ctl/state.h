// What slackerctl reads of a worker: slackerd's host state (<state>/layers/*.json,
// <state>/mnt, <state>/views) and the shared store it uses. slackerctl's own read-only
// mounts live in <state>/ctl-views (never under slackerd's views/).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "driver/layer_record.h"
#include "loopdev/mount.h"
#include "os/os.h"
#include "storage_backend/backend.h"

namespace slacker::ctl {

// One <state>/layers/<name>.json: the record, or why it does not parse.
struct LoadedRecord {
  std::string file;  // path
  std::string name;  // file name without ".json"
  Result<driver::LayerRecord> record = Status::Error(EINVAL, "not read");
};
// Every record file, sorted by name. ENOENT if <state>/layers is missing.
Result<std::vector<LoadedRecord>> LoadLayerRecords(const std::string& state_dir);

// Snapshot ids marked under refs/<host>/ for every host (sorted, unique), by host.
struct HostRefs {
  std::string host;
  std::vector<std::string> snapshots;
};
Result<std::vector<HostRefs>> ReadAllRefs(const std::string& store_root);

}  // namespace slacker::ctl

namespace slacker::ctl {

// A snapshot image mounted read-only (ro loop, ext4 ro,noload) at a fresh directory
// under <state>/ctl-views (common::CtlViewsDir) as <pid>-<random>; unmounted and its
// directory removed on destruction. Mount first unmounts views of slackerctl runs that
// were killed (their pid is gone).
class SnapshotView {
 public:
  static Result<SnapshotView> Mount(os::Os& os, const std::string& state_dir, const std::string& image);
  SnapshotView(SnapshotView&& o) noexcept : dir_(std::exchange(o.dir_, {})), image_(std::move(o.image_)) {}
  SnapshotView& operator=(SnapshotView&&) = delete;
  SnapshotView(const SnapshotView&) = delete;
  SnapshotView& operator=(const SnapshotView&) = delete;
  ~SnapshotView();
  const std::string& dir() const { return dir_; }
  // Unmounts now, reporting failure; the destructor then only removes the directory.
  Status Close();

 private:
  SnapshotView(std::string dir, loopdev::MountedImage image) : dir_(std::move(dir)), image_(std::move(image)) {}
  std::string dir_;
  loopdev::MountedImage image_;
};

}  // namespace slacker::ctl
