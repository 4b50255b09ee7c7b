#include "nfs_bridge/supervision.h"

#include <cerrno>
#include <limits>

#include "common/files.h"
#include "common/flags.h"
#include "common/log.h"

namespace slacker::nfs_bridge {

const char* const kUsage =
    "usage: slacker-nfs-fuse [--contexts N] [--stats-file F] [--stable-writes] [--unstable-limit BYTES] "
    "nfs://HOST/EXPORT MOUNTPOINT [FUSE options]\n"
    "  Serves the NFSv3 export at MOUNTPOINT (runs in the foreground; unmount to stop).\n"
    "  --contexts N     parallel NFS connections (default 4, at most 64)\n"
    "  --stats-file F   rewrite F once a second with byte/op counters (JSON)\n"
    "  --stable-writes  WRITE FILE_SYNC instead of UNSTABLE + COMMIT on fsync\n"
    "  --unstable-limit BYTES  unstable (not yet committed) bytes kept per open file before a\n"
    "                   write commits early (default 67108864)\n";

Result<BridgeArgs> ParseBridgeArgs(const std::vector<std::string>& args) {
  BridgeArgs out;
  FlagSet cli;
  cli.Switch("--stable-writes", &out.fs.stable_writes);
  cli.String("--stats-file", &out.stats_file);
  cli.Custom("--contexts", [&out](const std::string& v) {
    SLACKER_ASSIGN_OR_RETURN(out.contexts, ParseIntFlag("--contexts", v, 1, 64));
    return Status::Ok();
  });
  cli.Custom("--unstable-limit", [&out](const std::string& v) {
    SLACKER_ASSIGN_OR_RETURN(out.fs.unstable_limit,
                             ParseIntFlag("--unstable-limit", v, 0, std::numeric_limits<long long>::max()));
    return Status::Ok();
  });
  cli.Custom("-o", [&out](const std::string& v) {  // FUSE's own mount options
    out.fuse_options.push_back("-o");
    out.fuse_options.push_back(v);
    return Status::Ok();
  });
  SLACKER_ASSIGN_OR_RETURN(FlagSet::Parsed parsed, cli.Parse(args));
  if (parsed.help) {
    out.help = true;
    return out;
  }
  if (parsed.positional.size() != 2)
    return Errorf(EINVAL, "want nfs://HOST/EXPORT and MOUNTPOINT, got {} arguments", parsed.positional.size());
  out.url = parsed.positional[0];
  out.mount_point = parsed.positional[1];
  SLACKER_ASSIGN_OR_RETURN(out.nfs, ParseNfsUrl(out.url));
  return out;
}

StatsWriter::StatsWriter(std::string path, std::function<std::string()> render, std::chrono::milliseconds period)
    : path_(std::move(path)), render_(std::move(render)) {
  if (path_.empty()) return;
  thread_ = std::thread([this, period] {
    std::unique_lock<std::mutex> l(mu_);
    bool failing = false;  // logs the first failure of a run of them, not one a second
    while (!stop_) {
      l.unlock();
      Status st = WriteNow();
      if (!st.ok() && !failing) {
        log::Warn("nfs_stats_write_failed",
                  {{"path", path_}, {"err", st.message()}, {"action", "retrying every period; the data path is unaffected"}});
      }
      failing = !st.ok();
      l.lock();
      cv_.wait_for(l, period, [this] { return stop_; });
    }
  });
}

StatsWriter::~StatsWriter() {
  if (path_.empty()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  IgnoreError(WriteNow(), "the last stats at exit are advisory");
}

Status StatsWriter::WriteNow() {
  if (path_.empty()) return Status::Ok();
  // Not durable: rewritten every second, and read by slackerd on this same host.
  return AtomicWriteFile(path_, render_(), /*durable=*/false);
}

}  // namespace slacker::nfs_bridge
