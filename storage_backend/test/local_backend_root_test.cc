// The local backend on a real reflink-capable store: a 1 GiB sparse XFS (reflink=1)
// loop-mounted in a scratch directory. Checks that FICLONE really shares extents, that
// the forced fallbacks copy content and keep holes, and the driver's snapshot flow on a
// mounted, frozen ext4 volume.
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include <functional>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/files.h"
#include "loopdev/embedded_store.h"
#include "loopdev/ext4_format.h"
#include "loopdev/freeze.h"
#include "loopdev/mount.h"
#include "loopdev/test/root_fixture.h"
#include "storage_backend/local_backend.h"

namespace slacker::storage_backend {
namespace {

using nlohmann::json;

constexpr uint64_t kDataBytes = 16ull << 20;
constexpr off_t kFileBytes = 128 << 20;

// Whether every extent of `path` carries FIEMAP_EXTENT_SHARED (and there is at least one).
bool AllExtentsShared(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  constexpr unsigned kMax = 256;
  std::vector<char> buf(sizeof(struct fiemap) + kMax * sizeof(struct fiemap_extent));
  auto* fm = reinterpret_cast<struct fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = kMax;
  if (::ioctl(fd.get(), FS_IOC_FIEMAP, fm) != 0 || fm->fm_mapped_extents == 0) return false;
  for (unsigned i = 0; i < fm->fm_mapped_extents; ++i) {
    if (!(fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED)) return false;
  }
  return true;
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

class LocalBackendRootTest : public loopdev::testing::RootFixture {
 protected:
  void SetUp() override {
    RootFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    xfs_ = MountScratchXfs();
    ASSERT_FALSE(HasFailure());
  }
  void TearDown() override {
    store_.reset();
    RootFixture::TearDown();
  }
  void Open(CloneMode mode) {
    auto s = OpenLocalStore(*os_, xfs_ + "/store", "hostA", mode);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
  }
  // A volume with random data at its start, a hole, and a tail at its end.
  void WriteSparseVolume(const std::string& layer) {
    std::string path = store_->VolumePath(layer);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::ftruncate(fd.get(), kFileBytes), 0);
    std::mt19937_64 rng(42);
    std::vector<uint64_t> block(kDataBytes / 8);
    for (auto& w : block) w = rng();
    ASSERT_EQ(::pwrite(fd.get(), block.data(), kDataBytes, 0), static_cast<ssize_t>(kDataBytes));
    ASSERT_EQ(::pwrite(fd.get(), "tail", 4, (kFileBytes) - 4), 4);
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  void ExpectSameContent(const std::string& a, const std::string& b) {
    UniqueFd x(::open(a.c_str(), O_RDONLY | O_CLOEXEC)), y(::open(b.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(x.valid() && y.valid());
    std::vector<char> bx(1 << 20), by(1 << 20);
    for (off_t off = 0;; off += static_cast<off_t>(bx.size())) {
      ssize_t nx = ::pread(x.get(), bx.data(), bx.size(), off);
      ssize_t ny = ::pread(y.get(), by.data(), by.size(), off);
      ASSERT_EQ(nx, ny) << a << " and " << b << " differ in size";
      if (nx <= 0) break;
      ASSERT_EQ(0, std::memcmp(bx.data(), by.data(), static_cast<size_t>(nx))) << "differ at offset " << off;
    }
  }
  uint64_t FreeBytes() {
    EXPECT_TRUE(os_->SyncFs(xfs_).ok());
    auto s = os_->StatFs(xfs_);
    return s.ok() ? s->free_bytes : 0;
  }

  std::string xfs_;
  std::unique_ptr<Backend> store_;
};

TEST_F(LocalBackendRootTest, FicloneSnapshotSharesExtentsAndCostsNoSpace) {
  Open(CloneMode::kAuto);
  WriteSparseVolume("c1");
  uint64_t before = FreeBytes();
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  ASSERT_TRUE(store_->CloneSnapshot(*snap, "c2").ok());
  uint64_t after = FreeBytes();
  EXPECT_LT(before - std::min(before, after), kDataBytes / 2) << "two copies of the data would show here";
  EXPECT_TRUE(AllExtentsShared(store_->SnapshotPath(*snap)));
  EXPECT_TRUE(AllExtentsShared(store_->VolumePath("c2")));
  ExpectSameContent(store_->VolumePath("c1"), store_->VolumePath("c2"));
  EXPECT_NE(store_->Describe().find("FICLONE"), std::string::npos) << store_->Describe();
}

TEST_F(LocalBackendRootTest, ForcedCopyFileRangeCopiesContentAndSize) {
  Open(CloneMode::kForceCopyFileRange);
  WriteSparseVolume("c1");
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  ExpectSameContent(store_->VolumePath("c1"), store_->SnapshotPath(*snap));
  // XFS serves copy_file_range by remapping, so the holes survive here too.
  EXPECT_LT(AllocatedBytes(store_->SnapshotPath(*snap)), kDataBytes + (4 << 20));
}

TEST_F(LocalBackendRootTest, ForcedSparseCopyCopiesContentAndKeepsHoles) {
  Open(CloneMode::kForceSparseCopy);
  WriteSparseVolume("c1");
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  ExpectSameContent(store_->VolumePath("c1"), store_->SnapshotPath(*snap));
  EXPECT_LT(AllocatedBytes(store_->SnapshotPath(*snap)), kDataBytes + (4 << 20));
  EXPECT_FALSE(AllExtentsShared(store_->SnapshotPath(*snap)));
}

// The driver's Diff of a running container: freeze the mounted volume, snapshot, thaw;
// then another layer clones the snapshot and sees the data.
TEST_F(LocalBackendRootTest, SnapshotOfAFrozenMountedVolumeClonesIntoAWorkingLayer) {
  Open(CloneMode::kAuto);
  std::string tmpl = store_->TemplatePath(1ull << 30);
  ASSERT_TRUE(loopdev::FormatExt4(tmpl, 1ull << 30).ok());
  ASSERT_TRUE(store_->CloneFile(tmpl, store_->VolumePath("c1")).ok());
  std::string mnt = dir_ + "/c1", mnt2 = dir_ + "/c2";
  ASSERT_TRUE(MakeDirs(mnt).ok() && MakeDirs(mnt2).ok());
  auto vol = loopdev::MountedImage::Mount(*os_, store_->VolumePath("c1"), mnt);
  ASSERT_TRUE(vol.ok()) << vol.status().message();
  ASSERT_TRUE(AtomicWriteFile(mnt + "/app", "v1", false).ok());
  std::string snap;
  {
    auto frozen = loopdev::FrozenFs::Freeze(*os_, mnt);
    ASSERT_TRUE(frozen.ok()) << frozen.status().message();
    auto r = store_->SnapshotVolume("c1", json{{"source", "commit"}});
    ASSERT_TRUE(r.ok()) << r.status().message();
    snap = *r;
  }
  ASSERT_TRUE(AtomicWriteFile(mnt + "/app", "v2", false).ok());

  ASSERT_TRUE(store_->CloneSnapshot(snap, "c2").ok());
  auto vol2 = loopdev::MountedImage::Mount(*os_, store_->VolumePath("c2"), mnt2);
  ASSERT_TRUE(vol2.ok()) << vol2.status().message();
  EXPECT_EQ(*ReadFileToString(mnt2 + "/app"), "v1");
  EXPECT_EQ(*ReadFileToString(mnt + "/app"), "v2");

  std::string ro_mnt = dir_ + "/ro";
  ASSERT_TRUE(MakeDirs(ro_mnt).ok());
  loopdev::MountedImage::Options ro;
  ro.read_only = true;
  auto image = loopdev::MountedImage::Mount(*os_, store_->SnapshotPath(snap), ro_mnt, ro);
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(*ReadFileToString(ro_mnt + "/app"), "v1");
}

TEST_F(LocalBackendRootTest, PromoteOfAnUnmountedVolumeIsARename) {
  Open(CloneMode::kAuto);
  WriteSparseVolume("a1");
  struct stat before, after;
  ASSERT_EQ(::stat(store_->VolumePath("a1").c_str(), &before), 0);
  auto snap = store_->PromoteVolume("a1", json{{"source", "apply"}});
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  ASSERT_EQ(::stat(store_->SnapshotPath(*snap).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_FALSE(AllExtentsShared(store_->SnapshotPath(*snap)));
}

TEST_F(LocalBackendRootTest, EmbeddedStoreKeepsItsUuidAcrossRemounts) {
  std::string state = dir_ + "/state";
  auto dir = loopdev::EnsureEmbeddedStore(*os_, state, 512ull << 20);
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  std::string uuid;
  {
    auto s = OpenLocalStore(*os_, *dir, "hostA");
    ASSERT_TRUE(s.ok()) << s.status().message();
    uuid = (*s)->info().uuid;
  }
  ASSERT_TRUE(loopdev::UnmountPath(*os_, *dir).ok());
  EXPECT_FALSE(PathExists(*dir + "/store.json"));  // really unmounted

  auto again = loopdev::EnsureEmbeddedStore(*os_, state, 512ull << 20);
  ASSERT_TRUE(again.ok()) << again.status().message();
  auto s = OpenLocalStore(*os_, *again, "hostA");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ((*s)->info().uuid, uuid);
}

// A fresh embedded store, used once (snapshot, clone, template): nothing under the state
// directory is open to other users (the image, the mount point, the store's contents).
TEST_F(LocalBackendRootTest, FreshEmbeddedStoreIsClosedToOtherUsers) {
  std::string state = dir_ + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0700), 0);
  auto dir = loopdev::EnsureEmbeddedStore(*os_, state, 512ull << 20);
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  {
    auto s = OpenLocalStore(*os_, *dir, "hostA");
    ASSERT_TRUE(s.ok()) << s.status().message();
    auto& store = **s;
    ASSERT_TRUE(AtomicWriteFile(store.TemplatePath(1), "tmpl", false, 0600).ok());
    ASSERT_TRUE(store.CloneFile(store.TemplatePath(1), store.VolumePath("c1")).ok());
    auto snap = store.SnapshotVolume("c1", nullptr);
    ASSERT_TRUE(snap.ok()) << snap.status().message();
    ASSERT_TRUE(store.CloneSnapshot(*snap, "c2").ok());
  }
  std::vector<std::string> open_to_others;
  std::function<void(const std::string&)> walk = [&](const std::string& p) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return;
    if (!S_ISLNK(st.st_mode) && (st.st_mode & 077) != 0)
      open_to_others.push_back(fmt::format("{} {:o}", p, st.st_mode & 07777));
    if (!S_ISDIR(st.st_mode)) return;
    auto names = ListDir(p);
    if (names.ok())
      for (const auto& n : *names) walk(JoinPath(p, n));
  };
  walk(state);
  EXPECT_EQ(open_to_others, std::vector<std::string>{});
  ASSERT_TRUE(loopdev::UnmountPath(*os_, *dir).ok());
}

}  // namespace
}  // namespace slacker::storage_backend
