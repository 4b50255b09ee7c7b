// Docker image metadata as `docker save` / `docker load` carry it: chain ids, the
// config's rootfs.diff_ids, and manifest.json. Pure functions (unit tested).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace slacker::ctl {

// OCI/moby chain ids ("sha256:<hex>") of the layers whose diff ids are given, in order:
// chain[0] = diff[0], chain[i] = sha256(chain[i-1] + " " + diff[i]).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

// rootfs.diff_ids of an image config. EINVAL if the config is not JSON or has none.
Result<std::vector<std::string>> ConfigDiffIds(std::string_view config_json);

// The config with rootfs.diff_ids replaced by `diff_ids` (same count required: EINVAL
// otherwise). history is kept entry for entry, so its non-empty entries still match the
// layers one to one. Keys keep nlohmann's (sorted) order; the image id changes anyway.
Result<std::string> RewriteConfigDiffIds(std::string_view config_json,
                                         const std::vector<std::string>& diff_ids);

// One image of a docker-save manifest.json.
struct SaveManifest {
  std::string config;                  // path of the config inside the tarball
  std::vector<std::string> repo_tags;
  std::vector<std::string> layers;     // paths of the layer tars, base first
};

// The first (only) image of a manifest.json. EINVAL if malformed or empty.
Result<SaveManifest> ParseSaveManifest(std::string_view json);
// manifest.json text for one image.
std::string EncodeSaveManifest(const SaveManifest& m);

// "name" → "name:latest"; names with a tag or digest are returned as they are.
std::string NormalizeRepoTag(const std::string& ref);

}  // namespace slacker::ctl
