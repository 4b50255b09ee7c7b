// nfs:// URLs of NFS stores, parsed in one place (slackerd's and slacker-snapshotter's
// --store nfs://..., slacker-nfs-bridge, slackerctl).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace slacker {

struct NfsUrl {
  std::string server;       // HOST
  std::string export_path;  // /PATH, without trailing slashes ("/" for the root)
};

// "nfs://HOST/PATH[?args]" -> HOST and /PATH (trailing slashes dropped, arguments
// ignored); EINVAL naming the expected form otherwise.
Result<NfsUrl> ParseNfsUrl(std::string_view url);

}  // namespace slacker
