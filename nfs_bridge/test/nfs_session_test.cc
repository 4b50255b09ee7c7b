#include "nfs_bridge/nfs_session.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "nfs_bridge/test/fake_nfs_client.h"

namespace slacker::nfs_bridge {
namespace {

std::vector<std::unique_ptr<NfsClient>> Clients(FakeExport* e, int n) {
  std::vector<std::unique_ptr<NfsClient>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<FakeNfsClient>(e));
  return out;
}

// An NFS error status keeps its errno; the message names the call and the status.
TEST(NfsCallStatusTest, NfsErrorKeepsItsErrno) {
  Status st = NfsCallStatus("WRITE", RpcOutcome::kSuccess, nullptr, false, -ENOSPC, "NFS3ERR_NOSPC");
  EXPECT_EQ(ENOSPC, st.code());
  EXPECT_EQ("NFS WRITE: NFS3ERR_NOSPC", st.message());
  EXPECT_EQ(ESTALE, NfsCallStatus("COMMIT", RpcOutcome::kSuccess, nullptr, false, ESTALE, "x").code());
}

// A status libnfs cannot map to an errno is still an error: EIO.
TEST(NfsCallStatusTest, UnmappedNfsErrorIsEio) {
  EXPECT_EQ(EIO, NfsCallStatus("COMMIT", RpcOutcome::kSuccess, nullptr, false, 0, "NFS3ERR_JUKEBOX").code());
}

TEST(NfsCallStatusTest, RpcFailuresAreEioWithTheirReason) {
  Status err = NfsCallStatus("WRITE", RpcOutcome::kError, "connection reset", true, 0, "");
  EXPECT_EQ(EIO, err.code());
  EXPECT_EQ("NFS WRITE: connection reset", err.message());
  Status cancelled = NfsCallStatus("COMMIT", RpcOutcome::kCancelled, nullptr, true, 0, "");
  EXPECT_EQ("NFS COMMIT: cancelled or timed out", cancelled.message());
  EXPECT_EQ("NFS WRITE: cancelled or timed out",
            NfsCallStatus("WRITE", RpcOutcome::kError, nullptr, true, 0, "").message());
}

TEST(NfsCallStatusTest, SuccessIsOk) {
  EXPECT_TRUE(NfsCallStatus("WRITE", RpcOutcome::kSuccess, nullptr, true, 0, "").ok());
}

TEST(StatsJsonTest, HasEveryCounter) {
  Counters c;
  c.read_bytes = 1;
  c.write_bytes = 2;
  c.reads = 3;
  c.writes = 4;
  c.commits = 5;
  c.metadata_ops = 6;
  c.errors = 7;
  c.resent_bytes = 8;
  EXPECT_EQ(
      "{\"url\":\"nfs://h/x\",\"read_bytes\":1,\"write_bytes\":2,\"reads\":3,\"writes\":4,\"commits\":5,"
      "\"metadata_ops\":6,\"errors\":7,\"resent_bytes\":8}\n",
      StatsJson("nfs://h/x", c));
}

TEST(StatsJsonTest, EscapesTheUrl) {
  Counters c;
  EXPECT_TRUE(StatsJson("nfs://h/a\"b\\c\n", c).starts_with("{\"url\":\"nfs://h/a\\\"b\\\\c\\u000a\""));
}

// Leases prefer a free connection: N leases held at once use N different connections.
TEST(NfsSessionTest, ConcurrentLeasesGetDistinctConnections) {
  FakeExport e;
  NfsSession s(Clients(&e, 3));
  NfsSession::Lease a(s), b(s), c(s);
  std::set<size_t> used = {a.index(), b.index(), c.index()};
  EXPECT_EQ(3u, used.size());
}

// With every connection busy a lease waits for one to be released.
TEST(NfsSessionTest, LeaseWaitsWhenAllConnectionsAreBusy) {
  FakeExport e;
  NfsSession s(Clients(&e, 1));
  std::atomic<bool> got{false};
  std::thread t;
  {
    NfsSession::Lease held(s);
    t = std::thread([&] {
      NfsSession::Lease l(s);
      got = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(got.load());
  }
  t.join();
  EXPECT_TRUE(got.load());
}

TEST(NfsSessionTest, FailCountsOnlyErrors) {
  FakeExport e;
  NfsSession s(Clients(&e, 1));
  EXPECT_EQ(5, s.Fail(5));
  EXPECT_EQ(0, s.Fail(0));
  EXPECT_EQ(-EIO, s.Fail(-EIO));
  EXPECT_EQ(1u, s.counters().errors.load());
}

// The channel writes and commits by the file's handle and counts successful COMMITs.
TEST(SessionFileChannelTest, WritesAndCommitsByHandle) {
  FakeExport e;
  NfsSession s(Clients(&e, 2));
  SessionFileChannel ch(&s, NfsHandle{'/', 'f'});
  std::string data = "abc";
  auto w = ch.Write(4, data, Stability::kUnstable);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(3u, w->count);
  EXPECT_FALSE(w->durable);
  EXPECT_EQ(e.verifier, w->verifier);
  auto v = ch.Commit();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(1u, s.counters().commits.load());
  e.fail_next = ESTALE;
  auto failed = ch.Commit();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(ESTALE, failed.status().code());
  EXPECT_EQ(1u, s.counters().commits.load());
  EXPECT_EQ((std::vector<std::string>{"WRITE3 /f 4 3 UNSTABLE", "COMMIT3 /f", "COMMIT3 /f"}), e.calls);
}

}  // namespace
}  // namespace slacker::nfs_bridge
