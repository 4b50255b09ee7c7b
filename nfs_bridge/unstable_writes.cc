#include "nfs_bridge/unstable_writes.h"

#include <iterator>
#include <limits>
#include <utility>

namespace slacker::nfs_bridge {

UnstableWrites::UnstableWrites(FileChannel* channel, Options options) : channel_(channel), options_(options) {}

Result<uint64_t> UnstableWrites::Write(uint64_t offset, std::span<const char> data) {
  if (data.empty()) return uint64_t{0};
  uint64_t count;
  bool over_limit;
  {
    std::shared_lock io(io_);
    Result<FileChannel::WriteReply> reply =
        channel_->Write(offset, data, options_.stable ? Stability::kFileSync : Stability::kUnstable);
    if (!reply.ok()) return reply.status();
    count = reply->count;
    if (count == 0 || count > data.size()) {
      return Errorf(EIO, "NFS WRITE of {} bytes at offset {}: the server says it took {}", data.size(), offset,
                    count);
    }
    std::lock_guard<std::mutex> g(mu_);
    // Also for a durable write: its bytes supersede what older kept writes hold there, which
    // must not be re-sent over them.
    CutOut(offset, offset + count);
    if (!reply->durable) {
      Kept k{std::vector<char>(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(count)), reply->verifier,
             next_seq_++};
      ranges_.emplace(offset, std::move(k));
      kept_bytes_ += count;
    }
    over_limit = kept_bytes_ > options_.limit;
  }
  if (over_limit) {
    Status st = Sync();
    if (!st.ok()) return st.Context("commit early: over the unstable-write limit");
  }
  return count;
}

void UnstableWrites::CutOut(uint64_t offset, uint64_t end) {
  auto it = ranges_.lower_bound(offset);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.data.size() > offset) it = prev;
  }
  while (it != ranges_.end() && it->first < end) {
    uint64_t o = it->first;
    uint64_t e = o + it->second.data.size();
    Kept old = std::move(it->second);
    it = ranges_.erase(it);
    kept_bytes_ -= old.data.size();
    if (o < offset) {
      auto cut = old.data.begin() + static_cast<std::ptrdiff_t>(offset - o);
      Kept left{std::vector<char>(old.data.begin(), cut), old.verifier, old.seq};
      kept_bytes_ += left.data.size();
      ranges_.emplace(o, std::move(left));
    }
    if (e > end) {
      auto cut = old.data.begin() + static_cast<std::ptrdiff_t>(end - o);
      Kept right{std::vector<char>(cut, old.data.end()), old.verifier, old.seq};
      kept_bytes_ += right.data.size();
      ranges_.emplace(end, std::move(right));
      break;  // the ranges do not overlap: nothing else reaches below `end`
    }
  }
}

size_t UnstableWrites::DropCommitted(uint64_t upto, const WriteVerifier& verifier) {
  std::lock_guard<std::mutex> g(mu_);
  size_t remaining = 0;
  for (auto it = ranges_.begin(); it != ranges_.end();) {
    if (it->second.seq >= upto) {
      ++it;
    } else if (it->second.verifier == verifier) {
      kept_bytes_ -= it->second.data.size();
      it = ranges_.erase(it);
    } else {
      ++remaining;
      ++it;
    }
  }
  return remaining;
}

Status UnstableWrites::Resend(uint64_t upto, const WriteVerifier& verifier, Stability how) {
  // io_ is held exclusively: no Write changes ranges_ now, so its entries and their data
  // stay put while they are sent without mu_ held; changes still take mu_ for the readers
  // of the counters.
  for (auto it = ranges_.begin(); it != ranges_.end();) {
    Kept& k = it->second;
    if (k.seq >= upto || k.verifier == verifier) {
      ++it;
      continue;
    }
    bool durable = true;
    bool one_verifier = true;
    WriteVerifier got{};
    for (uint64_t done = 0; done < k.data.size();) {
      std::span<const char> rest(k.data.data() + done, k.data.size() - done);
      Result<FileChannel::WriteReply> reply = channel_->Write(it->first + done, rest, how);
      if (!reply.ok()) return reply.status().Context("re-send an unstable write after the server restarted");
      if (reply->count == 0 || reply->count > rest.size()) {
        return Errorf(EIO, "NFS WRITE (re-send) of {} bytes at offset {}: the server says it took {}", rest.size(),
                      it->first + done, reply->count);
      }
      if (done == 0) got = reply->verifier;
      one_verifier = one_verifier && got == reply->verifier;
      durable = durable && reply->durable;
      done += reply->count;
    }
    std::lock_guard<std::mutex> g(mu_);
    resent_bytes_ += k.data.size();
    if (durable) {
      kept_bytes_ -= k.data.size();
      it = ranges_.erase(it);
      continue;
    }
    // Parts under different verifiers: the server restarted during the re-send; keep the
    // old verifier so that the next round sends it all again.
    if (one_verifier) k.verifier = got;
    ++it;
  }
  return Status::Ok();
}

Status UnstableWrites::Sync() {
  uint64_t upto;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (ranges_.empty()) return Status::Ok();  // every write so far came back durable or was committed
    upto = next_seq_;
  }
  {
    std::shared_lock io(io_);
    Result<WriteVerifier> v = channel_->Commit();
    if (!v.ok()) return v.status().Context("NFS COMMIT");
    if (DropCommitted(upto, *v) == 0) return Status::Ok();
  }
  // Some writes were acknowledged by another server instance than the one that committed:
  // they may be lost. Send them again with no other write in flight.
  std::unique_lock io(io_);
  for (int round = 0;; ++round) {
    Result<WriteVerifier> v = channel_->Commit();
    if (!v.ok()) return v.status().Context("NFS COMMIT after re-sending unstable writes");
    size_t remaining = DropCommitted(upto, *v);
    if (remaining == 0) return Status::Ok();
    if (round > options_.unstable_rounds) {
      return Errorf(EIO,
                    "NFS COMMIT: {} writes still not durable after {} re-sends (the server's write verifier keeps "
                    "changing, or it answers FILE_SYNC writes as unstable)",
                    remaining, round);
    }
    Stability how = round < options_.unstable_rounds ? Stability::kUnstable : Stability::kFileSync;
    Status st = Resend(upto, *v, how);
    if (!st.ok()) return st;
  }
}

void UnstableWrites::Truncate(uint64_t size) {
  std::unique_lock io(io_);
  std::lock_guard<std::mutex> g(mu_);
  CutOut(size, std::numeric_limits<uint64_t>::max());
}

uint64_t UnstableWrites::kept_bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  return kept_bytes_;
}

size_t UnstableWrites::kept_writes() const {
  std::lock_guard<std::mutex> g(mu_);
  return ranges_.size();
}

uint64_t UnstableWrites::resent_bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  return resent_bytes_;
}

}  // namespace slacker::nfs_bridge
