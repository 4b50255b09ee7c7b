// Shared by the root tests of loopdev and storage_backend: a scratch directory, a
// reflink-capable XFS mounted inside it on request, and a TearDown that releases every
// mount and loop device the test made — even when the test failed halfway — then checks
// that no loop device still backs a file under the scratch directory.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/files.h"
#include "loopdev/embedded_store.h"
#include "loopdev/loop_device.h"
#include "loopdev/mount.h"
#include "os/os.h"

namespace slacker::loopdev::testing {

class RootFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mounts)";
    if (::access("/dev/loop-control", F_OK) != 0) GTEST_SKIP() << "no /dev/loop-control";
    os_ = os::NewRealOs();
    char tmpl[] = "/tmp/slacker-root-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    if (dir_.empty()) return;
    for (int round = 0; round < 20 && (!MountsUnder().empty() || !LoopsUnder().empty()); ++round) {
      for (const auto& m : MountsUnder()) IgnoreError(os_->Unmount(m, round < 10 ? 0 : MNT_DETACH), "retried; checked below");
      for (int index : LoopsUnder()) IgnoreError(os_->LoopClear(index), "retried; checked below");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(MountsUnder().empty()) << "leaked mounts under " << dir_;
    EXPECT_TRUE(LoopsUnder().empty()) << "leaked loop devices backing files under " << dir_;
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }

  // Makes a sparse XFS (reflink=1) image of `bytes` and mounts it at <dir>/xfs.
  std::string MountScratchXfs(uint64_t bytes = 1ull << 30) {
    std::string image = dir_ + "/xfs.img";
    std::string mnt = dir_ + "/xfs";
    Status s = CreateXfsImage(image, bytes);
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_TRUE(MakeDirs(mnt).ok());
    MountedImage::Options o;
    o.fstype = "xfs";
    auto m = MountedImage::Mount(*os_, image, mnt, o);
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (m.ok()) m->Release();  // TearDown unmounts
    return mnt;
  }

  // Mount points under the scratch directory, newest first.
  std::vector<std::string> MountsUnder() {
    std::vector<std::pair<int, std::string>> found;
    auto mounts = ReadMountInfo(*os_);
    if (mounts.ok()) {
      for (const auto& m : *mounts)
        if (m.mount_point.starts_with(dir_ + "/")) found.emplace_back(m.mount_id, m.mount_point);
    }
    std::sort(found.rbegin(), found.rend());
    std::vector<std::string> out;
    for (auto& f : found) out.push_back(f.second);
    return out;
  }

  // Bound loop devices whose backing file is (or was) under the scratch directory.
  std::vector<int> LoopsUnder() {
    std::vector<int> out;
    auto entries = os_->ListKernelDir("/sys/block");
    if (!entries.ok()) return out;
    for (const auto& name : *entries) {
      int index = -1;
      if (std::sscanf(name.c_str(), "loop%d", &index) != 1) continue;
      auto backing = os_->ReadKernelFile("/sys/block/" + name + "/loop/backing_file");
      if (backing.ok() && backing->starts_with(dir_ + "/")) out.push_back(index);
    }
    std::sort(out.rbegin(), out.rend());
    return out;
  }

  // Waits (bounded) until autoclear has released /dev/loop<index>.
  bool WaitLoopReleased(int index, std::chrono::milliseconds limit = std::chrono::milliseconds(2000)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    std::string path = "/sys/block/loop" + std::to_string(index) + "/loop/backing_file";
    while (std::chrono::steady_clock::now() < deadline) {
      if (!os_->ReadKernelFile(path).ok()) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return false;
  }

  std::unique_ptr<os::Os> os_;
  std::string dir_;
};

}  // namespace slacker::loopdev::testing
