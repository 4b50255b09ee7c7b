// The GraphDriver contract (driver/graph_driver.h, moby's graphdriver.Driver, PROTOCOL.md)
// as one typed suite, run against SlackerDriver on FakeOs and against the plugin tests'
// FakeGraphDriver: what the plugin's tests assume of a driver is what the driver does.
// When the two disagree, the fake is wrong (or the driver is, and this is where it shows).
//
// FakeOs mounts are plain directories and its loop devices carry no file system, so a
// layer's files are seen only where they were unpacked: content is checked on base layers
// (Changes), and a child layer's only through its own Diff and size.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/io.h"
#include "driver/graph_driver.h"
#include "plugin/test/contract_drivers.h"
#include "registry_shim/tar.h"

namespace slacker::driver {
namespace {

// --- helpers ---------------------------------------------------------------------------

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string KindName(ChangeKind k) {
  switch (k) {
    case ChangeKind::kModify:
      return "C";
    case ChangeKind::kAdd:
      return "A";
    case ChangeKind::kDelete:
      return "D";
  }
  return "?";
}

// "A /etc" lines, so a mismatch prints readably.
std::vector<std::string> Lines(const std::vector<Change>& changes) {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(KindName(c.kind) + " " + c.path);
  return out;
}

// --- the suite -------------------------------------------------------------------------

template <typename Impl>
class GraphDriverContract : public DriverContractFixture<Impl> {
 protected:
  using DriverContractFixture<Impl>::d;

  // The whole Diff stream of `id`; "" (and a test failure) if it cannot be read.
  std::string DiffOf(const std::string& id, const std::string& parent = "") {
    auto s = d().Diff(id, parent);
    EXPECT_TRUE(s.ok()) << "diff " << id << ": " << s.status().message();
    if (!s.ok()) return "";
    auto all = ReadAtMost(**s, 64 << 20, "diff of layer " + id);
    EXPECT_TRUE(all.ok()) << all.status().message();
    return all.ok() ? *all : "";
  }

  Result<int64_t> Apply(const std::string& id, const std::string& parent, const std::string& tar) {
    StringSource src(tar);
    return d().ApplyDiff(id, parent, src);
  }

  // Whether `id` is held by a Get: an ApplyDiff to a held layer is refused with EBUSY (and
  // one to an idle layer goes ahead). Applies the empty tar when the layer is idle.
  bool Held(const std::string& id) {
    auto r = Apply(id, "", kEmptyTar);
    EXPECT_TRUE(r.ok() || r.status().code() == EBUSY) << r.status().message();
    return !r.ok() && r.status().code() == EBUSY;
  }
};

TYPED_TEST_SUITE(GraphDriverContract, ContractImplementations, ContractImplName);

TYPED_TEST(GraphDriverContract, CapabilitiesReproduceExactDiffs) {
  EXPECT_TRUE(this->d().GetCapabilities().reproduces_exact_diffs);
}

TYPED_TEST(GraphDriverContract, InitRefusesUnknownOrTooSmallOptions) {
  EXPECT_EQ(this->d().Init(this->dir_ + "/home", {"bogus=64M"}).code(), EINVAL);
  EXPECT_EQ(this->d().Init(this->dir_ + "/home", {"size=1M"}).code(), EINVAL);
  EXPECT_EQ(this->d().Init(this->dir_ + "/home", {"size=nonsense"}).code(), EINVAL);
  Status s = this->d().Init(this->dir_ + "/home2", {"size=64M", "slacker.size=48M"});
  EXPECT_TRUE(s.ok()) << s.message();
}

TYPED_TEST(GraphDriverContract, CreateExistsRemoveAndRemoveIsIdempotent) {
  auto& d = this->d();
  EXPECT_FALSE(d.Exists("a"));
  ASSERT_TRUE(d.Create(Req("a")).ok());
  EXPECT_TRUE(d.Exists("a"));
  ASSERT_TRUE(d.CreateReadWrite(Req("c", "a")).ok());
  EXPECT_TRUE(d.Exists("c"));
  EXPECT_TRUE(d.Remove("c").ok());
  EXPECT_FALSE(d.Exists("c"));
  EXPECT_TRUE(d.Remove("c").ok()) << "dockerd retries removals: a second Remove is not an error";
  EXPECT_TRUE(d.Remove("never-created").ok());
  EXPECT_TRUE(d.Exists("a"));
}

TYPED_TEST(GraphDriverContract, CreateOfAnExistingIdIsEexistAndKeepsTheLayer) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("a")).ok());
  ASSERT_TRUE(this->Apply("a", "", Tar({{"motd", kFile, "hi\n"}})).ok());
  EXPECT_EQ(d.Create(Req("a")).code(), EEXIST);
  EXPECT_EQ(d.CreateReadWrite(Req("a")).code(), EEXIST);
  ASSERT_TRUE(d.CreateReadWrite(Req("c")).ok());
  EXPECT_EQ(d.Create(Req("c")).code(), EEXIST);
  EXPECT_EQ(this->DiffOf("a"), Tar({{"motd", kFile, "hi\n"}}))
      << "a refused Create changed the layer";
}

TYPED_TEST(GraphDriverContract, CreateWithAMissingParentIsEnoentAndCreatesNothing) {
  auto& d = this->d();
  EXPECT_EQ(d.Create(Req("b", "nope")).code(), ENOENT);
  EXPECT_EQ(d.CreateReadWrite(Req("c", "nope")).code(), ENOENT);
  EXPECT_FALSE(d.Exists("b"));
  EXPECT_FALSE(d.Exists("c"));
  ASSERT_TRUE(d.Create(Req("p")).ok());
  ASSERT_TRUE(d.Remove("p").ok());
  EXPECT_EQ(d.Create(Req("b", "p")).code(), ENOENT) << "the parent was removed";
}

TYPED_TEST(GraphDriverContract, CreateRefusesBadIdsAndStorageOptions) {
  auto& d = this->d();
  for (const std::string& id :
       std::vector<std::string>{"", "../x", ".hidden", "a/b", "sp ace", std::string(kMaxLayerIdLength + 1, 'a')}) {
    EXPECT_EQ(d.Create(Req(id)).code(), EINVAL) << "id " << id;
    EXPECT_FALSE(d.Exists(id)) << "id " << id;
  }
  // dockerd's ids: 64 hex digits, "-init" for a container's init layer; the longest id.
  std::string hex64(64, 'f');
  EXPECT_TRUE(d.Create(Req(std::string(kMaxLayerIdLength, 'l'))).ok());
  EXPECT_TRUE(d.Create(Req(hex64)).ok());
  EXPECT_TRUE(d.CreateReadWrite(Req(hex64 + "-init", hex64)).ok());
  EXPECT_TRUE(d.Create(Req("Ab9._-x")).ok());
  CreateRequest r = Req("q");
  r.storage_opt["iops"] = "5";
  EXPECT_EQ(d.CreateReadWrite(r).code(), EINVAL);
  r.storage_opt = {{"size", "1M"}};
  EXPECT_EQ(d.CreateReadWrite(r).code(), EINVAL);
  r.storage_opt = {{"size", "lots"}};
  EXPECT_EQ(d.CreateReadWrite(r).code(), EINVAL);
  EXPECT_FALSE(d.Exists("q"));
  r.storage_opt = {{"size", "50M"}};
  EXPECT_TRUE(d.CreateReadWrite(r).ok());
}

TYPED_TEST(GraphDriverContract, GetReturnsAnExistingDirectoryStableAcrossGets) {
  auto& d = this->d();
  ASSERT_TRUE(d.CreateReadWrite(Req("c")).ok());
  auto p1 = d.Get("c", "");
  ASSERT_TRUE(p1.ok()) << p1.status().message();
  EXPECT_TRUE(p1->starts_with("/")) << *p1;
  EXPECT_TRUE(IsDirectory(*p1)) << *p1;
  auto p2 = d.Get("c", "");
  ASSERT_TRUE(p2.ok()) << p2.status().message();
  EXPECT_EQ(*p2, *p1);
  ASSERT_TRUE(d.Put("c").ok());
  ASSERT_TRUE(d.Put("c").ok());
  auto p3 = d.Get("c", "");
  ASSERT_TRUE(p3.ok()) << p3.status().message();
  EXPECT_EQ(*p3, *p1) << "the path survives an unmount";
  ASSERT_TRUE(d.Put("c").ok());
}

TYPED_TEST(GraphDriverContract, TwoLayersGetDifferentDirectories) {
  auto& d = this->d();
  ASSERT_TRUE(d.CreateReadWrite(Req("c1")).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c2")).ok());
  auto p1 = d.Get("c1", "");
  auto p2 = d.Get("c2", "");
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_NE(*p1, *p2);
  EXPECT_TRUE(d.Put("c1").ok());
  EXPECT_TRUE(d.Put("c2").ok());
}

TYPED_TEST(GraphDriverContract, GetAndPutOfAMissingLayerAreEnoent) {
  auto& d = this->d();
  auto r = d.Get("ghost", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_NE(r.status().message().find("ghost"), std::string::npos) << r.status().message();
  EXPECT_EQ(d.Put("ghost").code(), ENOENT);
  ASSERT_TRUE(d.CreateReadWrite(Req("c")).ok());
  ASSERT_TRUE(d.Remove("c").ok());
  EXPECT_EQ(d.Get("c", "").status().code(), ENOENT) << "a removed layer";
}

// Get/Put are refcounted: the layer stays held until the last Put. Held shows through
// ApplyDiff, which refuses a held layer.
TYPED_TEST(GraphDriverContract, GetPutRefcountHoldsUntilTheLastPut) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("l")).ok());
  EXPECT_FALSE(this->Held("l"));
  ASSERT_TRUE(d.Get("l", "").ok());
  ASSERT_TRUE(d.Get("l", "").ok());
  EXPECT_TRUE(this->Held("l"));
  ASSERT_TRUE(d.Put("l").ok());
  EXPECT_TRUE(this->Held("l")) << "one Get is still outstanding";
  ASSERT_TRUE(d.Put("l").ok());
  EXPECT_FALSE(this->Held("l"));
}

// dockerd may Put a layer more often than it got it: no error, and no underflow (the next
// Get holds the layer again).
TYPED_TEST(GraphDriverContract, AnExtraPutIsHarmlessAndDoesNotUnderflow) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("l")).ok());
  ASSERT_TRUE(d.Get("l", "").ok());
  ASSERT_TRUE(d.Put("l").ok());
  EXPECT_TRUE(d.Put("l").ok());
  EXPECT_TRUE(d.Put("l").ok());
  ASSERT_TRUE(d.Get("l", "").ok());
  EXPECT_TRUE(this->Held("l")) << "the extra Puts were counted: the Get does not hold the layer";
  ASSERT_TRUE(d.Put("l").ok());
  EXPECT_FALSE(this->Held("l"));
}

TYPED_TEST(GraphDriverContract, RemoveOfAHeldLayerRemovesIt) {
  auto& d = this->d();
  ASSERT_TRUE(d.CreateReadWrite(Req("c")).ok());
  ASSERT_TRUE(d.Get("c", "").ok());
  ASSERT_TRUE(d.Remove("c").ok());
  EXPECT_FALSE(d.Exists("c"));
  EXPECT_EQ(d.Get("c", "").status().code(), ENOENT);
  // The id can be used again, for a new, empty layer.
  ASSERT_TRUE(d.CreateReadWrite(Req("c")).ok());
  EXPECT_EQ(this->DiffOf("c"), kEmptyTar);
  EXPECT_FALSE(this->Held("c")) << "the new layer inherited the old one's Get";
}

TYPED_TEST(GraphDriverContract, GetMetadataOfAMissingLayerIsEnoent) {
  auto& d = this->d();
  EXPECT_EQ(d.GetMetadata("ghost").status().code(), ENOENT);
  ASSERT_TRUE(d.Create(Req("a")).ok());
  auto m = d.GetMetadata("a");
  EXPECT_TRUE(m.ok()) << m.status().message();
  ASSERT_TRUE(d.Remove("a").ok());
  EXPECT_EQ(d.GetMetadata("a").status().code(), ENOENT);
}

TYPED_TEST(GraphDriverContract, AnUnchangedLayerIsEmpty) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("a")).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c", "a")).ok());
  for (const char* id : {"a", "c"}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(this->DiffOf(id), kEmptyTar);
    auto changes = d.Changes(id, "");
    ASSERT_TRUE(changes.ok()) << changes.status().message();
    EXPECT_EQ(Lines(*changes), std::vector<std::string>{});
    auto size = d.DiffSize(id, "");
    ASSERT_TRUE(size.ok()) << size.status().message();
    EXPECT_EQ(*size, 0);
  }
}

TYPED_TEST(GraphDriverContract, DiffChangesAndDiffSizeOfAMissingLayerAreEnoent) {
  auto& d = this->d();
  EXPECT_EQ(d.Diff("ghost", "").status().code(), ENOENT);
  EXPECT_EQ(d.Changes("ghost", "").status().code(), ENOENT);
  EXPECT_EQ(d.DiffSize("ghost", "").status().code(), ENOENT);
  EXPECT_EQ(this->Apply("ghost", "", kEmptyTar).status().code(), ENOENT);
}

// What dockerd relies on for push and save (ReproducesExactDiffs): Diff returns the bytes
// ApplyDiff received; ApplyDiff's size is what DiffSize reports; Changes lists the tree.
TYPED_TEST(GraphDriverContract, ApplyDiffThenDiffChangesAndDiffSizeAgree) {
  auto& d = this->d();
  std::string tar = Tar({{"etc/", kDir, ""},
                         {"etc/motd", kFile, "hello\n"},
                         {"usr/bin/tool", kFile, std::string(3000, 'x')},
                         {"empty", kFile, ""}});
  ASSERT_TRUE(d.Create(Req("base")).ok());
  auto size = this->Apply("base", "", tar);
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_EQ(*size, 6 + 3000);
  EXPECT_TRUE(this->DiffOf("base") == tar) << "Diff does not reproduce the applied tar";
  EXPECT_TRUE(this->DiffOf("base") == tar) << "a second Diff differs";
  auto changes = d.Changes("base", "");
  ASSERT_TRUE(changes.ok()) << changes.status().message();
  EXPECT_EQ(Lines(*changes), (std::vector<std::string>{"A /empty", "A /etc", "A /etc/motd",
                                                       "A /usr", "A /usr/bin", "A /usr/bin/tool"}));
  auto diff_size = d.DiffSize("base", "");
  ASSERT_TRUE(diff_size.ok()) << diff_size.status().message();
  EXPECT_EQ(*diff_size, *size);
  EXPECT_TRUE(d.Exists("base"));
}

// dockerd's pull: each layer applied on top of the previous one, named as its parent.
TYPED_TEST(GraphDriverContract, ApplyDiffOnAParentKeepsEachLayersOwnBytes) {
  auto& d = this->d();
  std::string base_tar = Tar({{"etc/", kDir, ""}, {"etc/motd", kFile, "hello\n"}});
  std::string top_tar = Tar({{"etc/", kDir, ""}, {"etc/issue", kFile, "slacker\n"}});
  ASSERT_TRUE(d.Create(Req("base")).ok());
  ASSERT_TRUE(this->Apply("base", "", base_tar).ok());
  ASSERT_TRUE(d.Create(Req("top", "base")).ok());
  auto size = this->Apply("top", "base", top_tar);
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_EQ(*size, 8);
  EXPECT_TRUE(this->DiffOf("top", "base") == top_tar);
  EXPECT_TRUE(this->DiffOf("base") == base_tar);
  auto diff_size = d.DiffSize("top", "base");
  ASSERT_TRUE(diff_size.ok()) << diff_size.status().message();
  EXPECT_EQ(*diff_size, 8);
}

TYPED_TEST(GraphDriverContract, ApplyDiffOfAnEmptyOrCorruptStreamFailsAndLeavesTheLayerEmpty) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("l")).ok());
  auto empty = this->Apply("l", "", "");
  ASSERT_FALSE(empty.ok()) << "an empty stream (dockerd's retry with a consumed body) was applied";
  EXPECT_EQ(empty.status().code(), EINVAL);
  std::string corrupt(2048, 'x');
  auto bad = this->Apply("l", "", corrupt);
  ASSERT_FALSE(bad.ok()) << "a stream that is not a tar was applied";
  EXPECT_EQ(bad.status().code(), EINVAL) << bad.status().message();
  EXPECT_EQ(this->DiffOf("l"), kEmptyTar);
  auto ok = this->Apply("l", "", kEmptyTar);
  ASSERT_TRUE(ok.ok()) << "the empty layer is a valid tar: " << ok.status().message();
  EXPECT_EQ(*ok, 0);
}

// `docker run --rm IMG` (PROTOCOL.md, call sequences): the init layer and the container
// layer on the image, each Get and Put, then both removed.
TYPED_TEST(GraphDriverContract, DockerRunSequence) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("img")).ok());
  ASSERT_TRUE(this->Apply("img", "", Tar({{"etc/", kDir, ""}, {"etc/motd", kFile, "hi\n"}})).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c-init", "img")).ok());
  auto init_dir = d.Get("c-init", "");
  ASSERT_TRUE(init_dir.ok()) << init_dir.status().message();
  ASSERT_TRUE(d.Put("c-init").ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c", "c-init")).ok());
  auto dir = d.Get("c", "");
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  EXPECT_NE(*dir, *init_dir);
  EXPECT_TRUE(IsDirectory(*dir)) << *dir;
  ASSERT_TRUE(d.Put("c").ok());
  EXPECT_TRUE(d.Remove("c").ok());
  EXPECT_TRUE(d.Remove("c-init").ok());
  EXPECT_FALSE(d.Exists("c"));
  EXPECT_FALSE(d.Exists("c-init"));
  EXPECT_TRUE(d.Exists("img"));
}

// `docker commit C`: the container layer's Diff is applied to a new image layer on the
// same image, which must then Diff to the same bytes (its DiffID), as must C's Diff again.
TYPED_TEST(GraphDriverContract, CommitRoundTripReproducesTheBytes) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("img")).ok());
  ASSERT_TRUE(this->Apply("img", "", Tar({{"etc/", kDir, ""}, {"etc/motd", kFile, "hi\n"}})).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c-init", "img")).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c", "c-init")).ok());
  ASSERT_TRUE(d.Get("c", "").ok());
  std::string tar = this->DiffOf("c", "c-init");
  ASSERT_FALSE(tar.empty());
  ASSERT_TRUE(d.Create(Req("committed", "img")).ok());
  auto size = this->Apply("committed", "img", tar);
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_TRUE(this->DiffOf("committed", "img") == tar) << "the committed layer diffs differently";
  EXPECT_TRUE(this->DiffOf("c", "c-init") == tar) << "a second Diff of the container differs";
  EXPECT_TRUE(d.Put("c").ok());
}

// dockerd is stopping: Cleanup unmounts everything; later Puts of what it held are
// harmless and the layers are still there to Get.
TYPED_TEST(GraphDriverContract, CleanupReleasesEverythingAndKeepsTheLayers) {
  auto& d = this->d();
  ASSERT_TRUE(d.Create(Req("l")).ok());
  ASSERT_TRUE(d.CreateReadWrite(Req("c", "l")).ok());
  auto p = d.Get("c", "");
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_TRUE(d.Get("l", "").ok());
  ASSERT_TRUE(d.Get("l", "").ok());
  Status s = d.Cleanup();
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_FALSE(this->Held("l")) << "Cleanup left the layer held";
  EXPECT_TRUE(d.Put("l").ok());
  EXPECT_TRUE(d.Put("c").ok());
  EXPECT_TRUE(d.Exists("l"));
  EXPECT_TRUE(d.Exists("c"));
  // dockerd starts again: Init with a new home, and the layers are used as before.
  s = d.Init(this->dir_ + "/home-again", {});
  EXPECT_TRUE(s.ok()) << s.message();
  auto again = d.Get("c", "");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*again, *p);
  EXPECT_TRUE(d.Put("c").ok());
}

}  // namespace
}  // namespace slacker::driver
