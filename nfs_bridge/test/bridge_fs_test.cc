#include "nfs_bridge/bridge_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "nfs_bridge/test/fake_nfs_client.h"

namespace slacker::nfs_bridge {
namespace {

class BridgeFsTest : public ::testing::Test {
 protected:
  explicit BridgeFsTest(int connections = 2) : session_(Clients(connections)) {}

  std::vector<std::unique_ptr<NfsClient>> Clients(int n) {
    std::vector<std::unique_ptr<NfsClient>> out;
    for (int i = 0; i < n; ++i) out.push_back(std::make_unique<FakeNfsClient>(&export_));
    return out;
  }
  BridgeFs::OpenFile* MustOpen(BridgeFs& fs, const std::string& path, int flags = O_RDWR) {
    BridgeFs::OpenFile* f = nullptr;
    int rc = fs.Open(path, flags, &f);
    EXPECT_EQ(0, rc);
    return f;
  }
  bool Called(const std::string& call) {
    return std::find(export_.calls.begin(), export_.calls.end(), call) != export_.calls.end();
  }

  FakeExport export_;
  NfsSession session_;
};

TEST(ToStatTest, CopiesEveryAttribute) {
  NfsAttr a;
  a.dev = 1, a.ino = 2, a.mode = 0100640, a.nlink = 3, a.uid = 4, a.gid = 5, a.rdev = 6, a.size = 7,
  a.blksize = 8, a.blocks = 9, a.atime = 10, a.atime_nsec = 11, a.mtime = 12, a.mtime_nsec = 13, a.ctime = 14,
  a.ctime_nsec = 15;
  struct stat st;
  ToStat(a, &st);
  EXPECT_EQ(1u, st.st_dev);
  EXPECT_EQ(2u, st.st_ino);
  EXPECT_EQ(0100640u, st.st_mode);
  EXPECT_EQ(3u, st.st_nlink);
  EXPECT_EQ(4u, st.st_uid);
  EXPECT_EQ(5u, st.st_gid);
  EXPECT_EQ(6u, st.st_rdev);
  EXPECT_EQ(7, st.st_size);
  EXPECT_EQ(8, st.st_blksize);
  EXPECT_EQ(9, st.st_blocks);
  EXPECT_EQ(10, st.st_atim.tv_sec);
  EXPECT_EQ(11, st.st_atim.tv_nsec);
  EXPECT_EQ(12, st.st_mtim.tv_sec);
  EXPECT_EQ(13, st.st_mtim.tv_nsec);
  EXPECT_EQ(14, st.st_ctim.tv_sec);
  EXPECT_EQ(15, st.st_ctim.tv_nsec);
}

// NFSv3 SETATTR through libnfs's utimes cannot omit a time or say "now": both become now.
TEST(ToTimevalsTest, NowAndOmitBecomeNowNanosecondsBecomeMicroseconds) {
  timespec in[2] = {{100, 999999}, {200, UTIME_NOW}};
  timespec now = {300, 5000};
  timeval out[2];
  ToTimevals(in, now, out);
  EXPECT_EQ(100, out[0].tv_sec);
  EXPECT_EQ(999, out[0].tv_usec);
  EXPECT_EQ(300, out[1].tv_sec);
  EXPECT_EQ(5, out[1].tv_usec);
  timespec omit[2] = {{1, UTIME_OMIT}, {2, 0}};
  ToTimevals(omit, now, out);
  EXPECT_EQ(300, out[0].tv_sec);
  EXPECT_EQ(2, out[1].tv_sec);
}

// FUSE paths are the export's paths: "/a/b" under the mount is "/a/b" on the export.
TEST_F(BridgeFsTest, GetAttrByPathMapsThePathAndTheAttributes) {
  BridgeFs fs(&session_, {});
  export_.nodes["/dir/f"].cached = "12345";
  struct stat st;
  ASSERT_EQ(0, fs.GetAttr("/dir/f", nullptr, &st));
  EXPECT_EQ(5, st.st_size);
  EXPECT_TRUE(Called("LSTAT /dir/f"));
  EXPECT_EQ(1u, session_.counters().metadata_ops.load());
}

// NFS errors reach FUSE as -errno and are counted.
TEST_F(BridgeFsTest, ErrorsAreNegativeErrnoAndCounted) {
  BridgeFs fs(&session_, {});
  struct stat st;
  EXPECT_EQ(-ENOENT, fs.GetAttr("/missing", nullptr, &st));
  export_.fail_next = EACCES;
  EXPECT_EQ(-EACCES, fs.Unlink("/x"));
  export_.fail_next = EROFS;
  EXPECT_EQ(-EROFS, fs.MkDir("/d", 0755));
  EXPECT_EQ(3u, session_.counters().errors.load());
}

// RENAME_NOREPLACE/EXCHANGE cannot be done over NFSv3: EINVAL, and nothing is sent.
TEST_F(BridgeFsTest, RenameWithFlagsIsRefused) {
  BridgeFs fs(&session_, {});
  EXPECT_EQ(-EINVAL, fs.Rename("/a", "/b", 1));
  EXPECT_FALSE(Called("RENAME /a /b"));
  EXPECT_EQ(0, fs.Rename("/a", "/b", 0));
  EXPECT_TRUE(Called("RENAME /a /b"));
}

// chown(2) with -1 keeps that id: the bridge reads the current one, as SETATTR sets both.
TEST_F(BridgeFsTest, ChOwnKeepsTheIdGivenAsMinusOne) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"].uid = 10;
  export_.nodes["/f"].gid = 20;
  EXPECT_EQ(0, fs.ChOwn("/f", static_cast<uid_t>(-1), 5));
  EXPECT_TRUE(Called("CHOWN /f 10 5"));
  EXPECT_EQ(0, fs.ChOwn("/f", 7, static_cast<gid_t>(-1)));
  EXPECT_TRUE(Called("CHOWN /f 7 20"));
  EXPECT_EQ(0, fs.ChOwn("/f", 1, 2));
  EXPECT_TRUE(Called("CHOWN /f 1 2"));
}

TEST_F(BridgeFsTest, ModesAreMaskedToPermissionBits) {
  BridgeFs fs(&session_, {});
  EXPECT_EQ(0, fs.ChMod("/f", 0104755));
  EXPECT_TRUE(Called("CHMOD /f " + std::to_string(04755)));
  EXPECT_EQ(0, fs.MkDir("/d", 040700));
  EXPECT_TRUE(Called("MKDIR /d " + std::to_string(0700)));
}

TEST_F(BridgeFsTest, ReadDirStopsWhenFillIsFull) {
  BridgeFs fs(&session_, {});
  export_.nodes["/a"];
  export_.nodes["/b"];
  export_.nodes["/c"];
  std::vector<std::string> names;
  ASSERT_EQ(0, fs.ReadDir("/", [&](const std::string& name, const struct stat&) {
    names.push_back(name);
    return names.size() < 2;
  }));
  EXPECT_EQ((std::vector<std::string>{"a", "b"}), names);
}

TEST_F(BridgeFsTest, ReadLinkReturnsZeroAndTheTarget) {
  BridgeFs fs(&session_, {});
  ASSERT_EQ(0, fs.Symlink("../target", "/l"));
  char buf[64];
  EXPECT_EQ(0, fs.ReadLink("/l", buf, sizeof buf));
  EXPECT_STREQ("../target", buf);
}

TEST_F(BridgeFsTest, StatFsCopiesTheCounts) {
  BridgeFs fs(&session_, {});
  struct statvfs s;
  ASSERT_EQ(0, fs.StatFs("/", &s));
  EXPECT_EQ(4096u, s.f_bsize);
  EXPECT_EQ(400u, s.f_bavail);
  EXPECT_EQ(255u, s.f_namemax);
}

// Create passes the permission bits and the flags NFS knows; the file is tracked until Release.
TEST_F(BridgeFsTest, CreateAndReleaseTrackTheOpenFile) {
  BridgeFs fs(&session_, {});
  BridgeFs::OpenFile* f = nullptr;
  ASSERT_EQ(0, fs.Create("/new", O_RDWR | O_EXCL | O_NOFOLLOW, 0100640, &f));
  EXPECT_TRUE(Called("CREATE /new " + std::to_string(O_RDWR | O_EXCL | O_CREAT) + " " + std::to_string(0640)));
  EXPECT_EQ(1u, fs.open_files());
  EXPECT_EQ(0, fs.Release(f));
  EXPECT_EQ(0u, fs.open_files());
  EXPECT_EQ(export_.opens, export_.closes);
}

TEST_F(BridgeFsTest, OpenOfAMissingFileFailsAndTracksNothing) {
  BridgeFs fs(&session_, {});
  BridgeFs::OpenFile* f = nullptr;
  EXPECT_EQ(-ENOENT, fs.Open("/missing", O_RDONLY, &f));
  EXPECT_EQ(0u, fs.open_files());
}

// --stable-writes opens with O_SYNC and sends every WRITE FILE_SYNC: nothing to re-send.
TEST_F(BridgeFsTest, StableWritesAreFileSync) {
  BridgeFs fs(&session_, {.stable_writes = true});
  export_.nodes["/f"];
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  EXPECT_TRUE(Called("OPEN /f " + std::to_string(O_RDWR | O_SYNC)));
  ASSERT_EQ(3, fs.Write(f, "abc", 3, 0));
  EXPECT_TRUE(Called("WRITE3 /f 0 3 FILE_SYNC"));
  EXPECT_EQ("abc", export_.nodes["/f"].durable);
  EXPECT_EQ(0, fs.Release(f));
}

// A write larger than the server's wsize goes out in several WRITEs; read back in full.
TEST_F(BridgeFsTest, WritesAreSplitAtTheServersWriteSize) {
  BridgeFs fs(&session_, {.write_max = 4});
  export_.nodes["/f"];
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  ASSERT_EQ(10, fs.Write(f, "0123456789", 10, 0));
  EXPECT_TRUE(Called("WRITE3 /f 0 4 UNSTABLE"));
  EXPECT_TRUE(Called("WRITE3 /f 4 4 UNSTABLE"));
  EXPECT_TRUE(Called("WRITE3 /f 8 2 UNSTABLE"));
  char buf[16] = {};
  EXPECT_EQ(10, fs.Read(f, buf, sizeof buf, 0));  // short read at EOF
  EXPECT_EQ("0123456789", std::string(buf, 10));
  EXPECT_EQ(1u, session_.counters().writes.load());
  EXPECT_EQ(10u, session_.counters().write_bytes.load());
  EXPECT_EQ(10u, session_.counters().read_bytes.load());
  EXPECT_EQ(0, fs.Release(f));
}

// The server restarts between WRITE and fsync: fsync re-sends the kept write, and the
// data ends durable; the stats count the re-sent bytes.
TEST_F(BridgeFsTest, FsyncResendsWhatARestartedServerLost) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"];
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  ASSERT_EQ(5, fs.Write(f, "hello", 5, 0));
  EXPECT_EQ("", export_.nodes["/f"].durable);
  export_.Crash();
  EXPECT_EQ(0, fs.Fsync(f));
  EXPECT_EQ("hello", export_.nodes["/f"].durable);
  EXPECT_EQ(5u, session_.counters().resent_bytes.load());
  EXPECT_GE(session_.counters().commits.load(), 2u);
  EXPECT_EQ(0, fs.Release(f));
}

// close(2) reports a COMMIT that failed; the data stays kept and the next flush succeeds.
TEST_F(BridgeFsTest, FlushReportsAFailedCommitAndKeepsTheData) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"];
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  ASSERT_EQ(2, fs.Write(f, "ab", 2, 0));
  export_.fail_next = EIO;
  EXPECT_EQ(-EIO, fs.Flush(f));
  EXPECT_EQ(2u, f->log->kept_bytes());
  EXPECT_EQ(0, fs.Flush(f));
  EXPECT_EQ("ab", export_.nodes["/f"].durable);
  EXPECT_EQ(0, fs.Release(f));
}

// A truncate by path commits every open file's kept writes first, so none is re-sent
// after the truncate (which would extend the file again).
TEST_F(BridgeFsTest, TruncateByPathCommitsEveryOpenFileFirst) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"];
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  ASSERT_EQ(6, fs.Write(f, "abcdef", 6, 0));
  ASSERT_EQ(0, fs.Truncate("/f", 2, nullptr));
  EXPECT_EQ(0u, f->log->kept_bytes());
  auto commit = std::find(export_.calls.begin(), export_.calls.end(), "COMMIT3 /f");
  auto truncate = std::find(export_.calls.begin(), export_.calls.end(), "TRUNCATE /f 2");
  ASSERT_NE(export_.calls.end(), commit);
  ASSERT_NE(export_.calls.end(), truncate);
  EXPECT_LT(commit, truncate);
  export_.Crash();
  EXPECT_EQ(0, fs.Fsync(f));
  EXPECT_EQ("ab", export_.nodes["/f"].durable);
  EXPECT_EQ(0, fs.Release(f));
}

// A truncate through the open file uses that file's handle.
TEST_F(BridgeFsTest, TruncateThroughAnOpenFileUsesItsHandle) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"].cached = "abcdef";
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  ASSERT_EQ(0, fs.Truncate("/f", 3, f));
  EXPECT_TRUE(Called("FTRUNCATE /f 3"));
  EXPECT_EQ(0, fs.Release(f));
}

// A failed commit before a truncate fails the truncate, which is then not sent.
TEST_F(BridgeFsTest, TruncateFailsWhenTheCommitBeforeItFails) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"];
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  ASSERT_EQ(1, fs.Write(f, "a", 1, 0));
  export_.fail_next = ESTALE;
  EXPECT_EQ(-ESTALE, fs.Truncate("/f", 0, f));
  EXPECT_FALSE(Called("FTRUNCATE /f 0"));
  EXPECT_EQ(0, fs.Release(f));
}

// Each connection opens its own handle of an open file, once, on first use; Release
// closes every one of them.
class BridgeFsOneConnectionTest : public BridgeFsTest {
 protected:
  BridgeFsOneConnectionTest() : BridgeFsTest(1) {}
};

TEST_F(BridgeFsOneConnectionTest, HandlesAreOpenedOncePerConnection) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"].cached = "xyz";
  BridgeFs::OpenFile* f = MustOpen(fs, "/f");
  char buf[3];
  EXPECT_EQ(3, fs.Read(f, buf, 3, 0));
  EXPECT_EQ(3, fs.Read(f, buf, 3, 0));
  EXPECT_EQ(1, export_.opens);
  EXPECT_EQ(0, fs.Release(f));
  EXPECT_EQ(1, export_.closes);
}

// A handle opened lazily on a second connection repeats only the access mode, never
// O_TRUNC (that would truncate the file again).
TEST_F(BridgeFsTest, LazyOpenOnAnotherConnectionUsesTheAccessModeOnly) {
  BridgeFs fs(&session_, {});
  export_.nodes["/f"].cached = "xyz";
  BridgeFs::OpenFile* f = MustOpen(fs, "/f", O_RDWR | O_TRUNC);
  size_t first = f->fh[0] != nullptr ? 0 : 1;
  struct stat st;
  {
    NfsSession::Lease busy(session_, first);  // the next request must take the other connection
    std::thread([&] { EXPECT_EQ(0, fs.GetAttr("/f", f, &st)); }).join();
  }
  EXPECT_TRUE(Called("OPEN /f " + std::to_string(O_RDWR | O_TRUNC)));
  EXPECT_TRUE(Called("OPEN /f " + std::to_string(O_RDWR)));
  EXPECT_TRUE(Called("FSTAT /f"));
  EXPECT_EQ(2, export_.opens);
  EXPECT_EQ(0, fs.Release(f));
  EXPECT_EQ(2, export_.closes);
}

}  // namespace
}  // namespace slacker::nfs_bridge
