#include "ctl/verify.h"

#include <sys/stat.h>

#include <set>

#include "common/files.h"
#include "common/state_layout.h"
#include "ctl/state.h"
#include "driver/layer_record.h"
#include "loopdev/mount.h"
#include "registry_shim/reference.h"
#include "storage_backend/local_backend.h"
#include "storage_backend/store_layout.h"

namespace slacker::ctl {

using driver::Origin;

Result<VerifyReport> Verify(os::Os& os, const storage_backend::Backend& store, const std::string& state_dir,
                            const VerifyOptions& options) {
  SLACKER_ASSIGN_OR_RETURN(auto records, LoadLayerRecords(state_dir));
  VerifyReport report;
  auto problem = [&](std::string subject, std::string message) {
    report.problems.push_back({std::move(subject), std::move(message)});
  };
  std::set<std::string> claimed_volumes, snapshots;
  // A layer slackerd is removing right now (driver/layer_record.h, "<id>.removing"): its
  // volume is being torn down, not an orphan.
  if (auto names = ListDir(common::LayersDir(state_dir)); names.ok()) {
    for (const auto& n : *names) {
      if (auto id = common::LayerIdOfRemovingName(n)) claimed_volumes.insert(*id);
    }
  }
  // Closed permissions (DESIGN.md §9): the state directory, the parents of mount points,
  // and everything in the store are root's alone. slackerd and storaged tighten a store
  // on start; this reports what is open meanwhile (e.g. files copied in by hand).
  for (const std::string& path : {state_dir, common::MountsDir(state_dir), common::LayersDir(state_dir)}) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      problem("permissions " + path, fmt::format("mode {:04o} lets other users in; chmod go-rwx {} (slackerd "
                                                  "tightens it on start)",
                                                  st.st_mode & 07777, path));
    }
  }
  auto loose = storage_backend::FindLoosePermissions(store.root(), /*fix=*/false);
  if (!loose.ok()) return loose.status().Context("check the store's permissions");
  for (const auto& l : *loose) {
    problem("permissions " + l.path,
            fmt::format("mode {:04o} lets other users read the store; chmod go-rwx {} (slackerd and "
                        "slacker-storaged tighten the store on start)",
                        l.mode, l.path));
  }
  std::set<std::string> refs;
  SLACKER_ASSIGN_OR_RETURN(auto all_refs, ReadAllRefs(store.root()));
  for (const auto& hr : all_refs) {
    if (hr.host == options.host_id) refs.insert(hr.snapshots.begin(), hr.snapshots.end());
  }

  for (const auto& lr : records) {
    ++report.layers;
    std::string subject = "layer " + lr.name;
    if (!lr.record.ok()) {
      problem(subject, fmt::format("record {} does not parse ({}); restore it from a backup or remove the "
                                   "image that uses it and delete the file",
                                   lr.file, lr.record.status().message()));
      continue;
    }
    const auto& rec = *lr.record;
    if (rec.id != lr.name) {
      problem(subject, fmt::format("record {} names layer {}; rename the file to {}.json", lr.file, rec.id, rec.id));
    }
    if (rec.has_volume) {
      claimed_volumes.insert(rec.id);
      if (!PathExists(store.VolumePath(rec.id))) {
        problem(subject, fmt::format("has_volume is set but {} is missing; the container's writes are lost: "
                                     "remove the container (docker rm)",
                                     store.VolumePath(rec.id)));
      }
    }
    if (rec.snapshot.empty()) continue;
    const std::string& snap = rec.snapshot;
    if (!store.SnapshotExists(snap)) {
      problem(subject, fmt::format("snapshot {} is missing from store {}; remove the image using this layer "
                                   "(docker rmi) and pull or load it again",
                                   snap, store.root()));
      continue;
    }
    snapshots.insert(snap);
    if (!refs.count(snap)) {
      problem(subject, fmt::format("snapshot {} is not marked in this host's refs/, so gc may delete it; "
                                   "restart slackerd or create the marker refs/<host-id>/{}",
                                   snap, snap));
    }
    if (rec.origin == Origin::kTar && !PathExists(store.SnapshotFilePath(snap, storage_backend::kSkeletonSuffix))) {
      problem(subject, fmt::format("applied from a standard tar but skeleton {} is missing; docker push/save "
                                   "of this layer will fail: re-pull or re-load the image",
                                   store.SnapshotFilePath(snap, storage_backend::kSkeletonSuffix)));
    }
    if (rec.origin == Origin::kReference) {
      std::string ref_path = common::LayerReferenceFile(state_dir, rec.id);
      auto bytes = ReadFileToString(ref_path);
      if (!bytes.ok()) {
        problem(subject, fmt::format("applied from a reference tar but {} is missing; docker push/save of this "
                                     "layer will fail: re-pull the image",
                                     ref_path));
      } else {
        // Verified when it was applied; a layer of the previous release keeps its format 1
        // bytes (Diff must reproduce them), so only what it names is checked here.
        auto ref = registry_shim::ParseReferenceTar(*bytes);
        if (!ref.ok()) {
          problem(subject, fmt::format("{} does not decode ({}); re-pull the image", ref_path, ref.status().message()));
        } else if (ref->snapshot != snap) {
          problem(subject, fmt::format("{} names snapshot {}, the record {}; re-pull the image", ref_path,
                                       ref->snapshot, snap));
        }
      }
    }
  }

  auto volumes = store.ListVolumes();
  if (!volumes.ok()) return volumes.status().Context("list this host's volumes");
  for (const auto& v : *volumes) {
    // A spare volume (driver/spares.cc: slackerd's cache of the next init layer's clone)
    // or a fold volume (driver/overlay.cc): made and discarded by slackerd at any moment;
    // a leftover of a crash is removed by its next start, as any volume no record claims.
    if (storage_backend::IsTransientVolumeName(v)) continue;
    if (!claimed_volumes.count(v)) {
      problem("volume " + v, fmt::format("{} has no layer record claiming it; slackerd deletes it on its next "
                                         "start, or delete it by hand when slackerd is stopped",
                                         store.VolumePath(v)));
    }
  }

  // A clone interrupted before its rename leaves <layer>.img.tmp-XXXX in this host's
  // volume dir; ListVolumes does not see it, so check the directory itself.
  std::string volumes_dir = store.VolumePath("x");
  volumes_dir.resize(volumes_dir.rfind('/'));
  if (auto names = ListDir(volumes_dir); names.ok()) {
    for (const auto& f : *names) {
      auto layer = storage_backend::LayerOfVolumeCloneTemp(f);
      if (!layer || storage_backend::IsTransientVolumeName(*layer)) continue;  // a spare or fold being made
      problem("volume " + *layer,
              fmt::format("{} is the leftover of an interrupted clone; slackerd deletes it on its next start, or "
                          "delete it by hand when slackerd is stopped",
                          JoinPath(volumes_dir, f)));
    }
  }

  for (const auto& snap : snapshots) {
    ++report.snapshots_checked;
    if (!options.mount_snapshots) continue;
    auto view = SnapshotView::Mount(os, state_dir, store.SnapshotPath(snap));
    Status s = view.ok() ? view->Close() : view.status();
    if (s.ok()) {
      ++report.snapshots_mounted;
    } else {
      problem("snapshot " + snap, fmt::format("does not mount read-only ({}); its layers are unusable: remove "
                                              "the images using it and pull them again",
                                              s.message()));
    }
  }
  return report;
}

}  // namespace slacker::ctl
