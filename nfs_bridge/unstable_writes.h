// The bridge's record of the WRITEs an NFSv3 server acknowledged UNSTABLE (RFC 1813 §3.3.7,
// §3.3.21): the data is kept until a COMMIT returns the write verifier the data was
// written under. A different verifier means the server restarted in between and may have
// lost the data; the kept writes are then sent again and committed again, so fsync(2) on
// the bridge means what it says. Independent of libnfs: the NFS calls come through
// FileChannel (raw WRITE3/COMMIT3 in main.cc, a fake server in the tests).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

#include "common/status.h"

namespace slacker::nfs_bridge {

// NFS3_WRITEVERFSIZE bytes: the server's instance as seen by WRITE and COMMIT replies.
using WriteVerifier = std::array<unsigned char, 8>;

enum class Stability { kUnstable, kFileSync };

// The NFSv3 calls on one file that UnstableWrites needs. Implementations are called from
// several threads at once.
class FileChannel {
 public:
  struct WriteReply {
    uint64_t count = 0;     // bytes the server took; may be less than asked
    bool durable = false;   // the server says FILE_SYNC or DATA_SYNC: nothing to keep
    WriteVerifier verifier{};
  };
  virtual ~FileChannel() = default;
  // WRITE3 of `data` at `offset`. Errors carry an errno code (ESTALE, EIO, ...).
  virtual Result<WriteReply> Write(uint64_t offset, std::span<const char> data, Stability how) = 0;
  // COMMIT3 of the whole file (offset 0, count 0); returns the server's verifier.
  virtual Result<WriteVerifier> Commit() = 0;
};

// The unstable writes of one file. Thread-safe: FUSE calls Write and Sync from several
// threads at once.
//
// Invariant: the kept ranges do not overlap (a newer write cuts its range out of older
// ones), so re-sending any subset of them never puts older bytes over newer ones. Two
// writes to overlapping ranges in flight at the same time have no defined order (as on
// any file system); the one whose reply is recorded last is the one kept.
class UnstableWrites {
 public:
  struct Options {
    // Kept bytes above which a Write makes everything durable before it returns: bounds
    // the memory the bridge holds per open file.
    uint64_t limit = 64ull << 20;
    // Every WRITE goes out FILE_SYNC (slacker-nfs-fuse --stable-writes): nothing is kept.
    bool stable = false;
    // Re-send rounds that use UNSTABLE + COMMIT before the last one, which uses FILE_SYNC
    // (a server that restarts again and again still ends with the data durable).
    int unstable_rounds = 3;
  };

  // REQUIRES: `channel` outlives this object.
  UnstableWrites(FileChannel* channel, Options options);
  UnstableWrites(const UnstableWrites&) = delete;
  UnstableWrites& operator=(const UnstableWrites&) = delete;

  // One WRITE of `data` at `offset`; keeps what the server took UNSTABLE. Returns the bytes
  // the server took (may be fewer than data.size(); 0 only for empty data). When the kept
  // bytes exceed Options::limit, Syncs before returning.
  Result<uint64_t> Write(uint64_t offset, std::span<const char> data);

  // Makes every write that returned before this call durable: COMMIT; the writes whose
  // verifier differs from the COMMIT's are sent again, and COMMIT again, until they match.
  // On error the writes stay kept (a later Sync tries again).
  Status Sync();

  // Forgets what is kept beyond `size` (the file was truncated to `size` after a Sync).
  void Truncate(uint64_t size);

  uint64_t kept_bytes() const;
  size_t kept_writes() const;
  uint64_t resent_bytes() const;

 private:
  struct Kept {
    std::vector<char> data;
    WriteVerifier verifier{};
    uint64_t seq = 0;  // order of recording: Sync covers those recorded before it began
  };
  using Ranges = std::map<uint64_t, Kept>;  // by offset; non-overlapping

  // REQUIRES: mu_ held.
  void CutOut(uint64_t offset, uint64_t end);
  // Drops the ranges recorded before `upto` under `verifier`; returns how many ranges
  // recorded before `upto` remain. REQUIRES: mu_ not held.
  size_t DropCommitted(uint64_t upto, const WriteVerifier& verifier);
  // Sends again the ranges recorded before `upto` whose verifier is not `verifier`.
  // REQUIRES: io_ held exclusively.
  Status Resend(uint64_t upto, const WriteVerifier& verifier, Stability how);

  FileChannel* const channel_;
  const Options options_;
  // Shared by every WRITE from its send until its reply is recorded and by the first
  // COMMIT of a Sync; exclusive while kept data is re-sent, so that no newer write is in
  // flight to the same range and the ranges do not change under the re-send.
  std::shared_mutex io_;
  mutable std::mutex mu_;  // guards everything below
  Ranges ranges_;
  uint64_t kept_bytes_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t resent_bytes_ = 0;
};

}  // namespace slacker::nfs_bridge
