// The chain and name indexes (Backend::*Chain, *Name) on a local store in a temp
// directory: record/look up/list/remove, byte-identical files, and hostile entries
// (links, garbage) refused or skipped.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/files.h"
#include "common/hash.h"
#include "os/fake_os.h"
#include "storage_backend/local_backend.h"

namespace slacker::storage_backend {
namespace {

const std::string kS1 = "11111111111111111111111111111111";
const std::string kS2 = "22222222222222222222222222222222";
const std::string kK1 = Sha256Hex("base1 sha256:diff");
const std::string kK2 = Sha256Hex("base2 sha256:diff");

class StoreIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-index-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/store";
    auto s = OpenLocalStore(os_, root_, "hostA");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
  }
  void TearDown() override {
    store_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }
  std::string Read(const std::string& rel) {
    auto r = ReadFileToString(JoinPath(root_, rel));
    return r.ok() ? *r : "<missing>";
  }
  void Plant(const std::string& rel, const std::string& text) {
    if (size_t slash = rel.rfind('/'); slash != std::string::npos) {
      ASSERT_TRUE(MakeDirs(JoinPath(root_, rel.substr(0, slash)), 0700).ok());
    }
    ASSERT_TRUE(AtomicWriteFile(JoinPath(root_, rel), text).ok());
  }
  NameEntry Entry(const std::string& ns, const std::string& name, const std::string& snap) {
    return NameEntry{ns, name, snap, 4096, 12, "hostA"};
  }

  os::FakeOs os_;
  std::string dir_, root_;
  std::unique_ptr<Backend> store_;
};

TEST_F(StoreIndexTest, ChainRecordLookupListRemove) {
  EXPECT_EQ(store_->LookupChain(kK1).status().code(), ENOENT) << "no chains/ yet";
  ASSERT_TRUE(store_->RecordChain(kK1, kS1).ok());
  ASSERT_TRUE(store_->RecordChain(kK2, kS2).ok());
  EXPECT_EQ(Read("chains/" + kK1), kS1 + "\n") << "the format of earlier releases";
  auto got = store_->LookupChain(kK1);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, kS1);
  auto all = store_->ListChains();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].key, std::min(kK1, kK2));

  auto kept = store_->RemoveChain(kK1, kS2);
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(*kept) << "the entry names another snapshot now: it stays";
  auto removed = store_->RemoveChain(kK1, kS1);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_EQ(store_->LookupChain(kK1).status().code(), ENOENT);
  auto again = store_->RemoveChain(kK1, kS1);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
}

TEST_F(StoreIndexTest, ChainEntriesOfEarlierReleasesAreRead) {
  Plant("chains/" + kK1, kS1 + "\n");  // as driver/apply.cc wrote it with AtomicWriteFile
  auto got = store_->LookupChain(kK1);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, kS1);
}

TEST_F(StoreIndexTest, InvalidKeysAndIdsAreRefused) {
  EXPECT_EQ(store_->LookupChain("../store.json").status().code(), EINVAL);
  EXPECT_EQ(store_->RecordChain("short", kS1).code(), EINVAL);
  EXPECT_EQ(store_->RecordChain(kK1, "not-a-snapshot").code(), EINVAL);
  EXPECT_EQ(store_->PublishName(Entry("default", "", kS1)).code(), EINVAL);
  EXPECT_EQ(store_->PublishName(Entry("default", "app", "x")).code(), EINVAL);
}

TEST_F(StoreIndexTest, LinkPlantedAtAChainIsRefusedNotFollowed) {
  Plant("outside", kS2 + "\n");
  ASSERT_TRUE(MakeDirs(root_ + "/chains", 0700).ok());
  ASSERT_EQ(::symlink((root_ + "/outside").c_str(), (root_ + "/chains/" + kK1).c_str()), 0);
  EXPECT_EQ(store_->LookupChain(kK1).status().code(), ELOOP);
  auto all = store_->ListChains();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty()) << "a link is skipped";
  ASSERT_TRUE(store_->RecordChain(kK1, kS1).ok());
  EXPECT_EQ(Read("outside"), kS2 + "\n") << "the write replaced the link, it did not write through it";
  EXPECT_EQ(*store_->LookupChain(kK1), kS1);
}

TEST_F(StoreIndexTest, LinkedChainsDirectoryIsRefused) {
  ASSERT_TRUE(MakeDirs(dir_ + "/elsewhere", 0700).ok());
  ASSERT_EQ(::symlink((dir_ + "/elsewhere").c_str(), (root_ + "/chains").c_str()), 0);
  EXPECT_EQ(store_->RecordChain(kK1, kS1).code(), ELOOP);
  EXPECT_FALSE(PathExists(dir_ + "/elsewhere/" + kK1));
  EXPECT_FALSE(store_->ListChains().ok());
}

TEST_F(StoreIndexTest, GarbageChainEntryIsAnErrorAndSkipped) {
  Plant("chains/" + kK1, "not a snapshot id\n");
  Plant("chains/" + kK2, kS2 + "\n");
  Plant("chains/README", kS1 + "\n");  // not a key
  Plant("chains/" + kK1 + ".tmp-beef", kS1 + "\n");  // a write in flight
  auto bad = store_->LookupChain(kK1);
  EXPECT_EQ(bad.status().code(), EIO);
  EXPECT_NE(bad.status().message().find("chains/" + kK1), std::string::npos) << bad.status().message();
  auto all = store_->ListChains();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].key, kK2);
  EXPECT_EQ((*all)[0].snapshot, kS2);
}

TEST_F(StoreIndexTest, NamePublishLookupListRemove) {
  ASSERT_TRUE(store_->PublishName(Entry("default", "app", kS1)).ok());
  ASSERT_TRUE(store_->PublishName(Entry("default", "sha256:beef", kS2)).ok());
  EXPECT_EQ(Read(NameFile("default", "app")),
            "{\"bytes\":4096,\"host\":\"hostA\",\"inodes\":12,\"name\":\"app\",\"namespace\":\"default\","
            "\"snapshot\":\"" + kS1 + "\"}\n")
      << "the format of earlier releases";
  auto got = store_->LookupName("default", "app");
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->snapshot, kS1);
  EXPECT_EQ(got->bytes, 4096u);
  EXPECT_EQ(got->inodes, 12u);
  EXPECT_EQ(got->host, "hostA");
  EXPECT_EQ(store_->LookupName("other", "app").status().code(), ENOENT) << "names are per namespace";
  auto chain = store_->LookupName("other", "sha256:beef");
  ASSERT_TRUE(chain.ok()) << "chain ids are shared by every namespace";
  EXPECT_EQ(chain->ns, "default");
  auto all = store_->ListNames();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);

  auto kept = store_->RemoveName("default", "app", kS2);
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(*kept);
  auto removed = store_->RemoveName("default", "app", kS1);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_EQ(store_->LookupName("default", "app").status().code(), ENOENT);
}

TEST_F(StoreIndexTest, LinkPlantedAtANameIsRefused) {
  Plant("outside.json", "{\"name\":\"app\",\"namespace\":\"default\",\"snapshot\":\"" + kS1 + "\"}");
  ASSERT_TRUE(MakeDirs(root_ + "/containerd/names", 0700).ok());
  ASSERT_EQ(::symlink((root_ + "/outside.json").c_str(), JoinPath(root_, NameFile("default", "app")).c_str()), 0);
  EXPECT_EQ(store_->LookupName("default", "app").status().code(), ELOOP);
  auto all = store_->ListNames();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
}

TEST_F(StoreIndexTest, GarbageNameEntriesAreErrorsAndSkipped) {
  Plant(NameFile("default", "app"), "{not json");
  Plant(NameFile("default", "typed"), "{\"name\":\"typed\",\"namespace\":\"default\",\"snapshot\":\"" + kS1 + "\",\"bytes\":\"many\"}");
  // A well-formed entry under a file name its (namespace, name) does not hash to.
  Plant(NameFile("default", "moved"), "{\"name\":\"elsewhere\",\"namespace\":\"default\",\"snapshot\":\"" + kS1 + "\"}");
  auto bad = store_->LookupName("default", "app");
  EXPECT_EQ(bad.status().code(), EIO);
  EXPECT_NE(bad.status().message().find(NameFile("default", "app")), std::string::npos) << bad.status().message();
  EXPECT_EQ(store_->LookupName("default", "moved").status().code(), EIO);
  auto typed = store_->LookupName("default", "typed");
  ASSERT_TRUE(typed.ok()) << "a field of the wrong type reads as unknown: " << typed.status().message();
  EXPECT_EQ(typed->bytes, 0u);
  auto all = store_->ListNames();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].name, "typed");
}

}  // namespace
}  // namespace slacker::storage_backend
