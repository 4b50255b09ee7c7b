#include "driver/changes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <gtest/gtest.h>

#include "common/files.h"

namespace slacker::driver {
namespace {

class ChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-changes.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    old_ = dir_ + "/old";
    new_ = dir_ + "/new";
    ASSERT_TRUE(MakeDirs(old_).ok());
  }
  void TearDown() override { IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space"); }
  void Write(const std::string& path, const std::string& content) {
    ASSERT_TRUE(AtomicWriteFile(path, content, false).ok());
  }
  // The new tree starts as a copy of the old one that keeps mtimes (like a clone).
  void CloneOldToNew() { ASSERT_EQ(std::system(("cp -a " + old_ + " " + new_).c_str()), 0); }
  std::vector<Change> Run() {
    auto c = ComputeChanges(new_, old_);
    EXPECT_TRUE(c.ok()) << c.status().message();
    return c.ok() ? *c : std::vector<Change>{};
  }
  std::string dir_, old_, new_;
};

TEST_F(ChangesTest, AnUnchangedCloneHasNoChanges) {
  ASSERT_TRUE(MakeDirs(old_ + "/etc").ok());
  Write(old_ + "/etc/a", "1");
  CloneOldToNew();
  EXPECT_TRUE(Run().empty());
}

TEST_F(ChangesTest, AddModifyDeleteAreReportedWithTheirParentDirectory) {
  ASSERT_TRUE(MakeDirs(old_ + "/etc").ok());
  Write(old_ + "/etc/keep", "k");
  Write(old_ + "/etc/mod", "m");
  Write(old_ + "/etc/gone", "g");
  CloneOldToNew();
  Write(new_ + "/etc/mod", "changed-size");
  ::unlink((new_ + "/etc/gone").c_str());
  Write(new_ + "/etc/new", "n");
  std::vector<Change> want = {{"/etc", ChangeKind::kModify},
                              {"/etc/gone", ChangeKind::kDelete},
                              {"/etc/mod", ChangeKind::kModify},
                              {"/etc/new", ChangeKind::kAdd}};
  EXPECT_EQ(Run(), want);
}

TEST_F(ChangesTest, AnAddedDirectoryReportsEveryChildAndADeletedOneOnlyItself) {
  ASSERT_TRUE(MakeDirs(old_ + "/olddir/sub").ok());
  Write(old_ + "/olddir/sub/f", "x");
  CloneOldToNew();
  ASSERT_TRUE(RemoveTree(new_ + "/olddir").ok());
  ASSERT_TRUE(MakeDirs(new_ + "/newdir/inner").ok());
  Write(new_ + "/newdir/inner/f", "y");
  std::vector<Change> want = {{"/newdir", ChangeKind::kAdd},
                              {"/newdir/inner", ChangeKind::kAdd},
                              {"/newdir/inner/f", ChangeKind::kAdd},
                              {"/olddir", ChangeKind::kDelete}};
  EXPECT_EQ(Run(), want);
}

TEST_F(ChangesTest, ModeAndOwnerChangesAreModifications) {
  Write(old_ + "/bin", "b");
  CloneOldToNew();
  ASSERT_EQ(::chmod((new_ + "/bin").c_str(), 04755), 0);
  std::vector<Change> want = {{"/bin", ChangeKind::kModify}};
  EXPECT_EQ(Run(), want);
}

TEST_F(ChangesTest, TopLevelLostAndFoundIsNeverReported) {
  CloneOldToNew();
  ASSERT_TRUE(MakeDirs(new_ + "/lost+found").ok());
  EXPECT_TRUE(Run().empty());
}

TEST_F(ChangesTest, ChangesSizeCountsAddedAndModifiedFilesAndHardlinksOnce) {
  CloneOldToNew();
  Write(new_ + "/a", std::string(100, 'a'));
  ASSERT_EQ(::link((new_ + "/a").c_str(), (new_ + "/b").c_str()), 0);
  Write(new_ + "/c", std::string(7, 'c'));
  auto changes = Run();
  EXPECT_EQ(changes.size(), 3u);
  EXPECT_EQ(ChangesSize(new_, changes), 107);
}

TEST_F(ChangesTest, WithoutAnOldTreeEverythingIsAdded) {
  ASSERT_TRUE(MakeDirs(new_ + "/d").ok());
  Write(new_ + "/d/f", "x");
  auto c = ComputeChanges(new_, "");
  ASSERT_TRUE(c.ok());
  std::vector<Change> want = {{"/d", ChangeKind::kAdd}, {"/d/f", ChangeKind::kAdd}};
  EXPECT_EQ(*c, want);
}

}  // namespace
}  // namespace slacker::driver
