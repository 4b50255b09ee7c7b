// The store's layout: the paths it spells are the ones existing stores have (an upgrade
// must find its files), and the parsers give back what the builders put in.
#include <gtest/gtest.h>

#include "common/hash.h"
#include "storage_backend/store_layout.h"

namespace slacker::storage_backend {
namespace {

const std::string kSnap = "0123456789abcdef0123456789abcdef";
const std::string kKey = std::string(64, 'a');

// The paths stores of earlier releases hold: changing one strands data.
TEST(StoreLayout, PathsAreThoseOfExistingStores) {
  EXPECT_EQ(std::string(kStoreInfoFile), "store.json");
  EXPECT_EQ(SnapshotFile(kSnap, kImageSuffix), "snapshots/" + kSnap + ".img");
  EXPECT_EQ(SnapshotFile(kSnap, kMetaSuffix), "snapshots/" + kSnap + ".json");
  EXPECT_EQ(SnapshotFile(kSnap, kSkeletonSuffix), "snapshots/" + kSnap + ".skel");
  EXPECT_EQ(SnapshotFile(kSnap, kGcTombstoneSuffix), "snapshots/" + kSnap + ".gc");
  EXPECT_EQ(SnapshotImageTempName(kSnap), kSnap + ".img.tmp");
  EXPECT_EQ(VolumeFile("w1", "layer-1"), "volumes/w1/layer-1.img");
  EXPECT_EQ(VolumeHandOverName("layer-1"), "layer-1.img.handover");
  EXPECT_EQ(RefFile("w1", kSnap), "refs/w1/" + kSnap);
  EXPECT_EQ(LeaseFile("w1"), "leases/w1.json");
  EXPECT_EQ(TemplateFile(1 << 20), "templates/ext4-1048576.img");
  EXPECT_EQ(std::string(kClusterKeyFile), "cluster.key");
  EXPECT_EQ(std::string(kLocksDir) + "/" + LeaseName(kGcLockName), "locks/gc.json");
  EXPECT_EQ(ChainFile(kKey), "chains/" + kKey);
  EXPECT_EQ(NameFile("default", "app"), "containerd/names/" + Sha256Hex("default/app") + ".json");
}

TEST(StoreLayout, ChainIdNamesAreSharedByEveryNamespace) {
  EXPECT_EQ(NameIndexKey("a", "sha256:beef"), "sha256:beef");
  EXPECT_EQ(NameFileName("a", "sha256:beef"), NameFileName("b", "sha256:beef"));
  EXPECT_NE(NameFileName("a", "app"), NameFileName("b", "app"));
}

TEST(StoreLayout, ParsersRoundTripTheBuilders) {
  EXPECT_EQ(SnapshotIdOf(kSnap + kImageSuffix, kImageSuffix), kSnap);
  EXPECT_EQ(SnapshotIdOf(kSnap + kGcTombstoneSuffix, kGcTombstoneSuffix), kSnap);
  EXPECT_EQ(LayerNameOf(VolumeName("layer-1"), kImageSuffix), "layer-1");
  EXPECT_EQ(LayerOfHandOverName(VolumeHandOverName("layer-1")), "layer-1");
  EXPECT_EQ(LayerOfVolumeCloneTemp(CloneTempName(VolumeName("layer-1"), "beef")), "layer-1");
  EXPECT_EQ(SnapshotPrefixOf(kSnap + ".skel"), kSnap);
  EXPECT_EQ(SnapshotPrefixOf("nodot"), "");
}

TEST(StoreLayout, ParsersRejectBadIds) {
  EXPECT_EQ(SnapshotIdOf("ABCDEF0123456789abcdef0123456789.img", kImageSuffix), std::nullopt) << "upper case";
  EXPECT_EQ(SnapshotIdOf(kSnap + ".img.tmp", kImageSuffix), std::nullopt) << "a publish in flight";
  EXPECT_EQ(SnapshotIdOf("abc.img", kImageSuffix), std::nullopt) << "too short";
  EXPECT_EQ(LayerNameOf(".hidden.img", kImageSuffix), std::nullopt);
  EXPECT_EQ(LayerNameOf("a/b.img", kImageSuffix), std::nullopt);
  EXPECT_EQ(LayerOfHandOverName("..img.handover"), std::nullopt);
  EXPECT_EQ(LayerOfVolumeCloneTemp("layer-1.img"), std::nullopt);
  EXPECT_FALSE(IsValidChainKey(std::string(63, 'a')));
  EXPECT_FALSE(IsValidChainKey(std::string(64, 'A')));
  EXPECT_FALSE(IsValidChainKey("../" + std::string(61, 'a')));
  EXPECT_TRUE(IsValidChainKey(kKey));
  EXPECT_FALSE(IsValidLayerName(std::string(256, 'a')));
  EXPECT_FALSE(IsValidLayerName(""));
}

TEST(StoreLayout, TempNamesAreRecognised) {
  EXPECT_TRUE(IsTempName(SnapshotImageTempName(kSnap)));
  EXPECT_TRUE(IsTempName(CloneTempName("x.img", "beef")));
  EXPECT_TRUE(IsTempName(kKey + ".tmp-1234"));
  EXPECT_FALSE(IsTempName(kKey));
  EXPECT_FALSE(IsTempName(kSnap + ".img"));
}

}  // namespace
}  // namespace slacker::storage_backend
