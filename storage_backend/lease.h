// Who may act for a name on the shared store (a host id; the store's gc), and who owns a
// host-local state directory. Protocol and staleness rules: storage_backend/STORE.md.
//
// A lease is the file <dir>/<name>.json on the store:
//   {"name":…,"host":<hostname>,"pid":…,"boot_id":…,"pid_ns":…,"start_time":<clock ticks>,
//    "program":…,"nonce":<32 hex>,"acquired":<unix s>,"expires":<unix s>}
// created with link(2) (no-clobber, atomic on local file systems and NFS), refreshed by
// writing a new file and renaming it over the old one after checking the nonce is still
// ours, and removed on release. No flock/fcntl lock crosses NFS clients: a lease is live
// until `expires`, or, seen from the host that holds it (same hostname, boot id and pid
// namespace), until its process is gone. A stale lease may be taken over.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace slacker::storage_backend {

// Seconds a lease stays live without a refresh. The holder refreshes every third of it.
inline constexpr int64_t kLeaseTtlSec = 60;

struct LeaseHolder {
  std::string name;
  std::string host;     // gethostname()
  int64_t pid = 0;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id
  std::string pid_ns;   // readlink /proc/self/ns/pid: pids compare only within one
  uint64_t start_time = 0;  // field 22 of /proc/<pid>/stat
  std::string program;
  std::string nonce;
  int64_t acquired = 0;
  int64_t expires = 0;

  // "slackerd pid 123 on host w1 since 2026-12-02T06:56:37Z (expires in 40 s)".
  std::string Describe(int64_t now) const;
};

// Default initializers let callers name only the fields they set.
struct LeaseOptions {
  std::string program = {};           // recorded in the lease, named in errors
  int64_t ttl_sec = kLeaseTtlSec;
  std::function<int64_t()> now = {};  // unix seconds; default time(nullptr). Tests move it.
};

// Whether `h` still holds its lease at `now`, judged from this host: not before its
// expiry; and on the same host (hostname and boot id), only while its process (pid with
// that start time) exists.
bool LeaseIsLive(const LeaseHolder& h, int64_t now);

// The holder recorded in <dir>/<name>.json. ENOENT if there is none, EINVAL if unreadable.
Result<LeaseHolder> ReadLease(const std::string& dir, const std::string& name);

class Lease {
 public:
  // Takes <dir>/<name>.json (dir created 0700). EBUSY with a message naming the holder
  // (program, pid, host, since when) when a live lease exists; a stale one is taken over
  // (logged with its holder).
  static Result<std::unique_ptr<Lease>> Acquire(const std::string& dir, const std::string& name,
                                                LeaseOptions opts);
  // Releases (removes the file if it is still ours); stops the refresher.
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Pushes `expires` to now + ttl. ESTALE naming the new holder if the lease was taken
  // over (then this process no longer holds it and must stop acting for the name).
  Status Refresh();
  // Refreshes every ttl/3 on a thread until destruction; calls `on_lost` (once, on that
  // thread) when a refresh finds the lease taken over or fails for a whole ttl.
  void StartRefresher(std::function<void(const Status&)> on_lost);

  const LeaseHolder& holder() const { return holder_; }
  std::string path() const;

 private:
  Lease(std::string dir, LeaseHolder holder, LeaseOptions opts);
  struct Refresher;

  const std::string dir_;
  LeaseHolder holder_;
  const LeaseOptions opts_;
  std::unique_ptr<Refresher> refresher_;
};

// An exclusive flock on <state_dir>/lock for the life of the object: one process per
// host-local state directory. The file holds one line: the holder's pid (for the error
// message) and how its run ended, "PROGRAM pid N since T running" while it runs and
// "PROGRAM pid N since T stopped T2" once MarkStopped recorded a clean stop. A line
// still "running" when the next process takes the lock tells it the previous one
// crashed, was killed or lost power.
class StateDirLock {
 public:
  enum class PreviousRun {
    kNone,     // a new state directory
    kStopped,  // the previous holder recorded a clean stop
    kRunning,  // it did not: it crashed, was SIGKILLed, or the host went down
    kUnknown,  // a line this release does not know (one written before the stop was recorded)
  };
  // EBUSY naming the pid that holds it.
  static Result<StateDirLock> Acquire(const std::string& state_dir, const std::string& program);
  StateDirLock(StateDirLock&&) = default;
  StateDirLock& operator=(StateDirLock&&) = default;

  PreviousRun previous_run() const { return previous_run_; }
  const std::string& previous_line() const { return previous_line_; }  // "" for kNone
  // Rewrites the line as "... stopped T" and fsyncs it: call at the end of a clean stop.
  Status MarkStopped();

 private:
  StateDirLock(UniqueFd fd, std::string path, std::string line, PreviousRun previous, std::string previous_line)
      : fd_(std::move(fd)), path_(std::move(path)), line_(std::move(line)), previous_run_(previous),
        previous_line_(std::move(previous_line)) {}
  UniqueFd fd_;
  std::string path_;
  std::string line_;  // "PROGRAM pid N since T"
  PreviousRun previous_run_;
  std::string previous_line_;
};

}  // namespace slacker::storage_backend
