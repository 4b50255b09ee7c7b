// docker-save tarballs: the format `docker save` writes and `docker load` reads
// (manifest.json + <config>.json + one layer.tar per layer).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace slacker::ctl {

// Extracts the regular files of a docker-save tarball into `dir` (which exists). Names
// that are absolute or climb out with ".." are refused (EINVAL); other entry types are
// skipped (docker save writes only dirs, files and symlinks to layers it already holds).
Status ExtractSaveTarball(const std::string& tarball, const std::string& dir);

struct SaveLayer {
  std::string diff_id;  // "sha256:<hex>" of the layer tar
  std::string file;     // the layer tar on disk, or
  std::string bytes;    // the layer tar itself (small: reference tars)
};

// Writes a docker-save tarball of one image tagged `repo_tag` to `out_path` (via a
// temporary file, then rename). Layer i is stored as <diff hex>/layer.tar.
Status WriteSaveTarball(const std::string& out_path, const std::string& config_bytes,
                        const std::string& repo_tag, const std::vector<SaveLayer>& layers);

}  // namespace slacker::ctl
