// The SnapshotDriver contract (driver/graph_driver.h: CommitSnapshot, CreateFromSnapshot,
// ListLayers), run against SlackerDriver on FakeOs and the plugin tests' FakeGraphDriver
// (plugin/test/contract_drivers.h), so the fake the front ends' tests use cannot drift.
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/hash.h"
#include "common/io.h"
#include "driver/graph_driver.h"
#include "plugin/test/contract_drivers.h"
#include "registry_shim/reference.h"

namespace slacker::driver {

// Readable failures (gtest finds these by argument-dependent lookup).
void PrintTo(const CommittedSnapshot& c, std::ostream* os) {
  *os << "{snapshot " << c.snapshot << ", bytes " << c.bytes << ", parent_chain " << c.parent_chain << "}";
}
void PrintTo(const LayerSnapshot& l, std::ostream* os) {
  *os << "{" << l.id << " on " << l.parent << (l.read_write ? " rw" : " ro") << ", snapshot " << l.snapshot << "}";
}

namespace {

template <typename Impl>
class SnapshotDriverContract : public DriverContractFixture<Impl> {
 protected:
  using DriverContractFixture<Impl>::d;
  SnapshotDriver& snaps() { return this->impl_->snapshots(); }

  // Image layer `id` on `parent` holding `tar`.
  void Image(const std::string& id, const std::string& parent, const std::string& tar) {
    ASSERT_TRUE(d().Create(Req(id, parent)).ok());
    StringSource src(tar);
    auto r = d().ApplyDiff(id, parent, src);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  // A container layer `id` on `parent`, mounted (Get); returns its directory.
  std::string Container(const std::string& id, const std::string& parent) {
    EXPECT_TRUE(d().CreateReadWrite(Req(id, parent)).ok());
    auto dir = d().Get(id, "");
    EXPECT_TRUE(dir.ok()) << dir.status().message();
    return dir.ok() ? *dir : "";
  }
  CommittedSnapshot Commit(const std::string& id) {
    auto c = snaps().CommitSnapshot(id);
    EXPECT_TRUE(c.ok()) << "commit " << id << ": " << c.status().message();
    return c.ok() ? *c : CommittedSnapshot{};
  }
  std::string DiffOf(const std::string& id) {
    auto s = d().Diff(id, "");
    EXPECT_TRUE(s.ok()) << s.status().message();
    if (!s.ok()) return "";
    auto all = ReadAtMost(**s, 1 << 20, "diff of layer " + id);
    return all.ok() ? *all : "";
  }
  // The snapshot ListLayers reports for `id`; nullopt when it is not listed.
  std::optional<LayerSnapshot> Listed(const std::string& id) {
    auto all = snaps().ListLayers();
    EXPECT_TRUE(all.ok()) << all.status().message();
    if (!all.ok()) return std::nullopt;
    for (const auto& l : *all) {
      if (l.id == id) return l;
    }
    return std::nullopt;
  }
};

TYPED_TEST_SUITE(SnapshotDriverContract, ContractImplementations, ContractImplName);

TYPED_TEST(SnapshotDriverContract, CommitOfAWrittenLayerIsCachedUntilTheNextWrite) {
  this->Image("img", "", Tar({{"etc/", kDir, ""}, {"etc/motd", kFile, "hi\n"}}));
  std::string dir = this->Container("c", "img");
  ASSERT_NE(dir, "");
  CommittedSnapshot first = this->Commit("c");
  EXPECT_TRUE(storage_backend::IsValidSnapshotId(first.snapshot)) << first.snapshot;
  auto img_chain = this->d().ChainId("img");
  ASSERT_TRUE(img_chain.ok()) << img_chain.status().message();
  EXPECT_EQ(first.parent_chain, *img_chain) << "a container's commit goes on top of its image";
  EXPECT_EQ(this->Commit("c"), first) << "nothing written: the same snapshot (snapshot caching)";
  this->impl_->Write("c", dir);
  CommittedSnapshot second = this->Commit("c");
  EXPECT_NE(second.snapshot, first.snapshot) << "a write since the last commit needs a new snapshot";
  EXPECT_EQ(second.parent_chain, first.parent_chain);
  EXPECT_EQ(this->Listed("c")->snapshot, second.snapshot);
  EXPECT_TRUE(this->d().Put("c").ok());
}

TYPED_TEST(SnapshotDriverContract, CommitOfAnAppliedLayerIsItsSnapshotAndSize) {
  this->Image("base", "", Tar({{"etc/motd", kFile, "hello\n"}, {"tool", kFile, std::string(3000, 'x')}}));
  CommittedSnapshot c = this->Commit("base");
  EXPECT_TRUE(storage_backend::IsValidSnapshotId(c.snapshot)) << c.snapshot;
  EXPECT_EQ(c.bytes, 6u + 3000u);
  EXPECT_EQ(c.parent_chain, "");
  EXPECT_EQ(this->Commit("base"), c);
  EXPECT_EQ(this->Listed("base")->snapshot, c.snapshot);
}

TYPED_TEST(SnapshotDriverContract, CommitOfAMissingOrEmptyLayerFails) {
  EXPECT_EQ(this->snaps().CommitSnapshot("ghost").status().code(), ENOENT);
  ASSERT_TRUE(this->d().CreateReadWrite(Req("fresh")).ok());
  EXPECT_EQ(this->snaps().CommitSnapshot("fresh").status().code(), EINVAL) << "never written: nothing to commit";
  EXPECT_EQ(this->Listed("fresh")->snapshot, "");
}

// The snapshotter's Commit: a container's snapshot becomes an image layer on the same
// parent, holding that snapshot (no clone), and pushes as a reference tar to it.
TYPED_TEST(SnapshotDriverContract, CreateFromSnapshotHoldsTheSnapshotWithoutACopy) {
  this->Image("img", "", Tar({{"etc/", kDir, ""}, {"etc/motd", kFile, "hi\n"}}));
  ASSERT_NE(this->Container("c", "img"), "");
  CommittedSnapshot c = this->Commit("c");
  ASSERT_TRUE(this->d().Create(Req("layer", "img")).ok());
  auto size = this->snaps().CreateFromSnapshot({"layer", c.snapshot, 42, c.parent_chain});
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_EQ(*size, 42);
  EXPECT_EQ(this->Listed("layer"), (LayerSnapshot{"layer", "img", false, c.snapshot}));
  std::string diff = this->DiffOf("layer");
  auto ref = registry_shim::ParseReferenceTar(diff);
  ASSERT_TRUE(ref.ok()) << "Diff of the layer is not a reference tar: " << ref.status().message();
  EXPECT_EQ(ref->snapshot, c.snapshot);
  EXPECT_EQ(ref->bytes, 42u);
  EXPECT_EQ(ref->parent, c.parent_chain);
  auto chain = this->d().ChainId("layer");
  ASSERT_TRUE(chain.ok()) << chain.status().message();
  EXPECT_EQ(*chain, registry_shim::NextChainId(c.parent_chain, Sha256Digest(diff)));
  EXPECT_EQ(this->Commit("layer"), (CommittedSnapshot{c.snapshot, 42, c.parent_chain}));
  auto dir = this->d().Get("layer", "");
  EXPECT_TRUE(dir.ok()) << dir.status().message();
  EXPECT_TRUE(this->d().Put("layer").ok());
  EXPECT_TRUE(this->d().Put("c").ok());
}

TYPED_TEST(SnapshotDriverContract, CreateFromSnapshotChecksTheLayerTheSnapshotAndTheParent) {
  auto& s = this->snaps();
  this->Image("img", "", Tar({{"motd", kFile, "a\n"}}));
  this->Image("other", "", Tar({{"motd", kFile, "b\n"}}));
  CommittedSnapshot c = this->Commit("img");
  ASSERT_TRUE(this->d().Create(Req("l", "other")).ok());
  EXPECT_EQ(s.CreateFromSnapshot({"ghost", c.snapshot, 1, c.parent_chain}).status().code(), ENOENT);
  EXPECT_EQ(s.CreateFromSnapshot({"l", "../x", 1, std::nullopt}).status().code(), EINVAL);
  EXPECT_EQ(s.CreateFromSnapshot({"l", std::string(32, 'e'), 1, std::nullopt}).status().code(), ENOENT)
      << "a snapshot that is not on the store";
  auto other_chain = this->d().ChainId("other");
  ASSERT_TRUE(other_chain.ok()) << other_chain.status().message();
  std::string img_chain = *this->d().ChainId("img");
  EXPECT_EQ(s.CreateFromSnapshot({"l", c.snapshot, 1, img_chain}).status().code(), EACCES)
      << "made on top of img, created on top of other";
  EXPECT_EQ(this->Listed("l")->snapshot, "") << "a refused create changed the layer";
  ASSERT_TRUE(this->d().Get("l", "").ok());
  EXPECT_EQ(s.CreateFromSnapshot({"l", c.snapshot, 1, *other_chain}).status().code(), EBUSY);
  ASSERT_TRUE(this->d().Put("l").ok());
  auto vouched = s.CreateFromSnapshot({"l", c.snapshot, 1, std::nullopt});
  EXPECT_TRUE(vouched.ok()) << "no binding given: the caller vouches; " << vouched.status().message();
}

TYPED_TEST(SnapshotDriverContract, ListLayersReportsEveryLayerSortedById) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("b")).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("a", "b")).ok());
  ASSERT_TRUE(d.Create(Req("gone")).ok());
  ASSERT_TRUE(d.Remove("gone").ok());
  auto all = this->snaps().ListLayers();
  ASSERT_TRUE(all.ok()) << all.status().message();
  EXPECT_EQ(*all, (std::vector<LayerSnapshot>{{"a", "b", true, ""}, {"b", "", false, ""}}));
}

}  // namespace
}  // namespace slacker::driver
