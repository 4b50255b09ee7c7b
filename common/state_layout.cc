#include "common/state_layout.h"

#include "common/files.h"

namespace slacker::common {
namespace {

std::optional<std::string> IdBefore(std::string_view name, std::string_view suffix) {
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  return std::string(name.substr(0, name.size() - suffix.size()));
}

}  // namespace

std::string LayersDir(const std::string& state) { return JoinPath(state, "layers"); }
std::string LayerRecordFile(const std::string& state, const std::string& id) {
  return JoinPath(LayersDir(state), id + kLayerRecordSuffix);
}
std::string LayerRemovingFile(const std::string& state, const std::string& id) {
  return JoinPath(LayersDir(state), id + kLayerRemovingSuffix);
}
std::string LayerReferenceFile(const std::string& state, const std::string& id) {
  return JoinPath(LayersDir(state), id + kLayerReferenceSuffix);
}

std::optional<std::string> LayerIdOfRecordName(std::string_view name) {
  if (IsStateTempName(name)) return std::nullopt;
  return IdBefore(name, kLayerRecordSuffix);
}
std::optional<std::string> LayerIdOfRemovingName(std::string_view name) {
  return IdBefore(name, kLayerRemovingSuffix);
}
bool IsStateTempName(std::string_view name) {
  return name.find(".tmp-") != std::string_view::npos || name.ends_with(".skel.tmp");
}

std::string MountsDir(const std::string& state) { return JoinPath(state, "mnt"); }
std::string MountPoint(const std::string& state, const std::string& id) { return JoinPath(MountsDir(state), id); }
std::string ViewsDir(const std::string& state) { return JoinPath(state, "views"); }
std::string OverlaysDir(const std::string& state) { return JoinPath(state, "root"); }
std::string OverlayPoint(const std::string& state, const std::string& id) { return JoinPath(OverlaysDir(state), id); }
std::string LowersDir(const std::string& state) { return JoinPath(state, "lower"); }
std::string LowerPoint(const std::string& state, const std::string& snapshot) {
  return JoinPath(LowersDir(state), snapshot);
}
std::string CtlViewsDir(const std::string& state) { return JoinPath(state, "ctl-views"); }
std::string EmptyDir(const std::string& state) { return JoinPath(state, "empty"); }
std::string SpoolDir(const std::string& state) { return JoinPath(state, "spool"); }
std::string SpoolFile(const std::string& state, const std::string& id) {
  return JoinPath(SpoolDir(state), id + ".tar");
}
std::string PluginFile(const std::string& state) { return JoinPath(state, "plugin.json"); }
std::string StateLockFile(const std::string& state) { return JoinPath(state, "lock"); }
std::string EmbeddedStoreDir(const std::string& state) { return JoinPath(state, "store"); }
std::string EmbeddedStoreImage(const std::string& state) { return JoinPath(state, "store.img"); }
std::string NfsMountPoint(const std::string& state) { return JoinPath(state, "nfs"); }
std::string NfsBridgeLog(const std::string& state) { return JoinPath(state, "nfs-bridge.log"); }
std::string NfsStatsFile(const std::string& state) { return JoinPath(state, "nfs-stats.json"); }
std::string SnapshotterCatalog(const std::string& state) { return JoinPath(state, "catalog.json"); }
std::string SnapshotterDriverState(const std::string& state) { return JoinPath(state, "driver"); }

}  // namespace slacker::common
