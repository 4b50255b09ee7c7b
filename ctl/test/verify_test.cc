#include "ctl/verify.h"

#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "common/files.h"
#include "driver/layer_record.h"
#include "os/fake_os.h"
#include "registry_shim/reference.h"
#include "storage_backend/local_backend.h"

namespace slacker::ctl {
namespace {

using driver::LayerRecord;
using driver::Origin;

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Files the tests write into the store stand for what slacker writes: root-only.
    old_umask_ = ::umask(077);
    char tmpl[] = "/tmp/ctl-verify-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    state_ = dir_ + "/state";
    ASSERT_TRUE(MakeDirs(state_ + "/layers", 0700).ok());
    auto store = storage_backend::OpenLocalStore(os_, dir_ + "/store", "h1");
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(*store);
  }
  void TearDown() override {
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
    ::umask(old_umask_);
  }
  mode_t old_umask_ = 022;

  // A published snapshot (with ref marker and skeleton) made from a fresh volume.
  std::string Snapshot(bool skel = true) {
    std::string layer = "tmp" + RandomHex(4);
    std::ofstream(store_->VolumePath(layer)) << "ext4";
    auto snap = store_->PromoteVolume(layer, {{"source", "apply"}});
    EXPECT_TRUE(snap.ok()) << snap.status().message();
    if (skel) {
      EXPECT_TRUE(AtomicWriteFile(store_->SnapshotFilePath(*snap, ".skel"), "skel", false, 0600).ok());
    }
    return *snap;
  }
  void Write(const LayerRecord& r) { ASSERT_TRUE(AtomicWriteFile(state_ + "/layers/" + r.id + ".json", r.ToJson()).ok()); }
  LayerRecord Rec(const std::string& id, Origin origin, const std::string& snap) {
    LayerRecord r;
    r.id = id;
    r.origin = origin;
    r.snapshot = snap;
    return r;
  }
  std::vector<std::string> Lines() {
    VerifyOptions o;
    o.mount_snapshots = false;
    o.host_id = "h1";
    auto r = Verify(os_, *store_, state_, o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    std::vector<std::string> out;
    if (r.ok()) {
      for (const auto& p : r->problems) out.push_back(p.Line());
    }
    return out;
  }

  os::FakeOs os_;
  std::string dir_, state_;
  std::unique_ptr<storage_backend::Backend> store_;
};

// Scenario: consistent records of each origin give no problem.
TEST_F(VerifyTest, ConsistentStateIsClean) {
  Write(Rec("base", Origin::kTar, Snapshot()));
  std::string s2 = Snapshot(false);
  // A start-up trace (issue 20) is a companion of its snapshot, not a problem.
  ASSERT_TRUE(store_->WriteSnapshotTrace(s2, "trace").ok());
  Write(Rec("ref", Origin::kReference, s2));
  registry_shim::Reference ref;
  ref.store = store_->info().uuid;
  ref.snapshot = s2;
  ASSERT_TRUE(AtomicWriteFile(state_ + "/layers/ref.ref", registry_shim::EncodeReferenceTar(ref, "")).ok());
  LayerRecord rw = Rec("rw", Origin::kNone, "");
  rw.has_volume = true;
  std::ofstream(store_->VolumePath("rw")) << "ext4";
  Write(rw);
  EXPECT_EQ(Lines(), std::vector<std::string>{});
}

// Scenario: a record that does not parse is reported by its file.
TEST_F(VerifyTest, UnparsableRecord) {
  std::ofstream(state_ + "/layers/bad.json") << "{not json";
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0].starts_with("layer bad: record")) << lines[0];
}

// Scenario: a record naming a snapshot the store lacks.
TEST_F(VerifyTest, MissingSnapshot) {
  Write(Rec("l1", Origin::kVolume, std::string(32, 'f')));
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("snapshot ffffffffffffffffffffffffffffffff is missing"), std::string::npos) << lines[0];
}

// Scenario: has_volume without the file, and a volume without a record.
TEST_F(VerifyTest, VolumeMismatches) {
  LayerRecord r = Rec("claimed", Origin::kNone, "");
  r.has_volume = true;
  Write(r);
  std::ofstream(store_->VolumePath("stray")) << "ext4";
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(lines[0].starts_with("layer claimed: has_volume is set")) << lines[0];
  EXPECT_TRUE(lines[1].starts_with("volume stray: ")) << lines[1];
}

// Scenario: slackerd is tearing a removed layer down (its record renamed to
// <id>.removing): its volume is not an orphan; one without such a record still is.
TEST_F(VerifyTest, AVolumeBeingRemovedIsNotAnOrphan) {
  std::ofstream(store_->VolumePath("going")) << "ext4";
  std::ofstream(state_ + "/layers/going.removing") << "{}";
  std::ofstream(store_->VolumePath("stray")) << "ext4";
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0].starts_with("volume stray: ")) << lines[0];
}

// Scenario: origin tar needs its skeleton; origin reference needs a decodable .ref.
TEST_F(VerifyTest, CloneTempFileIsReported) {
  // A crash between a clone into <volume>.tmp-XXXX and its rename.
  std::ofstream(store_->VolumePath("c1") + ".tmp-beef") << "partial";
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("volume c1: "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("interrupted clone"), std::string::npos) << lines[0];
}

TEST_F(VerifyTest, MissingSkeletonAndRef) {
  Write(Rec("t", Origin::kTar, Snapshot(false)));
  Write(Rec("r", Origin::kReference, Snapshot(false)));
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("layer r: applied from a reference tar but"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("layer t: applied from a standard tar but skeleton"), std::string::npos) << lines[1];
}

// Scenario: a .ref naming another snapshot than the record.
TEST_F(VerifyTest, RefNamesAnotherSnapshot) {
  Write(Rec("r", Origin::kReference, Snapshot()));
  registry_shim::Reference ref;
  ref.store = store_->info().uuid;
  ref.snapshot = std::string(32, 'e');
  ASSERT_TRUE(AtomicWriteFile(state_ + "/layers/r.ref", registry_shim::EncodeReferenceTar(ref, "")).ok());
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("names snapshot eeee"), std::string::npos) << lines[0];
}

// Scenario: a snapshot this host's refs/ does not mark (gc could delete it).
TEST_F(VerifyTest, UnmarkedSnapshot) {
  std::string s = Snapshot();
  ASSERT_TRUE(store_->DropRef(s).ok());
  Write(Rec("l", Origin::kTar, s));
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("not marked in this host's refs/"), std::string::npos) << lines[0];
}

// Loose permissions in the state directory or the store (e.g. a file copied in by hand,
// or a store written by an older release) are findings naming the path and the fix.
TEST_F(VerifyTest, LoosePermissionsAreReported) {
  std::string snap = Snapshot();
  ASSERT_EQ(::chmod(state_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(store_->SnapshotPath(snap).c_str(), 0444), 0);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("permissions " + state_ + ": mode 0755"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("permissions " + store_->SnapshotPath(snap) + ": mode 0444"), std::string::npos)
      << lines[1];
  EXPECT_NE(lines[1].find("chmod go-rwx"), std::string::npos) << lines[1];
}

}  // namespace
}  // namespace slacker::ctl
