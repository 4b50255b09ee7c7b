#include "nfs_bridge/supervision.h"

#include <cerrno>
#include <charconv>

#include "common/files.h"
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

namespace {

template <class T>
Result<T> Number(const std::string& flag, const std::string& text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    return Errorf(EINVAL, "{} wants a number, not {:?}", flag, text);
  return value;
}

}  // namespace

Result<BridgeArgs> ParseBridgeArgs(const std::vector<std::string>& args) {
  BridgeArgs out;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    bool has_value = i + 1 < args.size();
    if (a == "--help" || a == "-h") {
      out.help = true;
      return out;
    } else if (a == "--stable-writes") {
      out.fs.stable_writes = true;
    } else if (a == "--contexts" || a == "--unstable-limit" || a == "--stats-file" || a == "-o") {
      if (!has_value) return Errorf(EINVAL, "{} needs a value", a);
      const std::string& v = args[++i];
      if (a == "--contexts") {
        SLACKER_ASSIGN_OR_RETURN(out.contexts, Number<int>(a, v));
        if (out.contexts < 1 || out.contexts > 64) return Errorf(EINVAL, "--contexts {} is not in 1..64", v);
      } else if (a == "--unstable-limit") {
        SLACKER_ASSIGN_OR_RETURN(out.fs.unstable_limit, Number<uint64_t>(a, v));
      } else if (a == "--stats-file") {
        out.stats_file = v;
      } else {
        out.fuse_options.push_back("-o");
        out.fuse_options.push_back(v);
      }
    } else if (a.starts_with("-")) {
      return Errorf(EINVAL, "unknown option {}", a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return Errorf(EINVAL, "want nfs://HOST/EXPORT and MOUNTPOINT, got {} arguments", positional.size());
  out.url = positional[0];
  out.mount_point = positional[1];
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
