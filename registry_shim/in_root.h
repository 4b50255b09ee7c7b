// Path handling for tar entries inside a layer root: lexical cleaning that rejects escapes,
// and opening beneath the root with openat2(RESOLVE_IN_ROOT) so that no symlink in the tree
// can lead outside it. Internal to registry_shim.
#pragma once

#include <linux/openat2.h>  // RESOLVE_* for OpenInRoot

#include <cstdint>
#include <string>
#include <string_view>

#include "common/fd.h"
#include "common/status.h"

namespace slacker::registry_shim {

// Cleans a tar member name lexically ("./a//b/../c/" → "a/c"); "" is the root itself.
// EINVAL when the name is absolute or a ".." climbs above the root:
// "tar entry ../../etc/passwd escapes the layer root". `what` prefixes the message
// ("tar entry", "hardlink target").
Result<std::string> CleanTarPath(std::string_view name, std::string_view what = "tar entry");

// openat2(root_fd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra_resolve).
// path "" opens the root. The error keeps the errno code; the message names `path`.
Result<UniqueFd> OpenInRoot(int root_fd, const std::string& path, uint64_t flags,
                            uint64_t extra_resolve = 0);

// "a/b/c" → {"a/b", "c"}; "c" → {"", "c"}.
std::pair<std::string, std::string> SplitParent(const std::string& clean_path);

}  // namespace slacker::registry_shim
