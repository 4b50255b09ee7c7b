// The driver's state machine on FakeOs: no root, no real mounts. FakeOs keeps a mount
// and loop table; FICLONE copies bytes; "mounted" directories are plain directories.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "common/fd.h"
#include "common/files.h"
#include "driver/slacker_driver.h"
#include "driver/test/fake_os_driver.h"
#include "loopdev/ext4_read.h"
#include "loopdev/loop_device.h"
#include "os/fake_os.h"
#include "registry_shim/reference.h"
#include "registry_shim/tar.h"
#include "storage_backend/local_backend.h"

namespace slacker::driver {
namespace {

std::string Drain(ByteSource& src) {
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = src.Read(buf, sizeof buf);
    EXPECT_TRUE(n.ok()) << n.status().message();
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

// FakeOs with a hook that runs right after a Thaw: a writer the freeze blocked resumes.
class ThawHookOs : public os::FakeOs {
 public:
  Status Thaw(const std::string& mountpoint) override {
    Status s = FakeOs::Thaw(mountpoint);
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard<std::mutex> l(hook_mu_);
      hook.swap(after_thaw_);
    }
    if (hook) hook(mountpoint);
    return s;
  }
  // Runs `f(mountpoint)` after the next Thaw.
  void AfterNextThaw(std::function<void(const std::string&)> f) {
    std::lock_guard<std::mutex> l(hook_mu_);
    after_thaw_ = std::move(f);
  }

 private:
  std::mutex hook_mu_;
  std::function<void(const std::string&)> after_thaw_;
};

class DriverFakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeScratchDir("slacker-driver-test");
    ASSERT_NE(dir_, "");
    auto store = OpenScratchStore(os_, dir_);
    ASSERT_TRUE(store.ok()) << store.status().message();
    backend_ = std::move(store).value();
    Reopen();
  }
  void TearDown() override {
    driver_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }
  void Reopen(uint64_t max_spool_bytes = DriverOptions::kDefaultMaxSpoolBytes,
              std::chrono::milliseconds park_time = std::chrono::milliseconds(0)) {
    driver_.reset();
    DriverOptions o = ScratchDriverOptions(dir_);
    o.max_spool_bytes = max_spool_bytes;
    o.park_time = park_time;
    o.trust = trust_;
    o.share_page_cache = share_page_cache_;
    auto d = SlackerDriver::Open(os_, *backend_, o);
    ASSERT_TRUE(d.ok()) << d.status().message();
    driver_ = std::move(d).value();
  }
  CreateRequest Req(std::string id, std::string parent = "") {
    CreateRequest r;
    r.id = std::move(id);
    r.parent = std::move(parent);
    return r;
  }
  std::string DiffBytes(const std::string& id) {
    auto s = driver_->Diff(id, "");
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? Drain(**s) : "";
  }
  bool share_page_cache_ = false;
  std::string MountFlagsOf(const std::string& path) {
    for (const auto& m : os_.Mounts())
      if (m.target == path) return (m.flags & MS_RDONLY) ? "ro" : "rw";
    return "none";
  }

  // As a default install: the store's key, no opt-out.
  registry_shim::ReferenceTrust trust_{{"store-key"}, false};
  ThawHookOs os_;
  std::string dir_;
  std::unique_ptr<storage_backend::Backend> backend_;
  std::unique_ptr<SlackerDriver> driver_;
};

TEST_F(DriverFakeTest, CreateRecordsMetadataOnlyNoCloneNoMount) {
  ASSERT_TRUE(driver_->Create(Req("base")).ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1", "base")).ok());
  EXPECT_TRUE(driver_->Exists("c1"));
  EXPECT_EQ(os_.Calls("Ficlone") + os_.Calls("CopyFileRange"), 0);
  EXPECT_EQ(os_.Calls("Mount"), 0);
  EXPECT_EQ(driver_->counters().clones, 0u);
}

TEST_F(DriverFakeTest, CreateRejectsDuplicatesMissingParentsAndUnknownOptions) {
  ASSERT_TRUE(driver_->Create(Req("a")).ok());
  EXPECT_EQ(driver_->Create(Req("a")).code(), EEXIST);
  EXPECT_EQ(driver_->Create(Req("b", "nope")).code(), ENOENT);
  CreateRequest r = Req("c");
  r.storage_opt["iops"] = "5";
  EXPECT_EQ(driver_->CreateReadWrite(r).code(), EINVAL);
  EXPECT_EQ(driver_->Create(Req("../x")).code(), EINVAL);
}

TEST_F(DriverFakeTest, FirstGetClonesOnceAndRefcountsMounts) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p1 = driver_->Get("c1", "");
  ASSERT_TRUE(p1.ok()) << p1.status().message();
  auto p2 = driver_->Get("c1", "");
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(*p1, *p2);
  EXPECT_EQ(driver_->counters().clones, 1u);
  EXPECT_EQ(os_.Calls("Mount"), 1);
  EXPECT_EQ(MountFlagsOf(*p1), "rw");
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_TRUE(os_.IsMounted(*p1));
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_FALSE(os_.IsMounted(*p1));
  EXPECT_TRUE(os_.Loops().empty());
  EXPECT_TRUE(driver_->Put("c1").ok()) << "a double Put must not fail or underflow";
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  EXPECT_EQ(driver_->counters().clones, 1u) << "the volume is cloned once, then reused";
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// A writer blocked by the snapshot's freeze resumes at the thaw: its write is not in the
// snapshot, so the next Diff must take a new one, and Put must not record "clean".
TEST_F(DriverFakeTest, AWriteReleasedByTheThawIsNotTakenForTheSnapshot) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  os_.RecordWrite(*p);
  os_.AfterNextThaw([this](const std::string& mnt) { os_.RecordWrite(mnt); });
  std::string first = DiffBytes("c1");
  std::string second = DiffBytes("c1");
  EXPECT_NE(second, first) << "the write released by the thaw was taken as part of the first snapshot";
  EXPECT_EQ(driver_->counters().snapshots, 2u);
  os_.AfterNextThaw([this](const std::string& mnt) { os_.RecordWrite(mnt); });
  std::string third = DiffBytes("c1");
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_NE(DiffBytes("c1"), third) << "Put recorded the layer clean although a write followed the snapshot";
}

// A tar stream whose first Read blocks until Release(): an ApplyDiff stuck on a slow pull.
class BlockingSource : public ByteSource {
 public:
  Result<size_t> Read(void*, size_t) override {
    entered_.set_value();
    released_.get_future().wait();
    return size_t{0};
  }
  void WaitEntered() { entered_future_.wait(); }
  void Release() { released_.set_value(); }

 private:
  std::promise<void> entered_;
  std::future<void> entered_future_ = entered_.get_future();
  std::promise<void> released_;
};

TEST_F(DriverFakeTest, RemoveAndStatusDoNotWaitForAnotherLayersApplyDiff) {
  ASSERT_TRUE(driver_->Create(Req("slow")).ok());
  ASSERT_TRUE(driver_->Create(Req("other")).ok());
  BlockingSource tar;
  auto apply = std::async(std::launch::async, [&] { return driver_->ApplyDiff("slow", "", tar).status(); });
  tar.WaitEntered();
  auto remove = std::async(std::launch::async, [&] { return driver_->Remove("other"); });
  auto status = std::async(std::launch::async, [&] { return driver_->StatusRows(); });
  bool remove_done = remove.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  bool status_done = status.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  tar.Release();
  EXPECT_TRUE(remove_done) << "Remove of another layer waited for the stuck ApplyDiff";
  EXPECT_TRUE(status_done) << "StatusRows waited for the stuck ApplyDiff";
  EXPECT_TRUE(remove.get().ok());
  EXPECT_FALSE(driver_->Exists("other"));
  status.get();
  IgnoreError(apply.get(), "the released ApplyDiff's own outcome is not what this test checks");
}

TEST_F(DriverFakeTest, GetOfAMissingLayerIsNotFound) {
  auto r = driver_->Get("ghost", "");
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_NE(r.status().message().find("ghost"), std::string::npos);
}

TEST_F(DriverFakeTest, DiffOfAnUnchangedLayerReusesItsSnapshot) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  std::string first = DiffBytes("c1");
  std::string second = DiffBytes("c1");
  EXPECT_EQ(first, second);
  EXPECT_EQ(driver_->counters().snapshots, 1u);
  EXPECT_GE(driver_->counters().snapshot_cache_hits, 1u);
  os_.RecordWrite(*p);
  std::string third = DiffBytes("c1");
  EXPECT_NE(third, first) << "a write since the last snapshot needs a new snapshot";
  ASSERT_TRUE(driver_->Put("c1").ok());
  std::string fourth = DiffBytes("c1");
  EXPECT_EQ(fourth, third) << "unmounted without writes: still the same snapshot";
}

TEST_F(DriverFakeTest, DiffOfAWrittenLayerIsAReferenceToThisStore) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  std::string tar = DiffBytes("c1");
  auto ref = registry_shim::DecodeReferenceTar(tar, trust_, "");
  ASSERT_TRUE(ref.ok()) << ref.status().message();
  EXPECT_EQ(ref->format, 2);
  EXPECT_NE(ref->mac, "") << "signed with the store's key";
  EXPECT_EQ(ref->store, backend_->info().uuid);
  EXPECT_TRUE(backend_->SnapshotExists(ref->snapshot));
  ASSERT_TRUE(driver_->Put("c1").ok());
}

TEST_F(DriverFakeTest, CommitSequenceAppliesTheReferenceWithoutCloning) {
  // docker run: C-init and C on top of the image layer; docker commit: Diff + ApplyDiff.
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("C-init", "img")).ok());
  ASSERT_TRUE(driver_->Get("C-init", "").ok());
  ASSERT_TRUE(driver_->Put("C-init").ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("C", "C-init")).ok());
  auto root = driver_->Get("C", "");
  ASSERT_TRUE(root.ok()) << root.status().message();
  std::string tar = DiffBytes("C");
  ASSERT_TRUE(driver_->Create(Req("L", "img")).ok());
  uint64_t clones_before = driver_->counters().clones;
  int ficlones_before = os_.Calls("Ficlone");
  StringSource src(tar);
  auto size = driver_->ApplyDiff("L", "img", src);
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_EQ(driver_->counters().clones, clones_before);
  EXPECT_EQ(os_.Calls("Ficlone"), ficlones_before) << "ApplyDiff of a reference copies nothing";
  EXPECT_EQ(DiffBytes("L"), tar) << "Diff must return exactly the bytes applied";
  auto lroot = driver_->Get("L", "");
  ASSERT_TRUE(lroot.ok());
  EXPECT_EQ(MountFlagsOf(*lroot), "ro") << "image layers mount their snapshot read-only";
  EXPECT_EQ(driver_->counters().clones, clones_before) << "read-only image layers are never cloned";
  ASSERT_TRUE(driver_->Put("L").ok());
  ASSERT_TRUE(driver_->Put("C").ok());
  ASSERT_TRUE(driver_->Remove("C").ok());
  ASSERT_TRUE(driver_->Remove("C-init").ok());
  EXPECT_FALSE(driver_->Exists("C"));
  EXPECT_FALSE(PathExists(backend_->VolumePath("C")));
}

TEST_F(DriverFakeTest, ForeignOrMissingReferencesAreRefusedAndLeaveTheLayerUntouched) {
  ASSERT_TRUE(driver_->Create(Req("L")).ok());
  registry_shim::Reference foreign{2, std::string(32, 'a'), std::string(32, 'b'), "", 0, ""};
  StringSource s1(registry_shim::EncodeReferenceTar(foreign, "store-key"));
  auto r1 = driver_->ApplyDiff("L", "", s1);
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find(std::string(32, 'a')), std::string::npos) << r1.status().message();
  registry_shim::Reference missing{2, backend_->info().uuid, std::string(32, 'c'), "", 0, ""};
  StringSource s2(registry_shim::EncodeReferenceTar(missing, "store-key"));
  auto r2 = driver_->ApplyDiff("L", "", s2);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find(std::string(32, 'c')), std::string::npos) << r2.status().message();
  EXPECT_EQ(DiffBytes("L"), std::string(1024, '\0')) << "the layer is still empty";
}

// Committed layer "C" on image layer `image` (with its -init layer, as dockerd does);
// returns Diff("C"): the reference tar docker commit/push would see.
std::string CommitOn(SlackerDriver& d, const std::string& image, const std::string& c) {
  EXPECT_TRUE(d.CreateReadWrite(CreateRequest{c + "-init", image, "", {}}).ok());
  EXPECT_TRUE(d.CreateReadWrite(CreateRequest{c, c + "-init", "", {}}).ok());
  EXPECT_TRUE(d.Get(c, "").ok());
  auto s = d.Diff(c, "");
  EXPECT_TRUE(s.ok()) << s.status().message();
  std::string tar = s.ok() ? Drain(**s) : "";
  EXPECT_TRUE(d.Put(c).ok());
  return tar;
}

// Scenario (issue 15): a container read a snapshot id out of
// /sys/block/loop*/loop/backing_file; a forged unsigned 2 KiB layer naming it is pulled on a
// default install. It must be refused, naming the snapshot and what to do.
TEST_F(DriverFakeTest, ApplyDiffRefusesAnUnsignedReferenceToAnExistingSnapshot) {
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  auto signed_ref = registry_shim::ParseReferenceTar(CommitOn(*driver_, "img", "C"));
  ASSERT_TRUE(signed_ref.ok()) << signed_ref.status().message();
  ASSERT_TRUE(backend_->SnapshotExists(signed_ref->snapshot));
  registry_shim::Reference forged = *signed_ref;
  ASSERT_TRUE(driver_->Create(Req("L", "img")).ok());
  StringSource src(registry_shim::EncodeReferenceTar(forged, ""));
  auto r = driver_->ApplyDiff("L", "img", src);
  ASSERT_FALSE(r.ok()) << "an unsigned reference was accepted";
  EXPECT_EQ(r.status().code(), EACCES);
  EXPECT_NE(r.status().message().find(forged.snapshot), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("unsigned"), std::string::npos) << r.status().message();
  EXPECT_EQ(DiffBytes("L"), std::string(1024, '\0')) << "the layer is still empty";
  // Forged with a key of its own: refused as well.
  StringSource other(registry_shim::EncodeReferenceTar(forged, "attacker-key"));
  r = driver_->ApplyDiff("L", "img", other);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("MAC verification failed"), std::string::npos) << r.status().message();
}

// Scenario: the operator opted out (--allow-unsigned-references): the forged reference of
// the previous test, and a format 1 reference of the previous release, are applied.
TEST_F(DriverFakeTest, OptOutAcceptsUnsignedAndFormat1References) {
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  auto ref = registry_shim::ParseReferenceTar(CommitOn(*driver_, "img", "C"));
  ASSERT_TRUE(ref.ok());
  trust_.allow_unsigned = true;
  Reopen();
  ASSERT_TRUE(driver_->Create(Req("L", "img")).ok());
  StringSource src(registry_shim::EncodeReferenceTar(*ref, ""));
  auto r = driver_->ApplyDiff("L", "img", src);
  EXPECT_TRUE(r.ok()) << r.status().message();
  registry_shim::Reference v1{1, ref->store, ref->snapshot, "", ref->bytes, ""};
  ASSERT_TRUE(driver_->Create(Req("L1", "img")).ok());
  StringSource src1(registry_shim::EncodeReferenceTar(v1, "store-key"));
  r = driver_->ApplyDiff("L1", "img", src1);
  EXPECT_TRUE(r.ok()) << r.status().message();
}

// Scenario (issue 15): a validly signed reference, made on image A, is grafted onto
// another parent B (a forged image config listing it after B's layers).
TEST_F(DriverFakeTest, ApplyDiffRefusesAReParentedSignedReference) {
  ASSERT_TRUE(driver_->Create(Req("imgA")).ok());
  std::string tar = CommitOn(*driver_, "imgA", "C");
  ASSERT_TRUE(driver_->Create(Req("A2", "imgA")).ok());
  StringSource ok_src(tar);
  auto applied = driver_->ApplyDiff("A2", "imgA", ok_src);
  ASSERT_TRUE(applied.ok()) << "on its own parent: " << applied.status().message();
  for (const std::string& parent : {std::string("A2"), std::string("")}) {
    ASSERT_TRUE(driver_->Create(Req("G" + parent, parent)).ok());
    StringSource src(tar);
    auto r = driver_->ApplyDiff("G" + parent, parent, src);
    ASSERT_FALSE(r.ok()) << "grafted onto parent '" << parent << "'";
    EXPECT_EQ(r.status().code(), EACCES);
    EXPECT_NE(r.status().message().find("cannot be moved to another parent"), std::string::npos)
        << r.status().message();
  }
}

// Scenario: `slackerctl key rotate` on another worker; this driver still has only the
// old key in memory. References signed with the new key verify after a reload; those
// signed with the old key keep working until it is retired.
TEST_F(DriverFakeTest, KeyRotationReloadsKeysAndKeepsOldReferencesUntilRetired) {
  std::vector<std::string> store_keys = {"store-key"};
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  std::string by_old = CommitOn(*driver_, "img", "C1");
  store_keys = {"new-key", "store-key"};  // rotated
  trust_.keys = store_keys;
  Reopen();
  std::string by_new = CommitOn(*driver_, "img", "C2");
  trust_.keys = {"store-key"};  // a worker that started before the rotation
  driver_.reset();
  DriverOptions o;
  o.state_dir = dir_ + "/state";
  o.host_id = "hostA";
  o.default_size = 32ull << 20;
  o.trust = trust_;
  o.reload_keys = [&store_keys]() -> Result<std::vector<std::string>> { return store_keys; };
  auto d = SlackerDriver::Open(os_, *backend_, o);
  ASSERT_TRUE(d.ok());
  driver_ = std::move(d).value();
  for (const auto& [id, tar] : {std::pair{"N", by_new}, std::pair{"O", by_old}}) {
    ASSERT_TRUE(driver_->Create(Req(id, "img")).ok());
    StringSource src(tar);
    auto r = driver_->ApplyDiff(id, "img", src);
    EXPECT_TRUE(r.ok()) << id << ": " << r.status().message();
  }
  store_keys = {"new-key"};  // slackerctl key retire
  ASSERT_TRUE(driver_->Create(Req("R", "img")).ok());
  StringSource src(by_old);
  auto r = driver_->ApplyDiff("R", "img", src);
  ASSERT_FALSE(r.ok()) << "a retired key still verifies";
  EXPECT_NE(r.status().message().find("MAC verification failed"), std::string::npos) << r.status().message();
}

// Scenario: upgrade. Layer records of the previous release carry no chain id and its
// reference layers hold format 1 tars: Diff still returns the exact bytes applied, and a
// commit on top of them is signed and applied (the chain id is computed from Diff).
TEST_F(DriverFakeTest, StateOfThePreviousReleaseStillDiffsAndCommits) {
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  auto ref = registry_shim::ParseReferenceTar(CommitOn(*driver_, "img", "C"));
  ASSERT_TRUE(ref.ok());
  // What the previous release left: a layer applied from a format 1 reference.
  registry_shim::Reference v1{1, ref->store, ref->snapshot, "", ref->bytes, ""};
  std::string v1_tar = registry_shim::EncodeReferenceTar(v1, "");
  ASSERT_TRUE(AtomicWriteFile(dir_ + "/state/layers/old.ref", v1_tar).ok());
  LayerRecord rec;
  rec.id = "old";
  rec.parent = "img";
  rec.origin = Origin::kReference;
  rec.snapshot = ref->snapshot;
  ASSERT_TRUE(AtomicWriteFile(dir_ + "/state/layers/old.json", rec.ToJson()).ok());
  for (const char* id : {"img", "C", "C-init"}) {  // records written without chain ids
    auto text = ReadFileToString(dir_ + "/state/layers/" + std::string(id) + ".json");
    ASSERT_TRUE(text.ok());
    auto r = LayerRecord::FromJson(*text);
    ASSERT_TRUE(r.ok());
    r->chain_id.clear();
    ASSERT_TRUE(AtomicWriteFile(dir_ + "/state/layers/" + std::string(id) + ".json", r->ToJson()).ok());
  }
  Reopen();
  EXPECT_EQ(DiffBytes("old"), v1_tar) << "Diff reproduces the previous release's bytes";
  std::string tar = CommitOn(*driver_, "old", "D");
  ASSERT_TRUE(driver_->Create(Req("N", "old")).ok());
  StringSource src(tar);
  auto r = driver_->ApplyDiff("N", "old", src);
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto chain = driver_->ChainId("old");
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(registry_shim::IsChainId(*chain)) << *chain;
  auto text = ReadFileToString(dir_ + "/state/layers/old.json");
  ASSERT_TRUE(text.ok());
  auto persisted = LayerRecord::FromJson(*text);
  ASSERT_TRUE(persisted.ok());
  EXPECT_EQ(persisted->chain_id, *chain) << "computed once, then recorded";
}

TEST_F(DriverFakeTest, RemoveOfAMountedLayerUnmountsAndDeletesItsVolume) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->Remove("c1").ok());
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_FALSE(PathExists(backend_->VolumePath("c1")));
  EXPECT_FALSE(driver_->Exists("c1"));
  EXPECT_TRUE(driver_->Remove("c1").ok()) << "Remove is idempotent";
}

TEST_F(DriverFakeTest, RestartWhileMountedKeepsLayersAndTheMount) {
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1", "img")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  Reopen();  // the plugin restarts; dockerd still holds its Get
  EXPECT_TRUE(driver_->Exists("img"));
  EXPECT_TRUE(driver_->Exists("c1"));
  EXPECT_TRUE(os_.IsMounted(*p));
  auto again = driver_->Get("c1", "");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(os_.Calls("Mount"), 1) << "the surviving mount is reused";
  ASSERT_TRUE(driver_->Put("c1").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_FALSE(os_.IsMounted(*p));
}

TEST_F(DriverFakeTest, RestartRemovesAStrayVolumeOfAnInterruptedClone) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  // A crash after the clone but before the record said so.
  ASSERT_TRUE(AtomicWriteFile(backend_->VolumePath("c1"), "partial").ok());
  Reopen();
  EXPECT_FALSE(PathExists(backend_->VolumePath("c1")));
  EXPECT_TRUE(driver_->Exists("c1"));
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
}

TEST_F(DriverFakeTest, RestartThawsAVolumeFrozenByAnInterruptedDiff) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  // A crash between FIFREEZE and FITHAW of a Diff of the running container.
  ASSERT_TRUE(os_.Freeze(*p).ok());
  Reopen();
  EXPECT_FALSE(os_.IsFrozen(*p)) << "a frozen container file system would hang every write";
  EXPECT_TRUE(os_.IsMounted(*p));
  EXPECT_FALSE(DiffBytes("c1").empty()) << "Diff works again (freezes and thaws)";
  EXPECT_FALSE(os_.IsFrozen(*p));
}

TEST_F(DriverFakeTest, RestartRemovesAStrayCloneTempFile) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  // A crash between the clone into <volume>.tmp-XXXX and its rename.
  std::string tmp = backend_->VolumePath("c1") + ".tmp-abcd";
  ASSERT_TRUE(AtomicWriteFile(tmp, "partial clone").ok());
  Reopen();
  EXPECT_FALSE(PathExists(tmp));
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// Regression (crash_e2e.sh, get.after_attach / get.after_mount): slackerd died during
// the Get of a new container's init layer; dockerd's Get failed and it never removed
// the init layer, so its volume (and mount) leaked forever.
TEST_F(DriverFakeTest, RestartRemovesAnInitLayerWhoseContainerLayerWasNeverCreated) {
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1-init", "img")).ok());
  auto p = driver_->Get("c1-init", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c2-init", "img")).ok());
  ASSERT_TRUE(driver_->Get("c2-init", "").ok());
  ASSERT_TRUE(driver_->Put("c2-init").ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c2", "c2-init")).ok());
  Reopen();  // killed during c1-init's Get
  EXPECT_FALSE(driver_->Exists("c1-init"));
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_FALSE(PathExists(backend_->VolumePath("c1-init")));
  EXPECT_TRUE(driver_->Exists("c2-init")) << "a complete container keeps its init layer";
  EXPECT_TRUE(PathExists(backend_->VolumePath("c2-init")));
  EXPECT_TRUE(driver_->Exists("img"));
}

// Regression (load_e2e.sh, 10 parallel builds): a build step's commit missed the step's
// writes when a concurrent container's mount namespace kept the file system alive past
// the unmount. Put writes the volume back (freeze + thaw) before unmounting.
TEST_F(DriverFakeTest, PutOfAWrittenLayerFlushesItBeforeTheUnmount) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  int freezes = os_.Calls("Freeze");
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_EQ(os_.Calls("Freeze"), freezes + 1);
  EXPECT_EQ(os_.Calls("Thaw"), freezes + 1);
  EXPECT_FALSE(os_.IsFrozen(*p));
  EXPECT_FALSE(os_.IsMounted(*p));
}

TEST_F(DriverFakeTest, FailedMountLeavesNoLoopAndTheLayerUsable) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  os_.FailNext("Mount", EIO);
  EXPECT_FALSE(driver_->Get("c1", "").ok());
  EXPECT_TRUE(os_.Loops().empty()) << "the loop device is released with its fd (autoclear)";
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
}

TEST_F(DriverFakeTest, InitOptionsSurviveAPluginRestart) {
  ASSERT_TRUE(driver_->Init(dir_ + "/home", {"size=48M"}).ok());
  Reopen();  // dockerd does not call Init again
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  struct stat st;
  ASSERT_EQ(::stat(backend_->VolumePath("c1").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 48ll << 20);
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_EQ(driver_->Init(dir_ + "/home", {"bogus=1"}).code(), EINVAL);
}

std::string OneFileTar(const std::string& name, const std::string& body) {
  StringSink out;
  registry_shim::TarWriter w(out);
  registry_shim::TarEntry e;
  e.name = name;
  e.typeflag = registry_shim::kTarRegular;
  e.mode = 0644;
  e.size = body.size();
  EXPECT_TRUE(w.Add(e, body).ok());
  EXPECT_TRUE(w.Finish().ok());
  return out.data();
}

TEST_F(DriverFakeTest, ALayerTarLargerThanTheSpoolLimitIsRefusedAndNothingIsKept) {
  Reopen(/*max_spool_bytes=*/64 * 1024);
  std::string tar = OneFileTar("big", std::string(200 * 1024, 'x'));
  ASSERT_TRUE(driver_->Create(Req("big")).ok());
  StringSource src(tar);
  auto r = driver_->ApplyDiff("big", "", src);
  ASSERT_FALSE(r.ok()) << "a tar over the spool limit was applied";
  EXPECT_EQ(r.status().code(), EFBIG);
  EXPECT_NE(r.status().message().find("65536"), std::string::npos) << r.status().message();
  auto left = ListDir(dir_ + "/state/spool");
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << "a partial spool file was left behind";
  EXPECT_FALSE(PathExists(backend_->VolumePath("big")));
  StringSource small(OneFileTar("small", "ok\n"));
  EXPECT_TRUE(driver_->ApplyDiff("big", "", small).ok()) << "a tar within the limit is applied";
}

TEST_F(DriverFakeTest, AStandardLayerAppliedByAnyWorkerIsReusedNotUnpackedAgain) {
  std::string tar = OneFileTar("etc/motd", "hello\n");
  ASSERT_TRUE(driver_->Create(Req("la")).ok());
  StringSource s1(tar);
  auto size_a = driver_->ApplyDiff("la", "", s1);
  ASSERT_TRUE(size_a.ok()) << size_a.status().message();
  EXPECT_EQ(driver_->counters().dedup_hits, 0u);
  // A second worker on the same store.
  auto store_b = storage_backend::OpenLocalStore(os_, dir_ + "/store", "hostB");
  ASSERT_TRUE(store_b.ok());
  DriverOptions o;
  o.state_dir = dir_ + "/state-b";
  o.host_id = "hostB";
  o.default_size = 32ull << 20;
  auto b = SlackerDriver::Open(os_, **store_b, o);
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_TRUE((*b)->Create(Req("lb")).ok());
  int mounts_before = os_.Calls("Mount");
  StringSource s2(tar);
  auto size_b = (*b)->ApplyDiff("lb", "", s2);
  ASSERT_TRUE(size_b.ok()) << size_b.status().message();
  EXPECT_EQ(*size_b, *size_a);
  EXPECT_EQ((*b)->counters().dedup_hits, 1u);
  EXPECT_EQ((*b)->counters().clones, 0u) << "no clone, no unpack";
  EXPECT_EQ(os_.Calls("Mount"), mounts_before);
  EXPECT_EQ((*(*b)->GetMetadata("lb"))["Snapshot"], (*driver_->GetMetadata("la"))["Snapshot"]);
  // A different tar on the same parent is not confused with it.
  ASSERT_TRUE((*b)->Create(Req("lc")).ok());
  StringSource s3(OneFileTar("etc/motd", "other\n"));
  ASSERT_TRUE((*b)->ApplyDiff("lc", "", s3).ok());
  EXPECT_EQ((*b)->counters().dedup_hits, 1u);
  EXPECT_NE((*(*b)->GetMetadata("lc"))["Snapshot"], (*driver_->GetMetadata("la"))["Snapshot"]);
}

// Regression (crash_e2e.sh, apply.mid_extract): slackerd died while extracting into the
// staging volume; the restart adopted the staging mount as a held layer, and dockerd's
// retry of the ApplyDiff failed with "the layer is mounted".
TEST_F(DriverFakeTest, RestartUnmountsTheStagingMountOfAnInterruptedApplyDiff) {
  ASSERT_TRUE(driver_->Create(Req("la")).ok());
  ASSERT_TRUE(AtomicWriteFile(backend_->VolumePath("la"), "staging").ok());
  std::string mnt = dir_ + "/state/mnt/la";
  ASSERT_TRUE(MakeDirs(mnt, 0755).ok());
  auto idx = os_.LoopGetFree();
  ASSERT_TRUE(idx.ok());
  auto fd = os_.LoopConfigure(*idx, backend_->VolumePath("la"), os::LoopConfig{});
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(os_.Mount("/dev/loop" + std::to_string(*idx), mnt, "ext4", 0, "").ok());
  Reopen();
  EXPECT_FALSE(os_.IsMounted(mnt));
  EXPECT_FALSE(PathExists(backend_->VolumePath("la")));
  StringSource tar(OneFileTar("etc/motd", "hi\n"));
  auto r = driver_->ApplyDiff("la", "", tar);
  EXPECT_TRUE(r.ok()) << r.status().message();
}

// Regression (crash_e2e.sh, apply.before_record): after slackerd died at the end of an
// ApplyDiff, dockerd retried it with the consumed, empty stream, and it was taken as an
// empty layer: the image ran without its files.
TEST_F(DriverFakeTest, ApplyDiffOfAnEmptyStreamIsRefused) {
  ASSERT_TRUE(driver_->Create(Req("la")).ok());
  StringSource empty("");
  auto r = driver_->ApplyDiff("la", "", empty);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("the layer stream is empty"), std::string::npos) << r.status().message();
  EXPECT_EQ((*driver_->GetMetadata("la"))["Snapshot"], "");
  StringSource end_marker(std::string(1024, '\0'));  // an empty layer is a valid tar
  auto ok = driver_->ApplyDiff("la", "", end_marker);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
}

TEST_F(DriverFakeTest, ApplyDiffOnAFullStoreIsAClearEnospcAndLeavesNothing) {
  std::string tar = OneFileTar("etc/motd", std::string(100000, 'x'));
  ASSERT_TRUE(driver_->Create(Req("la")).ok());
  os_.SetFreeBytes(1 << 20);
  StringSource s1(tar);
  auto r = driver_->ApplyDiff("la", "", s1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ENOSPC);
  EXPECT_NE(r.status().message().find("is full"), std::string::npos) << r.status().message();
  EXPECT_FALSE(PathExists(backend_->VolumePath("la"))) << "no staging volume left behind";
  EXPECT_EQ((*driver_->GetMetadata("la"))["Snapshot"], "");
  os_.SetFreeBytes(50ull << 30);  // space freed: the retry works
  StringSource s2(tar);
  auto again = driver_->ApplyDiff("la", "", s2);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*again, 100000);
}

// Regression: concurrent Removes (docker rm of several containers) once deadlocked on
// the layer map mutex against layer mutexes. A deadlock hangs this test (ctest timeout).
TEST_F(DriverFakeTest, ConcurrentRemovesGetsAndStatusDoNotDeadlock) {
  ASSERT_TRUE(driver_->Create(Req("img")).ok());
  constexpr int kLayers = 8;
  for (int i = 0; i < kLayers; ++i) {
    ASSERT_TRUE(driver_->CreateReadWrite(Req("c" + std::to_string(i), "img")).ok());
    ASSERT_TRUE(driver_->Get("c" + std::to_string(i), "").ok());
    ASSERT_TRUE(driver_->Put("c" + std::to_string(i)).ok());
  }
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kLayers; ++i) {
    threads.emplace_back([&, i] {
      if (!driver_->Remove("c" + std::to_string(i)).ok()) failures++;
    });
    threads.emplace_back([&] { driver_->StatusRows(); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (int i = 0; i < kLayers; ++i) EXPECT_FALSE(driver_->Exists("c" + std::to_string(i)));
}

TEST_F(DriverFakeTest, StorageOptSizeIsValidated) {
  CreateRequest r = Req("q");
  r.storage_opt["size"] = "1M";
  EXPECT_EQ(driver_->CreateReadWrite(r).code(), EINVAL);
  r.storage_opt["size"] = "50M";
  EXPECT_TRUE(driver_->CreateReadWrite(r).ok());
}

}  // namespace

// --- parked mounts (issue 17: start and stop as fast as overlay2) -----------------------

class ParkedMountTest : public DriverFakeTest {
 protected:
  void Park(std::chrono::milliseconds t = std::chrono::hours(1)) {
    Reopen(DriverOptions::kDefaultMaxSpoolBytes, t);
  }
  // dockerd's `docker create` up to the container layer's first Get: the init layer
  // created, mounted, written and Put (parked), the container layer created on it.
  // Returns the init layer's mount point.
  std::string ParkedInitAndContainer(const std::string& init = "c1-init", const std::string& child = "c1") {
    EXPECT_TRUE(driver_->CreateReadWrite(Req(init)).ok());
    auto p = driver_->Get(init, "");
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (!p.ok()) return "";
    os_.RecordWrite(*p);
    EXPECT_TRUE(driver_->Put(init).ok());
    EXPECT_TRUE(driver_->CreateReadWrite(Req(child, init)).ok());
    return *p;
  }
};

TEST_F(ParkedMountTest, PutParksTheMountAndTheNextGetReusesIt) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_TRUE(os_.IsMounted(*p)) << "Put parks the mount";
  EXPECT_EQ(os_.Calls("Freeze"), 0) << "nothing is flushed at Put";
  EXPECT_EQ(os_.Calls("Unmount"), 0);
  auto again = driver_->Get("c1", "");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *p);
  EXPECT_EQ(os_.Calls("Mount"), 1) << "the parked mount is reused";
  EXPECT_EQ(driver_->counters().parked_reuses, 1u);
  ASSERT_TRUE(driver_->Put("c1").ok());
  ASSERT_TRUE(driver_->Put("c1").ok()) << "a double Put of a parked layer is harmless";
  EXPECT_TRUE(os_.IsMounted(*p));
}

TEST_F(ParkedMountTest, RemoveDiscardsAParkedVolumeWithoutWritingItBack) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  os_.RecordWrite(*p);
  ASSERT_TRUE(driver_->Put("c1").ok());
  int shutdowns = os_.Calls("Shutdown");
  ASSERT_TRUE(driver_->Remove("c1").ok());
  driver_->AwaitTeardowns();
  EXPECT_EQ(os_.Calls("Shutdown"), shutdowns + 1) << "the doomed file system is shut down before its unmount";
  EXPECT_EQ(os_.Calls("Freeze"), 0) << "a removed layer is never flushed";
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_TRUE(os_.Loops().empty());
  EXPECT_FALSE(PathExists(backend_->VolumePath("c1")));
  EXPECT_FALSE(driver_->Exists("c1"));
}

// `docker rm` does not wait for the teardown; a Create that reuses the id (moby's
// graphtest does) waits for it, so the old unlink cannot take the new layer's volume.
TEST_F(ParkedMountTest, RemoveReturnsBeforeTheTeardownAndACreateOfTheSameIdWaitsForIt) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  os_.RecordWrite(*p);
  ASSERT_TRUE(driver_->Put("c1").ok());
  std::promise<void> entered, go;
  std::shared_future<void> go_f = go.get_future().share();
  os_.BeforeNextShutdown([&] {
    entered.set_value();
    go_f.wait();
  });
  ASSERT_TRUE(driver_->Remove("c1").ok());
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "the reaper never started the teardown";
  EXPECT_FALSE(driver_->Exists("c1"));
  EXPECT_FALSE(PathExists(dir_ + "/state/layers/c1.json")) << "the record goes first";
  EXPECT_TRUE(PathExists(dir_ + "/state/layers/c1.removing")) << "renamed: the volume is being removed";
  EXPECT_TRUE(os_.IsMounted(*p)) << "Remove returned with the teardown still running";
  auto create = std::async(std::launch::async, [&] { return driver_->CreateReadWrite(Req("c1")); });
  EXPECT_EQ(create.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "a Create of the same id must wait for the old layer's teardown";
  go.set_value();
  Status created = create.get();
  ASSERT_TRUE(created.ok()) << created.message();
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_FALSE(PathExists(dir_ + "/state/layers/c1.removing")) << "deleted when the teardown is done";
  auto again = driver_->Get("c1", "");
  ASSERT_TRUE(again.ok()) << again.status().message();
  driver_->AwaitTeardowns();
  EXPECT_TRUE(PathExists(backend_->VolumePath("c1"))) << "the new layer's volume survived the old teardown";
  EXPECT_TRUE(os_.IsMounted(*again));
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// A crash in the middle of a deferred teardown: the record is `<id>.removing`, the volume
// is still there. Start-up deletes both.
TEST_F(ParkedMountTest, StartUpFinishesAnInterruptedRemoval) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  driver_.reset();  // unmounts the parked layer
  ASSERT_EQ(::rename((dir_ + "/state/layers/c1.json").c_str(), (dir_ + "/state/layers/c1.removing").c_str()), 0);
  ASSERT_TRUE(PathExists(backend_->VolumePath("c1")));
  Park();
  EXPECT_FALSE(driver_->Exists("c1"));
  EXPECT_FALSE(PathExists(backend_->VolumePath("c1"))) << "the volume of the removed layer";
  EXPECT_FALSE(PathExists(dir_ + "/state/layers/c1.removing"));
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok()) << "the id is free again";
}

// Sets or clears ext4's needs_recovery (EXT3_FEATURE_INCOMPAT_RECOVER, bit 2 of
// s_feature_incompat at superblock offset 0x60) in an image file.
void SetNeedsRecovery(const std::string& image, bool on) {
  UniqueFd fd(::open(image.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << image;
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd.get(), &b, 1, 1024 + 0x60), 1);
  b = on ? (b | 0x4) : (b & ~0x4);
  ASSERT_EQ(::pwrite(fd.get(), &b, 1, 1024 + 0x60), 1);
}

std::string SourceOf(os::FakeOs& os, const std::string& target) {
  for (const auto& m : os.Mounts())
    if (m.target == target) return m.source;
  return "";
}

// dockerd's `docker create`: the container layer's first Get right after its -init
// layer's Put. It takes the init layer's live file system over: no loop device, no mount
// of a clone (whose journal replay was most of create's cost), no freeze.
TEST_F(ParkedMountTest, AContainerLayerTakesOverItsParkedInitLayersFileSystem) {
  Park();
  std::string init_mnt = ParkedInitAndContainer();
  auto p = &init_mnt;
  std::string device = SourceOf(os_, *p);
  int configures = os_.Calls("LoopConfigure");
  auto q = driver_->Get("c1", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(driver_->counters().handovers, 1u);
  EXPECT_EQ(os_.Calls("LoopConfigure"), configures) << "no loop device attached";
  EXPECT_EQ(os_.Calls("Freeze"), 0);
  EXPECT_FALSE(os_.IsMounted(*p)) << "the init layer's mount point is released";
  EXPECT_EQ(SourceOf(os_, *q), device) << "the child mounts the same file system";
  auto child_loops = loopdev::FindLoopsBacking(os_, backend_->VolumePath("c1"));
  auto init_loops = loopdev::FindLoopsBacking(os_, backend_->VolumePath("c1-init"));
  ASSERT_TRUE(child_loops.ok() && init_loops.ok());
  EXPECT_EQ(child_loops->size(), 1u) << "the live file is the child's volume now";
  EXPECT_TRUE(init_loops->empty()) << "the init layer's file is a clone nobody mounts";
  auto child_vol = ReadFileToString(backend_->VolumePath("c1"));
  auto init_vol = ReadFileToString(backend_->VolumePath("c1-init"));
  ASSERT_TRUE(child_vol.ok() && init_vol.ok());
  EXPECT_EQ(*child_vol, *init_vol);
  // The init layer is still a layer of its own: its Get mounts its clone read-write
  // (which replays the journal) beside the child's.
  auto again = driver_->Get("c1-init", "");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_NE(SourceOf(os_, *again), device);
  ASSERT_TRUE(driver_->Put("c1-init").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// Waits (up to 10 s) until the preparer has made `n` hand-over clones.
bool AwaitPrepared(SlackerDriver& d, uint64_t n) {
  for (int i = 0; i < 1000 && d.counters().handovers_prepared < n; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return d.counters().handovers_prepared >= n;
}

// The init layer's Put queues it for the preparer, which syncs it and clones its file:
// the container layer's Get then only renames (no syncfs, no clone on its path).
TEST_F(ParkedMountTest, AHandOverPreparedAfterTheInitLayersPutOnlyRenames) {
  Park();
  std::string init_mnt = ParkedInitAndContainer();
  ASSERT_TRUE(AwaitPrepared(*driver_, 1)) << "the preparer made no clone";
  std::string prepared = backend_->VolumePath("c1-init") + ".handover";
  ASSERT_EQ(::access(prepared.c_str(), F_OK), 0);
  int syncs = os_.Calls("SyncFs");
  auto q = driver_->Get("c1", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(driver_->counters().handovers, 1u);
  EXPECT_EQ(driver_->counters().prepared_handovers_used, 1u);
  EXPECT_EQ(os_.Calls("SyncFs"), syncs + 1) << "only the child's write-counter sample syncs";
  EXPECT_NE(::access(prepared.c_str(), F_OK), 0) << "the clone became the init layer's volume";
  auto child_vol = ReadFileToString(backend_->VolumePath("c1"));
  auto init_vol = ReadFileToString(backend_->VolumePath("c1-init"));
  ASSERT_TRUE(child_vol.ok() && init_vol.ok());
  EXPECT_EQ(*child_vol, *init_vol);
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// A prepared clone is only good while nobody can write the init layer: a Get of it drops
// the clone, and its next Put prepares a new one, with what was written meanwhile.
TEST_F(ParkedMountTest, AGetOfAPreparedLayerDropsItsCloneAndThePutPreparesAgain) {
  Park();
  ParkedInitAndContainer();
  ASSERT_TRUE(AwaitPrepared(*driver_, 1));
  std::string prepared = backend_->VolumePath("c1-init") + ".handover";
  auto p = driver_->Get("c1-init", "");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_NE(::access(prepared.c_str(), F_OK), 0) << "held again: the clone is dropped";
  {
    // What a write through the loop device does to the file.
    std::ofstream f(backend_->VolumePath("c1-init"), std::ios::app | std::ios::binary);
    f << "written-after-prepare";
  }
  ASSERT_TRUE(driver_->Put("c1-init").ok());
  ASSERT_TRUE(AwaitPrepared(*driver_, 2)) << "the second Put prepares again";
  auto q = driver_->Get("c1", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(driver_->counters().prepared_handovers_used, 1u);
  auto init_vol = ReadFileToString(backend_->VolumePath("c1-init"));
  ASSERT_TRUE(init_vol.ok());
  EXPECT_TRUE(init_vol->ends_with("written-after-prepare")) << "the init layer's clone misses a write";
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// Removing (or unmounting) a prepared layer deletes its clone: nothing is left on the store.
TEST_F(ParkedMountTest, RemoveOfAPreparedLayerLeavesNoClone) {
  Park();
  ParkedInitAndContainer();
  ASSERT_TRUE(AwaitPrepared(*driver_, 1));
  ASSERT_TRUE(driver_->Remove("c1").ok());
  ASSERT_TRUE(driver_->Remove("c1-init").ok());
  driver_->AwaitTeardowns();
  auto names = ListDir(backend_->VolumePath("x").substr(0, backend_->VolumePath("x").rfind('/')));
  ASSERT_TRUE(names.ok());
  EXPECT_TRUE(names->empty()) << fmt::format("{}", fmt::join(*names, ", "));
}

// Waits (up to 10 s) for `done`.
bool AwaitTrue(const std::function<bool()>& done) {
  for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return done();
}

class SpareVolumeTest : public ParkedMountTest {
 protected:
  // An image layer "L" (a reference to the snapshot of a written layer): what dockerd's
  // init layers sit on. Returns the snapshot.
  std::string ImageLayer() {
    EXPECT_TRUE(driver_->CreateReadWrite(Req("C")).ok());
    auto p = driver_->Get("C", "");
    EXPECT_TRUE(p.ok());
    if (p.ok()) os_.RecordWrite(*p);
    std::string tar = DiffBytes("C");
    EXPECT_TRUE(driver_->Put("C").ok());
    EXPECT_TRUE(driver_->Create(Req("L")).ok());
    StringSource src(tar);
    EXPECT_TRUE(driver_->ApplyDiff("L", "", src).ok());
    auto snaps = driver_->ListLayers();
    for (const auto& l : snaps.ok() ? *snaps : std::vector<LayerSnapshot>{})
      if (l.id == "L") return l.snapshot;
    return "";
  }
  std::vector<std::string> SpareVolumes() {
    std::string vol = backend_->VolumePath("x");
    auto names = ListDir(vol.substr(0, vol.rfind('/')));
    std::vector<std::string> out;
    for (const auto& n : names.ok() ? *names : std::vector<std::string>{})
      if (n.starts_with("_spare-")) out.push_back(n);
    return out;
  }
  int MountsOfSpares() {
    int n = 0;
    for (const auto& m : os_.Mounts())
      if (m.target.find("/mnt/_spare-") != std::string::npos) ++n;
    return n;
  }
};

// After an init layer's first Get cloned the image's snapshot, the preparer makes the
// next clone ahead, attached and mounted; the next init layer on that image takes it: no
// clone, no loop device, no ext4 mount on its Get, and the same bytes as a clone.
TEST_F(SpareVolumeTest, TheNextInitLayerOnAnImageTakesTheSpareVolume) {
  Park();
  std::string snap = ImageLayer();
  ASSERT_FALSE(snap.empty());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1-init", "L")).ok());
  ASSERT_TRUE(driver_->Get("c1-init", "").ok());
  ASSERT_TRUE(AwaitTrue([&] { return driver_->counters().spares_made == 1; })) << "no spare made";
  EXPECT_EQ(SpareVolumes().size(), 1u);
  EXPECT_EQ(MountsOfSpares(), 1);
  int configures = os_.Calls("LoopConfigure");
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c2-init", "L")).ok());
  auto q = driver_->Get("c2-init", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(driver_->counters().spare_hits, 1u);
  EXPECT_EQ(os_.Calls("LoopConfigure"), configures) << "no loop device attached by the Get";
  EXPECT_TRUE(os_.IsMounted(*q));
  EXPECT_EQ(MountFlagsOf(*q), "rw");
  auto vol = ReadFileToString(backend_->VolumePath("c2-init"));
  auto image = ReadFileToString(backend_->SnapshotPath(snap));
  ASSERT_TRUE(vol.ok() && image.ok());
  EXPECT_EQ(*vol, *image) << "the spare is a clone of the image's snapshot";
  auto loops = loopdev::FindLoopsBacking(os_, backend_->VolumePath("c2-init"));
  ASSERT_TRUE(loops.ok());
  ASSERT_EQ(loops->size(), 1u) << "the spare's loop device follows its file";
  EXPECT_EQ(SourceOf(os_, *q), fmt::format("/dev/loop{}", loops->front()));
  ASSERT_TRUE(AwaitTrue([&] { return driver_->counters().spares_made == 2; })) << "the taken spare is replaced";
  // Written and Put as dockerd does, the layer is an ordinary parked layer.
  os_.RecordWrite(*q);
  ASSERT_TRUE(driver_->Put("c2-init").ok());
  ASSERT_TRUE(driver_->Put("c1-init").ok());
  ASSERT_TRUE(driver_->Cleanup().ok());
  EXPECT_TRUE(SpareVolumes().empty()) << "Cleanup discards the spares";
  EXPECT_EQ(MountsOfSpares(), 0);
}

// A layer with its own size, or one that is not an init layer, never takes a spare.
TEST_F(SpareVolumeTest, OnlyInitLayersOfTheDefaultSizeUseSpares) {
  Park();
  ImageLayer();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1-init", "L")).ok());
  ASSERT_TRUE(driver_->Get("c1-init", "").ok());
  ASSERT_TRUE(AwaitTrue([&] { return driver_->counters().spares_made == 1; }));
  ASSERT_TRUE(driver_->CreateReadWrite(Req("plain", "L")).ok());
  ASSERT_TRUE(driver_->Get("plain", "").ok());
  CreateRequest sized = Req("c3-init", "L");
  sized.storage_opt["size"] = "64M";
  ASSERT_TRUE(driver_->CreateReadWrite(sized).ok());
  ASSERT_TRUE(driver_->Get("c3-init", "").ok());
  EXPECT_EQ(driver_->counters().spare_hits, 0u);
  EXPECT_EQ(SpareVolumes().size(), 1u) << "the spare is still there";
}

// An unused spare goes when its time is up; a driver that stops discards its spares, and
// one a crash left (no record claims it) is removed by the next start.
TEST_F(SpareVolumeTest, UnusedSparesExpireAndNoneOutlivesTheDriver) {
  Park(std::chrono::milliseconds(300));
  ImageLayer();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1-init", "L")).ok());
  ASSERT_TRUE(driver_->Get("c1-init", "").ok());
  ASSERT_TRUE(AwaitTrue([&] { return driver_->counters().spares_made == 1; }));
  ASSERT_TRUE(AwaitTrue([&] { return SpareVolumes().empty() && MountsOfSpares() == 0; })) << "the spare did not expire";
  ASSERT_TRUE(driver_->Put("c1-init").ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c2-init", "L")).ok());
  ASSERT_TRUE(driver_->Get("c2-init", "").ok());
  // A second spare, made for the next init layer. (This waited for spares_made == 1
  // and one spare file, which held only while the second fill's file existed and its
  // mount was not done: a fill that finished before the first poll failed the test. The
  // count only grows; the spare itself may expire, 300 ms on, before a late poll.)
  ASSERT_TRUE(AwaitTrue([&] { return driver_->counters().spares_made == 2; }))
      << "made " << driver_->counters().spares_made;
  EXPECT_LE(SpareVolumes().size(), 1u);
  ASSERT_TRUE(driver_->Put("c2-init").ok());
  driver_.reset();
  EXPECT_TRUE(SpareVolumes().empty()) << "the driver's exit discards its spares";
  EXPECT_EQ(MountsOfSpares(), 0);
  ASSERT_TRUE(AtomicWriteFile(backend_->VolumePath("_spare-0123456789abcdef"), "left by a crash", false, 0600).ok());
  Park();
  EXPECT_TRUE(SpareVolumes().empty()) << "start-up removes a spare no record claims";
}

// A layer Get clones for itself is a new file no loop device can hold: its mount does not
// scan every loop device's sysfs entry (the scan is for volumes that existed before).
TEST_F(DriverFakeTest, AGetThatClonesTheVolumeDoesNotScanLoopDevices) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  int scans = os_.Calls("ListKernelDir");
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  EXPECT_EQ(os_.Calls("ListKernelDir"), scans);
  ASSERT_TRUE(driver_->Put("c1").ok());
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  EXPECT_GT(os_.Calls("ListKernelDir"), scans) << "an existing volume is checked for a live loop device";
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// A snapshot of a handed-over init layer's clone (its journal committed, not written
// home) would be read with `noload` by read-only mounts: it is replayed first.
TEST_F(ParkedMountTest, ASnapshotOfAHandedOverLayerReplaysItsJournalFirst) {
  Park();
  ParkedInitAndContainer();
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  ASSERT_EQ(driver_->counters().handovers, 1u);
  // The fake mounts nothing: make the clone what the kernel's would be, an ext4 image
  // whose superblock says needs_recovery (set while mounted rw, as it was when cloned).
  SetNeedsRecovery(backend_->VolumePath("c1-init"), true);
  int mounts = os_.Calls("Mount");
  DiffBytes("c1-init");
  EXPECT_EQ(driver_->counters().journal_replays, 1u) << "mounted read-write to replay the journal";
  EXPECT_GT(os_.Calls("Mount"), mounts);
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// A clean volume (unmounted cleanly: needs_recovery clear) is snapshotted as it is.
TEST_F(ParkedMountTest, ASnapshotOfACleanUnmountedVolumeMountsNothing) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("v")).ok());
  ASSERT_TRUE(driver_->Get("v", "").ok());
  ASSERT_TRUE(driver_->Put("v").ok());
  ASSERT_TRUE(driver_->Cleanup().ok());  // unmounted
  auto pending = loopdev::Ext4NeedsRecovery(backend_->VolumePath("v"));
  ASSERT_TRUE(pending.ok()) << pending.status().message();
  ASSERT_FALSE(*pending);
  auto snap = driver_->Diff("v", "");
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_EQ(driver_->counters().journal_replays, 0u);
}

// The bind mount fails: the child mounts its volume (the moved file) the ordinary way.
TEST_F(ParkedMountTest, AFailedHandOverMountFallsBackToAnOrdinaryMount) {
  Park();
  std::string init_mnt = ParkedInitAndContainer();
  auto p = &init_mnt;
  os_.FailNext("Mount", EINVAL);
  auto q = driver_->Get("c1", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(driver_->counters().handovers, 0u);
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_TRUE(os_.IsMounted(*q));
  auto loops = loopdev::FindLoopsBacking(os_, backend_->VolumePath("c1"));
  ASSERT_TRUE(loops.ok());
  EXPECT_EQ(loops->size(), 1u);
  EXPECT_EQ(SourceOf(os_, *q), fmt::format("/dev/loop{}", loops->front()));
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// Cleanup (dockerd stopping) waits for deferred teardowns: nothing of a removed layer
// stays mounted.
TEST_F(ParkedMountTest, CleanupWaitsForDeferredTeardowns) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  os_.BeforeNextShutdown([] { std::this_thread::sleep_for(std::chrono::milliseconds(100)); });
  ASSERT_TRUE(driver_->Remove("c1").ok());
  ASSERT_TRUE(driver_->Cleanup().ok());
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_TRUE(os_.Loops().empty());
  EXPECT_FALSE(PathExists(backend_->VolumePath("c1")));
}

// Durability: what a stopped container wrote is in every snapshot taken after its Put,
// although nothing was flushed at the Put.
TEST_F(ParkedMountTest, ASnapshotOfAParkedLayerFreezesIt) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  os_.RecordWrite(*p);
  ASSERT_TRUE(driver_->Put("c1").ok());
  std::string first = DiffBytes("c1");
  EXPECT_EQ(os_.Calls("Freeze"), 1) << "the parked mount is frozen for its snapshot";
  EXPECT_FALSE(os_.IsFrozen(*p));
  EXPECT_TRUE(os_.IsMounted(*p)) << "and stays parked";
  std::string second = DiffBytes("c1");
  EXPECT_EQ(first, second) << "nothing written since: the snapshot is reused";
  EXPECT_EQ(driver_->counters().snapshots, 1u);
}

// dockerd's -init layer: Put, then at once the parent of the container layer's first Get.
// Its file is cloned after a syncfs: no freeze, no snapshot published.
TEST_F(ParkedMountTest, AChildOfAnIdleParentClonesTheParentsFileAfterASyncfs) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1-init")).ok());
  auto p = driver_->Get("c1-init", "");
  ASSERT_TRUE(p.ok());
  os_.RecordWrite(*p);
  ASSERT_TRUE(driver_->Put("c1-init").ok());
  int syncs = os_.Calls("SyncFs");
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1", "c1-init")).ok());
  auto q = driver_->Get("c1", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(os_.Calls("Freeze"), 0);
  EXPECT_GT(os_.Calls("SyncFs"), syncs) << "the parked parent is synced before its file is cloned";
  EXPECT_EQ(driver_->counters().snapshots, 0u) << "no snapshot of the parent is published";
  auto vol = ReadFileToString(backend_->VolumePath("c1"));
  auto parent_vol = ReadFileToString(backend_->VolumePath("c1-init"));
  ASSERT_TRUE(vol.ok() && parent_vol.ok());
  EXPECT_EQ(*vol, *parent_vol) << "the child's volume is a clone of the parent's file";
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// A parent that is held (a running container's layer) may be written at any moment: its
// child clones a frozen snapshot of it, as before.
TEST_F(ParkedMountTest, AChildOfAHeldParentClonesAFrozenSnapshot) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("base")).ok());
  auto p = driver_->Get("base", "");
  ASSERT_TRUE(p.ok());
  os_.RecordWrite(*p);
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c2", "base")).ok());
  auto q = driver_->Get("c2", "");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(os_.Calls("Freeze"), 1);
  EXPECT_EQ(driver_->counters().snapshots, 1u);
  ASSERT_TRUE(driver_->Put("c2").ok());
  ASSERT_TRUE(driver_->Put("base").ok());
}

// An image layer's read-only mount has nothing to write back: its Put unmounts at once
// (a parked read view would linger after every Changes or DiffSize).
TEST_F(ParkedMountTest, AReadOnlyImageLayerMountIsNotParked) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("C")).ok());
  ASSERT_TRUE(driver_->Get("C", "").ok());
  std::string tar = DiffBytes("C");
  ASSERT_TRUE(driver_->Put("C").ok());
  ASSERT_TRUE(driver_->Create(Req("L")).ok());
  StringSource src(tar);
  ASSERT_TRUE(driver_->ApplyDiff("L", "", src).ok());
  auto p = driver_->Get("L", "");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(MountFlagsOf(*p), "ro");
  ASSERT_TRUE(driver_->Put("L").ok());
  EXPECT_FALSE(os_.IsMounted(*p));
}

TEST_F(ParkedMountTest, TheReaperUnmountsWhenTheTimeIsUp) {
  Park(std::chrono::milliseconds(30));
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  for (int i = 0; i < 500 && os_.IsMounted(*p); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(os_.IsMounted(*p)) << "still mounted 5 s after a 30 ms park";
  EXPECT_GE(os_.Calls("Freeze"), 1) << "the reaper writes the volume back before unmounting";
  EXPECT_TRUE(os_.Loops().empty());
  auto again = driver_->Get("c1", "");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(os_.Calls("Mount"), 2);
  ASSERT_TRUE(driver_->Put("c1").ok());
}

TEST_F(ParkedMountTest, ClosingTheDriverUnmountsParkedLayers) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  driver_.reset();
  EXPECT_FALSE(os_.IsMounted(*p));
  EXPECT_TRUE(os_.Loops().empty());
}

TEST_F(ParkedMountTest, CleanupUnmountsParkedLayers) {
  Park();
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  ASSERT_TRUE(driver_->Cleanup().ok());
  EXPECT_FALSE(os_.IsMounted(*p));
}

// No second ext4 on one file: a loop device still bound to the volume (its file system
// alive in another mount namespace) is joined, not doubled.
TEST_F(DriverFakeTest, GetJoinsALoopDeviceThatStillBacksTheVolume) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  auto p = driver_->Get("c1", "");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  auto idx = os_.LoopGetFree();
  ASSERT_TRUE(idx.ok());
  auto held = os_.LoopConfigure(*idx, backend_->VolumePath("c1"), os::LoopConfig{});
  ASSERT_TRUE(held.ok());
  int configures = os_.Calls("LoopConfigure");
  auto again = driver_->Get("c1", "");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(os_.Calls("LoopConfigure"), configures) << "no second loop device";
  std::string source;
  for (const auto& m : os_.Mounts())
    if (m.target == *again) source = m.source;
  EXPECT_EQ(source, fmt::format("/dev/loop{}", *idx));
  ASSERT_TRUE(driver_->Put("c1").ok());
}

TEST_F(DriverFakeTest, GetRefusesWhenTheLiveFileSystemCannotBeJoined) {
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1")).ok());
  ASSERT_TRUE(driver_->Get("c1", "").ok());
  ASSERT_TRUE(driver_->Put("c1").ok());
  auto idx = os_.LoopGetFree();
  ASSERT_TRUE(idx.ok());
  auto held = os_.LoopConfigure(*idx, backend_->VolumePath("c1"), os::LoopConfig{});
  ASSERT_TRUE(held.ok());
  os_.FailNext("Mount", EBUSY);  // the kernel's answer when the modes differ
  auto again = driver_->Get("c1", "");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), EBUSY);
  EXPECT_NE(again.status().message().find("refusing to start a second file system"), std::string::npos)
      << again.status().message();
}

}  // namespace slacker::driver

namespace slacker::driver {
namespace {

int MountsUnder(os::FakeOs& os, const std::string& dir) {
  int n = 0;
  for (const auto& m : os.Mounts()) n += m.target.starts_with(dir + "/");
  return n;
}

// --share-page-cache: a container layer cloned from a snapshot is an overlay of the
// snapshot's one read-only mount (shared by every such layer) and an upper in its own
// volume; Put unmounts the overlay with the volume; the lower stays until Cleanup; a
// snapshot of it is folded from a clone.
TEST_F(DriverFakeTest, OverlayFormSharesOneLowerMountPerSnapshot) {
  share_page_cache_ = true;
  Reopen();
  const std::string state = dir_ + "/state";
  ASSERT_TRUE(driver_->CreateReadWrite(Req("base")).ok());
  auto p = driver_->Get("base", "");
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(*p, state + "/mnt/base") << "no parent snapshot: the volume itself";
  ASSERT_TRUE(driver_->Put("base").ok());
  DiffBytes("base");
  for (const char* id : {"c1", "c2"}) {
    ASSERT_TRUE(driver_->CreateReadWrite(Req(id, "base")).ok());
    auto got = driver_->Get(id, "");
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(*got, state + "/root/" + id);
  }
  EXPECT_EQ(MountsUnder(os_, state + "/lower"), 1) << "one lower for both";
  EXPECT_EQ(MountFlagsOf(state + "/lower/" + [&] {
              for (const auto& m : os_.Mounts())
                if (m.target.starts_with(state + "/lower/")) return m.target.substr(state.size() + 7);
              return std::string();
            }()),
            "ro");
  std::string data;
  for (const auto& m : os_.Mounts())
    if (m.target == state + "/root/c1") data = m.fstype + " " + m.data;
  EXPECT_NE(data.find("overlay lowerdir=" + state + "/lower/"), std::string::npos) << data;
  EXPECT_NE(data.find("upperdir=" + state + "/mnt/c1/.slacker-overlay/upper"), std::string::npos) << data;
  EXPECT_NE(data.find("index=off"), std::string::npos) << data;

  ASSERT_TRUE(driver_->Put("c1").ok());
  EXPECT_FALSE(os_.IsMounted(state + "/root/c1"));
  EXPECT_FALSE(os_.IsMounted(state + "/mnt/c1"));
  EXPECT_EQ(MountsUnder(os_, state + "/lower"), 1) << "c2 still uses it";

  DiffBytes("c2");  // a snapshot of a mounted overlay-form layer: folded from a clone
  EXPECT_EQ(driver_->counters().folds, 1u);
  EXPECT_EQ(driver_->counters().lower_mounts, 1u);
  ASSERT_TRUE(driver_->Put("c2").ok());
  EXPECT_EQ(MountsUnder(os_, state + "/lower"), 1) << "an idle lower stays: a warm page cache";
  ASSERT_TRUE(driver_->Cleanup().ok());
  EXPECT_EQ(MountsUnder(os_, state + "/lower"), 0) << "Cleanup unmounts idle lowers";
  // A restart: the layer keeps its form; its Get mounts the overlay again.
  Reopen();
  auto again = driver_->Get("c1", "");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*again, state + "/root/c1");
  EXPECT_TRUE(os_.IsMounted(state + "/root/c1"));
  ASSERT_TRUE(driver_->Put("c1").ok());
}

// An image whose root has the overlay's directory name keeps its containers in the plain
// form (its own directory would otherwise be their upper).
TEST_F(DriverFakeTest, AnImageWithTheOverlayDirectoryNameKeepsThePlainForm) {
  share_page_cache_ = true;
  Reopen();
  const std::string state = dir_ + "/state";
  ASSERT_TRUE(driver_->CreateReadWrite(Req("base")).ok());
  ASSERT_TRUE(driver_->Get("base", "").ok());
  ASSERT_TRUE(driver_->Put("base").ok());
  DiffBytes("base");
  auto meta = driver_->GetMetadata("base");
  ASSERT_TRUE(meta.ok());
  // The fake mounts nothing: the lower's mount point is where the snapshot's root shows.
  ASSERT_TRUE(MakeDirs(state + "/lower/" + meta->at("Snapshot") + "/.slacker-overlay", 0755).ok());
  ASSERT_TRUE(driver_->CreateReadWrite(Req("c1", "base")).ok());
  auto got = driver_->Get("c1", "");
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, state + "/mnt/c1");
  EXPECT_FALSE(os_.IsMounted(state + "/root/c1"));
  ASSERT_TRUE(driver_->Put("c1").ok());
}

}  // namespace
}  // namespace slacker::driver
