// The driver's refs/<host>/ markers (what keeps a snapshot from gc) on FakeOs: one marker
// while any layer of this host uses the snapshot, none once no layer does.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "common/files.h"
#include "common/io.h"
#include "driver/slacker_driver.h"
#include "os/fake_os.h"
#include "registry_shim/reference.h"
#include "storage_backend/local_backend.h"

namespace slacker::driver {
namespace {

using nlohmann::json;
using storage_backend::Backend;

std::string Drain(ByteSource& src) {
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = src.Read(buf, sizeof buf);
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

// Forwards to a real backend; runs `before_drop_ref` (once) before forwarding DropRef.
class HookedBackend : public Backend {
 public:
  explicit HookedBackend(Backend& inner) : in_(inner) {}
  std::function<void(const std::string&)> before_drop_ref;

  const storage_backend::StoreInfo& info() const override { return in_.info(); }
  std::string Describe() const override { return in_.Describe(); }
  std::string root() const override { return in_.root(); }
  std::string SnapshotPath(const std::string& s) const override { return in_.SnapshotPath(s); }
  std::string SnapshotMetaPath(const std::string& s) const override { return in_.SnapshotMetaPath(s); }
  std::string SnapshotFilePath(const std::string& s, const std::string& x) const override {
    return in_.SnapshotFilePath(s, x);
  }
  std::string VolumePath(const std::string& l) const override { return in_.VolumePath(l); }
  std::string TemplatePath(uint64_t b) const override { return in_.TemplatePath(b); }
  Result<std::string> SnapshotVolume(const std::string& l, const json& m) override { return in_.SnapshotVolume(l, m); }
  Result<std::string> PromoteVolume(const std::string& l, const json& m) override { return in_.PromoteVolume(l, m); }
  Status CloneSnapshot(const std::string& s, const std::string& l) override { return in_.CloneSnapshot(s, l); }
  Status CloneFile(const std::string& a, const std::string& b) override { return in_.CloneFile(a, b); }
  Status RemoveVolume(const std::string& l) override { return in_.RemoveVolume(l); }
  Status RemoveSnapshot(const std::string& s) override { return in_.RemoveSnapshot(s); }
  bool SnapshotExists(const std::string& s) const override { return in_.SnapshotExists(s); }
  Result<json> ReadSnapshotMeta(const std::string& s) const override { return in_.ReadSnapshotMeta(s); }
  Result<std::string> ReadSnapshotTrace(const std::string& s, size_t n) const override {
    return in_.ReadSnapshotTrace(s, n);
  }
  Status WriteSnapshotTrace(const std::string& s, std::string_view b) override { return in_.WriteSnapshotTrace(s, b); }
  Status AddRef(const std::string& s) override { return in_.AddRef(s); }
  Status DropRef(const std::string& s) override {
    if (auto hook = std::exchange(before_drop_ref, nullptr)) hook(s);
    return in_.DropRef(s);
  }
  Result<std::vector<std::string>> ListRefs() const override { return in_.ListRefs(); }
  Result<std::vector<std::string>> ListSnapshots() const override { return in_.ListSnapshots(); }
  Result<std::vector<std::string>> ListVolumes() const override { return in_.ListVolumes(); }
  Result<os::FsStats> Space() const override { return in_.Space(); }
  Result<std::string> LookupChain(const std::string& k) const override { return in_.LookupChain(k); }
  Status RecordChain(const std::string& k, const std::string& s) override { return in_.RecordChain(k, s); }
  Result<std::vector<storage_backend::ChainEntry>> ListChains() const override { return in_.ListChains(); }
  Result<bool> RemoveChain(const std::string& k, const std::string& s) override { return in_.RemoveChain(k, s); }
  Status PublishName(const storage_backend::NameEntry& e) override { return in_.PublishName(e); }
  Result<storage_backend::NameEntry> LookupName(const std::string& ns, const std::string& n) const override {
    return in_.LookupName(ns, n);
  }
  Result<std::vector<storage_backend::NameEntry>> ListNames() const override { return in_.ListNames(); }
  Result<bool> RemoveName(const std::string& ns, const std::string& n, const std::string& s) override {
    return in_.RemoveName(ns, n, s);
  }

 private:
  Backend& in_;
};

class DriverRefsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-refs-test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    auto store = storage_backend::OpenLocalStore(os_, dir_ + "/store", "hostA");
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(store).value();
    hooked_ = std::make_unique<HookedBackend>(*store_);
    Reopen();
  }
  void TearDown() override {
    driver_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }
  void Reopen() {
    driver_.reset();
    DriverOptions o;
    o.state_dir = dir_ + "/state";
    o.host_id = "hostA";
    o.default_size = 32ull << 20;
    o.trust = registry_shim::ReferenceTrust{{"store-key"}, false};  // as a default install
    auto d = SlackerDriver::Open(os_, *hooked_, o);
    ASSERT_TRUE(d.ok()) << d.status().message();
    driver_ = std::move(d).value();
  }
  CreateRequest Req(std::string id, std::string parent = "") {
    CreateRequest r;
    r.id = std::move(id);
    r.parent = std::move(parent);
    return r;
  }
  // A committed container layer's reference tar (its snapshot is marked by "c").
  std::string CommittedReference(const std::string& id) {
    EXPECT_TRUE(driver_->CreateReadWrite(Req(id)).ok());
    EXPECT_TRUE(driver_->Get(id, "").ok());
    auto s = driver_->Diff(id, "");
    EXPECT_TRUE(s.ok()) << s.status().message();
    std::string tar = s.ok() ? Drain(**s) : "";
    EXPECT_TRUE(driver_->Put(id).ok());
    return tar;
  }
  std::string SnapshotOf(const std::string& tar) {
    auto ref = registry_shim::ParseReferenceTar(tar);
    EXPECT_TRUE(ref.ok());
    return ref.ok() ? ref->snapshot : "";
  }
  bool Marked(const std::string& snap) { return PathExists(dir_ + "/store/refs/hostA/" + snap); }

  os::FakeOs os_;
  std::string dir_;
  std::unique_ptr<Backend> store_;
  std::unique_ptr<HookedBackend> hooked_;
  std::unique_ptr<SlackerDriver> driver_;
};

// Issue 16: Remove decided "no other layer uses S" and then dropped the marker; a layer
// that claimed S in between (its AddRef a no-op, the marker still there) was left using
// S without a marker, so gc could delete it.
TEST_F(DriverRefsTest, RemoveKeepsTheMarkerOfASnapshotAnotherLayerClaimedMeanwhile) {
  std::string tar = CommittedReference("c");
  std::string snap = SnapshotOf(tar);
  ASSERT_TRUE(driver_->Create(Req("a")).ok());
  StringSource sa(tar);
  ASSERT_TRUE(driver_->ApplyDiff("a", "", sa).ok());
  ASSERT_TRUE(driver_->Remove("c").ok());
  ASSERT_TRUE(Marked(snap));
  ASSERT_TRUE(driver_->Create(Req("b")).ok());

  std::future<Result<int64_t>> apply_b;
  hooked_->before_drop_ref = [&](const std::string&) {
    // "b" applies the same reference while Remove("a") is about to drop the marker.
    apply_b = std::async(std::launch::async, [&] {
      StringSource sb(tar);
      return driver_->ApplyDiff("b", "", sb);
    });
    apply_b.wait_for(std::chrono::milliseconds(500));  // done, or waiting for Remove to finish
  };
  ASSERT_TRUE(driver_->Remove("a").ok());
  ASSERT_TRUE(apply_b.valid()) << "Remove(a) did not drop its marker at all";
  auto b = apply_b.get();
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ((*driver_->GetMetadata("b"))["Snapshot"], snap);
  EXPECT_TRUE(Marked(snap)) << "layer b uses snapshot " << snap << " but its ref marker is gone";
}

TEST_F(DriverRefsTest, ASnapshotReplacedByANewerOneLosesItsMarker) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c")).ok());
  auto root = driver_->Get("c", "");
  ASSERT_TRUE(root.ok());
  auto s1 = driver_->Diff("c", "");
  ASSERT_TRUE(s1.ok());
  std::string first = SnapshotOf(Drain(**s1));
  os_.RecordWrite(*root);
  auto s2 = driver_->Diff("c", "");
  ASSERT_TRUE(s2.ok());
  std::string second = SnapshotOf(Drain(**s2));
  ASSERT_NE(first, second);
  ASSERT_TRUE(driver_->Put("c").ok());
  EXPECT_TRUE(Marked(second));
  EXPECT_FALSE(Marked(first)) << "no layer uses the replaced snapshot " << first << " any more";
}

TEST_F(DriverRefsTest, RestartDropsMarkersThatNoLayerRecordClaims) {
  std::string snap = SnapshotOf(CommittedReference("c"));
  // A crash between publishing a snapshot (marker made) and writing the layer record.
  std::string orphan = RandomHex(16);
  ASSERT_TRUE(AtomicWriteFile(dir_ + "/store/refs/hostA/" + orphan, "").ok());
  Reopen();
  EXPECT_FALSE(Marked(orphan)) << "no record of hostA names snapshot " << orphan;
  EXPECT_TRUE(Marked(snap));
}

// Upgrade: a state dir and store of the previous release (refs/<host>/<snap> empty files,
// no leases/) keep their markers across a restart, and Remove drops them as before.
TEST_F(DriverRefsTest, MarkersOfThePreviousReleaseAreKeptAndDroppedByRemove) {
  std::string snap = SnapshotOf(CommittedReference("c"));
  ASSERT_TRUE(RemoveFileIfExists(dir_ + "/store/refs/hostA/" + snap).ok());
  ASSERT_TRUE(AtomicWriteFile(dir_ + "/store/refs/hostA/" + snap, "").ok());  // as 2026-11 wrote it
  Reopen();
  EXPECT_TRUE(Marked(snap));
  ASSERT_TRUE(driver_->Remove("c").ok());
  EXPECT_FALSE(Marked(snap));
}

}  // namespace
}  // namespace slacker::driver
