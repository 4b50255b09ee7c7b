// dockerd as slackerctl sees it: the /usr/bin/docker CLI run as a child process (never
// /usr/local/bin/docker: an unrelated client on some hosts), and dockerd's data root,
// read directly for image configs and for the layerdb that maps a layer's chain id to the
// graphdriver id (cache-id) under which slackerd keeps its record.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "driver/layer_record.h"

namespace slacker::ctl {

inline constexpr const char* kDockerCli = "/usr/bin/docker";

struct DockerTarget {
  std::string host = "unix:///var/run/docker.sock";  // -H
  std::string data_root;  // "" = ask `docker info`
  std::string driver;     // "" = ask `docker info`
};

// Runs `docker -H host ARGS...` and waits. Returns its stdout; a non-zero exit is EIO
// with its stderr in the message.
Result<std::string> RunDocker(const DockerTarget& t, const std::vector<std::string>& args);

// Fills data_root and driver from `docker info` when they are empty.
Status CompleteDockerTarget(DockerTarget* t);

// The image id ("sha256:<hex>") and its config bytes (from <data-root>/image/<driver>/imagedb).
struct ImageConfig {
  std::string id;
  std::string bytes;
};
Result<ImageConfig> ReadImageConfig(const DockerTarget& t, const std::string& image);

// One layer of an image, resolved down to slackerd's record of it.
struct ImageLayer {
  std::string diff_id;
  std::string chain_id;
  std::string cache_id;        // graphdriver id = slackerd's layer id
  driver::LayerRecord record;
  std::string content_snapshot;  // the snapshot holding the full tree up to this layer
};

// Resolves each diff id through <data-root>/image/<driver>/layerdb/sha256/<chain>/cache-id
// to <state>/layers/<cache-id>.json. A layer without a snapshot of its own (content equal
// to its parent's) inherits its parent's content snapshot; "" for an empty base.
// ENOENT naming the layer when dockerd or slackerd does not know it.
Result<std::vector<ImageLayer>> ResolveImageLayers(const DockerTarget& t, const std::string& state_dir,
                                                   const std::vector<std::string>& diff_ids);

}  // namespace slacker::ctl
