#include "ctl/gc.h"

#include <sys/stat.h>
#include <utime.h>
#include <zlib.h>

#include <fstream>

#include <gtest/gtest.h>

#include "common/files.h"
#include "ctl/registry.h"
#include "os/fake_os.h"
#include "registry_shim/reference.h"
#include "storage_backend/local_backend.h"

namespace slacker::ctl {
namespace {

const std::string kS1(32, '1'), kS2(32, '2'), kS3(32, '3'), kS4(32, '4');

// Scenario: a snapshot is deletable only when neither refs nor the registry name it.
TEST(PlanGc, DeletesOnlyWhatNothingReferences) {
  std::set<std::string> refs = {kS1}, registry = {kS2, kS1};
  GcPlan p = PlanGc({kS1, kS2, kS3}, refs, &registry);
  EXPECT_EQ(p.kept_by_refs, std::vector<std::string>{kS1});
  EXPECT_EQ(p.kept_by_registry, std::vector<std::string>{kS2});
  EXPECT_EQ(p.deletable, std::vector<std::string>{kS3});
}

// Scenario: without a registry walk, refs alone decide.
TEST(PlanGc, WithoutRegistryRefsAloneDecide) {
  GcPlan p = PlanGc({kS1, kS2}, {kS1}, nullptr);
  EXPECT_EQ(p.deletable, std::vector<std::string>{kS2});
  EXPECT_TRUE(p.kept_by_registry.empty());
}

// Scenario: refs of other hosts keep a snapshot too (the caller unions every host).
TEST(PlanGc, EmptyStoreHasNothingToDo) {
  std::set<std::string> none;
  GcPlan p = PlanGc({}, none, &none);
  EXPECT_TRUE(p.deletable.empty());
}

std::string Gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(compressBound(in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = in.size();
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = out.size();
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string RefTar(const std::string& snap, const std::string& key) {
  registry_shim::Reference r;
  r.store = std::string(32, 'a');
  r.snapshot = snap;
  r.bytes = 10;
  return registry_shim::EncodeReferenceTar(r, key);
}

// Scenario: docker push gzips reference tars; the snapshot is read from either form,
// and a MAC from a cluster key gc does not know is not an error (only the id matters).
TEST(ReferencedSnapshot, ReadsPlainAndGzipWithAnyMac) {
  EXPECT_EQ(*ReferencedSnapshot(RefTar(kS1, "")), kS1);
  EXPECT_EQ(*ReferencedSnapshot(Gzip(RefTar(kS2, "secret"))), kS2);
}

// Scenario: an ordinary small layer is not a reference; a corrupt gzip is an error.
TEST(ReferencedSnapshot, OtherBlobs) {
  EXPECT_EQ(*ReferencedSnapshot(Gzip(std::string(2048, '\0'))), "");
  std::string broken = Gzip(RefTar(kS1, "")).substr(0, 20);
  EXPECT_FALSE(ReferencedSnapshot(broken).ok());
  EXPECT_FALSE(ReferencedSnapshot(std::string("\x28\xb5\x2f\xfd", 4) + "zstd").ok());
}

class DebrisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ctl-gc-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_TRUE(MakeDirs(root_ + "/snapshots").ok());
    ASSERT_TRUE(MakeDirs(root_ + "/volumes/h1").ok());
  }
  void TearDown() override { IgnoreError(RemoveTree(root_), "test teardown: a leftover scratch dir only wastes space"); }
  void Touch(const std::string& rel, time_t mtime) {
    std::ofstream(root_ + "/" + rel) << "x";
    struct utimbuf t = {mtime, mtime};
    ::utime((root_ + "/" + rel).c_str(), &t);
  }
  std::string root_;
};

// Scenario: old *.tmp* files and unpublished companions are debris; young ones and
// published snapshots are not.
TEST_F(DebrisTest, FindsOldTmpAndOrphanCompanions) {
  time_t now = 1'000'000;
  Touch("snapshots/" + kS1 + ".img.tmp-ab", now - 7200);
  Touch("snapshots/" + kS2 + ".img.tmp-cd", now - 60);  // in flight
  Touch("snapshots/" + kS3 + ".json", now - 7200);       // image never published
  Touch("snapshots/" + kS4 + ".img", now - 7200);
  Touch("snapshots/" + kS4 + ".json", now - 7200);
  Touch("snapshots/" + kS4 + ".trace", now - 7200);      // a start-up trace of a published one
  Touch("snapshots/" + kS3 + ".trace", now - 7200);      // of one never published
  Touch("volumes/h1/layer.img.tmp-ef", now - 7200);
  Touch("volumes/h1/layer.img", now - 7200);
  auto d = FindDebris(root_, now, 3600, [](const std::string&) { return false; });
  ASSERT_TRUE(d.ok());
  std::vector<std::string> paths;
  for (const auto& x : *d) paths.push_back(x.path.substr(root_.size() + 1));
  EXPECT_EQ(paths, (std::vector<std::string>{"snapshots/" + kS1 + ".img.tmp-ab", "snapshots/" + kS3 + ".json",
                                             "snapshots/" + kS3 + ".trace", "volumes/h1/layer.img.tmp-ef"}));
}

// gc --min-age 0 deleted a snapshot's temp file while a worker published it (CI run 8):
// temp files and companions younger than kDebrisMinAgeSec are never debris.
TEST_F(DebrisTest, MinAgeZeroLeavesFilesInFlightAlone) {
  time_t now = 1'000'000;
  Touch("snapshots/" + kS2 + ".img.tmp", now - 5);      // being published
  Touch("snapshots/" + kS3 + ".json", now - 5);         // its metadata, written first
  Touch("snapshots/" + kS1 + ".img.tmp", now - kDebrisMinAgeSec - 1);
  auto d = FindDebris(root_, now, 0, [](const std::string&) { return false; });
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ(d->front().path, root_ + "/snapshots/" + kS1 + ".img.tmp");
}

// Issue 16: slackerctl removed clone temp files a running slackerd had in flight. A
// host's temp files are debris only once its lease is no longer live.
TEST_F(DebrisTest, LeavesTheTempFilesOfAHostWithALiveLeaseAlone) {
  time_t now = 1'000'000;
  Touch("volumes/h1/layer.img.tmp-ef", now - 7200);
  auto live = FindDebris(root_, now, 3600, [](const std::string& host) { return host == "h1"; });
  ASSERT_TRUE(live.ok());
  EXPECT_TRUE(live->empty());
  auto stale = FindDebris(root_, now, 3600, [](const std::string&) { return false; });
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->size(), 1u);
}

// A store with published snapshots (image, metadata, skeleton), as gc sees it.
class SweepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ctl-sweep-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto store = storage_backend::OpenLocalStore(os_, root_, "gc-host");
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(store).value();
  }
  void TearDown() override { IgnoreError(RemoveTree(root_), "test teardown: a leftover scratch dir only wastes space"); }
  void Publish(const std::string& snap) {
    for (const char* suffix : {".img", ".json", ".skel", ".trace"}) {
      ASSERT_TRUE(AtomicWriteFile(store_->SnapshotFilePath(snap, suffix), "x").ok());
    }
  }
  void Mark(const std::string& host, const std::string& snap) {
    ASSERT_TRUE(MakeDirs(root_ + "/refs/" + host).ok());
    ASSERT_TRUE(AtomicWriteFile(root_ + "/refs/" + host + "/" + snap, "").ok());
  }
  os::FakeOs os_;
  std::string root_;
  std::unique_ptr<storage_backend::Backend> store_;
};

// Issue 16: gc read refs/, walked the registry for minutes, then deleted without looking
// again; a worker that claimed a candidate meanwhile (a chains/ dedup hit) lost it.
TEST_F(SweepTest, ASnapshotAWorkerClaimsDuringTheGcIsKept) {
  Publish(kS1);
  Publish(kS2);
  bool doomed_during_grace = false, usable_during_grace = false;
  auto r = SweepSnapshots(*store_, {kS1, kS2}, [&] {
    doomed_during_grace = PathExists(store_->SnapshotFilePath(kS1, storage_backend::kGcTombstoneSuffix)) &&
                          PathExists(store_->SnapshotFilePath(kS2, storage_backend::kGcTombstoneSuffix));
    usable_during_grace = store_->SnapshotExists(kS1);  // layers already using it go on
    Mark("worker-b", kS1);  // a worker's claim that saw no tombstone
  });
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(doomed_during_grace) << "candidates must be tombstoned before the re-check";
  EXPECT_TRUE(usable_during_grace) << "a tombstoned image must stay readable for its users";
  EXPECT_EQ(r->restored, std::vector<std::string>{kS1});
  EXPECT_EQ(r->deleted, std::vector<std::string>{kS2});
  EXPECT_TRUE(r->failed.empty());
  EXPECT_TRUE(store_->SnapshotExists(kS1));
  EXPECT_TRUE(PathExists(store_->SnapshotFilePath(kS1, ".skel")));
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(kS2, ".img")));
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(kS2, ".json")));
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(kS2, ".skel")));
  EXPECT_TRUE(PathExists(store_->SnapshotFilePath(kS1, ".trace")));  // issue 20: goes with its snapshot
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(kS2, ".trace")));
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(kS1, storage_backend::kGcTombstoneSuffix)));
  EXPECT_FALSE(PathExists(store_->SnapshotFilePath(kS2, storage_backend::kGcTombstoneSuffix)));
}

TEST_F(SweepTest, TombstonesACrashedGcLeftAreLifted) {
  Publish(kS1);
  std::string tomb = store_->SnapshotFilePath(kS1, storage_backend::kGcTombstoneSuffix);
  ASSERT_TRUE(AtomicWriteFile(tomb, "").ok());
  auto r = LiftTombstones(root_);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, std::vector<std::string>{kS1});
  EXPECT_FALSE(PathExists(tomb));
  EXPECT_TRUE(store_->SnapshotExists(kS1));
}

// Issue 16: chains/ and containerd/names were never pruned. The entries are planted as
// earlier releases wrote them (gc must prune an upgraded store).
TEST_F(SweepTest, IndexEntriesOfDeletedSnapshotsArePruned) {
  Publish(kS1);
  const std::string live_key(64, 'a'), gone_key(64, 'b');
  auto name_json = [](const std::string& name, const std::string& snap) {
    return "{\"bytes\":1,\"host\":\"w1\",\"inodes\":0,\"name\":\"" + name +
           "\",\"namespace\":\"default\",\"snapshot\":\"" + snap + "\"}\n";
  };
  const std::string live_name = JoinPath(root_, storage_backend::NameFile("default", "live"));
  const std::string gone_name = JoinPath(root_, storage_backend::NameFile("default", "gone"));
  ASSERT_TRUE(MakeDirs(root_ + "/chains").ok());
  ASSERT_TRUE(MakeDirs(root_ + "/containerd/names").ok());
  ASSERT_TRUE(AtomicWriteFile(root_ + "/chains/" + live_key, kS1 + "\n").ok());
  ASSERT_TRUE(AtomicWriteFile(root_ + "/chains/" + gone_key, kS2 + "\n").ok());
  ASSERT_TRUE(AtomicWriteFile(live_name, name_json("live", kS1)).ok());
  ASSERT_TRUE(AtomicWriteFile(gone_name, name_json("gone", kS2)).ok());
  auto dry = PruneIndexes(*store_, false);
  ASSERT_TRUE(dry.ok()) << dry.status().message();
  ASSERT_EQ(dry->size(), 2u);
  EXPECT_TRUE(PathExists(root_ + "/chains/" + gone_key)) << "a dry run removes nothing";
  auto r = PruneIndexes(*store_, true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].path, root_ + "/chains/" + gone_key);
  EXPECT_EQ((*r)[1].path, gone_name);
  EXPECT_EQ((*r)[1].snapshot, kS2);
  EXPECT_FALSE(PathExists(root_ + "/chains/" + gone_key));
  EXPECT_FALSE(PathExists(gone_name));
  EXPECT_TRUE(PathExists(root_ + "/chains/" + live_key));
  EXPECT_TRUE(PathExists(live_name));
}

// A worker recorded a new snapshot under a stale key between the listing and the removal.
TEST_F(SweepTest, IndexEntryRewrittenMeanwhileIsKept) {
  const std::string key(64, 'c');
  ASSERT_TRUE(store_->RecordChain(key, kS2).ok());
  Publish(kS1);
  ASSERT_TRUE(store_->RecordChain(key, kS1).ok());  // what RemoveChain re-reads
  auto removed = store_->RemoveChain(key, kS2);
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(*removed);
  auto r = PruneIndexes(*store_, true);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(*store_->LookupChain(key), kS1);
}

}  // namespace
}  // namespace slacker::ctl
