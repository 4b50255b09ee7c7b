// The registry as gc's name server (DESIGN.md §5): every snapshot that some manifest's
// small layer blob (a reference tar, usually gzip-compressed by docker push) names.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace slacker::ctl {

// The snapshot a layer blob references: "" when the blob is not a reference tar. Plain
// tars and gzip are read; EINVAL for a compression this build cannot read (zstd) or a
// corrupt gzip stream, so the caller can say loudly what it could not check.
Result<std::string> ReferencedSnapshot(std::string_view blob);

struct RegistryScan {
  std::set<std::string> snapshots;
  int repositories = 0;
  int manifests = 0;
  int reference_blobs = 0;
  // Listed in the catalog but answered 404 (NAME_UNKNOWN) for its tags: a repository a
  // push is creating (registry 2.8 lists it once its first blob is uploaded, tags it when
  // the manifest arrives), or a tag deleted during the walk. Nothing is reachable there
  // by tag, so nothing in it is protected; the worker that pushes still holds its claims.
  int untagged = 0;
  std::vector<std::string> unreadable;  // blobs that could not be checked, with why
};

// Walks /v2/_catalog → tags/list → manifests (v2, OCI; lists and indexes descended) →
// layer blobs smaller than registry_shim::kMaxReferenceTar. `url` is http://HOST:PORT (or HOST:PORT).
// Any failed request is an error (a partial walk must not make gc delete anything), but
// a 404 for a repository's tags or a tag's manifest: see RegistryScan::untagged.
Result<RegistryScan> ScanRegistry(const std::string& url);

}  // namespace slacker::ctl
