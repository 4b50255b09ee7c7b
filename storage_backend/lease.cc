#include "storage_backend/lease.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <condition_variable>
#include <ctime>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/log.h"
#include "common/state_layout.h"
#include "storage_backend/store_layout.h"

namespace slacker::storage_backend {
namespace {

using nlohmann::json;

std::string Hostname() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

std::string BootId() {
  auto id = ReadFileToString("/proc/sys/kernel/random/boot_id");
  if (!id.ok()) return "";
  return id->substr(0, id->find('\n'));
}

// The pid namespace, "pid:[4026531836]": pids are only comparable within one.
std::string PidNamespace() {
  char buf[64] = {};
  ssize_t n = ::readlink("/proc/self/ns/pid", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Field 22 (starttime) of /proc/<pid>/stat; 0 if the process does not exist.
uint64_t ProcessStartTime(int64_t pid) {
  auto stat = ReadFileToString(fmt::format("/proc/{}/stat", pid));
  if (!stat.ok()) return 0;
  auto close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  // After "pid (comm)": field 3 (state) is the first; starttime is field 22.
  size_t pos = close + 1;
  for (int field = 3; field <= 22; ++field) {
    pos = stat->find_first_not_of(' ', pos);
    if (pos == std::string::npos) return 0;
    if (field == 22) return std::strtoull(stat->c_str() + pos, nullptr, 10);
    pos = stat->find(' ', pos);
    if (pos == std::string::npos) return 0;
  }
  return 0;
}

std::string Rfc3339(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm;
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string ToJson(const LeaseHolder& h) {
  return json{{"name", h.name},         {"host", h.host},       {"pid", h.pid},
              {"boot_id", h.boot_id},   {"pid_ns", h.pid_ns},         {"start_time", h.start_time},
              {"program", h.program},
              {"nonce", h.nonce},       {"acquired", h.acquired},     {"expires", h.expires}}
             .dump() +
         "\n";
}

int64_t Now(const LeaseOptions& o) { return o.now ? o.now() : static_cast<int64_t>(::time(nullptr)); }

std::string LeasePath(const std::string& dir, const std::string& name) { return JoinPath(dir, LeaseName(name)); }

Status FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + dir);
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync " + dir);
  return Status::Ok();
}

Result<LeaseHolder> ParseLease(const std::string& path) {
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("nonce") || !j["nonce"].is_string() ||
      !j.contains("expires") || !j["expires"].is_number_integer()) {
    return Errorf(EINVAL, "{}: not a slacker lease (remove it only if no slacker process uses it)", path);
  }
  LeaseHolder h;
  h.name = j.value("name", "");
  h.host = j.value("host", "");
  h.pid = j.value("pid", int64_t{0});
  h.boot_id = j.value("boot_id", "");
  h.pid_ns = j.value("pid_ns", "");
  h.start_time = j.value("start_time", uint64_t{0});
  h.program = j.value("program", "");
  h.nonce = j["nonce"].get<std::string>();
  h.acquired = j.value("acquired", int64_t{0});
  h.expires = j["expires"].get<int64_t>();
  return h;
}

}  // namespace

std::string LeaseHolder::Describe(int64_t now) const {
  return fmt::format("{} pid {} on host {} since {} ({})", program.empty() ? "a process" : program, pid, host,
                     Rfc3339(acquired),
                     expires > now ? fmt::format("expires in {} s unless refreshed", expires - now)
                                   : fmt::format("expired {} s ago", now - expires));
}

bool LeaseIsLive(const LeaseHolder& h, int64_t now) {
  if (h.expires <= now) return false;
  if (h.host == Hostname() && !h.boot_id.empty() && h.boot_id == BootId() && !h.pid_ns.empty() &&
      h.pid_ns == PidNamespace()) {
    // Seen from its own host a lease dies with its process: a crashed daemon's restart
    // need not wait for the expiry.
    return h.pid > 0 && ProcessStartTime(h.pid) == h.start_time;
  }
  return true;
}

Result<LeaseHolder> ReadLease(const std::string& dir, const std::string& name) {
  return ParseLease(LeasePath(dir, name));
}

struct Lease::Refresher {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
};

Lease::Lease(std::string dir, LeaseHolder holder, LeaseOptions opts)
    : dir_(std::move(dir)), holder_(std::move(holder)), opts_(std::move(opts)) {}

std::string Lease::path() const { return LeasePath(dir_, holder_.name); }

Result<std::unique_ptr<Lease>> Lease::Acquire(const std::string& dir, const std::string& name, LeaseOptions opts) {
  std::string what = fmt::format("take lease {}", LeasePath(dir, name));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0700).Context(what));
  const std::string path = LeasePath(dir, name);
  // Each round either links our lease, finds a live holder, or removes one stale lease;
  // more rounds than that mean others keep racing for it.
  for (int round = 0; round < 4; ++round) {
    LeaseHolder me;
    me.name = name;
    me.host = Hostname();
    me.pid = ::getpid();
    me.boot_id = BootId();
    me.pid_ns = PidNamespace();
    me.start_time = ProcessStartTime(me.pid);
    me.program = opts.program;
    me.nonce = RandomHex(16);
    me.acquired = Now(opts);
    me.expires = me.acquired + opts.ttl_sec;
    std::string tmp = fmt::format("{}.new-{}", path, me.nonce);
    SLACKER_RETURN_IF_ERROR(AtomicWriteFile(tmp, ToJson(me), true, 0600).Context(what));
    int rc = ::link(tmp.c_str(), path.c_str());
    int err = errno;
    IgnoreError(RemoveFileIfExists(tmp), "a leftover .new- file is inert (never read)");
    if (rc == 0) {
      SLACKER_RETURN_IF_ERROR(FsyncDir(dir).Context(what));
      log::Info("lease_acquired", {{"lease", path}, {"expires_in_s", std::to_string(opts.ttl_sec)}});
      return std::unique_ptr<Lease>(new Lease(dir, std::move(me), std::move(opts)));
    }
    if (err != EEXIST) return Status::FromErrno(err, what);
    auto cur = ParseLease(path);
    if (!cur.ok()) {
      if (cur.status().code() == ENOENT) continue;  // released meanwhile
      return cur.status().Context(what);
    }
    int64_t now = Now(opts);
    if (LeaseIsLive(*cur, now)) {
      return Errorf(EBUSY, "{} is held by {}: another process acts for {:?} on this store; stop it, or give this "
                    "one its own --host-id", path, cur->Describe(now), name);
    }
    // Stale: move it aside, and check that what we moved is the lease we judged (another
    // starter may have replaced it meanwhile: then put theirs back).
    std::string aside = fmt::format("{}.stale-{}", path, me.nonce);
    if (::rename(path.c_str(), aside.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return Status::FromErrno(errno, what + ": move the stale lease aside");
    }
    auto moved = ParseLease(aside);
    if (moved.ok() && moved->nonce != cur->nonce) {
      if (::link(aside.c_str(), path.c_str()) != 0) {
        log::Error("lease_restore_failed", {{"lease", path}, {"holder", moved->Describe(now)},
                                            {"action", "that holder stops at its next refresh"}});
      }
    } else {
      log::Warn("lease_taken_over", {{"lease", path}, {"stale_holder", cur->Describe(now)}});
    }
    IgnoreError(RemoveFileIfExists(aside), "an inert leftover at worst");
  }
  return Errorf(EBUSY, "{}: other processes keep taking it; retry", what);
}

Status Lease::Refresh() {
  std::string path = this->path();
  auto cur = ParseLease(path);
  int64_t now = Now(opts_);
  if (!cur.ok() && cur.status().code() == ENOENT)
    return Errorf(ESTALE, "lease {} was removed: this process no longer holds it", path);
  if (!cur.ok()) return cur.status().Context("refresh lease");
  if (cur->nonce != holder_.nonce) {
    return Errorf(ESTALE, "lease {} was taken over by {}: this process no longer holds it", path,
                  cur->Describe(now));
  }
  LeaseHolder next = holder_;
  next.expires = now + opts_.ttl_sec;
  SLACKER_RETURN_IF_ERROR(AtomicWriteFile(path, ToJson(next), true, 0600).Context("refresh lease " + path));
  holder_ = next;
  return Status::Ok();
}

void Lease::StartRefresher(std::function<void(const Status&)> on_lost) {
  refresher_ = std::make_unique<Refresher>();
  refresher_->thread = std::thread([this, on_lost = std::move(on_lost)] {
    Refresher& r = *refresher_;
    std::unique_lock<std::mutex> l(r.mu);
    for (;;) {
      if (r.cv.wait_for(l, std::chrono::seconds(std::max<int64_t>(1, opts_.ttl_sec / 3)), [&] { return r.stop; }))
        return;
      Status s = Refresh();
      if (s.ok()) continue;
      bool lost = s.code() == ESTALE || Now(opts_) >= holder_.expires;
      log::Error("lease_refresh_failed", {{"lease", path()}, {"err", s.message()}, {"lost", lost ? "yes" : "no"}});
      if (lost) {
        on_lost(s);
        return;
      }
    }
  });
}

Lease::~Lease() {
  if (refresher_) {
    {
      std::lock_guard<std::mutex> l(refresher_->mu);
      refresher_->stop = true;
    }
    refresher_->cv.notify_all();
    refresher_->thread.join();
  }
  auto cur = ParseLease(path());
  if (cur.ok() && cur->nonce == holder_.nonce) {
    Status s = RemoveFileIfExists(path());
    if (!s.ok()) log::Warn("lease_release_failed", {{"lease", path()}, {"err", s.message()}});
  }
}

namespace {

constexpr std::string_view kRunningSuffix = " running";
constexpr std::string_view kStoppedWord = " stopped ";

StateDirLock::PreviousRun ClassifyLockLine(std::string_view line) {
  if (line.empty()) return StateDirLock::PreviousRun::kNone;
  if (line.ends_with(kRunningSuffix)) return StateDirLock::PreviousRun::kRunning;
  if (line.find(kStoppedWord) != std::string_view::npos) return StateDirLock::PreviousRun::kStopped;
  return StateDirLock::PreviousRun::kUnknown;
}

Status RewriteLockLine(int fd, const std::string& path, const std::string& line) {
  std::string text = line + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    return Status::FromErrno(errno, "write " + path);
  if (::fsync(fd) != 0) return Status::FromErrno(errno, "fsync " + path);
  return Status::Ok();
}

}  // namespace

Result<StateDirLock> StateDirLock::Acquire(const std::string& state_dir, const std::string& program) {
  std::string path = common::StateLockFile(state_dir);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  auto before = ReadFileToString(path);
  std::string previous = before.ok() ? before->substr(0, before->find('\n')) : "";
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) return Status::FromErrno(err, "lock " + path);
    std::string holder = previous.empty() ? "another process" : previous;
    if (holder.ends_with(kRunningSuffix)) holder.resize(holder.size() - kRunningSuffix.size());
    return Errorf(EBUSY, "state directory {} is in use by {} (lock {}): stop it, or use another --state",
                  state_dir, holder, path);
  }
  // Read again under the lock: the previous holder may have ended between the reads.
  before = ReadFileToString(path);
  previous = before.ok() ? before->substr(0, before->find('\n')) : "";
  std::string line = fmt::format("{} pid {} since {}", program, ::getpid(), Rfc3339(::time(nullptr)));
  SLACKER_RETURN_IF_ERROR(RewriteLockLine(fd.get(), path, line + std::string(kRunningSuffix)));
  PreviousRun kind = ClassifyLockLine(previous);
  return StateDirLock(std::move(fd), std::move(path), std::move(line), kind, std::move(previous));
}

Status StateDirLock::MarkStopped() {
  return RewriteLockLine(fd_.get(), path_, fmt::format("{}{}{}", line_, kStoppedWord, Rfc3339(::time(nullptr))));
}

}  // namespace slacker::storage_backend
