// loopdev against the real kernel: loop devices, ext4 and XFS mounts, freeze/thaw, grow.
// Every test runs in a scratch directory; RootFixture releases all mounts and loops.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include "common/fd.h"
#include "common/files.h"
#include "loopdev/embedded_store.h"
#include "loopdev/ext4_format.h"
#include "loopdev/freeze.h"
#include "loopdev/ext4_read.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"
#include "loopdev/run_tool.h"
#include "loopdev/test/root_fixture.h"

namespace slacker::loopdev {
namespace {

using Clock = std::chrono::steady_clock;

// Online ext4 resize (ext4_resize_begin) requires CAP_SYS_RESOURCE.
bool HasCapSysResource() {
  auto status = ReadFileToString("/proc/self/status");
  if (!status.ok()) return false;
  auto pos = status->find("CapEff:");
  if (pos == std::string::npos) return false;
  unsigned long long caps = std::strtoull(status->c_str() + pos + 7, nullptr, 16);
  return (caps >> 24) & 1;  // CAP_SYS_RESOURCE
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

class LoopdevRootTest : public testing::RootFixture {
 protected:
  void ExpectFsckClean(const std::string& image) {
    auto out = RunTool({"e2fsck", "-fn", image});
    ASSERT_TRUE(out.ok()) << out.status().message();
    EXPECT_EQ(out->exit_code, 0) << out->stdout_text << out->stderr_text;
  }
  // Formats <dir>/layer.img with `bytes` and creates the empty mount point <dir>/mnt.
  void FreshExt4(uint64_t bytes) {
    ASSERT_TRUE(MakeDirs(mnt_).ok());
    Status s = FormatExt4(image_, bytes);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  std::string Dir(const std::string& name) {
    std::string d = JoinPath(dir_, name);
    EXPECT_TRUE(MakeDirs(d).ok());
    return d;
  }

  std::string image_ = "(set in SetUp)";
  std::string mnt_;
  void SetUp() override {
    RootFixture::SetUp();
    image_ = dir_ + "/layer.img";
    mnt_ = dir_ + "/mnt";
  }
};

TEST_F(LoopdevRootTest, FormatAttachMountWriteThenReadBackReadOnly) {
  std::string store = MountScratchXfs();
  std::string image = store + "/layer.img";
  std::string mnt = Dir("mnt");

  auto t0 = Clock::now();
  ASSERT_TRUE(FormatExt4(image, 10ull << 30).ok());
  double format_ms = MsSince(t0);
  ExpectFsckClean(image);

  t0 = Clock::now();
  int index = -1;
  {
    auto loop = LoopDevice::Attach(*os_, image, os::LoopConfig{});
    ASSERT_TRUE(loop.ok()) << loop.status().message();
    Status s = MountExt4(*os_, loop->path(), mnt, false);
    ASSERT_TRUE(s.ok()) << s.message();
    index = loop->index();
  }  // the mount now holds the loop
  double attach_mount_ms = MsSince(t0);
  auto dio = os_->ReadKernelFile("/sys/block/loop" + std::to_string(index) + "/loop/dio");
  std::printf("[loop] backing_fs=xfs direct_io=%s", dio.ok() ? dio->c_str() : "?\n");
  auto fs = os_->StatFs(mnt);
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ(fs->fs_type, 0xEF53);
  ASSERT_TRUE(AtomicWriteFile(mnt + "/hello", "world").ok());

  t0 = Clock::now();
  ASSERT_TRUE(UnmountPath(*os_, mnt).ok());
  ASSERT_TRUE(WaitLoopReleased(index)) << "autoclear did not release loop" << index;
  double umount_detach_ms = MsSince(t0);
  ExpectFsckClean(image);

  std::printf("[timing] format_10g_ms=%.2f attach_mount_ms=%.2f umount_detach_ms=%.2f\n", format_ms,
              attach_mount_ms, umount_detach_ms);
  RecordProperty("format_10g_ms", std::to_string(format_ms));
  RecordProperty("attach_mount_ms", std::to_string(attach_mount_ms));
  RecordProperty("umount_detach_ms", std::to_string(umount_detach_ms));

  MountedImage::Options ro;
  ro.read_only = true;
  auto m = MountedImage::Mount(*os_, image, mnt, ro);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(*ReadFileToString(mnt + "/hello"), "world");
  EXPECT_FALSE(PathExists(mnt + "/lost+found"));
  EXPECT_FALSE(AtomicWriteFile(mnt + "/nope", "x", false).ok());
  auto mounts = ReadMountInfo(*os_);
  ASSERT_TRUE(mounts.ok());
  const MountInfoEntry* e = FindMount(*mounts, mnt);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->fstype, "ext4");
  EXPECT_EQ(e->source, m->device());
  EXPECT_TRUE(e->options.starts_with("ro"));
  EXPECT_TRUE(m->Unmount().ok());
}

TEST_F(LoopdevRootTest, FreezeFicloneThawGivesAMountableSnapshotWithTheData) {
  std::string store = MountScratchXfs();
  std::string image = store + "/vol.img";
  std::string snap = store + "/snap.img";
  std::string mnt = Dir("mnt"), snap_mnt = Dir("snap");
  ASSERT_TRUE(FormatExt4(image, 1ull << 30).ok());
  auto vol = MountedImage::Mount(*os_, image, mnt);
  ASSERT_TRUE(vol.ok()) << vol.status().message();
  ASSERT_TRUE(AtomicWriteFile(mnt + "/data", "written before the snapshot", false).ok());
  {
    auto frozen = FrozenFs::Freeze(*os_, mnt);
    ASSERT_TRUE(frozen.ok()) << frozen.status().message();
    UniqueFd src(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dst(::open(snap.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    ASSERT_TRUE(src.valid() && dst.valid());
    Status c = os_->Ficlone(dst.get(), src.get());
    ASSERT_TRUE(c.ok()) << c.message();
    ASSERT_TRUE(frozen->Thaw().ok());
  }
  ASSERT_TRUE(AtomicWriteFile(mnt + "/data", "written after", false).ok());
  ExpectFsckClean(snap);  // freeze flushed the journal: the clone is consistent

  MountedImage::Options ro;
  ro.read_only = true;
  auto s = MountedImage::Mount(*os_, snap, snap_mnt, ro);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(*ReadFileToString(snap_mnt + "/data"), "written before the snapshot");
  EXPECT_EQ(*ReadFileToString(mnt + "/data"), "written after");
}

// What the driver's hand-over relies on (driver/README.md "Start and stop"): a clone of a
// rw-mounted file system taken after a syncfs says needs_recovery (its journal must be
// replayed before a read without replay, e.g. `ro,noload`); a freeze clears it, so a
// snapshot does not; so does a clean unmount. And the loop device's backing file
// follows a rename of the file.
TEST_F(LoopdevRootTest, NeedsRecoveryWhileMountedRwAndBackingFileFollowsARename) {
  std::string store = MountScratchXfs();
  std::string image = store + "/vol.img", synced = store + "/synced.img", frozen_copy = store + "/frozen.img";
  std::string mnt = Dir("mnt");
  ASSERT_TRUE(FormatExt4(image, 1ull << 30).ok());
  EXPECT_FALSE(*Ext4NeedsRecovery(image)) << "a fresh file system";
  auto vol = MountedImage::Mount(*os_, image, mnt);
  ASSERT_TRUE(vol.ok()) << vol.status().message();
  ASSERT_TRUE(AtomicWriteFile(mnt + "/data", "x", false).ok());
  ASSERT_TRUE(os_->SyncFs(mnt).ok());
  auto clone = [&](const std::string& to) {
    UniqueFd src(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dst(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(src.valid() && dst.valid());
    ASSERT_TRUE(os_->Ficlone(dst.get(), src.get()).ok());
  };
  clone(synced);
  auto pending = Ext4NeedsRecovery(synced);
  ASSERT_TRUE(pending.ok()) << pending.status().message();
  EXPECT_TRUE(*pending) << "a clone of a mounted rw file system after syncfs";
  {
    auto frozen = FrozenFs::Freeze(*os_, mnt);
    ASSERT_TRUE(frozen.ok()) << frozen.status().message();
    clone(frozen_copy);
    ASSERT_TRUE(frozen->Thaw().ok());
  }
  EXPECT_FALSE(*Ext4NeedsRecovery(frozen_copy)) << "a clone taken while frozen";
  std::string moved = store + "/moved.img";
  ASSERT_EQ(::rename(image.c_str(), moved.c_str()), 0);
  auto at_new = FindLoopsBacking(*os_, moved);
  auto at_old = FindLoopsBacking(*os_, image);
  ASSERT_TRUE(at_new.ok() && at_old.ok());
  EXPECT_EQ(*at_new, std::vector<int>{vol->loop_index()}) << "backing_file follows the rename";
  EXPECT_TRUE(at_old->empty());
  ASSERT_TRUE(vol->Unmount().ok());
  EXPECT_FALSE(*Ext4NeedsRecovery(moved)) << "after a clean unmount";
  EXPECT_EQ(Ext4NeedsRecovery(store + "/nothing").status().code(), ENOENT);
}

TEST_F(LoopdevRootTest, FindLoopsBackingFindsTheRealLoopAndWritesAreCounted) {
  FreshExt4(256ull << 20);
  auto m = MountedImage::Mount(*os_, image_, mnt_);
  ASSERT_TRUE(m.ok()) << m.status().message();
  std::string mnt = mnt_;
  auto found = FindLoopsBacking(*os_, dir_ + "/./layer.img");
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(*found, std::vector<int>{m->loop_index()});

  ASSERT_TRUE(os_->SyncFs(mnt).ok());
  auto before = WriteSectors(*os_, m->loop_index());
  ASSERT_TRUE(before.ok()) << before.status().message();
  ASSERT_TRUE(AtomicWriteFile(mnt + "/f", std::string(1 << 20, 'x'), false).ok());
  ASSERT_TRUE(os_->SyncFs(mnt).ok());
  auto after = WriteSectors(*os_, m->loop_index());
  ASSERT_TRUE(after.ok());
  EXPECT_GE(*after - *before, (1u << 20) / 512);
}

// The driver's layer mounts: made with a hook between attach and mount (a crash fault
// point), released at the driver's exit and adopted again from mountinfo at its start.
TEST_F(LoopdevRootTest, AReleasedMountIsAdoptedAndItsOwnerUnmountsIt) {
  FreshExt4(64ull << 20);
  MountedImage::Options o;
  int hooks = 0;
  o.after_attach = [&] { ++hooks; };
  auto m = MountedImage::Mount(*os_, image_, mnt_, o);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(hooks, 1);
  std::string device = m->device();
  int index = m->loop_index();
  m->Release();
  {
    auto mounts = ReadMountInfo(*os_);
    ASSERT_TRUE(mounts.ok());
    const MountInfoEntry* e = FindMount(*mounts, mnt_);
    ASSERT_NE(e, nullptr) << "Release unmounted";
    EXPECT_EQ(e->source, device);
  }
  MountedImage adopted = MountedImage::Adopt(*os_, mnt_, device, index);
  EXPECT_EQ(adopted.loop_index(), index);
  ASSERT_TRUE(adopted.Unmount(BusyPolicy::kDetach).ok());
  auto mounts = ReadMountInfo(*os_);
  ASSERT_TRUE(mounts.ok());
  EXPECT_EQ(FindMount(*mounts, mnt_), nullptr);
}

// The driver's snapshot cache counts on these (freeze.h): sampled while frozen plus the
// thaw's own write is the counter of the snapshot's content, and an idle syncfs writes
// nothing. A kernel writing less at thaw would let a small write go unnoticed.
TEST_F(LoopdevRootTest, FreezeAndThawEachWriteOneBlock) {
  FreshExt4(256ull << 20);
  auto m = MountedImage::Mount(*os_, image_, mnt_);
  ASSERT_TRUE(m.ok()) << m.status().message();
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(os_->SyncFs(mnt_).ok());
    auto idle = WriteSectors(*os_, m->loop_index());
    ASSERT_TRUE(os_->Freeze(mnt_).ok());
    auto frozen = WriteSectors(*os_, m->loop_index());
    ASSERT_TRUE(os_->Thaw(mnt_).ok());
    ASSERT_TRUE(os_->SyncFs(mnt_).ok());
    auto thawed = WriteSectors(*os_, m->loop_index());
    ASSERT_TRUE(idle.ok() && frozen.ok() && thawed.ok());
    EXPECT_EQ(*frozen - *idle, kFreezeWriteSectors) << "round " << round;
    EXPECT_EQ(*thawed - *frozen, kThawWriteSectors) << "round " << round;
  }
}

TEST_F(LoopdevRootTest, ReadOnlyLoopOfAReadOnlyFileMounts) {
  FreshExt4(64ull << 20);
  ASSERT_EQ(::chmod(image_.c_str(), 0444), 0);
  MountedImage::Options ro;
  ro.read_only = true;
  auto m = MountedImage::Mount(*os_, image_, mnt_, ro);
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto autoclear = os_->ReadKernelFile("/sys/block/loop" + std::to_string(m->loop_index()) + "/loop/autoclear");
  ASSERT_TRUE(autoclear.ok());
  EXPECT_EQ(*autoclear, "1\n");
}

TEST_F(LoopdevRootTest, GrowAfterExtendingTheFileBeforeAttach) {
  if (!HasCapSysResource()) GTEST_SKIP() << "EXT4_IOC_RESIZE_FS needs CAP_SYS_RESOURCE, which this process lacks";
  FreshExt4(256ull << 20);
  ASSERT_EQ(::truncate(image_.c_str(), 512ll << 20), 0);
  auto m = MountedImage::Mount(*os_, image_, mnt_);
  ASSERT_TRUE(m.ok()) << m.status().message();
  Status g = GrowExt4(*os_, mnt_, image_, 512ull << 20);
  ASSERT_TRUE(g.ok()) << g.message();
  auto fs = os_->StatFs(mnt_);
  ASSERT_TRUE(fs.ok());
  EXPECT_GT(fs->total_bytes, 400ull << 20);
}

TEST_F(LoopdevRootTest, GrowBeyondTheLoopDeviceSizeNeedsSetCapacity) {
  FreshExt4(256ull << 20);
  auto m = MountedImage::Mount(*os_, image_, mnt_);
  ASSERT_TRUE(m.ok()) << m.status().message();
  Status g = GrowExt4(*os_, mnt_, image_, 512ull << 20);
  EXPECT_EQ(g.code(), ENOTSUP) << g.message();
}

TEST_F(LoopdevRootTest, EmbeddedStoreIsCreatedMountedAndReused) {
  std::string state = dir_ + "/state";
  auto dir = EnsureEmbeddedStore(*os_, state, 512ull << 20);
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  auto fs = os_->StatFs(*dir);
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ(fs->fs_type, 0x58465342);  // XFS
  ASSERT_TRUE(AtomicWriteFile(*dir + "/marker", "kept").ok());

  auto again = EnsureEmbeddedStore(*os_, state, 512ull << 20);
  ASSERT_TRUE(again.ok()) << again.status().message();
  auto mounts = ReadMountInfo(*os_);
  ASSERT_TRUE(mounts.ok());
  int count = 0;
  for (const auto& m : *mounts) count += m.mount_point == *dir;
  EXPECT_EQ(count, 1);

  ASSERT_TRUE(UnmountPath(*os_, *dir).ok());
  auto remounted = EnsureEmbeddedStore(*os_, state, 512ull << 20);
  ASSERT_TRUE(remounted.ok()) << remounted.status().message();
  EXPECT_EQ(*ReadFileToString(*remounted + "/marker"), "kept");
}

}  // namespace
}  // namespace slacker::loopdev
