#include "ctl/image.h"

#include <nlohmann/json.hpp>

#include "ctl/file_stream.h"
#include "registry_shim/reference.h"

namespace slacker::ctl {

using nlohmann::json;

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> chain;
  for (const auto& d : diff_ids) {
    chain.push_back(registry_shim::NextChainId(chain.empty() ? "" : chain.back(), d));
  }
  return chain;
}

namespace {
Result<json> ParseConfig(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Errorf(EINVAL, "image config is not a JSON object");
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object() || !rootfs->contains("diff_ids") ||
      !(*rootfs)["diff_ids"].is_array()) {
    return Errorf(EINVAL, "image config has no rootfs.diff_ids");
  }
  for (const auto& d : (*rootfs)["diff_ids"]) {
    if (!d.is_string()) return Errorf(EINVAL, "image config: rootfs.diff_ids holds a non-string");
  }
  return j;
}

Result<std::vector<std::string>> StringArray(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Errorf(EINVAL, "manifest.json: {} is not an array", key);
  for (const auto& v : *it) {
    if (!v.is_string()) return Errorf(EINVAL, "manifest.json: {} holds a non-string", key);
    out.push_back(v.get<std::string>());
  }
  return out;
}
}  // namespace

Result<std::vector<std::string>> ConfigDiffIds(std::string_view config_json) {
  SLACKER_ASSIGN_OR_RETURN(json j, ParseConfig(config_json));
  return j["rootfs"]["diff_ids"].get<std::vector<std::string>>();
}

Result<std::string> RewriteConfigDiffIds(std::string_view config_json,
                                         const std::vector<std::string>& diff_ids) {
  SLACKER_ASSIGN_OR_RETURN(json j, ParseConfig(config_json));
  size_t old = j["rootfs"]["diff_ids"].size();
  if (old != diff_ids.size()) {
    return Errorf(EINVAL, "image config has {} layers, {} new diff ids given", old, diff_ids.size());
  }
  j["rootfs"]["diff_ids"] = diff_ids;
  return j.dump();
}

Result<SaveManifest> ParseSaveManifest(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array() || j.empty() || !j[0].is_object()) {
    return Errorf(EINVAL, "manifest.json is not a non-empty JSON array of objects");
  }
  const json& img = j[0];
  SaveManifest m;
  if (!img.contains("Config") || !img["Config"].is_string()) {
    return Errorf(EINVAL, "manifest.json has no Config");
  }
  m.config = img["Config"].get<std::string>();
  SLACKER_ASSIGN_OR_RETURN(m.repo_tags, StringArray(img, "RepoTags"));
  SLACKER_ASSIGN_OR_RETURN(m.layers, StringArray(img, "Layers"));
  return m;
}

std::string EncodeSaveManifest(const SaveManifest& m) {
  json img = {{"Config", m.config}, {"RepoTags", m.repo_tags}, {"Layers", m.layers}};
  return json::array({img}).dump();
}

std::string NormalizeRepoTag(const std::string& ref) {
  if (ref.find('@') != std::string::npos) return ref;
  size_t slash = ref.rfind('/');
  size_t colon = ref.rfind(':');
  bool tagged = colon != std::string::npos && (slash == std::string::npos || colon > slash);
  return tagged ? ref : ref + ":latest";
}

}  // namespace slacker::ctl
