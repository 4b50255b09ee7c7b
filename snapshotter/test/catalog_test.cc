// Catalog: transactions (commit persists, destruction rolls back), per-name locks, the
// on-disk format of earlier releases, concurrent callers.
#include "snapshotter/catalog.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"

namespace slacker::snapshotter {
namespace {

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/catalog_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = JoinPath(dir_, "catalog.json");
    catalog_ = Open();
  }
  void TearDown() override { IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space"); }

  std::unique_ptr<Catalog> Open() {
    auto c = Catalog::Open(path_);
    EXPECT_TRUE(c.ok()) << c.status().message();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  static Record Rec(std::string name, Kind kind, std::string parent = "", std::string layer = "") {
    Record r;
    r.name = std::move(name);
    r.kind = kind;
    r.parent = std::move(parent);
    r.layer = std::move(layer);
    return r;
  }
  // Commits `r` in a transaction of its own.
  void Add(const Record& r) {
    Catalog::Transaction txn(*catalog_);
    ASSERT_TRUE(txn.LockExclusive(r.name).ok());
    txn.Put(r);
    Status s = txn.Commit();
    ASSERT_TRUE(s.ok()) << s.message();
  }

  std::string dir_, path_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, CommitPersistsAcrossAReopen) {
  Record r = Rec("default/1/c", Kind::kCommitted, "", "layer1");
  r.labels = {{"l", "v"}};
  r.bytes = 42;
  r.inodes = 7;
  Add(r);
  Add(Rec("default/2/a", Kind::kActive, "default/1/c", "layer2"));
  auto reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Find("default/1/c"), r);
  EXPECT_EQ(reopened->List().size(), 2u);
}

TEST_F(CatalogTest, TransactionRollsBackWhenDestroyedUncommitted) {
  std::vector<std::string> undone;
  {
    Catalog::Transaction txn(*catalog_);
    ASSERT_TRUE(txn.LockExclusive("a").ok());
    txn.AddLayer("L");
    txn.OnRollback([&] { undone.push_back("first"); });
    txn.OnRollback([&] { undone.push_back("second"); });
    txn.Put(Rec("a", Kind::kActive, "", "L"));
    EXPECT_TRUE(catalog_->UsesLayer("L")) << "a layer being made is not an orphan";
  }
  EXPECT_EQ(undone, (std::vector<std::string>{"second", "first"})) << "undo runs newest first";
  EXPECT_FALSE(catalog_->Find("a"));
  EXPECT_FALSE(catalog_->UsesLayer("L"));
  EXPECT_FALSE(PathExists(path_)) << "nothing was saved";
  Catalog::Transaction again(*catalog_);
  EXPECT_TRUE(again.LockExclusive("a").ok()) << "the rolled-back transaction kept its lock";
}

TEST_F(CatalogTest, CommittedTransactionRunsNoUndo) {
  bool undone = false;
  {
    Catalog::Transaction txn(*catalog_);
    ASSERT_TRUE(txn.LockExclusive("a").ok());
    txn.OnRollback([&] { undone = true; });
    txn.Put(Rec("a", Kind::kActive));
    ASSERT_TRUE(txn.Commit().ok());
  }
  EXPECT_FALSE(undone);
  EXPECT_TRUE(catalog_->Find("a"));
}

TEST_F(CatalogTest, CommitChecksLocksNamesAndParents) {
  Add(Rec("p", Kind::kCommitted));
  {
    Catalog::Transaction txn(*catalog_);
    txn.Put(Rec("unlocked", Kind::kActive));
    EXPECT_EQ(txn.Commit().code(), EINVAL);
  }
  {
    Catalog::Transaction txn(*catalog_);
    ASSERT_TRUE(txn.LockExclusive("p").ok());
    txn.Put(Rec("p", Kind::kActive));
    EXPECT_EQ(txn.Commit().code(), EEXIST);
  }
  {
    Catalog::Transaction txn(*catalog_);
    ASSERT_TRUE(txn.LockExclusive("c").ok());
    txn.Put(Rec("c", Kind::kActive, "missing"));
    EXPECT_EQ(txn.Commit().code(), ENOENT);
  }
  Add(Rec("c", Kind::kActive, "p"));
  Catalog::Transaction txn(*catalog_);
  ASSERT_TRUE(txn.LockExclusive("p").ok());
  txn.Erase("p");
  Status s = txn.Commit();
  EXPECT_EQ(s.code(), EBUSY) << "c is based on p";
  EXPECT_NE(s.message().find("c is based on it"), std::string::npos) << s.message();
  EXPECT_TRUE(catalog_->Find("p"));
}

// Commit's replace: the committed name appears and the active key goes, in one save.
TEST_F(CatalogTest, EraseAndPutCommitTogether) {
  Add(Rec("k", Kind::kActive, "", "L1"));
  Catalog::Transaction txn(*catalog_);
  ASSERT_TRUE(txn.LockExclusive("k").ok());
  ASSERT_TRUE(txn.LockExclusive("c").ok());
  txn.Erase("k");
  txn.Put(Rec("c", Kind::kCommitted, "", "L2"));
  ASSERT_TRUE(txn.Commit().ok());
  auto reopened = Open();
  EXPECT_FALSE(reopened->Find("k"));
  EXPECT_TRUE(reopened->Find("c"));
}

TEST_F(CatalogTest, PerNameLockLetsOtherNamesProceed) {
  Catalog::Transaction slow(*catalog_);
  ASSERT_TRUE(slow.LockExclusive("slow").ok());
  // Another thread, meanwhile: a name of its own goes through; the held one is refused at once.
  auto other = std::async(std::launch::async, [&] {
    Catalog::Transaction txn(*catalog_);
    if (txn.LockExclusive("slow").ok()) return std::string("locked a name another transaction holds");
    if (txn.LockShared("slow").ok()) return std::string("shared lock of an exclusively held name");
    if (!txn.LockExclusive("fast").ok()) return std::string("could not lock another name");
    txn.Put(Rec("fast", Kind::kActive));
    Status s = txn.Commit();
    return s.ok() ? std::string() : s.message();
  });
  ASSERT_EQ(other.wait_for(std::chrono::seconds(5)), std::future_status::ready) << "waited for the held lock";
  EXPECT_EQ(other.get(), "");
  EXPECT_TRUE(catalog_->Find("fast"));
}

TEST_F(CatalogTest, SharedLocksStackAndBlockOnlyExclusive) {
  Catalog::Transaction a(*catalog_), b(*catalog_), c(*catalog_);
  ASSERT_TRUE(a.LockShared("parent").ok());
  ASSERT_TRUE(b.LockShared("parent").ok()) << "two children prepared on one parent at once";
  EXPECT_EQ(c.LockExclusive("parent").code(), EBUSY) << "a Remove of the parent meanwhile";
}

TEST_F(CatalogTest, ModifyChangesOneRecordOrNothing) {
  Add(Rec("a", Kind::kActive));
  auto r = catalog_->Modify("a", [](Record& e) {
    e.labels["x"] = "1";
    return Status::Ok();
  });
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Open()->Find("a")->labels.at("x"), "1");
  auto bad = catalog_->Modify("a", [](Record& e) {
    e.labels.clear();
    return Errorf(EINVAL, "refused");
  });
  EXPECT_EQ(bad.status().code(), EINVAL);
  EXPECT_EQ(catalog_->Find("a")->labels.at("x"), "1");
  EXPECT_EQ(catalog_->Modify("missing", [](Record&) { return Status::Ok(); }).status().code(), ENOENT);
}

// An upgrade must not strand data: a catalog.json as earlier releases wrote it loads.
TEST_F(CatalogTest, LoadsTheFormatOfEarlierReleases) {
  ASSERT_TRUE(AtomicWriteFile(path_, R"({"format":1,"snapshots":[
    {"name":"default/2/sha256:c1","kind":"committed","parent":"","layer":"0123","labels":{"containerd.io/gc.root":""},
     "created":1700000000000000000,"updated":1700000000000000001,"bytes":42,"inodes":3,"base_bytes":0,"base_inodes":0},
    {"name":"default/3/a","kind":"active","parent":"default/2/sha256:c1","layer":"4567","labels":{},
     "created":1,"updated":2,"bytes":0,"base_bytes":100,"base_inodes":10},
    {"name":"default/4/v","kind":"view","parent":"default/2/sha256:c1","layer":"0123"}]}
)").ok());
  auto c = Open();
  ASSERT_NE(c, nullptr);
  auto committed = c->Find("default/2/sha256:c1");
  ASSERT_TRUE(committed);
  EXPECT_EQ(committed->kind, Kind::kCommitted);
  EXPECT_EQ(committed->layer, "0123");
  EXPECT_EQ(committed->bytes, 42u);
  EXPECT_EQ(committed->inodes, 3u);
  EXPECT_EQ(committed->updated_ns, 1700000000000000001);
  EXPECT_EQ(committed->labels.count("containerd.io/gc.root"), 1u);
  EXPECT_EQ(c->Find("default/3/a")->base_inodes, 10);
  EXPECT_EQ(c->Find("default/4/v")->kind, Kind::kView);
  EXPECT_TRUE(c->UsesLayer("4567"));
}

TEST_F(CatalogTest, DamagedFileIsRefusedNamingIt) {
  ASSERT_TRUE(AtomicWriteFile(path_, "{not json").ok());
  auto c = Catalog::Open(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), EIO);
  EXPECT_NE(c.status().message().find(path_), std::string::npos) << c.status().message();
}

// containerd's parallel unpacks and removals: many Prepare-, Commit- and Remove-shaped
// transactions at once, each on names of its own plus one shared parent. Every one
// succeeds, and the file holds exactly the outcome.
TEST_F(CatalogTest, ConcurrentPrepareCommitRemove) {
  Add(Rec("base", Kind::kCommitted, "", "B"));
  constexpr int kThreads = 8, kRounds = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        std::string key = "k" + std::to_string(t) + "-" + std::to_string(i), name = "c" + key;
        {  // Prepare
          Catalog::Transaction txn(*catalog_);
          bool ok = txn.LockExclusive(key).ok() && txn.LockShared("base").ok();
          txn.Put(Rec(key, Kind::kActive, "base", "L" + key));
          if (!ok || !txn.Commit().ok()) ++failures;
        }
        {  // Commit
          Catalog::Transaction txn(*catalog_);
          bool ok = txn.LockExclusive(key).ok() && txn.LockExclusive(name).ok() && txn.LockShared("base").ok();
          txn.Erase(key);
          txn.Put(Rec(name, Kind::kCommitted, "base", "M" + key));
          if (!ok || !txn.Commit().ok()) ++failures;
        }
        if (i % 2 == 0) {  // Remove every other one
          Catalog::Transaction txn(*catalog_);
          bool ok = txn.LockExclusive(name).ok();
          txn.Erase(name);
          if (!ok || !txn.Commit().ok()) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto reopened = Open();
  EXPECT_EQ(reopened->List().size(), 1u + kThreads * kRounds / 2);
  EXPECT_TRUE(reopened->Find("ck0-1"));
  EXPECT_FALSE(reopened->Find("ck0-0"));
  EXPECT_FALSE(reopened->Find("k0-1"));
}

}  // namespace
}  // namespace slacker::snapshotter
