#include "nfs_bridge/unstable_writes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace slacker::nfs_bridge {
namespace {

// An NFSv3 server's view of one file: what a crash keeps (`durable`) and what it serves
// (`cached`). UNSTABLE writes reach only the cache; COMMIT and FILE_SYNC make it durable;
// Crash() loses the cache and changes the write verifier, as a restart does.
class FakeServer : public FileChannel {
 public:
  Result<WriteReply> Write(uint64_t offset, std::span<const char> data, Stability how) override {
    std::lock_guard<std::mutex> g(mu_);
    ++writes;
    if (write_error != 0) return Status::Error(write_error, "fake WRITE error");
    size_t n = std::min<size_t>(data.size(), max_count);
    Put(&cached, offset, data.first(n));
    bool durable = reply_durable || (how == Stability::kFileSync && honour_file_sync);
    if (durable) Put(&durable_, offset, data.first(n));
    return WriteReply{n, durable, verifier};
  }

  Result<WriteVerifier> Commit() override {
    std::lock_guard<std::mutex> g(mu_);
    ++commits;
    if (commit_error != 0) return Status::Error(commit_error, "fake COMMIT error");
    if (crash_at_commits > 0) {
      --crash_at_commits;
      CrashLocked();  // restarted just before this COMMIT arrived: nothing to commit
    }
    durable_ = cached;
    return verifier;
  }

  void Crash() {
    std::lock_guard<std::mutex> g(mu_);
    CrashLocked();
  }

  std::string Durable() {
    std::lock_guard<std::mutex> g(mu_);
    return durable_;
  }

  std::string cached;
  WriteVerifier verifier{1};
  size_t max_count = SIZE_MAX;
  bool honour_file_sync = true;
  bool reply_durable = false;  // answers every WRITE FILE_SYNC
  int write_error = 0;
  int commit_error = 0;
  int crash_at_commits = 0;  // the next N COMMITs each find a freshly restarted server
  int writes = 0;
  int commits = 0;

 private:
  static void Put(std::string* file, uint64_t offset, std::span<const char> data) {
    if (file->size() < offset + data.size()) file->resize(offset + data.size(), '\0');
    std::copy(data.begin(), data.end(), file->begin() + static_cast<std::ptrdiff_t>(offset));
  }
  void CrashLocked() {
    cached = durable_;
    ++verifier[0];
  }

  std::mutex mu_;
  std::string durable_;
};

std::span<const char> Bytes(std::string_view s) { return {s.data(), s.size()}; }

void MustWrite(UnstableWrites* log, uint64_t offset, std::string_view s) {
  Result<uint64_t> n = log->Write(offset, Bytes(s));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(s.size(), *n);
}

// Written, committed under the verifier it was written under: durable, nothing kept, nothing re-sent.
TEST(UnstableWritesTest, CommitUnderTheSameVerifierDropsTheWrites) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "hello");
  EXPECT_EQ(5u, log.kept_bytes());
  EXPECT_EQ("", server.Durable());
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("hello", server.Durable());
  EXPECT_EQ(0u, log.kept_bytes());
  EXPECT_EQ(0u, log.resent_bytes());
  EXPECT_EQ(1, server.commits);
}

// The server restarts between WRITE and COMMIT (the COMMIT's verifier is new): the write
// is sent again and committed, so Sync ends with the data durable.
TEST(UnstableWritesTest, VerifierChangedAtCommitResendsTheWrites) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "abc");
  MustWrite(&log, 10, "xyz");
  server.Crash();
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(std::string("abc\0\0\0\0\0\0\0xyz", 13), server.Durable());
  EXPECT_EQ(6u, log.resent_bytes());
  EXPECT_EQ(0u, log.kept_writes());
}

// A later WRITE already sees the new verifier: only the writes from before the restart
// are sent again.
TEST(UnstableWritesTest, VerifierChangedAtALaterWriteResendsOnlyTheOlderWrites) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "old");
  server.Crash();
  MustWrite(&log, 3, "new");
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("oldnew", server.Durable());
  EXPECT_EQ(3u, log.resent_bytes());
}

// A re-send never puts older bytes over a newer write to the same range.
TEST(UnstableWritesTest, ResendKeepsNewerBytesOfOverlappingWrites) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "aaaaaa");
  MustWrite(&log, 2, "bb");
  EXPECT_EQ(6u, log.kept_bytes());
  EXPECT_EQ(3u, log.kept_writes());  // "aa", "bb", "aa"
  server.Crash();
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("aabbaa", server.Durable());
}

// A durable write (the server chose FILE_SYNC) over kept data: the older kept bytes there
// are not re-sent over it.
TEST(UnstableWritesTest, DurableWriteSupersedesOlderKeptBytes) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "aaaa");
  server.reply_durable = true;
  MustWrite(&log, 0, "ss");
  EXPECT_EQ(2u, log.kept_bytes());
  server.Crash();
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("ssaa", server.Durable());
}

// Over the memory limit, the Write that crosses it commits before it returns.
TEST(UnstableWritesTest, OverTheLimitAWriteCommitsEarly) {
  FakeServer server;
  UnstableWrites::Options o;
  o.limit = 8;
  UnstableWrites log(&server, o);
  MustWrite(&log, 0, "12345678");
  EXPECT_EQ(0, server.commits);
  EXPECT_EQ(8u, log.kept_bytes());
  MustWrite(&log, 8, "9");
  EXPECT_EQ(1, server.commits);
  EXPECT_EQ(0u, log.kept_bytes());
  EXPECT_EQ("123456789", server.Durable());
}

// --stable-writes: FILE_SYNC replies are not kept, and Sync then needs no COMMIT.
TEST(UnstableWritesTest, StableWritesKeepNothing) {
  FakeServer server;
  UnstableWrites::Options o;
  o.stable = true;
  UnstableWrites log(&server, o);
  MustWrite(&log, 0, "sync");
  EXPECT_EQ(0u, log.kept_bytes());
  EXPECT_EQ("sync", server.Durable());
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(0, server.commits);
}

// The server takes fewer bytes than asked: only those are kept, the caller sees the count.
TEST(UnstableWritesTest, ShortWriteKeepsWhatTheServerTook) {
  FakeServer server;
  server.max_count = 3;
  UnstableWrites log(&server, {});
  Result<uint64_t> n = log.Write(0, Bytes("abcdef"));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(3u, *n);
  EXPECT_EQ(3u, log.kept_bytes());
  server.Crash();
  ASSERT_TRUE(log.Sync().ok());  // the re-send is short too: it loops until all is sent
  EXPECT_EQ("abc", server.Durable());
}

// A failed COMMIT fails Sync with its errno and keeps the writes for the next Sync.
TEST(UnstableWritesTest, FailedCommitKeepsTheWrites) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "keep");
  server.commit_error = EIO;
  Status st = log.Sync();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(EIO, st.code());
  EXPECT_EQ(4u, log.kept_bytes());
  server.commit_error = 0;
  server.Crash();
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("keep", server.Durable());
}

// A failed WRITE is an error for the caller and keeps nothing.
TEST(UnstableWritesTest, FailedWriteKeepsNothing) {
  FakeServer server;
  server.write_error = ESTALE;
  UnstableWrites log(&server, {});
  Result<uint64_t> n = log.Write(0, Bytes("x"));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(ESTALE, n.status().code());
  EXPECT_EQ(0u, log.kept_bytes());
}

// A server that restarts before every COMMIT: after the UNSTABLE rounds the last re-send
// is FILE_SYNC, and Sync ends with the data durable.
TEST(UnstableWritesTest, ServerRestartingAtEveryCommitEndsWithFileSync) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "data");
  server.crash_at_commits = 100;
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("data", server.Durable());
  EXPECT_EQ(0u, log.kept_bytes());
}

// ... and one that answers FILE_SYNC as UNSTABLE as well: Sync gives up with EIO instead
// of looping, and keeps the data.
TEST(UnstableWritesTest, ServerThatNeverCommitsFailsSync) {
  FakeServer server;
  server.honour_file_sync = false;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "data");
  server.crash_at_commits = 100;
  Status st = log.Sync();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(EIO, st.code());
  EXPECT_EQ(4u, log.kept_bytes());
}

// After a truncate, nothing beyond the new size is re-sent (it would extend the file).
TEST(UnstableWritesTest, TruncateForgetsWhatLiesBeyond) {
  FakeServer server;
  UnstableWrites log(&server, {});
  MustWrite(&log, 0, "0123456789");
  log.Truncate(4);
  EXPECT_EQ(4u, log.kept_bytes());
  server.cached.resize(4);
  server.Crash();
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ("0123", server.Durable());
}

// Several writers and syncers at once, with a restart in the middle: every byte ends
// durable (run under ASan/TSan to check the locking).
TEST(UnstableWritesTest, ConcurrentWritersAndSyncsLoseNothing) {
  FakeServer server;
  UnstableWrites::Options o;
  o.limit = 4096;
  UnstableWrites log(&server, o);
  constexpr int kThreads = 4;
  constexpr int kBlocks = 200;
  constexpr size_t kBlock = 64;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string block(kBlock, static_cast<char>('a' + t));
      for (int b = 0; b < kBlocks; ++b) {
        uint64_t off = (static_cast<uint64_t>(b) * kThreads + t) * kBlock;
        Result<uint64_t> n = log.Write(off, Bytes(block));
        EXPECT_TRUE(n.ok() && *n == kBlock);
        if (b == kBlocks / 2 && t == 0) server.Crash();
        if (b % 17 == 0) {
          EXPECT_TRUE(log.Sync().ok());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(log.Sync().ok());
  std::string want;
  for (int b = 0; b < kBlocks; ++b) {
    for (int t = 0; t < kThreads; ++t) want += std::string(kBlock, static_cast<char>('a' + t));
  }
  EXPECT_EQ(want, server.Durable());
}

}  // namespace
}  // namespace slacker::nfs_bridge
