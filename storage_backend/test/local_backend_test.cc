// The local backend on FakeOs in a temp directory: FakeOs's FICLONE and copy_file_range
// copy bytes, so every flow is checked by content.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "os/fake_os.h"
#include "storage_backend/local_backend.h"

namespace slacker::storage_backend {
namespace {

using nlohmann::json;

class LocalBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-store-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/store";
    Open();
  }
  void TearDown() override {
    store_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }
  void Open(CloneMode mode = CloneMode::kAuto) {
    auto s = OpenLocalStore(os_, root_, "hostA", mode);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
  }
  void WriteVolume(const std::string& layer, const std::string& content) {
    ASSERT_TRUE(AtomicWriteFile(store_->VolumePath(layer), content, false, 0600).ok());
  }
  std::string Read(const std::string& path) {
    auto r = ReadFileToString(path);
    return r.ok() ? *r : "<missing>";
  }
  std::vector<std::string> Names(const std::string& sub) {
    auto r = ListDir(JoinPath(root_, sub));
    return r.ok() ? *r : std::vector<std::string>{"<missing>"};
  }

  os::FakeOs os_;
  std::string dir_, root_;
  std::unique_ptr<Backend> store_;
};

TEST_F(LocalBackendTest, OpenCreatesTheLayout) {
  for (const char* sub : {"snapshots", "volumes/hostA", "refs/hostA", "templates"})
    EXPECT_TRUE(PathExists(JoinPath(root_, sub))) << sub;
  json j = json::parse(Read(root_ + "/store.json"), nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["format"], 1);
  EXPECT_EQ(j["uuid"], store_->info().uuid);
  EXPECT_EQ(j["created"], store_->info().created);
  EXPECT_TRUE(IsValidSnapshotId(store_->info().uuid));
  EXPECT_EQ(store_->info().created.size(), 20u);  // 2026-01-02T03:04:05Z
}

// The hand-over (driver: a container layer takes its init layer's live file system): the
// file moves to the new name (same inode: a loop device on it goes along), the old name
// gets a clone of it.
TEST_F(LocalBackendTest, HandOverVolumeRenamesTheFileAndLeavesAClone) {
  WriteVolume("init", "ext4-content");
  struct stat before, moved, copy;
  ASSERT_EQ(::stat(store_->VolumePath("init").c_str(), &before), 0);
  Status s = store_->HandOverVolume("init", "c1");
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(::stat(store_->VolumePath("c1").c_str(), &moved), 0);
  ASSERT_EQ(::stat(store_->VolumePath("init").c_str(), &copy), 0);
  EXPECT_EQ(moved.st_ino, before.st_ino) << "the live file moved";
  EXPECT_NE(copy.st_ino, before.st_ino) << "the old name is a clone";
  EXPECT_EQ(Read(store_->VolumePath("init")), "ext4-content");
  EXPECT_EQ(Read(store_->VolumePath("c1")), "ext4-content");
  auto names = Names("volumes/hostA");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"c1.img", "init.img"})) << "no .handover left";
  EXPECT_EQ(store_->HandOverVolume("init", "c1").code(), EEXIST) << "never over an existing volume";
  EXPECT_EQ(store_->HandOverVolume("../x", "c2").code(), EINVAL);
}

// The hand-over in two steps (the driver prepares the clone after an init layer's Put):
// the clone is taken at Prepare, Complete only renames, Discard deletes a prepared clone.
TEST_F(LocalBackendTest, APreparedHandOverCompletesWithTheCloneOfPrepareTime) {
  WriteVolume("init", "at-prepare");
  EXPECT_EQ(store_->CompleteHandOver("init", "c1").code(), ENOENT) << "nothing prepared";
  EXPECT_NE(::access((store_->VolumePath("c1")).c_str(), F_OK), 0) << "nothing renamed";
  ASSERT_TRUE(store_->PrepareHandOver("init").ok());
  EXPECT_EQ(Read(store_->VolumePath("init") + ".handover"), "at-prepare");
  WriteVolume("init", "again");
  ASSERT_TRUE(store_->PrepareHandOver("init").ok()) << "a second Prepare replaces the clone";
  EXPECT_EQ(Read(store_->VolumePath("init") + ".handover"), "again");
  struct stat before, moved;
  ASSERT_EQ(::stat(store_->VolumePath("init").c_str(), &before), 0);
  Status s = store_->CompleteHandOver("init", "c1");
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(::stat(store_->VolumePath("c1").c_str(), &moved), 0);
  EXPECT_EQ(moved.st_ino, before.st_ino) << "the live file moved";
  EXPECT_EQ(Read(store_->VolumePath("init")), "again");
  EXPECT_NE(::access((store_->VolumePath("init") + ".handover").c_str(), F_OK), 0);

  ASSERT_TRUE(store_->PrepareHandOver("init").ok());
  EXPECT_EQ(store_->CompleteHandOver("init", "c1").code(), EEXIST) << "never over an existing volume";
  ASSERT_TRUE(store_->DiscardHandOver("init").ok());
  ASSERT_TRUE(store_->DiscardHandOver("init").ok()) << "nothing to discard is fine";
  auto names = Names("volumes/hostA");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"c1.img", "init.img"}));
  EXPECT_EQ(store_->PrepareHandOver("../x").code(), EINVAL);
  EXPECT_EQ(store_->DiscardHandOver("../x").code(), EINVAL);
}

// A crash between the renames: the clone goes back into place; a leftover clone next to
// its volume is deleted.
TEST_F(LocalBackendTest, RecoverHandOversRestoresOrDiscardsTheClone) {
  WriteVolume("a", "live");
  ASSERT_TRUE(AtomicWriteFile(store_->VolumePath("b") + ".handover", "b-clone", false, 0600).ok());
  ASSERT_TRUE(AtomicWriteFile(store_->VolumePath("a") + ".handover", "a-clone", false, 0600).ok());
  auto restored = store_->RecoverHandOvers();
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ(*restored, std::vector<std::string>{"b"});
  EXPECT_EQ(Read(store_->VolumePath("b")), "b-clone");
  EXPECT_EQ(Read(store_->VolumePath("a")), "live") << "an existing volume is kept";
  auto names = Names("volumes/hostA");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a.img", "b.img"}));
}

TEST_F(LocalBackendTest, ReopenKeepsTheUuid) {
  std::string uuid = store_->info().uuid;
  Open();
  EXPECT_EQ(store_->info().uuid, uuid);
}

TEST_F(LocalBackendTest, AnotherHostSharesTheStoreWithItsOwnDirectories) {
  auto b = OpenLocalStore(os_, root_, "hostB");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->info().uuid, store_->info().uuid);
  EXPECT_TRUE(PathExists(root_ + "/volumes/hostB"));
  EXPECT_EQ((*b)->VolumePath("x"), root_ + "/volumes/hostB/x.img");
}

TEST_F(LocalBackendTest, UnknownFormatIsRefusedNamingFileAndVersion) {
  ASSERT_TRUE(AtomicWriteFile(root_ + "/store.json",
                              R"({"format":2,"uuid":"0123456789abcdef0123456789abcdef","created":"x"})", false)
                  .ok());
  auto s = OpenLocalStore(os_, root_, "hostA");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), EINVAL);
  EXPECT_NE(s.status().message().find(root_ + "/store.json"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("format 2"), std::string::npos) << s.status().message();
}

TEST_F(LocalBackendTest, GarbageStoreJsonIsRefused) {
  ASSERT_TRUE(AtomicWriteFile(root_ + "/store.json", "not json", false).ok());
  auto s = OpenLocalStore(os_, root_, "hostA");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), EINVAL);
}

TEST_F(LocalBackendTest, BadHostIdIsRefused) {
  for (const char* host : {"", ".hidden", "a/b", "a b"}) {
    auto s = OpenLocalStore(os_, root_, host);
    EXPECT_FALSE(s.ok()) << host;
  }
}

TEST(StoreIds, SnapshotIdsAre32LowercaseHex) {
  EXPECT_TRUE(IsValidSnapshotId("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsValidSnapshotId("0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(IsValidSnapshotId("0123456789abcdef0123456789abcde"));
  EXPECT_FALSE(IsValidSnapshotId("0123456789abcdef0123456789abcdeg"));
  EXPECT_FALSE(IsValidSnapshotId("../3456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsValidSnapshotId(""));
}

TEST(StoreIds, LayerNames) {
  EXPECT_TRUE(IsValidLayerName("c0ffee"));
  EXPECT_TRUE(IsValidLayerName("abc-init"));
  EXPECT_TRUE(IsValidLayerName("A_b.c-1"));
  EXPECT_FALSE(IsValidLayerName(""));
  EXPECT_FALSE(IsValidLayerName(".hidden"));
  EXPECT_FALSE(IsValidLayerName(".."));
  EXPECT_FALSE(IsValidLayerName("a/b"));
  EXPECT_FALSE(IsValidLayerName("a b"));
  EXPECT_FALSE(IsValidLayerName(std::string(256, 'a')));
  EXPECT_TRUE(IsValidLayerName(std::string(255, 'a')));
}

TEST_F(LocalBackendTest, PathsFollowTheLayout) {
  std::string snap = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(store_->SnapshotPath(snap), root_ + "/snapshots/" + snap + ".img");
  EXPECT_EQ(store_->SnapshotMetaPath(snap), root_ + "/snapshots/" + snap + ".json");
  EXPECT_EQ(store_->SnapshotFilePath(snap, ".skel"), root_ + "/snapshots/" + snap + ".skel");
  EXPECT_EQ(store_->VolumePath("c0ffee"), root_ + "/volumes/hostA/c0ffee.img");
  EXPECT_EQ(store_->TemplatePath(10737418240), root_ + "/templates/ext4-10737418240.img");
  EXPECT_EQ(store_->root(), root_);
}

TEST_F(LocalBackendTest, SnapshotVolumePublishesAReadOnlyCopyWithMetaAndRef) {
  WriteVolume("c1", "layer content");
  auto snap = store_->SnapshotVolume("c1", json{{"source", "commit"}, {"parent", "p"}});
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_TRUE(IsValidSnapshotId(*snap));
  EXPECT_TRUE(store_->SnapshotExists(*snap));
  EXPECT_EQ(Read(store_->SnapshotPath(*snap)), "layer content");
  struct stat st;
  ASSERT_EQ(::stat(store_->SnapshotPath(*snap).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0400u);  // read-only, and closed to other users
  auto meta = store_->ReadSnapshotMeta(*snap);
  ASSERT_TRUE(meta.ok()) << meta.status().message();
  EXPECT_EQ((*meta)["source"], "commit");
  EXPECT_EQ((*meta)["parent"], "p");
  EXPECT_TRUE(meta->contains("created"));
  EXPECT_TRUE(PathExists(root_ + "/refs/hostA/" + *snap));
  EXPECT_EQ(Read(store_->VolumePath("c1")), "layer content");  // the volume stays
  EXPECT_EQ(os_.Calls("Ficlone"), 1);
  auto list = store_->ListSnapshots();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, std::vector<std::string>{*snap});
}

TEST_F(LocalBackendTest, SnapshotsGetDistinctIds) {
  WriteVolume("c1", "x");
  auto a = store_->SnapshotVolume("c1", json::object());
  auto b = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST_F(LocalBackendTest, SnapshotOfAMissingVolumeIsENOENT) {
  auto snap = store_->SnapshotVolume("nope", json::object());
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.status().code(), ENOENT);
}

TEST_F(LocalBackendTest, FailedCloneLeavesNoDebris) {
  WriteVolume("c1", "x");
  os_.FailNext("Ficlone", EIO);
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.status().code(), EIO);
  EXPECT_TRUE(Names("snapshots").empty());
  EXPECT_TRUE(Names("refs/hostA").empty());
}

TEST_F(LocalBackendTest, PromoteVolumeMovesTheFileWithoutCloning) {
  WriteVolume("a1", "applied tree");
  auto snap = store_->PromoteVolume("a1", json{{"source", "apply"}});
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_EQ(Read(store_->SnapshotPath(*snap)), "applied tree");
  EXPECT_FALSE(PathExists(store_->VolumePath("a1")));
  EXPECT_EQ(os_.Calls("Ficlone") + os_.Calls("CopyFileRange"), 0);
  EXPECT_TRUE(PathExists(root_ + "/refs/hostA/" + *snap));
  EXPECT_EQ((*store_->ReadSnapshotMeta(*snap))["source"], "apply");
}

TEST_F(LocalBackendTest, CloneSnapshotMakesAWritableVolume) {
  WriteVolume("c1", "base");
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(store_->CloneSnapshot(*snap, "c2").ok());
  EXPECT_EQ(Read(store_->VolumePath("c2")), "base");
  EXPECT_EQ(::access(store_->VolumePath("c2").c_str(), W_OK), 0);
  struct stat st;
  ASSERT_EQ(::stat(store_->VolumePath("c2").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto vols = store_->ListVolumes();
  ASSERT_TRUE(vols.ok());
  EXPECT_EQ(*vols, (std::vector<std::string>{"c1", "c2"}));
}

TEST_F(LocalBackendTest, CloneOfAMissingSnapshotNamesIt) {
  std::string snap = "0123456789abcdef0123456789abcdef";
  Status s = store_->CloneSnapshot(snap, "c2");
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_NE(s.message().find(snap), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("c2"), std::string::npos) << s.message();
  EXPECT_TRUE(Names("volumes/hostA").empty());
}

TEST_F(LocalBackendTest, InvalidIdsAreRejected) {
  EXPECT_EQ(store_->CloneSnapshot("../../etc/passwd", "c2").code(), EINVAL);
  EXPECT_EQ(store_->CloneSnapshot("0123456789abcdef0123456789abcdef", "../x").code(), EINVAL);
  EXPECT_EQ(store_->SnapshotVolume("../x", json::object()).status().code(), EINVAL);
  EXPECT_EQ(store_->RemoveVolume("a/b").code(), EINVAL);
  EXPECT_EQ(store_->AddRef("nothex").code(), EINVAL);
  EXPECT_FALSE(store_->SnapshotExists("../x"));
}

TEST_F(LocalBackendTest, CloneFileCopiesATemplate) {
  std::string tmpl = store_->TemplatePath(4096);
  ASSERT_TRUE(AtomicWriteFile(tmpl, "empty fs", false).ok());
  ASSERT_TRUE(store_->CloneFile(tmpl, store_->VolumePath("base")).ok());
  EXPECT_EQ(Read(store_->VolumePath("base")), "empty fs");
  EXPECT_EQ(Names("volumes/hostA"), std::vector<std::string>{"base.img"});
}

TEST_F(LocalBackendTest, RemoveVolumeIsIdempotent) {
  WriteVolume("c1", "x");
  EXPECT_TRUE(store_->RemoveVolume("c1").ok());
  EXPECT_FALSE(PathExists(store_->VolumePath("c1")));
  EXPECT_TRUE(store_->RemoveVolume("c1").ok());
}

TEST_F(LocalBackendTest, RemoveSnapshotDeletesImageMetaAndCompanions) {
  WriteVolume("c1", "x");
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(AtomicWriteFile(store_->SnapshotFilePath(*snap, ".skel"), "skel", false).ok());
  ASSERT_TRUE(store_->RemoveSnapshot(*snap).ok());
  EXPECT_FALSE(store_->SnapshotExists(*snap));
  EXPECT_TRUE(Names("snapshots").empty());
}

TEST_F(LocalBackendTest, RefsAreIdempotentMarkers) {
  std::string snap = "0123456789abcdef0123456789abcdef";
  EXPECT_TRUE(store_->AddRef(snap).ok());
  EXPECT_TRUE(store_->AddRef(snap).ok());
  EXPECT_TRUE(PathExists(root_ + "/refs/hostA/" + snap));
  EXPECT_TRUE(store_->DropRef(snap).ok());
  EXPECT_FALSE(PathExists(root_ + "/refs/hostA/" + snap));
  EXPECT_TRUE(store_->DropRef(snap).ok());
}

TEST_F(LocalBackendTest, ListsIgnoreTemporaryAndForeignFiles) {
  WriteVolume("c1", "x");
  ASSERT_TRUE(AtomicWriteFile(root_ + "/volumes/hostA/c2.img.tmp-1234abcd", "x", false).ok());
  ASSERT_TRUE(AtomicWriteFile(root_ + "/snapshots/0123456789abcdef0123456789abcdef.img.tmp", "x", false).ok());
  ASSERT_TRUE(AtomicWriteFile(root_ + "/snapshots/0123456789abcdef0123456789abcdef.json", "{}", false).ok());
  EXPECT_EQ(*store_->ListVolumes(), std::vector<std::string>{"c1"});
  EXPECT_TRUE(store_->ListSnapshots()->empty());
}

// Issue 16: slackerctl status/verify/gc open the store for a host id while its slackerd
// runs; opening deleted "*.img.tmp-*" files, the clones that slackerd had in flight.
// Only the lease holder's recovery removes them now (driver).
TEST_F(LocalBackendTest, OpeningTheStoreLeavesCloneTempFilesAlone) {
  std::string tmp = root_ + "/volumes/hostA/c2.img.tmp-1234abcd";
  ASSERT_TRUE(AtomicWriteFile(tmp, "in flight", false, 0600).ok());
  Open();
  ASSERT_TRUE(PathExists(tmp)) << "opening the store deleted a clone in flight";
  EXPECT_EQ(Read(tmp), "in flight");
  struct stat st;
  ASSERT_EQ(::stat(tmp.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(LocalBackendTest, RefusedFicloneFallsBackToCopyFileRangeAndRemembers) {
  WriteVolume("c1", "data");
  os_.FailNext("Ficlone", EOPNOTSUPP);
  auto a = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(Read(store_->SnapshotPath(*a)), "data");
  EXPECT_EQ(os_.Calls("CopyFileRange"), 1);
  auto b = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(os_.Calls("Ficlone"), 1);  // not tried again
  EXPECT_EQ(os_.Calls("CopyFileRange"), 2);
  EXPECT_NE(store_->Describe().find("copy_file_range"), std::string::npos) << store_->Describe();
}

TEST_F(LocalBackendTest, RefusedCopyFileRangeFallsBackToSparseCopy) {
  WriteVolume("c1", "data");
  os_.FailNext("Ficlone", EXDEV);
  os_.FailNext("CopyFileRange", EXDEV);
  auto a = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(Read(store_->SnapshotPath(*a)), "data");
  EXPECT_NE(store_->Describe().find("sparse copy"), std::string::npos) << store_->Describe();
}

TEST_F(LocalBackendTest, ForcedSparseCopyKeepsContentSizeAndHoles) {
  Open(CloneMode::kForceSparseCopy);
  std::string vol = store_->VolumePath("c1");
  {
    int fd = ::open(vol.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 64 << 20), 0);
    ASSERT_EQ(::pwrite(fd, "head", 4, 0), 4);
    ASSERT_EQ(::pwrite(fd, "tail", 4, (64 << 20) - 4), 4);
    ::close(fd);
  }
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_EQ(os_.Calls("Ficlone") + os_.Calls("CopyFileRange"), 0);
  std::string copy = Read(store_->SnapshotPath(*snap));
  ASSERT_EQ(copy.size(), 64u << 20);
  EXPECT_EQ(copy.substr(0, 4), "head");
  EXPECT_EQ(copy.substr(copy.size() - 4), "tail");
  EXPECT_EQ(copy.find_first_not_of('\0', 4), copy.size() - 4);
  struct stat st;
  ASSERT_EQ(::stat(store_->SnapshotPath(*snap).c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 4 << 20) << "holes were filled";
  EXPECT_NE(store_->Describe().find("sparse copy (forced)"), std::string::npos);
}

TEST_F(LocalBackendTest, ForcedCopyFileRangeSkipsFiclone) {
  Open(CloneMode::kForceCopyFileRange);
  WriteVolume("c1", "data");
  auto snap = store_->SnapshotVolume("c1", json::object());
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(os_.Calls("Ficlone"), 0);
  EXPECT_EQ(os_.Calls("CopyFileRange"), 1);
  EXPECT_EQ(Read(store_->SnapshotPath(*snap)), "data");
}

TEST_F(LocalBackendTest, ReadSnapshotMetaOfGarbageIsEINVAL) {
  std::string snap = "0123456789abcdef0123456789abcdef";
  ASSERT_TRUE(AtomicWriteFile(store_->SnapshotMetaPath(snap), "[1,2", false).ok());
  EXPECT_EQ(store_->ReadSnapshotMeta(snap).status().code(), EINVAL);
  EXPECT_EQ(store_->ReadSnapshotMeta("ffffffffffffffffffffffffffffffff").status().code(), ENOENT);
}

TEST_F(LocalBackendTest, SpaceComesFromStatfs) {
  auto s = store_->Space();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->total_bytes, 100ull << 30);
  EXPECT_EQ(os_.Calls("StatFs"), 1);
}

// --- Confinement: a worker (root over NFS) can plant symlinks anywhere on the store. ---

// A host file outside the store, mode 0600, and checks that it is left alone.
struct Canary {
  std::string path;
  std::string content = "host secret\n";
  void Make(const std::string& p) {
    path = p;
    ASSERT_TRUE(AtomicWriteFile(path, content, false, 0600).ok());
    ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  }
  void ExpectUntouched() const {
    struct stat st;
    ASSERT_EQ(::lstat(path.c_str(), &st), 0) << path << " is gone";
    EXPECT_EQ(st.st_mode & 07777, 0600u) << path;
    auto text = ReadFileToString(path);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, content) << path;
  }
};

// volumes/hostA/leak.img -> a host secret: snapshot and promote refuse it; nothing is
// copied into snapshots/ and the secret's mode is unchanged (promote used to rename the
// link into snapshots/ and chmod 0444 through it).
TEST_F(LocalBackendTest, SymlinkedVolumeIsRefusedNotCopied) {
  Canary secret;
  secret.Make(dir_ + "/secret");
  ASSERT_EQ(::symlink(secret.path.c_str(), store_->VolumePath("leak").c_str()), 0);
  auto snap = store_->SnapshotVolume("leak", nullptr);
  EXPECT_FALSE(snap.ok());
  auto promoted = store_->PromoteVolume("leak", nullptr);
  EXPECT_FALSE(promoted.ok());
  if (!promoted.ok()) {
    EXPECT_EQ(promoted.status().code(), ELOOP) << promoted.status().message();
  }
  EXPECT_EQ(*store_->ListSnapshots(), std::vector<std::string>{});
  for (const auto& name : Names("snapshots")) ADD_FAILURE() << "left in snapshots/: " << name;
  auto clone = store_->CloneFile(store_->VolumePath("leak"), store_->VolumePath("copy"));
  EXPECT_FALSE(clone.ok());
  EXPECT_FALSE(PathExists(store_->VolumePath("copy")));
  secret.ExpectUntouched();
}

// templates/evil -> a host directory: a clone into it creates nothing there.
TEST_F(LocalBackendTest, CloneIntoASymlinkedDirectoryIsRefused) {
  std::string outside = dir_ + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  ASSERT_TRUE(AtomicWriteFile(store_->TemplatePath(1), "tmpl", false).ok());
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/templates/evil").c_str()), 0);
  Status s = store_->CloneFile(store_->TemplatePath(1), root_ + "/templates/evil/x.img");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ELOOP) << s.message();
  EXPECT_EQ(*ListDir(outside), std::vector<std::string>{});
}

// Paths outside the store, by ".." or absolute, are refused for source and destination.
TEST_F(LocalBackendTest, CloneFileOutsideTheStoreIsRefused) {
  Canary secret;
  secret.Make(dir_ + "/secret");
  ASSERT_TRUE(AtomicWriteFile(store_->TemplatePath(1), "tmpl", false).ok());
  EXPECT_FALSE(store_->CloneFile(secret.path, store_->VolumePath("x")).ok());
  EXPECT_FALSE(store_->CloneFile(root_ + "/templates/../../secret", store_->VolumePath("x")).ok());
  EXPECT_FALSE(PathExists(store_->VolumePath("x")));
  EXPECT_FALSE(store_->CloneFile(store_->TemplatePath(1), root_ + "/volumes/../../escaped.img").ok());
  EXPECT_FALSE(store_->CloneFile(store_->TemplatePath(1), dir_ + "/escaped.img").ok());
  EXPECT_FALSE(PathExists(dir_ + "/escaped.img"));
  secret.ExpectUntouched();
}

// The host's volume directory and snapshots/ replaced by links to host directories after
// the store was opened: remove and clone act on nothing outside.
TEST_F(LocalBackendTest, SymlinkedStoreDirectoriesAreNotFollowed) {
  std::string outside = dir_ + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  Canary victim, snap_victim;
  victim.Make(outside + "/victim.img");
  std::string id(32, 'c');
  snap_victim.Make(outside + "/" + id + ".img");
  ASSERT_EQ(::rename((root_ + "/volumes/hostA").c_str(), (dir_ + "/old-volumes").c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/volumes/hostA").c_str()), 0);
  EXPECT_FALSE(store_->RemoveVolume("victim").ok());
  EXPECT_FALSE(store_->CloneSnapshot(std::string(32, 'd'), "victim").ok());
  ASSERT_EQ(::rename((root_ + "/snapshots").c_str(), (dir_ + "/old-snapshots").c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/snapshots").c_str()), 0);
  EXPECT_FALSE(store_->RemoveSnapshot(id).ok());
  EXPECT_FALSE(store_->SnapshotExists(id));
  victim.ExpectUntouched();
  snap_victim.ExpectUntouched();
}

// --- Closed permissions: nothing in the store is open to group or others. ---

// Every directory and file under `dir` (not following links) with a group/other bit.
std::vector<std::string> OpenToOthers(const std::string& dir) {
  std::vector<std::string> out;
  struct stat st;
  if (::lstat(dir.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    out.push_back(fmt::format("{} {:o}", dir, st.st_mode & 07777));
  auto names = ListDir(dir);
  if (!names.ok()) return out;
  for (const auto& n : *names) {
    std::string p = JoinPath(dir, n);
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      auto sub = OpenToOthers(p);
      out.insert(out.end(), sub.begin(), sub.end());
    } else if (!S_ISLNK(st.st_mode) && (st.st_mode & 077) != 0) {
      out.push_back(fmt::format("{} {:o}", p, st.st_mode & 07777));
    }
  }
  return out;
}

// A fresh store after a snapshot, a clone, a template and a ref: directories 0700,
// files 0600 (snapshots 0400), whatever the umask.
TEST_F(LocalBackendTest, FreshStoreIsClosedToOtherUsers) {
  WriteVolume("c1", "content");
  auto snap = store_->SnapshotVolume("c1", nullptr);
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  ASSERT_TRUE(store_->CloneSnapshot(*snap, "c2").ok());
  ASSERT_TRUE(store_->CloneFile(store_->SnapshotPath(*snap), store_->TemplatePath(1)).ok());
  EXPECT_EQ(OpenToOthers(root_), std::vector<std::string>{});
  struct stat st;
  ASSERT_EQ(::stat(store_->SnapshotPath(*snap).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0400u);  // read-only: snapshots are immutable
  ASSERT_EQ(::stat(store_->VolumePath("c2").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// A store written by the previous release (dirs 0755, files 0644, snapshots 0444) is
// tightened when opened, and its data stays usable.
TEST_F(LocalBackendTest, OldLayoutStoreIsTightenedOnOpenAndStillWorks) {
  WriteVolume("c1", "old content");
  auto snap = store_->SnapshotVolume("c1", json{{"source", "commit"}});
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  std::string uuid = store_->info().uuid;
  store_.reset();
  // What the previous release left: world-readable everything.
  for (const char* d : {"", "/snapshots", "/volumes", "/volumes/hostA", "/refs", "/refs/hostA", "/templates"})
    ASSERT_EQ(::chmod((root_ + d).c_str(), 0755), 0) << d;
  ASSERT_EQ(::chmod((root_ + "/store.json").c_str(), 0644), 0);
  ASSERT_EQ(::chmod((root_ + "/snapshots/" + *snap + ".img").c_str(), 0444), 0);
  ASSERT_EQ(::chmod((root_ + "/snapshots/" + *snap + ".json").c_str(), 0644), 0);
  ASSERT_EQ(::chmod((root_ + "/volumes/hostA/c1.img").c_str(), 0644), 0);
  Open();
  EXPECT_EQ(OpenToOthers(root_), std::vector<std::string>{});
  EXPECT_EQ(store_->info().uuid, uuid);
  EXPECT_EQ((*store_->ReadSnapshotMeta(*snap))["source"], "commit");
  ASSERT_TRUE(store_->CloneSnapshot(*snap, "c2").ok());
  EXPECT_EQ(Read(store_->VolumePath("c2")), "old content");
  EXPECT_EQ(Read(store_->VolumePath("c1")), "old content");
}

}  // namespace
}  // namespace slacker::storage_backend
