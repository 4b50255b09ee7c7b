// Start-up prefetch against the real kernel (prefetch_io.h, prefetch.h): an ext4 volume
// on a loop device, its page caches dropped by a fresh mount. What a container read is
// recorded as a trace on the store, and a later mount of another clone gets exactly that
// into its caches; a damaged trace is ignored and recorded anew.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "common/fd.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/prefetch.h"
#include "driver/prefetch_io.h"
#include "loopdev/ext4_format.h"
#include "loopdev/mount.h"
#include "loopdev/test/root_fixture.h"
#include "storage_backend/local_backend.h"

namespace slacker::driver {
namespace {

constexpr uint64_t kFileBytes = 4 << 20;

class PrefetchRootTest : public loopdev::testing::RootFixture {
 protected:
  void SetUp() override {
    RootFixture::SetUp();
    if (IsSkipped()) return;
    log::SetLevel(log::Level::kDebug);
    auto s = storage_backend::OpenLocalStore(*os_, dir_ + "/store", "host");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    // The image: files a, b and d/c, unmounted, promoted to a snapshot.
    ASSERT_TRUE(loopdev::FormatExt4(store_->VolumePath("img"), 256 << 20).ok());
    {
      auto m = Mount("img");
      std::string data(kFileBytes, 'x');
      ASSERT_TRUE(MakeDirs(Mnt("img") + "/d").ok());
      for (const char* f : {"/a", "/b", "/d/c"}) ASSERT_TRUE(AtomicWriteFile(Mnt("img") + f, data, true).ok());
    }
    auto snap = store_->PromoteVolume("img", nlohmann::json::object());
    ASSERT_TRUE(snap.ok()) << snap.status().message();
    snap_ = *snap;
  }

  std::string Mnt(const std::string& layer) { return dir_ + "/mnt-" + layer; }
  // The layer's volume mounted rw at Mnt(layer) on a new loop device: no page cache yet.
  loopdev::MountedImage Mount(const std::string& layer) {
    EXPECT_TRUE(MakeDirs(Mnt(layer)).ok());
    auto m = loopdev::MountedImage::Mount(*os_, store_->VolumePath(layer), Mnt(layer));
    EXPECT_TRUE(m.ok()) << m.status().message();
    return std::move(m).value();
  }
  loopdev::MountedImage Clone(const std::string& layer) {
    EXPECT_TRUE(store_->CloneSnapshot(snap_, layer).ok());
    return Mount(layer);
  }
  uint64_t Resident(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY));
    auto n = ResidentBytes(fd.get(), kFileBytes);
    EXPECT_TRUE(n.ok()) << n.status().message();
    return n.ok() ? *n : 0;
  }
  void ReadAll(const std::string& path) { ASSERT_TRUE(ReadFileToString(path).ok()) << path; }
  void WaitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 200 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(done()) << "timed out";
  }
  PrefetchOptions Options() {
    PrefetchOptions o;
    o.enabled = true;
    o.record_after = std::chrono::hours(1);  // recorded at Settle: deterministic
    o.min_record_age = std::chrono::milliseconds(0);
    return o;
  }

  std::unique_ptr<storage_backend::Backend> store_;
  std::string snap_;
};

TEST_F(PrefetchRootTest, RecordsWhatWasReadAndNothingElse) {
  auto m = Clone("c1");
  ReadAll(Mnt("c1") + "/a");
  struct stat a, b;
  ASSERT_EQ(::stat((Mnt("c1") + "/a").c_str(), &a), 0);
  ASSERT_EQ(::stat((Mnt("c1") + "/b").c_str(), &b), 0);
  UniqueFd root(::open(Mnt("c1").c_str(), O_RDONLY | O_DIRECTORY));
  UniqueFd loop(::open(m.device().c_str(), O_RDONLY));
  std::atomic<bool> cancel{false};
  auto t = RecordResidency(root.get(), loop.get(), 256 << 20, {::time(nullptr) + 60, 0}, RecordLimits{}, cancel);
  ASSERT_TRUE(t.ok()) << t.status().message();
  uint64_t file_bytes = 0, block_bytes = 0;
  for (const auto& e : t->extents) {
    if (e.kind == ExtentKind::kBlock) {
      block_bytes += e.length;
      continue;
    }
    EXPECT_EQ(e.inode, a.st_ino) << "recorded a file nobody read";
    file_bytes += e.length;
  }
  EXPECT_EQ(file_bytes, kFileBytes);
  EXPECT_GT(block_bytes, 0u);  // the superblock, inode tables, the root directory
  // Files changed since the mount are the container's, not the image's: left out.
  auto none = RecordResidency(root.get(), loop.get(), 256 << 20, {0, 0}, RecordLimits{}, cancel);
  ASSERT_TRUE(none.ok());
  for (const auto& e : none->extents) EXPECT_EQ(e.kind, ExtentKind::kBlock);
}

TEST_F(PrefetchRootTest, AReplayFillsTheCachesTheRecordedStartUsed) {
  {
    Prefetcher p(*store_, Options());
    auto m = Clone("c1");
    p.Start("c1", snap_, Mnt("c1"), m.loop_index());
    WaitFor([&] { return p.stats().trace_misses == 1; });
    ReadAll(Mnt("c1") + "/a");
    ReadAll(Mnt("c1") + "/d/c");
    p.Settle("c1");
    EXPECT_EQ(p.stats().traces_recorded, 1u);
  }
  ASSERT_TRUE(store_->ReadSnapshotTrace(snap_, kMaxTraceFileBytes).ok());

  Prefetcher p(*store_, Options());
  auto m = Clone("c2");
  ASSERT_EQ(Resident(Mnt("c2") + "/a"), 0u);
  p.Start("c2", snap_, Mnt("c2"), m.loop_index());
  WaitFor([&] { return p.stats().trace_hits == 1 && p.stats().bytes >= 2 * kFileBytes; });
  WaitFor([&] { return Resident(Mnt("c2") + "/d/c") == kFileBytes; });
  EXPECT_EQ(Resident(Mnt("c2") + "/a"), kFileBytes);
  EXPECT_EQ(Resident(Mnt("c2") + "/b"), 0u);  // not read at the recorded start
  p.Settle("c2");
  EXPECT_EQ(p.stats().traces_recorded, 0u);  // a valid trace is not recorded again
}

TEST_F(PrefetchRootTest, ADamagedTraceIsIgnoredAndRecordedAnew) {
  ASSERT_TRUE(store_->WriteSnapshotTrace(snap_, "SLKTRACE and then garbage").ok());
  Prefetcher p(*store_, Options());
  auto m = Clone("c1");
  p.Start("c1", snap_, Mnt("c1"), m.loop_index());
  WaitFor([&] { return p.stats().traces_rejected == 1 && p.stats().trace_misses == 1; });
  ReadAll(Mnt("c1") + "/b");
  p.Settle("c1");
  EXPECT_EQ(p.stats().bytes, 0u);
  EXPECT_EQ(p.stats().traces_recorded, 1u);
  auto bytes = store_->ReadSnapshotTrace(snap_, kMaxTraceFileBytes);
  ASSERT_TRUE(bytes.ok());
  struct stat st;
  ASSERT_EQ(::stat(store_->SnapshotPath(snap_).c_str(), &st), 0);
  EXPECT_TRUE(DecodeTrace(*bytes, static_cast<uint64_t>(st.st_size)).ok());
}

TEST_F(PrefetchRootTest, HostileFileExtentsAreSkipped) {
  auto m = Clone("c1");
  UniqueFd root(::open(Mnt("c1").c_str(), O_RDONLY | O_DIRECTORY));
  UniqueFd loop(::open(m.device().c_str(), O_RDONLY));
  std::atomic<bool> cancel{false};
  TraceExtent dir{.offset = 0, .length = 4096, .kind = ExtentKind::kFile, .inode = 2, .generation = 0};
  EXPECT_FALSE(ReplayExtent(root.get(), loop.get(), dir, cancel).ok());  // the root directory
  TraceExtent missing = dir;
  missing.inode = 60'000;
  EXPECT_FALSE(ReplayExtent(root.get(), loop.get(), missing, cancel).ok());
  TraceExtent block{.offset = 0, .length = 8192};
  auto n = ReplayExtent(root.get(), loop.get(), block, cancel);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 8192u);
}

}  // namespace
}  // namespace slacker::driver
