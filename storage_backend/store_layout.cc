#include "storage_backend/store_layout.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/files.h"
#include "common/hash.h"

namespace slacker::storage_backend {
namespace {

constexpr std::string_view kVolumeCloneTempMark = ".img.tmp-";
constexpr std::string_view kHandOverSuffix = ".img.handover";
constexpr std::string_view kSparePrefix = "_spare-";
constexpr std::string_view kFoldPrefix = "_fold-";

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::optional<std::string> IdOf(std::string_view name, std::string_view suffix, bool (*valid)(std::string_view)) {
  if (!name.ends_with(suffix)) return std::nullopt;
  std::string_view id = name.substr(0, name.size() - suffix.size());
  if (!valid(id)) return std::nullopt;
  return std::string(id);
}

}  // namespace

bool IsValidSnapshotId(std::string_view snap) { return snap.size() == 32 && IsLowerHex(snap); }

bool IsValidLayerName(std::string_view layer) {
  if (layer.empty() || layer.size() > 255 || layer[0] == '.') return false;
  return std::all_of(layer.begin(), layer.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

bool IsValidChainKey(std::string_view key) { return key.size() == 64 && IsLowerHex(key); }

std::string StoreInfoTempName(const std::string& nonce) { return fmt::format("{}.new-{}", kStoreInfoFile, nonce); }
std::string CloneTempName(const std::string& name, const std::string& nonce) {
  return fmt::format("{}.tmp-{}", name, nonce);
}

std::string SnapshotFile(const std::string& snap, std::string_view suffix) {
  return fmt::format("{}/{}{}", kSnapshotsDir, snap, suffix);
}
std::string SnapshotImageTempName(const std::string& snap) { return snap + kImageSuffix + ".tmp"; }

std::string HostVolumesDir(const std::string& host) { return fmt::format("{}/{}", kVolumesDir, host); }
std::string VolumeName(const std::string& layer) { return layer + kImageSuffix; }
std::string VolumeFile(const std::string& host, const std::string& layer) {
  return fmt::format("{}/{}", HostVolumesDir(host), VolumeName(layer));
}
std::string VolumeHandOverName(const std::string& layer) { return layer + std::string(kHandOverSuffix); }
std::string NewSpareVolumeName() { return std::string(kSparePrefix) + RandomHex(8); }
static bool IsPrefixedHex16(std::string_view layer, std::string_view prefix) {
  return layer.size() == prefix.size() + 16 && layer.substr(0, prefix.size()) == prefix &&
         IsLowerHex(layer.substr(prefix.size()));
}
bool IsSpareVolumeName(std::string_view layer) { return IsPrefixedHex16(layer, kSparePrefix); }
std::string NewFoldVolumeName() { return std::string(kFoldPrefix) + RandomHex(8); }
bool IsTransientVolumeName(std::string_view layer) {
  return IsSpareVolumeName(layer) || IsPrefixedHex16(layer, kFoldPrefix);
}

std::string HostRefsDir(const std::string& host) { return fmt::format("{}/{}", kRefsDir, host); }
std::string RefFile(const std::string& host, const std::string& snap) {
  return fmt::format("{}/{}", HostRefsDir(host), snap);
}

std::string LeaseName(const std::string& name) { return name + ".json"; }
std::string LeaseFile(const std::string& host) { return fmt::format("{}/{}", kLeasesDir, LeaseName(host)); }

std::string TemplateFile(uint64_t size_bytes) { return fmt::format("{}/ext4-{}.img", kTemplatesDir, size_bytes); }

std::string ChainFile(const std::string& key) { return fmt::format("{}/{}", kChainsDir, key); }

std::string NameIndexKey(const std::string& ns, const std::string& name) {
  return name.starts_with("sha256:") ? name : ns + "/" + name;
}
std::string NameFileName(const std::string& ns, const std::string& name) {
  return Sha256Hex(NameIndexKey(ns, name)) + ".json";
}
std::string NameFile(const std::string& ns, const std::string& name) {
  return fmt::format("{}/{}", kNamesDir, NameFileName(ns, name));
}

bool IsTempName(std::string_view name) { return name.find(".tmp") != std::string_view::npos; }

std::optional<std::string> LayerOfVolumeCloneTemp(std::string_view name) {
  size_t at = name.find(kVolumeCloneTempMark);
  if (at == std::string_view::npos) return std::nullopt;
  return std::string(name.substr(0, at));
}

std::optional<std::string> LayerOfHandOverName(std::string_view name) {
  return IdOf(name, kHandOverSuffix, IsValidLayerName);
}

std::optional<std::string> SnapshotIdOf(std::string_view name, std::string_view suffix) {
  return IdOf(name, suffix, IsValidSnapshotId);
}
std::optional<std::string> LayerNameOf(std::string_view name, std::string_view suffix) {
  return IdOf(name, suffix, IsValidLayerName);
}

std::string SnapshotPrefixOf(std::string_view name) {
  size_t dot = name.find('.');
  return dot == std::string_view::npos ? "" : std::string(name.substr(0, dot));
}

}  // namespace slacker::storage_backend
