// The bridge's NFS session: a pool of connections to one export (libnfs contexts are not
// thread-safe, so each connection serves one request at a time), the counters the stats
// file shows, and the mapping of NFS replies to errors.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/nfs_url.h"
#include "common/status.h"
#include "nfs_bridge/nfs_client.h"
#include "nfs_bridge/unstable_writes.h"

namespace slacker::nfs_bridge {


// How an RPC ended, as libnfs's callbacks report it.
enum class RpcOutcome { kSuccess, kError, kCancelled };

// The Status of one NFS call `what` ("WRITE", "COMMIT"): an RPC failure is EIO with the
// RPC's message; an NFS status other than NFS3_OK (`nfs_ok` false) carries
// `nfs_errno` (libnfs's nfsstat3_to_errno, negative or positive; EIO when it maps to 0)
// and `nfs_status_name`.
Status NfsCallStatus(std::string_view what, RpcOutcome rpc, const char* rpc_error, bool nfs_ok, int nfs_errno,
                     std::string_view nfs_status_name);

struct Counters {
  std::atomic<uint64_t> read_bytes{0}, write_bytes{0}, reads{0}, writes{0}, commits{0}, metadata_ops{0},
      errors{0}, resent_bytes{0};
};

// The counters as one line of JSON (the --stats-file format, nfs_bridge/README.md).
std::string StatsJson(std::string_view url, const Counters& counters);

class NfsSession {
 public:
  // REQUIRES: !clients.empty().
  explicit NfsSession(std::vector<std::unique_ptr<NfsClient>> clients);
  NfsSession(const NfsSession&) = delete;
  NfsSession& operator=(const NfsSession&) = delete;

  // One connection held for the duration of a request: a free one if any, else it waits
  // for one (round robin, so waits spread over the connections).
  class Lease {
   public:
    explicit Lease(NfsSession& session);
    // Holds connection `index` (to close a file's handle on the connection that opened it).
    Lease(NfsSession& session, size_t index);
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    NfsClient& nfs() const { return *session_.slots_[index_]->client; }
    size_t index() const { return index_; }

   private:
    NfsSession& session_;
    size_t index_ = 0;
  };

  size_t size() const { return slots_.size(); }
  Counters& counters() { return counters_; }
  // Counts a failure (rc < 0) in the counters; returns rc.
  int Fail(int rc) {
    if (rc < 0) counters_.errors++;
    return rc;
  }

 private:
  struct Slot {
    std::mutex mu;
    std::unique_ptr<NfsClient> client;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<unsigned> next_{0};
  Counters counters_;
};

// WRITE3 and COMMIT3 of one file by its handle, on any free connection of the session.
class SessionFileChannel : public FileChannel {
 public:
  SessionFileChannel(NfsSession* session, NfsHandle handle) : session_(session), handle_(std::move(handle)) {}
  Result<WriteReply> Write(uint64_t offset, std::span<const char> data, Stability how) override;
  Result<WriteVerifier> Commit() override;  // counts a successful COMMIT

 private:
  NfsSession* const session_;
  const NfsHandle handle_;
};

}  // namespace slacker::nfs_bridge
