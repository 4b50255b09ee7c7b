// SnapshotService over a fake GraphDriver: catalog, kinds, error codes, labels, remote
// snapshots through the shared-store index. No root needed.
#include "snapshotter/snapshot_service.h"

#include <gtest/gtest.h>

#include <set>

#include <fcntl.h>
#include <sys/stat.h>

#include <functional>
#include <future>
#include <mutex>

#include "common/files.h"
#include "common/io.h"
#include "common/log.h"
#include "os/fake_os.h"
#include "registry_shim/reference.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/grpc_service.h"
#include "storage_backend/local_backend.h"

namespace slacker::snapshotter {
namespace {

const std::string kStore(32, 'a');
namespace pb = containerd::services::snapshots::v1;

// Layers are directories; CommitSnapshot of a layer makes a fresh snapshot id (42 bytes);
// CreateFromSnapshot records any snapshot not in `deleted` and checks the parent binding
// it is given. Diff and ApplyDiff are not used by the service: they fail the test.
class FakeDriver : public driver::GraphDriver, public driver::SnapshotDriver {
 public:
  explicit FakeDriver(std::string root) : root_(std::move(root)) {}
  struct L {
    std::string parent, snapshot;
    bool rw = false;
    int refs = 0;
  };
  std::map<std::string, L> layers;  // guarded by mu (tests read it while no call runs)
  int commits = 0;
  // Called at the start of CommitSnapshot, without mu held: a test blocks a Commit there.
  std::function<void()> commit_gate;
  std::set<std::string> deleted;  // snapshots gc removed from the store
  std::vector<driver::SnapshotLayerRequest> created;  // every CreateFromSnapshot
  std::recursive_mutex mu;

  Status Init(const std::string&, const std::vector<std::string>&) override { return Status::Ok(); }
  driver::Capabilities GetCapabilities() override { return {}; }
  std::vector<std::pair<std::string, std::string>> StatusRows() override { return {}; }
  Result<std::map<std::string, std::string>> GetMetadata(const std::string& id) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!layers.count(id)) return Errorf(ENOENT, "no layer {}", id);
    std::map<std::string, std::string> m;
    if (layers[id].refs > 0) m["MergedDir"] = Dir(id);
    return m;
  }
  Status Create(const driver::CreateRequest& r) override { return Add(r, false); }
  Status CreateReadWrite(const driver::CreateRequest& r) override { return Add(r, true); }
  Status Remove(const std::string& id) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    layers.erase(id);
    return Status::Ok();
  }
  Result<std::string> Get(const std::string& id, const std::string&) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!layers.count(id)) return Errorf(ENOENT, "no layer {}", id);
    layers[id].refs++;
    SLACKER_RETURN_IF_ERROR(MakeDirs(Dir(id), 0755));
    return Dir(id);
  }
  Status Put(const std::string& id) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (layers.count(id) && layers[id].refs > 0) layers[id].refs--;
    return Status::Ok();
  }
  bool Exists(const std::string& id) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    return layers.count(id) > 0;
  }
  Result<driver::DiffStream> Diff(const std::string& id, const std::string&) override {
    ADD_FAILURE() << "the snapshotter called Diff of " << id;
    return Errorf(ENOTSUP, "Diff");
  }
  Result<std::vector<driver::Change>> Changes(const std::string&, const std::string&) override {
    return std::vector<driver::Change>{};
  }
  Result<int64_t> ApplyDiff(const std::string& id, const std::string&, ByteSource&) override {
    ADD_FAILURE() << "the snapshotter called ApplyDiff of " << id;
    return Errorf(ENOTSUP, "ApplyDiff");
  }
  Result<driver::CommittedSnapshot> CommitSnapshot(const std::string& id) override {
    if (commit_gate) commit_gate();
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!layers.count(id)) return Errorf(ENOENT, "no layer {}", id);
    commits++;
    layers[id].snapshot = RandomHex(16);
    SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ChainOfParent(id));
    return driver::CommittedSnapshot{layers[id].snapshot, 42, parent_chain};
  }
  Result<int64_t> CreateFromSnapshot(const driver::SnapshotLayerRequest& req) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!layers.count(req.id)) return Errorf(ENOENT, "no layer {}", req.id);
    SLACKER_ASSIGN_OR_RETURN(std::string parent_chain, ChainOfParent(req.id));
    if (req.parent_chain && *req.parent_chain != parent_chain) return Errorf(EACCES, "made for another parent");
    created.push_back(req);
    if (deleted.count(req.snapshot)) return Errorf(ENOENT, "snapshot {} is not on the store", req.snapshot);
    layers[req.id].snapshot = req.snapshot;
    return static_cast<int64_t>(req.bytes);
  }
  Result<std::vector<driver::LayerSnapshot>> ListLayers() override {
    std::lock_guard<std::recursive_mutex> l(mu);
    std::vector<driver::LayerSnapshot> out;
    for (const auto& [id, layer] : layers) out.push_back({id, layer.parent, layer.rw, layer.snapshot});
    return out;
  }
  Result<int64_t> DiffSize(const std::string&, const std::string&) override { return int64_t{0}; }
  Status Cleanup() override { return Status::Ok(); }
  // A fake chain id per layer (layer ids are 32 hex characters).
  Result<std::string> ChainId(const std::string& id) override {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!layers.count(id)) return Errorf(ENOENT, "no layer {}", id);
    return "sha256:" + id + id;
  }
  Result<std::string> ChainOfParent(const std::string& id) {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!layers.count(id)) return Errorf(ENOENT, "no layer {}", id);
    return layers[id].parent.empty() ? Result<std::string>(std::string()) : ChainId(layers[id].parent);
  }
  // As the real driver's contract says (it reads the image with libext2fs): a regular
  // file only, links not followed, never blocks.
  Result<std::string> ReadReferenceFile(const std::string& id) override {
    read_reference_calls++;
    std::string path = Dir(id) + "/.slacker/ref.json";
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno == ELOOP ? EINVAL : errno, "open " + path);
    struct stat st;
    bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= 4096;
    ::close(fd);
    if (!regular) return Errorf(EINVAL, "{} is not a small regular file", path);
    return ReadFileToString(path);
  }
  int read_reference_calls = 0;

  std::string Dir(const std::string& id) const { return JoinPath(root_, "mnt/" + id); }

 private:
  Status Add(const driver::CreateRequest& r, bool rw) {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (layers.count(r.id)) return Errorf(EEXIST, "layer {} exists", r.id);
    if (!r.parent.empty() && !layers.count(r.parent)) return Errorf(ENOENT, "no parent {}", r.parent);
    layers[r.id] = L{r.parent, "", rw, 0};
    return Status::Ok();
  }
  std::string root_;
};

class SnapshotServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/snapshotter_test.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    auto store = storage_backend::OpenLocalStore(os_, JoinPath(dir_, "store"), "a");
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(store).value();
    index_ = std::make_shared<StoreIndex>(*store_);
    driver_ = std::make_unique<FakeDriver>(JoinPath(dir_, "a"));
    svc_ = OpenService("a", *driver_);
  }
  void TearDown() override { IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space"); }

  std::unique_ptr<SnapshotService> OpenService(const std::string& host, FakeDriver& d, std::string key = "k") {
    ServiceOptions o;
    o.state_dir = JoinPath(dir_, host + "/state");
    o.store_uuid = kStore;
    o.host_id = host;
    o.trust = [key] { return registry_shim::ReferenceTrust{{key}, false}; };
    o.index = index_;
    auto s = SnapshotService::Open(d, o);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return std::move(s).value();
  }
  // Prepare + Commit; returns the committed name.
  void Layer(SnapshotService& s, const std::string& key, const std::string& name, const std::string& parent) {
    ASSERT_TRUE(s.Prepare(key, parent, {}).ok());
    Status c = s.Commit(name, key, {});
    ASSERT_TRUE(c.ok()) << c.message();
  }

  std::string dir_;
  os::FakeOs os_;
  std::unique_ptr<storage_backend::Backend> store_;  // the shared store, for its name index
  std::shared_ptr<StoreIndex> index_;
  std::unique_ptr<FakeDriver> driver_;
  std::unique_ptr<SnapshotService> svc_;
};

TEST_F(SnapshotServiceTest, PrepareReturnsWritableBindOfTheLayerMount) {
  auto m = svc_->Prepare("default/1/k", "", {{"x", "y"}});
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].type, "bind");
  EXPECT_EQ((*m)[0].options, (std::vector<std::string>{"rbind", "rw"}));
  EXPECT_TRUE(PathExists((*m)[0].source));
  auto info = svc_->Stat("default/1/k");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kActive);
  EXPECT_EQ(info->labels.at("x"), "y");
}

TEST_F(SnapshotServiceTest, UsageOfAnActiveSnapshotCountsOnlyWhatItAdded) {
  // What statfs of the clone says: the parent's tree at Prepare, 4 MiB and 10 inodes more later.
  Usage fs{100 << 20, 1000};
  ServiceOptions o;
  o.state_dir = JoinPath(dir_, "u/state");
  o.store_uuid = kStore;
  o.host_id = "u";
  o.fs_use = [&fs](const std::string&) -> Result<Usage> { return fs; };
  FakeDriver d(JoinPath(dir_, "u"));
  auto svc = SnapshotService::Open(d, o);
  ASSERT_TRUE(svc.ok());
  ASSERT_TRUE((*svc)->Prepare("default/1/k", "", {}).ok());
  fs = Usage{(100 << 20) + (4 << 20), 1010};
  auto u = (*svc)->GetUsage("default/1/k");
  ASSERT_TRUE(u.ok()) << u.status().message();
  EXPECT_EQ(u->size, 4 << 20);
  EXPECT_EQ(u->inodes, 10);
}

TEST_F(SnapshotServiceTest, UsageOfACommittedSnapshotCountsTheInodesItAdded) {
  // CRI's ImageFsInfo sums inodes over committed layers (kubelet's image fs inodes).
  Usage fs{100 << 20, 1000};
  ServiceOptions o;
  o.state_dir = JoinPath(dir_, "u/state");
  o.store_uuid = kStore;
  o.host_id = "u";
  o.index = index_;
  o.fs_use = [&fs](const std::string&) -> Result<Usage> { return fs; };
  FakeDriver d(JoinPath(dir_, "u"));
  {
    auto svc = SnapshotService::Open(d, o);
    ASSERT_TRUE(svc.ok());
    ASSERT_TRUE((*svc)->Prepare("default/1/k", "", {}).ok());
    fs = Usage{(100 << 20) + (4 << 20), 1025};
    ASSERT_TRUE((*svc)->Commit("default/2/c", "default/1/k", {}).ok());
    EXPECT_EQ((*svc)->GetUsage("default/2/c")->inodes, 25);
  }
  auto reopened = SnapshotService::Open(d, o);  // kept in the catalog
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->GetUsage("default/2/c")->inodes, 25);
  auto published = index_->Lookup("default", "c");  // and on the store, for other hosts
  ASSERT_TRUE(published.ok()) << published.status().message();
  EXPECT_EQ(published->inodes, 25u);
}

TEST_F(SnapshotServiceTest, CommitTurnsActiveIntoCommittedAndDropsTheKey) {
  Layer(*svc_, "default/1/k", "default/2/c", "");
  EXPECT_EQ(svc_->Stat("default/1/k").status().code(), ENOENT);
  auto info = svc_->Stat("default/2/c");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(driver_->commits, 1);
  EXPECT_EQ(svc_->GetUsage("default/2/c")->size, 42);
  EXPECT_EQ(driver_->layers.size(), 1u);  // the active layer is gone
}

TEST_F(SnapshotServiceTest, ErrorCodesFollowContainerdsErrdefs) {
  ASSERT_TRUE(svc_->Prepare("default/1/k", "", {}).ok());
  EXPECT_EQ(svc_->Prepare("default/1/k", "", {}).status().code(), EEXIST);
  EXPECT_EQ(svc_->Prepare("default/2/x", "nope", {}).status().code(), ENOENT);
  EXPECT_EQ(svc_->Prepare("default/3/x", "default/1/k", {}).status().code(), EINVAL);  // parent not committed
  EXPECT_EQ(svc_->Commit("default/4/c", "missing", {}).code(), ENOENT);
  Layer(*svc_, "default/5/k", "default/6/c", "");
  EXPECT_EQ(svc_->Commit("default/6/c", "default/1/k", {}).code(), EEXIST);
  ASSERT_TRUE(svc_->Prepare("default/7/child", "default/6/c", {}).ok());
  Status busy = svc_->Remove("default/6/c");
  EXPECT_EQ(busy.code(), EBUSY);
  EXPECT_EQ(GrpcCodeFor(busy.code()), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(GrpcCodeFor(ENOENT), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GrpcCodeFor(EEXIST), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(GrpcCodeFor(EINVAL), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(svc_->Remove("missing").code(), ENOENT);
  EXPECT_TRUE(svc_->Remove("default/7/child").ok());
  EXPECT_TRUE(svc_->Remove("default/6/c").ok());
}

TEST_F(SnapshotServiceTest, ViewSharesTheParentsReadOnlyMount) {
  Layer(*svc_, "default/1/k", "default/2/c", "");
  auto v = svc_->View("default/3/v", "default/2/c", {});
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ((*v)[0].options, (std::vector<std::string>{"rbind", "ro"}));
  const std::string layer = driver_->layers.begin()->first;
  EXPECT_EQ(driver_->layers[layer].refs, 1);
  EXPECT_EQ(svc_->Commit("default/4/x", "default/3/v", {}).code(), EBUSY);
  EXPECT_TRUE(svc_->Remove("default/3/v").ok());
  EXPECT_EQ(driver_->layers[layer].refs, 0);
}

TEST_F(SnapshotServiceTest, UpdateReplacesOrEditsLabelsOnly) {
  ASSERT_TRUE(svc_->Prepare("default/1/k", "", {{"a", "1"}, {"b", "2"}}).ok());
  Info in;
  in.name = "default/1/k";
  in.labels = {{"b", "3"}};
  auto r = svc_->Update(in, {"labels.b", "labels.a"});  // set b, delete a
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->labels, (Labels{{"b", "3"}}));
  in.labels = {{"c", "4"}};
  r = svc_->Update(in, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->labels, (Labels{{"c", "4"}}));
  EXPECT_EQ(svc_->Update(in, {"parent"}).status().code(), EINVAL);
  in.name = "missing";
  EXPECT_EQ(svc_->Update(in, {}).status().code(), ENOENT);
}

TEST_F(SnapshotServiceTest, CatalogSurvivesARestart) {
  Layer(*svc_, "default/1/k", "default/2/c", "");
  ASSERT_TRUE(svc_->Prepare("default/3/a", "default/2/c", {{"l", "v"}}).ok());
  svc_.reset();
  svc_ = OpenService("a", *driver_);
  auto all = svc_->Walk();
  ASSERT_EQ(all.size(), 2u);
  std::set<std::string> names = {all[0].name, all[1].name};
  EXPECT_EQ(names, (std::set<std::string>{"default/2/c", "default/3/a"}));
  auto a = svc_->Stat("default/3/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->parent, "default/2/c");
  EXPECT_EQ(a->labels.at("l"), "v");
}

// The JSON body of a reference tar: what containerd's differ leaves at /.slacker/ref.json.
std::string RefBody(const std::string& snapshot, uint64_t bytes, const std::string& parent, const std::string& key) {
  // Test data: what a slackerd worker's Diff pushed (the service itself encodes none).
  std::string tar = registry_shim::EncodeReferenceTar({2, kStore, snapshot, parent, bytes, ""}, key);
  return tar.substr(512, tar.find('\0', 512) - 512);
}

void WriteRefJson(const std::string& root, const std::string& body) {
  ASSERT_TRUE(MakeDirs(root + "/.slacker").ok());
  ASSERT_TRUE(AtomicWriteFile(root + "/.slacker/ref.json", body).ok());
}

TEST_F(SnapshotServiceTest, ExtractionThatReceivedAReferenceCommitsToTheReferencedSnapshot) {
  auto m = svc_->Prepare("default/1/extract-1-x sha256:abc", "", {});
  ASSERT_TRUE(m.ok());
  WriteRefJson((*m)[0].source, RefBody(std::string(32, 'b'), 7, "", "k"));
  Status c = svc_->Commit("default/2/sha256:abc", "default/1/extract-1-x sha256:abc", {});
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(driver_->commits, 0);  // nothing snapshotted: the reference is used as is
  EXPECT_EQ(driver_->read_reference_calls, 1) << "read through the driver, not the mount";
  ASSERT_EQ(driver_->layers.size(), 1u);
  EXPECT_EQ(driver_->layers.begin()->second.snapshot, std::string(32, 'b'));
  EXPECT_EQ(svc_->GetUsage("default/2/sha256:abc")->size, 7);
}

TEST_F(SnapshotServiceTest, ReferenceWithoutTheClustersMacIsRefused) {
  for (const std::string& key : {std::string("other-key"), std::string()}) {
    auto m = svc_->Prepare("default/1/extract-1-x sha256:abc", "", {});
    ASSERT_TRUE(m.ok());
    WriteRefJson((*m)[0].source, RefBody(std::string(32, 'b'), 7, "", key));
    Status c = svc_->Commit("default/2/sha256:abc", "default/1/extract-1-x sha256:abc", {});
    EXPECT_EQ(c.code(), EACCES) << c.message();
    EXPECT_NE(c.message().find(std::string(32, 'b')), std::string::npos) << c.message();
    EXPECT_EQ(svc_->Stat("default/1/extract-1-x sha256:abc")->kind, Kind::kActive);  // nothing lost
    ASSERT_TRUE(svc_->Remove("default/1/extract-1-x sha256:abc").ok());
  }
}

// Scenario: a signed reference made on top of chain sha256:aa.. is listed in an image
// after other layers: containerd unpacks it onto a parent committed as another chain id.
TEST_F(SnapshotServiceTest, ReParentedReferenceIsRefused) {
  std::string parent_chain = "sha256:" + std::string(64, 'c');
  Layer(*svc_, "default/1/k", "default/2/" + parent_chain, "");
  auto m = svc_->Prepare("default/3/extract-3 sha256:abc", "default/2/" + parent_chain, {});
  ASSERT_TRUE(m.ok());
  WriteRefJson((*m)[0].source, RefBody(std::string(32, 'b'), 7, "sha256:" + std::string(64, 'a'), "k"));
  Status c = svc_->Commit("default/4/sha256:abc", "default/3/extract-3 sha256:abc", {});
  EXPECT_EQ(c.code(), EACCES) << c.message();
  EXPECT_NE(c.message().find("another parent"), std::string::npos) << c.message();
  // The same reference made for that parent is accepted.
  WriteRefJson((*m)[0].source, RefBody(std::string(32, 'b'), 7, parent_chain, "k"));
  c = svc_->Commit("default/4/sha256:abc", "default/3/extract-3 sha256:abc", {});
  EXPECT_TRUE(c.ok()) << c.message();
}

// Scenario (issue 15): a layer unpacks a FIFO (or a symlink to /dev/zero) at
// .slacker/ref.json. Committing it must fail promptly, and other snapshot calls on the
// node must not wait for it. Timeouts make the old code fail here instead of hanging.
TEST_F(SnapshotServiceTest, FifoOrDevZeroAtTheReferenceFileNeitherBlocksNorExhaustsMemory) {
  Layer(*svc_, "default/1/k", "default/2/base", "");
  for (const char* kind : {"fifo", "symlink to /dev/zero"}) {
    SCOPED_TRACE(kind);
    auto m = svc_->Prepare("default/3/extract-3 sha256:abc", "", {});
    ASSERT_TRUE(m.ok());
    std::string file = (*m)[0].source + "/.slacker/ref.json";
    ASSERT_TRUE(MakeDirs((*m)[0].source + "/.slacker").ok());
    if (std::string(kind) == "fifo") {
      ASSERT_EQ(::mkfifo(file.c_str(), 0644), 0);
    } else {
      ASSERT_EQ(::symlink("/dev/zero", file.c_str()), 0);
    }
    auto commit = std::async(std::launch::async, [&] {
      return svc_->Commit("default/4/sha256:abc", "default/3/extract-3 sha256:abc", {});
    });
    // Let the Commit get going first (with the fix it may well be done already).
    commit.wait_for(std::chrono::milliseconds(300));
    auto other = std::async(std::launch::async, [&] { return svc_->Stat("default/2/base"); });
    bool other_done = other.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    bool commit_done = commit.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    if (!commit_done && std::string(kind) == "fifo") {
      // Release the blocked reader so the test can end (it failed already).
      int fd = ::open(file.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    }
    ASSERT_TRUE(other_done) << "Stat waited behind a Commit reading " << kind;
    ASSERT_TRUE(commit_done) << "Commit hung reading " << kind;
    EXPECT_TRUE(other.get().ok());
    Status c = commit.get();
    EXPECT_EQ(c.code(), EINVAL) << c.message();
    ASSERT_TRUE(svc_->Remove("default/3/extract-3 sha256:abc").ok());
  }
}

// Scenario (issue 15): a Commit whose driver call is stuck (a frozen file system, a slow
// store) must not hold up Stat, List or Prepare of other keys: the service-wide lock
// guards only the catalog. Time-bounded: the old code fails here (those calls waited for
// the Commit's lock), it does not hang. While it runs, the key being committed cannot be
// removed or committed a second time.
TEST_F(SnapshotServiceTest, BlockedCommitDoesNotBlockCallsOnOtherKeys) {
  Layer(*svc_, "default/1/k", "default/2/base", "");
  ASSERT_TRUE(svc_->Prepare("default/3/slow", "default/2/base", {}).ok());
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  driver_->commit_gate = [&, released] {
    entered.set_value();
    released.wait();
  };
  auto commit = std::async(std::launch::async, [&] { return svc_->Commit("default/4/done", "default/3/slow", {}); });
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "the Commit never reached the driver's CommitSnapshot";
  auto others = std::async(std::launch::async, [&] {
    std::string problems;
    auto st = svc_->Stat("default/2/base");
    if (!st.ok()) problems += "Stat: " + st.status().message() + "; ";
    if (svc_->Walk().size() != 2u) problems += "List does not show base and slow; ";
    auto p = svc_->Prepare("default/5/other", "default/2/base", {});
    if (!p.ok()) problems += "Prepare: " + p.status().message() + "; ";
    Status rm = svc_->Remove("default/3/slow");
    if (rm.code() != EBUSY) problems += "Remove of the key being committed: " + rm.message() + "; ";
    Status again = svc_->Commit("default/6/again", "default/3/slow", {});
    if (again.code() != EBUSY) problems += "a second Commit of it: " + again.message() + "; ";
    return problems;
  });
  bool others_done = others.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  release.set_value();  // always: the test ends either way
  ASSERT_TRUE(others_done) << "Stat/List/Prepare of other keys waited behind a Commit blocked in the driver";
  EXPECT_EQ(others.get(), "");
  Status c = commit.get();
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(svc_->Stat("default/4/done")->kind, Kind::kCommitted);
  EXPECT_EQ(svc_->Stat("default/3/slow").status().code(), ENOENT);
  EXPECT_EQ(svc_->Stat("default/5/other")->kind, Kind::kActive);
}

TEST_F(SnapshotServiceTest, PublishedChainIsAdoptedByAnotherHostAsAlreadyExisting) {
  Layer(*svc_, "default/1/extract-1 sha256:c1", "default/2/sha256:c1", "");
  FakeDriver other_driver(JoinPath(dir_, "b"));
  auto other = OpenService("b", other_driver);
  // Another namespace and another sequence number: chain ids are shared by all.
  auto r = other->Prepare("k8s.io/9/extract-2 sha256:c1", "", {{kLabelSnapshotRef, "sha256:c1"}});
  EXPECT_EQ(r.status().code(), EEXIST) << r.status().message();
  auto all = other->Walk();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].kind, Kind::kCommitted);
  EXPECT_EQ(all[0].labels.at(kLabelSnapshotRef), "sha256:c1");
  EXPECT_EQ(all[0].parent, "");
  EXPECT_TRUE(all[0].name.starts_with("k8s.io/9/"));
  EXPECT_EQ(other_driver.layers.size(), 1u);
  EXPECT_EQ(other_driver.commits, 0);
}

TEST_F(SnapshotServiceTest, UnpublishedTargetIsPreparedNormally) {
  auto r = svc_->Prepare("default/1/extract-1 sha256:zz", "", {{kLabelSnapshotRef, "sha256:zz"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(svc_->Stat("default/1/extract-1 sha256:zz")->kind, Kind::kActive);
}

TEST_F(SnapshotServiceTest, UserNamesArePublishedPerNamespace) {
  Layer(*svc_, "default/1/k", "default/2/mine", "");
  EXPECT_TRUE(index_->Lookup("default", "mine").ok());
  EXPECT_EQ(index_->Lookup("other", "mine").status().code(), ENOENT);
}

// The committed layer is bound to the parent its snapshot was made on (the driver checks
// it); an extraction's reference was checked against containerd's chain id instead.
TEST_F(SnapshotServiceTest, CommitBindsTheNewLayerToItsSnapshotsParent) {
  Layer(*svc_, "default/1/k", "default/2/base", "");
  Layer(*svc_, "default/3/k", "default/4/top", "default/2/base");
  ASSERT_EQ(driver_->created.size(), 2u);
  std::string base_layer = driver_->created[0].id;
  EXPECT_EQ(driver_->created[0].parent_chain, std::optional<std::string>(""));
  EXPECT_EQ(driver_->created[1].parent_chain, "sha256:" + base_layer + base_layer);
  auto m = svc_->Prepare("default/5/extract-5 sha256:abc", "", {});
  ASSERT_TRUE(m.ok());
  WriteRefJson((*m)[0].source, RefBody(std::string(32, 'b'), 7, "", "k"));
  ASSERT_TRUE(svc_->Commit("default/6/sha256:abc", "default/5/extract-5 sha256:abc", {}).ok());
  EXPECT_EQ(driver_->created.back().parent_chain, std::nullopt);
}

// A reference to a snapshot gc deleted: the Commit fails, nothing of it is left, and the
// extraction snapshot is still there to retry or remove.
TEST_F(SnapshotServiceTest, FailedCommitRollsBackItsLayerAndKeepsTheActiveSnapshot) {
  driver_->deleted.insert(std::string(32, 'b'));
  auto m = svc_->Prepare("default/1/extract-1 sha256:abc", "", {});
  ASSERT_TRUE(m.ok());
  WriteRefJson((*m)[0].source, RefBody(std::string(32, 'b'), 7, "", "k"));
  Status c = svc_->Commit("default/2/sha256:abc", "default/1/extract-1 sha256:abc", {});
  EXPECT_EQ(c.code(), EBUSY) << c.message();
  EXPECT_EQ(driver_->layers.size(), 1u) << "the committed layer was not rolled back";
  EXPECT_EQ(svc_->Stat("default/1/extract-1 sha256:abc")->kind, Kind::kActive);
  EXPECT_EQ(svc_->Stat("default/2/sha256:abc").status().code(), ENOENT);
  EXPECT_TRUE(svc_->Prepare("default/3/x", "", {}).ok()) << "the failed Commit kept a lock";
  EXPECT_TRUE(svc_->Remove("default/1/extract-1 sha256:abc").ok());
}

TEST_F(SnapshotServiceTest, StaleIndexEntryIsPreparedNormally) {
  std::string gone(32, 'd');
  ASSERT_TRUE(index_->Publish("", StoreIndex::Entry{"sha256:s1", gone, 1, "b", 0}).ok());
  driver_->deleted.insert(gone);
  auto r = svc_->Prepare("default/1/extract-1 sha256:s1", "", {{kLabelSnapshotRef, "sha256:s1"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(svc_->Walk().size(), 1u);
  EXPECT_EQ(driver_->layers.size(), 1u) << "the unusable remote layer was not rolled back";
}

TEST_F(SnapshotServiceTest, CleanupRemovesOnlyLayersNoSnapshotNames) {
  Layer(*svc_, "default/1/k", "default/2/base", "");
  ASSERT_TRUE(svc_->Prepare("default/3/a", "default/2/base", {}).ok());
  ASSERT_TRUE(driver_->Create(driver::CreateRequest{"orphan", "", "", {}}).ok());  // a crash's leftover
  ASSERT_EQ(driver_->layers.size(), 3u);
  Status s = svc_->Cleanup();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(driver_->layers.size(), 2u);
  EXPECT_EQ(driver_->layers.count("orphan"), 0u);
  EXPECT_TRUE(svc_->Mounts("default/3/a").ok());
}

// The wire protocol: containerd's messages and status codes through a real gRPC server
// on a unix socket.
class GrpcServiceTest : public SnapshotServiceTest {
 protected:
  void SetUp() override {
    SnapshotServiceTest::SetUp();
    server_ = std::make_unique<GrpcServer>(*svc_);
    std::string sock = JoinPath(dir_, "s.sock");
    ASSERT_TRUE(server_->Start(sock).ok());
    stub_ = pb::Snapshots::NewStub(grpc::CreateChannel("unix://" + sock, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Stop();
    SnapshotServiceTest::TearDown();
  }
  grpc::Status Prepare(const std::string& key, const std::string& parent, pb::PrepareSnapshotResponse* resp) {
    pb::PrepareSnapshotRequest req;
    req.set_snapshotter("slacker");
    req.set_key(key);
    req.set_parent(parent);
    (*req.mutable_labels())["l"] = "v";
    grpc::ClientContext ctx;
    return stub_->Prepare(&ctx, req, resp);
  }
  grpc::Status Commit(const std::string& name, const std::string& key) {
    pb::CommitSnapshotRequest req;
    req.set_name(name);
    req.set_key(key);
    google::protobuf::Empty e;
    grpc::ClientContext ctx;
    return stub_->Commit(&ctx, req, &e);
  }
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::Snapshots::Stub> stub_;
};

TEST_F(GrpcServiceTest, PrepareCommitStatListOverTheWire) {
  pb::PrepareSnapshotResponse resp;
  ASSERT_TRUE(Prepare("default/1/k", "", &resp).ok());
  ASSERT_EQ(resp.mounts_size(), 1);
  EXPECT_EQ(resp.mounts(0).type(), "bind");
  EXPECT_EQ(resp.mounts(0).options(1), "rw");
  EXPECT_EQ(Prepare("default/1/k", "", &resp).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  ASSERT_TRUE(Commit("default/2/c", "default/1/k").ok());
  ASSERT_TRUE(Prepare("default/3/child", "default/2/c", &resp).ok());

  pb::StatSnapshotRequest sreq;
  sreq.set_key("default/2/c");
  pb::StatSnapshotResponse sresp;
  grpc::ClientContext sctx;
  ASSERT_TRUE(stub_->Stat(&sctx, sreq, &sresp).ok());
  EXPECT_EQ(sresp.info().kind(), pb::COMMITTED);
  EXPECT_EQ(sresp.info().labels().at("l"), "v");
  EXPECT_GT(sresp.info().created_at().seconds(), 1700000000);

  sreq.set_key("missing");
  grpc::ClientContext sctx2;
  EXPECT_EQ(stub_->Stat(&sctx2, sreq, &sresp).error_code(), grpc::StatusCode::NOT_FOUND);

  pb::ListSnapshotsRequest lreq;
  grpc::ClientContext lctx;
  auto reader = stub_->List(&lctx, lreq);
  pb::ListSnapshotsResponse lresp;
  std::map<std::string, int> kinds;
  while (reader->Read(&lresp)) {
    for (const auto& i : lresp.info()) kinds[i.name()] = i.kind();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(kinds, (std::map<std::string, int>{{"default/2/c", pb::COMMITTED}, {"default/3/child", pb::ACTIVE}}));

  pb::RemoveSnapshotRequest rreq;
  rreq.set_key("default/2/c");
  google::protobuf::Empty e;
  grpc::ClientContext rctx;
  EXPECT_EQ(stub_->Remove(&rctx, rreq, &e).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// At debug level every call logs its latency (how bench/README.md reads the snapshotter's
// share of a CRI pull or pod start); at info level nothing is logged for a call that worked.
TEST_F(GrpcServiceTest, LogsEachCallsLatencyAtDebugOnly) {
  pb::PrepareSnapshotResponse resp;
  testing::internal::CaptureStderr();
  log::SetLevel(log::Level::kDebug);
  grpc::Status prepared = Prepare("default/1/k", "", &resp);
  grpc::Status again = Prepare("default/1/k", "", &resp);
  log::SetLevel(log::Level::kInfo);
  ASSERT_TRUE(Commit("default/2/c", "default/1/k").ok());
  std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(again.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(err.find("event=rpc rpc=Prepare key=default/1/k ms="), std::string::npos) << err;
  EXPECT_NE(err.find(" code=0"), std::string::npos) << err;
  EXPECT_NE(err.find(" code=" + std::to_string(EEXIST)), std::string::npos) << err;
  EXPECT_EQ(err.find("rpc=Commit"), std::string::npos) << "logged at info level: " << err;
}

TEST_F(GrpcServiceTest, ListHonoursFilters) {
  pb::PrepareSnapshotResponse resp;
  ASSERT_TRUE(Prepare("default/1/k", "", &resp).ok());
  ASSERT_TRUE(Commit("default/2/c", "default/1/k").ok());
  ASSERT_TRUE(Prepare("default/3/child", "default/2/c", &resp).ok());
  auto list = [&](const std::vector<std::string>& filters, std::set<std::string>* names) {
    pb::ListSnapshotsRequest req;
    for (const auto& f : filters) req.add_filters(f);
    grpc::ClientContext ctx;
    auto reader = stub_->List(&ctx, req);
    pb::ListSnapshotsResponse lresp;
    while (reader->Read(&lresp)) {
      for (const auto& i : lresp.info()) names->insert(i.name());
    }
    return reader->Finish();
  };
  std::set<std::string> names;
  ASSERT_TRUE(list({"kind==active"}, &names).ok());
  EXPECT_EQ(names, (std::set<std::string>{"default/3/child"}));
  names.clear();
  ASSERT_TRUE(list({"parent==default/2/c", "kind==committed"}, &names).ok());
  EXPECT_EQ(names, (std::set<std::string>{"default/2/c", "default/3/child"}));
  names.clear();
  ASSERT_TRUE(list({"labels.l==v,kind==committed"}, &names).ok());
  EXPECT_EQ(names, (std::set<std::string>{"default/2/c"}));
  names.clear();
  ASSERT_TRUE(list({"labels.nope"}, &names).ok());
  EXPECT_TRUE(names.empty());
  EXPECT_EQ(list({"kind=="}, &names).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcServiceTest, UpdateAppliesTheFieldMask) {
  pb::PrepareSnapshotResponse resp;
  ASSERT_TRUE(Prepare("default/1/k", "", &resp).ok());
  pb::UpdateSnapshotRequest req;
  req.mutable_info()->set_name("default/1/k");
  (*req.mutable_info()->mutable_labels())["new"] = "1";
  req.mutable_update_mask()->add_paths("labels.new");
  pb::UpdateSnapshotResponse uresp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Update(&ctx, req, &uresp).ok());
  EXPECT_EQ(uresp.info().labels().size(), 2u);  // "l" kept, "new" added
  req.mutable_update_mask()->add_paths("kind");
  grpc::ClientContext ctx2;
  EXPECT_EQ(stub_->Update(&ctx2, req, &uresp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcServiceTest, UsageOfACommittedSnapshotIsItsChange) {
  pb::PrepareSnapshotResponse resp;
  ASSERT_TRUE(Prepare("default/1/k", "", &resp).ok());
  ASSERT_TRUE(Commit("default/2/c", "default/1/k").ok());
  pb::UsageRequest req;
  req.set_key("default/2/c");
  pb::UsageResponse uresp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Usage(&ctx, req, &uresp).ok());
  EXPECT_EQ(uresp.size(), 42);  // FakeDriver's reference says 42 bytes changed
}

TEST(SplitBackendKey, SplitsNamespaceAndSequence) {
  EXPECT_EQ(SplitBackendKey("default/12/sha256:ab"), (std::pair<std::string, std::string>{"default", "sha256:ab"}));
  EXPECT_EQ(SplitBackendKey("default/x/y"), (std::pair<std::string, std::string>{"", "default/x/y"}));
  EXPECT_EQ(SplitBackendKey("plain"), (std::pair<std::string, std::string>{"", "plain"}));
}

}  // namespace
}  // namespace slacker::snapshotter
