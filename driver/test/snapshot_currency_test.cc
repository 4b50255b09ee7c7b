// The decisions of snapshot caching, without any I/O: samples of the loop device's write
// counter go in, "is the last snapshot still the content" comes out.
#include "driver/snapshot_currency.h"
#include "driver/layer_record.h"

#include <gtest/gtest.h>

#include "loopdev/freeze.h"

namespace slacker::driver {
namespace {

using loopdev::kFreezeWriteSectors;
using loopdev::kThawWriteSectors;

LayerRecord Rec(bool dirty, const char* snapshot) {
  LayerRecord r;
  r.dirty = dirty;
  r.snapshot.assign(snapshot);
  return r;
}

Result<uint64_t> NoSample() { return Errorf(EIO, "no counter"); }

TEST(SnapshotCurrencyTest, AtRestTheRecordsDirtyFlagDecides) {
  EXPECT_TRUE(SnapshotCurrency::CurrentAtRest(Rec(false, "s1")));
  EXPECT_FALSE(SnapshotCurrency::CurrentAtRest(Rec(true, "s1")));
  EXPECT_FALSE(SnapshotCurrency::CurrentAtRest(Rec(false, ""))) << "no snapshot is never current";
}

TEST(SnapshotCurrencyTest, MountedTheCounterDecides) {
  SnapshotCurrency c;
  c.Mounted(Rec(false, "s1"), uint64_t{100});
  EXPECT_TRUE(c.CurrentWhileMounted(Rec(true, "s1"), uint64_t{100}));
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s1"), uint64_t{108})) << "a write since the mount";
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s1"), NoSample())) << "unknown counter";
}

TEST(SnapshotCurrencyTest, AMountOfADirtyVolumeIsNeverCurrent) {
  SnapshotCurrency c;
  c.Mounted(Rec(true, "s1"), uint64_t{100});
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s1"), uint64_t{100}));
  SnapshotCurrency unsampled;
  unsampled.Mounted(Rec(false, "s1"), NoSample());
  EXPECT_FALSE(unsampled.CurrentWhileMounted(Rec(true, "s1"), uint64_t{0}));
}

// The freeze/baseline fix (test/RELIABILITY.md): the baseline is the frozen sample plus
// the thaw's own write, so a writer the freeze blocked, resuming after the thaw, counts.
TEST(SnapshotCurrencyTest, TheBaselineOfASnapshotIsTheFrozenSamplePlusTheThaw) {
  SnapshotCurrency c;
  c.Mounted(Rec(true, ""), uint64_t{100});
  c.SnapshotTaken(uint64_t{200}, /*thawed=*/true);
  EXPECT_TRUE(c.CurrentWhileMounted(Rec(true, "s2"), 200 + kThawWriteSectors));
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s2"), 200 + kThawWriteSectors + 8))
      << "a write released by the thaw was taken as part of the snapshot";
  c.SnapshotTaken(uint64_t{300}, /*thawed=*/false);
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s3"), 300 + kThawWriteSectors)) << "a failed thaw";
  c.SnapshotTaken(NoSample(), /*thawed=*/true);
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s4"), kThawWriteSectors));
}

TEST(SnapshotCurrencyTest, PutIsCleanOnlyIfNothingWroteBeforeTheFreezeNorAfterTheThaw) {
  SnapshotCurrency c;
  c.Mounted(Rec(false, "s1"), uint64_t{100});
  EXPECT_TRUE(c.CleanWhenFrozen(100 + kFreezeWriteSectors));
  EXPECT_FALSE(c.CleanWhenFrozen(108 + kFreezeWriteSectors)) << "a write before the flush";
  EXPECT_FALSE(c.CleanWhenFrozen(std::nullopt));
  uint64_t frozen = 100 + kFreezeWriteSectors;
  EXPECT_TRUE(SnapshotCurrency::CleanAfterThaw(frozen, frozen + kThawWriteSectors));
  EXPECT_FALSE(SnapshotCurrency::CleanAfterThaw(frozen, frozen + kThawWriteSectors + 8)) << "a write after the thaw";
  EXPECT_FALSE(SnapshotCurrency::CleanAfterThaw(frozen, NoSample()));
}

TEST(SnapshotCurrencyTest, AnAdoptedMountIsUnknown) {
  SnapshotCurrency c;
  c.Mounted(Rec(false, "s1"), uint64_t{100});
  c.Forget();
  EXPECT_FALSE(c.CurrentWhileMounted(Rec(true, "s1"), uint64_t{100}));
  EXPECT_FALSE(c.CleanWhenFrozen(100 + kFreezeWriteSectors));
}

}  // namespace
}  // namespace slacker::driver

namespace slacker::driver {
namespace {

// Overlay form's record field: written only when set, so a record of an earlier release
// (no "lower") reads as a volume whose root is its content, and one in overlay form keeps
// its lower across a restart.
TEST(LayerRecordLower, RoundTripsAndDefaultsToNone) {
  auto old = LayerRecord::FromJson(R"({"format":1,"id":"a","kind":"rw","has_volume":true})");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->lower, "");
  EXPECT_EQ(old->ToJson().find("lower"), std::string::npos);
  LayerRecord r = *old;
  r.lower = "0123abcd";
  auto back = LayerRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->lower, "0123abcd");
}

}  // namespace
}  // namespace slacker::driver
