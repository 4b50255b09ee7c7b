// The bridge process around the file system: its command line, and the stats file it
// rewrites once a second while it serves (slackerd reads it: <state>/nfs-stats.json).
// slackerd's side of the supervision (start, restart on death, unmount) is
// storage_backend/nfs_view.h.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "nfs_bridge/bridge_fs.h"
#include "nfs_bridge/nfs_session.h"

namespace slacker::nfs_bridge {

extern const char* const kUsage;

struct BridgeArgs {
  bool help = false;  // --help: print kUsage, exit 0
  int contexts = 4;   // 1..64
  std::string stats_file;
  BridgeFs::Options fs;  // write_max is the server's, set after mounting
  std::string url;
  NfsUrl nfs;
  std::string mount_point;
  std::vector<std::string> fuse_options;  // "-o", "X" pairs passed to FUSE
};

// argv[1..]: EINVAL with the reason for an unknown option, a bad number, a wrong count
// of positional arguments or a URL that is not nfs://HOST/EXPORT.
Result<BridgeArgs> ParseBridgeArgs(const std::vector<std::string>& args);

// Writes the stats to `path` (atomically: a temporary file, then rename) every
// `period`, and once more when destroyed. Writes nothing when `path` is empty.
class StatsWriter {
 public:
  StatsWriter(std::string path, std::function<std::string()> render, std::chrono::milliseconds period);
  ~StatsWriter();
  StatsWriter(const StatsWriter&) = delete;
  StatsWriter& operator=(const StatsWriter&) = delete;

  // One write now; the Status of it.
  Status WriteNow();

 private:
  const std::string path_;
  const std::function<std::string()> render_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace slacker::nfs_bridge
