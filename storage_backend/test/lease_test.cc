// The host-id lease and the state directory lock (storage_backend/lease.h).
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "storage_backend/lease.h"

namespace slacker::storage_backend {
namespace {

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-lease-test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    leases_ = dir_ + "/leases";
  }
  void TearDown() override { IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space"); }
  LeaseOptions Opts(std::string program = "slackerd") {
    LeaseOptions o;
    o.program = std::move(program);
    o.now = [this] { return now_.load(); };
    return o;
  }
  // A lease file as another process wrote it.
  void WriteForeignLease(const std::string& name, nlohmann::json fields) {
    nlohmann::json j = {{"name", name},  {"host", "other-host"}, {"pid", 4242},     {"boot_id", "x"},
                        {"start_time", 1}, {"program", "slackerd"}, {"nonce", std::string(32, 'f')},
                        {"acquired", now_ - 100}, {"expires", now_ + 30}};
    if (fields.is_object()) j.update(fields);
    ASSERT_TRUE(MakeDirs(leases_, 0700).ok());
    ASSERT_TRUE(AtomicWriteFile(leases_ + "/" + name + ".json", j.dump()).ok());
  }

  std::string dir_, leases_;
  std::atomic<int64_t> now_{1'800'000'000};
};

TEST_F(LeaseTest, ASecondHolderIsRefusedWithAnErrorNamingTheFirst) {
  auto first = Lease::Acquire(leases_, "w1", Opts());
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = Lease::Acquire(leases_, "w1", Opts("slacker-snapshotter"));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), EBUSY);
  const std::string& m = second.status().message();
  EXPECT_NE(m.find(fmt::format("slackerd pid {}", ::getpid())), std::string::npos) << m;
  EXPECT_NE(m.find("since"), std::string::npos) << m;
  EXPECT_TRUE(Lease::Acquire(leases_, "w2", Opts()).ok()) << "another host id is independent";
}

TEST_F(LeaseTest, ALiveLeaseOfAnotherHostIsRefusedUntilItExpiresThenTakenOver) {
  WriteForeignLease("w1", {});
  auto busy = Lease::Acquire(leases_, "w1", Opts());
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.status().message().find("on host other-host"), std::string::npos) << busy.status().message();
  now_ += 31;
  auto taken = Lease::Acquire(leases_, "w1", Opts());
  ASSERT_TRUE(taken.ok()) << taken.status().message();
  auto on_disk = ReadLease(leases_, "w1");
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(on_disk->nonce, (*taken)->holder().nonce);
  EXPECT_EQ(on_disk->pid, ::getpid());
}

TEST_F(LeaseTest, ALeaseOfADeadProcessOnThisHostIsTakenOverAtOnce) {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  auto boot = ReadFileToString("/proc/sys/kernel/random/boot_id");
  ASSERT_TRUE(boot.ok());
  char ns[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/pid", ns, sizeof ns - 1), 0);
  WriteForeignLease("w1", {{"host", host}, {"pid", child}, {"boot_id", boot->substr(0, 36)}, {"pid_ns", ns},
                           {"expires", now_ + 3600}});
  auto taken = Lease::Acquire(leases_, "w1", Opts());
  EXPECT_TRUE(taken.ok()) << taken.status().message();
}

TEST_F(LeaseTest, RefreshExtendsTheLeaseAndFailsOnceItWasTakenOver) {
  auto lease = Lease::Acquire(leases_, "w1", Opts());
  ASSERT_TRUE(lease.ok());
  int64_t first = ReadLease(leases_, "w1")->expires;
  now_ += 20;
  ASSERT_TRUE((*lease)->Refresh().ok());
  EXPECT_EQ(ReadLease(leases_, "w1")->expires, first + 20);
  // Another process took the lease over (ours had gone stale).
  WriteForeignLease("w1", {});
  Status s = (*lease)->Refresh();
  EXPECT_EQ(s.code(), ESTALE) << s.message();
  EXPECT_NE(s.message().find("other-host"), std::string::npos) << s.message();
  lease->reset();
  EXPECT_TRUE(ReadLease(leases_, "w1").ok()) << "release must not remove another holder's lease";
}

TEST_F(LeaseTest, ReleaseRemovesTheLeaseSoTheNextProcessStartsAtOnce) {
  { ASSERT_TRUE(Lease::Acquire(leases_, "w1", Opts()).ok()); }
  EXPECT_EQ(ReadLease(leases_, "w1").status().code(), ENOENT);
  EXPECT_TRUE(Lease::Acquire(leases_, "w1", Opts()).ok());
}

TEST_F(LeaseTest, TheRefresherReportsALostLease) {
  LeaseOptions o = Opts();
  o.ttl_sec = 3;  // refresh every second
  auto lease = Lease::Acquire(leases_, "w1", o);
  ASSERT_TRUE(lease.ok());
  std::atomic<bool> lost{false};
  (*lease)->StartRefresher([&](const Status& s) { lost = s.code() == ESTALE; });
  WriteForeignLease("w1", {});
  for (int i = 0; i < 50 && !lost; ++i) ::usleep(100'000);
  EXPECT_TRUE(lost.load());
}

TEST_F(LeaseTest, AStateDirectoryIsLockedByOneProcess) {
  auto first = StateDirLock::Acquire(dir_, "slackerd");
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = StateDirLock::Acquire(dir_, "slackerd");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), EBUSY);
  EXPECT_NE(second.status().message().find(fmt::format("slackerd pid {}", ::getpid())), std::string::npos)
      << second.status().message();
}

TEST_F(LeaseTest, TheLockFileRecordsWhetherThePreviousHolderStoppedCleanly) {
  {
    auto fresh = StateDirLock::Acquire(dir_, "slackerd");
    ASSERT_TRUE(fresh.ok()) << fresh.status().message();
    EXPECT_EQ(fresh->previous_run(), StateDirLock::PreviousRun::kNone);
    EXPECT_EQ(fresh->previous_line(), "");
    // Dropped without MarkStopped: what a crash leaves.
  }
  std::string crashed;
  {
    auto next = StateDirLock::Acquire(dir_, "slackerd");
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->previous_run(), StateDirLock::PreviousRun::kRunning) << next->previous_line();
    EXPECT_NE(next->previous_line().find(fmt::format("slackerd pid {} since ", ::getpid())), std::string::npos);
    crashed = next->previous_line();
    ASSERT_TRUE(next->MarkStopped().ok());
  }
  auto after_clean = StateDirLock::Acquire(dir_, "slacker-snapshotter");
  ASSERT_TRUE(after_clean.ok());
  EXPECT_EQ(after_clean->previous_run(), StateDirLock::PreviousRun::kStopped) << after_clean->previous_line();
  EXPECT_NE(after_clean->previous_line().find(" stopped "), std::string::npos);
  // A second taker is told who holds it, without the "running" word.
  auto second = StateDirLock::Acquire(dir_, "slackerd");
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(fmt::format("slacker-snapshotter pid {} since", ::getpid())),
            std::string::npos) << second.status().message();
  EXPECT_EQ(second.status().message().find("running"), std::string::npos) << second.status().message();
}

TEST_F(LeaseTest, ALockLineFromAnOlderReleaseIsNeitherCleanNorUnclean) {
  // Releases before the stop was recorded wrote only "PROGRAM pid N since T".
  ASSERT_TRUE(AtomicWriteFile(dir_ + "/lock", "slackerd pid 4242 since 2026-11-01T00:00:00Z\n", false, 0600).ok());
  auto lock = StateDirLock::Acquire(dir_, "slackerd");
  ASSERT_TRUE(lock.ok()) << lock.status().message();
  EXPECT_EQ(lock->previous_run(), StateDirLock::PreviousRun::kUnknown);
  EXPECT_EQ(lock->previous_line(), "slackerd pid 4242 since 2026-11-01T00:00:00Z");
}

}  // namespace
}  // namespace slacker::storage_backend
