#include "common/nfs_url.h"

#include <gtest/gtest.h>

namespace slacker {
namespace {

// The export path is what follows the host, without trailing slashes or URL arguments.
TEST(ParseNfsUrlTest, SplitsHostAndExport) {
  auto u = ParseNfsUrl("nfs://10.0.0.5/srv/slacker//?version=3");
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ("10.0.0.5", u->server);
  EXPECT_EQ("/srv/slacker", u->export_path);
  auto root = ParseNfsUrl("nfs://host/");
  ASSERT_TRUE(root.ok());
  EXPECT_EQ("/", root->export_path);
}

TEST(ParseNfsUrlTest, RefusesWhatIsNotNfsHostExport) {
  for (const char* bad : {"http://h/x", "nfs://", "nfs:///x", "nfs://host", "/srv/x", ""}) {
    auto u = ParseNfsUrl(bad);
    EXPECT_FALSE(u.ok()) << bad;
    if (!u.ok()) {
      EXPECT_EQ(EINVAL, u.status().code()) << bad;
    }
  }
}

}  // namespace
}  // namespace slacker
