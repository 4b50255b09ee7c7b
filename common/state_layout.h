// A host's state directory (slackerd's --state, default /var/lib/slacker; the
// snapshotter's): the one place that spells its paths, as storage_backend/store_layout.h
// does for the shared store. Host state is root's alone and written by one process (the
// <state>/lock holder), so these are plain paths under `state`, not resolved beneath a
// descriptor. It lives in common/ because loopdev (the embedded store) and
// storage_backend (the lock) use it beside driver/, ctl/, snapshotter/ and cmd/.
//
//   layers/<id>.json        a layer's record (driver/layer_record.h)
//   layers/<id>.removing    the record of a layer whose teardown runs after Remove
//   layers/<id>.ref         the reference tar a layer was applied from (Diff replays it)
//   mnt/<id>                a layer's mount point (its volume's ext4)
//   root/<id>               a layer in overlay form: its overlay, what Get returns
//   lower/<snapshot>        a snapshot mounted read-only once per host: the lower of
//                           every overlay-form layer cloned from it
//   views/<random>          slackerd's read-only views (recovery unmounts them all)
//   ctl-views/<pid>-<rnd>   slackerctl's read-only mounts
//   empty/                  an empty directory: the view of a layer with no snapshot
//   spool/<id>.tar          an ApplyDiff's tar while it is unpacked
//   plugin.json             dockerd's last Init (home, options)
//   lock                    flock: one process per state directory (lease.h)
//   store/, store.img       the embedded store: its mount point and its XFS image
//   nfs/, nfs-bridge.log, nfs-stats.json   slacker-nfs-fuse's mount point, log, counters
//   catalog.json            slacker-snapshotter: its catalog of containerd snapshots
//   driver/                 slacker-snapshotter: the state directory of its driver
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace slacker::common {

inline constexpr const char* kLayerRecordSuffix = ".json";
inline constexpr const char* kLayerRemovingSuffix = ".removing";
inline constexpr const char* kLayerReferenceSuffix = ".ref";

std::string LayersDir(const std::string& state);
std::string LayerRecordFile(const std::string& state, const std::string& id);
std::string LayerRemovingFile(const std::string& state, const std::string& id);
std::string LayerReferenceFile(const std::string& state, const std::string& id);
// In LayersDir: "<id>.json" gives id; a temporary of an atomic write does not.
std::optional<std::string> LayerIdOfRecordName(std::string_view name);
// In LayersDir: "<id>.removing" gives id.
std::optional<std::string> LayerIdOfRemovingName(std::string_view name);
// In LayersDir: an interrupted write's temporary ("<x>.tmp-XXXX", "<x>.skel.tmp").
bool IsStateTempName(std::string_view name);

std::string MountsDir(const std::string& state);
std::string MountPoint(const std::string& state, const std::string& id);
std::string ViewsDir(const std::string& state);
std::string OverlaysDir(const std::string& state);
std::string OverlayPoint(const std::string& state, const std::string& id);
std::string LowersDir(const std::string& state);
std::string LowerPoint(const std::string& state, const std::string& snapshot);
std::string CtlViewsDir(const std::string& state);
std::string EmptyDir(const std::string& state);
std::string SpoolDir(const std::string& state);
std::string SpoolFile(const std::string& state, const std::string& id);
std::string PluginFile(const std::string& state);
std::string StateLockFile(const std::string& state);
std::string EmbeddedStoreDir(const std::string& state);
std::string EmbeddedStoreImage(const std::string& state);
std::string NfsMountPoint(const std::string& state);
std::string NfsBridgeLog(const std::string& state);
std::string NfsStatsFile(const std::string& state);
std::string SnapshotterCatalog(const std::string& state);
std::string SnapshotterDriverState(const std::string& state);

}  // namespace slacker::common
