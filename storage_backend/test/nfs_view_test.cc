// NfsView's parts that need no NFS server: finding a kernel NFS mount of the export in
// mountinfo (the URL is parsed by common/nfs_url.h).
#include <gtest/gtest.h>

#include "storage_backend/nfs_view.h"

namespace slacker::storage_backend {
namespace {

// Only an nfs/nfs4 mount of exactly HOST:/PATH (its root, not a subtree) counts; the
// topmost one wins.
TEST(NfsView, FindsTheKernelMountOfTheExport) {
  const char* text =
      "36 25 0:32 / /mnt/other rw - nfs storage1:/srv/other rw,vers=3\n"
      "37 25 0:33 /sub /mnt/sub rw - nfs storage1:/srv/slacker rw,vers=3\n"
      "38 25 0:34 / /mnt/fuse rw - fuse.slacker-nfs nfs://storage1/srv/slacker rw\n"
      "39 25 0:35 / /mnt/slacker rw - nfs4 storage1:/srv/slacker rw,vers=4.2\n"
      "40 25 0:36 / /mnt/slacker2 rw - nfs storage1:/srv/slacker/ rw,vers=3\n";
  auto mounts = loopdev::ParseMountInfo(text);
  ASSERT_TRUE(mounts.ok()) << mounts.status().message();
  EXPECT_EQ(FindKernelNfsMount(*mounts, "storage1", "/srv/slacker"), "/mnt/slacker2");
  EXPECT_EQ(FindKernelNfsMount(*mounts, "storage2", "/srv/slacker"), "");
  EXPECT_EQ(FindKernelNfsMount(*mounts, "storage1", "/srv"), "");
  mounts->pop_back();
  EXPECT_EQ(FindKernelNfsMount(*mounts, "storage1", "/srv/slacker"), "/mnt/slacker");
}

}  // namespace
}  // namespace slacker::storage_backend
