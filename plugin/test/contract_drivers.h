// The implementations the driver contract suites (graph_driver_contract_test.cc,
// snapshot_driver_contract_test.cc) run against: SlackerDriver on FakeOs, and the plugin
// tests' FakeGraphDriver. When the two disagree, the fake is wrong (or the driver is, and
// the suites are where it shows).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/files.h"
#include "common/io.h"
#include "common/status.h"
#include "driver/graph_driver.h"
#include "driver/slacker_driver.h"
#include "driver/test/fake_os_driver.h"
#include "os/fake_os.h"
#include "plugin/test/fake_graph_driver.h"
#include "registry_shim/tar.h"

namespace slacker::driver {

// SlackerDriver on FakeOs over a local store in `dir` (driver/test/fake_os_driver.h).
class SlackerDriverOnFakeOs {
 public:
  static constexpr const char* kName = "SlackerDriverOnFakeOs";
  Status Open(const std::string& dir) {
    SLACKER_ASSIGN_OR_RETURN(backend_, OpenScratchStore(os_, dir));
    SLACKER_ASSIGN_OR_RETURN(driver_, SlackerDriver::Open(os_, *backend_, ScratchDriverOptions(dir)));
    return Status::Ok();
  }
  GraphDriver& driver() { return *driver_; }
  SnapshotDriver& snapshots() { return *driver_; }
  // Something is written into layer `id`, mounted at `dir` (its Get's answer).
  void Write(const std::string& /*id*/, const std::string& dir) { os_.RecordWrite(dir); }

 private:
  os::FakeOs os_;
  std::unique_ptr<storage_backend::Backend> backend_;
  std::unique_ptr<SlackerDriver> driver_;  // destroyed first
};

// The plugin tests' fake, nothing scripted: its model of the contract.
class FakeGraphDriverModel {
 public:
  static constexpr const char* kName = "FakeGraphDriver";
  Status Open(const std::string& dir) {
    fake_.state_dir = dir + "/state";
    return Status::Ok();
  }
  GraphDriver& driver() { return fake_; }
  SnapshotDriver& snapshots() { return fake_; }
  void Write(const std::string& id, const std::string& /*dir*/) { fake_.MarkWritten(id); }

 private:
  plugin::FakeGraphDriver fake_;
};

// A scratch directory and a driver in it, Init'ed as dockerd does first.
template <typename Impl>
class DriverContractFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeScratchDir("slacker-contract-test");
    ASSERT_NE(dir_, "");
    impl_.emplace();
    Status s = impl_->Open(dir_);
    ASSERT_TRUE(s.ok()) << s.message();
    // dockerd calls Init first, with the daemon's home for the driver.
    s = d().Init(dir_ + "/home", {});
    ASSERT_TRUE(s.ok()) << s.message();
  }
  void TearDown() override {
    impl_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }

  GraphDriver& d() { return impl_->driver(); }

  std::string dir_;
  std::optional<Impl> impl_;
};

// --- helpers of both suites ---------------------------------------------------------

struct File {
  std::string name;
  char type;
  std::string body;
};

// A layer tar as dockerd sends it: entries, then the end-of-archive marker.
inline std::string Tar(const std::vector<File>& files) {
  StringSink out;
  registry_shim::TarWriter w(out);
  for (const auto& f : files) {
    registry_shim::TarEntry e;
    e.name = f.name;
    e.typeflag = f.type;
    e.mode = f.type == registry_shim::kTarDirectory ? 0755 : 0644;
    e.size = f.body.size();
    e.mtime_sec = 1700000000;
    EXPECT_TRUE(w.Add(e, f.body).ok()) << f.name;
  }
  EXPECT_TRUE(w.Finish().ok());
  return out.data();
}

inline constexpr char kDir = registry_shim::kTarDirectory;
inline constexpr char kFile = registry_shim::kTarRegular;

// The empty layer: a tar of nothing, its 1024-byte end marker.
inline const std::string kEmptyTar(1024, '\0');

inline CreateRequest Req(std::string id, std::string parent = "") {
  CreateRequest r;
  r.id = std::move(id);
  r.parent = std::move(parent);
  return r;
}

using ContractImplementations = ::testing::Types<SlackerDriverOnFakeOs, FakeGraphDriverModel>;

class ContractImplName {
 public:
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};

}  // namespace slacker::driver
