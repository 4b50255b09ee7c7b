// The host state directory's layout: the paths are those earlier releases wrote (a
// restarted slackerd must find its records), and the name parsers undo the builders.
#include "common/state_layout.h"

#include <gtest/gtest.h>

namespace slacker::common {
namespace {

TEST(StateLayout, PathsAreThoseOfEarlierReleases) {
  const std::string s = "/var/lib/slacker";
  EXPECT_EQ(LayerRecordFile(s, "abc"), "/var/lib/slacker/layers/abc.json");
  EXPECT_EQ(LayerRemovingFile(s, "abc"), "/var/lib/slacker/layers/abc.removing");
  EXPECT_EQ(LayerReferenceFile(s, "abc"), "/var/lib/slacker/layers/abc.ref");
  EXPECT_EQ(MountPoint(s, "abc"), "/var/lib/slacker/mnt/abc");
  EXPECT_EQ(ViewsDir(s), "/var/lib/slacker/views");
  EXPECT_EQ(CtlViewsDir(s), "/var/lib/slacker/ctl-views");
  EXPECT_EQ(EmptyDir(s), "/var/lib/slacker/empty");
  EXPECT_EQ(SpoolFile(s, "abc"), "/var/lib/slacker/spool/abc.tar");
  EXPECT_EQ(PluginFile(s), "/var/lib/slacker/plugin.json");
  EXPECT_EQ(StateLockFile(s), "/var/lib/slacker/lock");
  EXPECT_EQ(EmbeddedStoreDir(s), "/var/lib/slacker/store");
  EXPECT_EQ(EmbeddedStoreImage(s), "/var/lib/slacker/store.img");
  EXPECT_EQ(NfsMountPoint(s), "/var/lib/slacker/nfs");
  EXPECT_EQ(SnapshotterCatalog(s), "/var/lib/slacker/catalog.json");
  EXPECT_EQ(SnapshotterDriverState(s), "/var/lib/slacker/driver");
}

TEST(StateLayout, RecordNamesRoundTrip) {
  const std::string s = "/st";
  auto name = [](const std::string& path) { return path.substr(path.rfind('/') + 1); };
  EXPECT_EQ(LayerIdOfRecordName(name(LayerRecordFile(s, "c0ffee-init"))), "c0ffee-init");
  EXPECT_EQ(LayerIdOfRemovingName(name(LayerRemovingFile(s, "c0ffee"))), "c0ffee");
  EXPECT_EQ(LayerIdOfRecordName(name(LayerRemovingFile(s, "c0ffee"))), std::nullopt);
  EXPECT_EQ(LayerIdOfRemovingName(name(LayerRecordFile(s, "c0ffee"))), std::nullopt);
}

TEST(StateLayout, TemporariesAndBareSuffixesAreNotRecords) {
  EXPECT_EQ(LayerIdOfRecordName("abc.json.tmp-1234"), std::nullopt);
  EXPECT_EQ(LayerIdOfRecordName(".json"), std::nullopt);
  EXPECT_EQ(LayerIdOfRemovingName(".removing"), std::nullopt);
  EXPECT_EQ(LayerIdOfRecordName("abc.ref"), std::nullopt);
  EXPECT_TRUE(IsStateTempName("abc.json.tmp-1234"));
  EXPECT_TRUE(IsStateTempName("abc.skel.tmp"));
  EXPECT_FALSE(IsStateTempName("abc.json"));
}

}  // namespace
}  // namespace slacker::common
