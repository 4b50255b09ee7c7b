#include "ctl/state.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/files.h"
#include "common/state_layout.h"
#include "loopdev/mount.h"
#include "storage_backend/local_backend.h"

namespace slacker::ctl {

Result<std::vector<LoadedRecord>> LoadLayerRecords(const std::string& state_dir) {
  std::string dir = common::LayersDir(state_dir);
  auto names = ListDir(dir);
  if (!names.ok()) return names.status().Context("read slackerd state (check --state)");
  std::sort(names->begin(), names->end());
  std::vector<LoadedRecord> out;
  for (const auto& n : *names) {
    auto id = common::LayerIdOfRecordName(n);
    if (!id) continue;
    LoadedRecord r;
    r.file = JoinPath(dir, n);
    r.name = *id;
    auto text = ReadFileToString(r.file);
    r.record = text.ok() ? driver::LayerRecord::FromJson(*text) : Result<driver::LayerRecord>(text.status());
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<HostRefs>> ReadAllRefs(const std::string& store_root) {
  std::string refs = JoinPath(store_root, storage_backend::kRefsDir);
  auto hosts = ListDir(refs);
  if (!hosts.ok()) return hosts.status().Context("read " + refs);
  std::sort(hosts->begin(), hosts->end());
  std::vector<HostRefs> out;
  for (const auto& h : *hosts) {
    auto snaps = ListDir(JoinPath(store_root, storage_backend::HostRefsDir(h)));
    if (!snaps.ok()) return snaps.status().Context("read refs of host " + h);
    HostRefs hr{h, {}};
    for (const auto& s : *snaps) {
      if (storage_backend::IsValidSnapshotId(s)) hr.snapshots.push_back(s);
    }
    std::sort(hr.snapshots.begin(), hr.snapshots.end());
    out.push_back(std::move(hr));
  }
  return out;
}

namespace {

// Views of slackerctl runs that died (SIGKILL) without unmounting: <pid>-<random> whose
// pid is gone. Those of live runs are theirs.
void SweepDeadViews(os::Os& os, const std::string& views) {
  auto names = ListDir(views);
  if (!names.ok()) return;
  for (const auto& n : *names) {
    long pid = std::strtol(n.c_str(), nullptr, 10);
    if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::string dir = JoinPath(views, n);
    if (loopdev::UnmountPath(os, dir, loopdev::BusyPolicy::kDetach).ok()) ::rmdir(dir.c_str());
  }
}

}  // namespace

Result<SnapshotView> SnapshotView::Mount(os::Os& os, const std::string& state_dir, const std::string& image) {
  // Not under <state>/views: slackerd's recovery unmounts everything there, and its
  // views are its own.
  std::string views = common::CtlViewsDir(state_dir);
  SweepDeadViews(os, views);
  std::string dir = JoinPath(views, fmt::format("{}-{}", ::getpid(), RandomHex(8)));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  loopdev::MountedImage::Options opts;
  opts.read_only = true;
  auto m = loopdev::MountedImage::Mount(os, image, dir, opts);
  if (!m.ok()) {
    ::rmdir(dir.c_str());
    return m.status().Context("mount snapshot " + image + " read-only");
  }
  return SnapshotView(dir, std::move(*m));
}

Status SnapshotView::Close() { return image_.Unmount(); }

SnapshotView::~SnapshotView() {
  if (dir_.empty()) return;
  IgnoreError(image_.Unmount(), "a destructor cannot fail; slackerctl sweeps views of dead processes on its next run");
  ::rmdir(dir_.c_str());
}

}  // namespace slacker::ctl
