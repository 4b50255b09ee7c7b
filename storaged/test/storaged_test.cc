// The snapshot service: request logic (Service) on FakeOs in a temp dir, and the HTTP
// transport with the rest backend's client against an in-process server.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <system_error>
#include <thread>

#include <future>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/files.h"
#include "os/fake_os.h"
#include "storage_backend/rest_backend.h"
#include "storaged/http_server.h"
#include "storaged/service.h"

namespace slacker::storaged {
namespace {

using nlohmann::json;

constexpr const char* kToken = "s3cret-token";

class StoragedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slacker-storaged-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/store";
    OpenService();
  }
  void TearDown() override {
    server_.reset();
    service_.reset();
    IgnoreError(RemoveTree(dir_), "test teardown: a leftover scratch dir only wastes space");
  }
  void OpenService() {
    service_.reset();
    auto s = Service::Open(os_, {root_, "nfs://storage1/srv/slacker", kToken});
    ASSERT_TRUE(s.ok()) << s.status().message();
    service_ = std::move(s).value();
  }
  Reply Call(const std::string& method, const std::string& target, const std::string& body = "",
             const std::string& key = "", const std::string& auth = std::string("Bearer ") + kToken) {
    return service_->Handle(Request{method, target, auth, key, body});
  }
  static json Body(const Reply& r) { return json::parse(r.body); }
  void WriteVolume(const std::string& host, const std::string& layer, const std::string& content) {
    ASSERT_TRUE(MakeDirs(root_ + "/volumes/" + host, 0755).ok());
    ASSERT_TRUE(AtomicWriteFile(root_ + "/volumes/" + host + "/" + layer + ".img", content, false).ok());
  }
  size_t SnapshotCount() {
    auto r = Call("GET", "/v1/snapshots");
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r)["snapshots"].size();
  }
  void StartServer() {
    server_ = std::make_unique<HttpServer>(*service_, ServerOptions{});
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.message();
  }
  storage_backend::RestOptions ClientOptions(const std::string& token = kToken) {
    storage_backend::RestOptions o;
    o.url = "http://127.0.0.1:" + std::to_string(server_->port());
    o.token = token;
    o.attempts = 2;
    o.timeout_ms = 5000;
    return o;
  }

  os::FakeOs os_;
  std::string dir_, root_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<HttpServer> server_;
};

// A request without the token, or with another one, is refused before anything runs.
TEST_F(StoragedTest, Service_RefusesMissingOrWrongToken) {
  EXPECT_EQ(Call("GET", "/v1/store", "", "", "").status, 401);
  EXPECT_EQ(Call("GET", "/v1/store", "", "", "Bearer wrong").status, 401);
  EXPECT_EQ(Call("GET", "/v1/store", "", "", std::string("Basic ") + kToken).status, 401);
  WriteVolume("h1", "layer1", "data");
  auto r = Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer1"})", "", "Bearer s3cret-tokeX");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Body(r)["code"], "unauthorized");
  EXPECT_EQ(SnapshotCount(), 0u);
}

// GET /v1/store names the store and the export workers mount.
TEST_F(StoragedTest, Service_StoreDescription) {
  auto r = Call("GET", "/v1/store");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = Body(r);
  EXPECT_EQ(j["export"], "nfs://storage1/srv/slacker");
  EXPECT_EQ(j["format"], 1);
  auto stored = json::parse(*ReadFileToString(root_ + "/store.json"));
  EXPECT_EQ(j["uuid"], stored["uuid"]);
}

// Malformed bodies and missing fields are 400 with a JSON error naming the problem.
TEST_F(StoragedTest, Service_BadJsonAndMissingFields) {
  auto r = Call("POST", "/v1/snapshots", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["code"], "bad_json");
  r = Call("POST", "/v1/snapshots", "[1,2]");
  EXPECT_EQ(r.status, 400);
  r = Call("POST", "/v1/snapshots", R"({"host":"h1"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(Body(r)["error"].get<std::string>().find("layer"), std::string::npos) << r.body;
  r = Call("POST", "/v1/clones", R"({"host":"h1","snapshot":"nothex","layer":"l"})");
  EXPECT_EQ(r.status, 400) << r.body;
  r = Call("POST", "/v1/snapshots", R"({"host":"../etc","layer":"l"})");
  EXPECT_EQ(r.status, 400) << r.body;
}

TEST_F(StoragedTest, Service_OversizeBodyIs413) {
  std::string big(Service::kMaxBody + 1, ' ');
  EXPECT_EQ(Call("POST", "/v1/snapshots", big).status, 413);
}

TEST_F(StoragedTest, Service_UnknownRouteAndMethod) {
  EXPECT_EQ(Call("GET", "/v1/nothing").status, 404);
  EXPECT_EQ(Call("GET", "/v2/store").status, 404);
  EXPECT_EQ(Call("PUT", "/v1/snapshots").status, 405);
}

// API.md: 405 is for a method the API never takes; another of its methods on a known
// path is an unknown route, as is a path under /v1 that names nothing.
TEST_F(StoragedTest, Service_KnownPathWithAnotherMethodIsNoRoute) {
  auto r = Call("GET", "/v1/clones");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["code"], "no_route");
  r = Call("DELETE", "/v1/store");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Body(r)["code"], "no_route");
  EXPECT_EQ(Call("DELETE", "/v1/volumes/h1").status, 404);
}

// A field of the wrong JSON type is a 400, not an exception out of the handler (a
// non-boolean "move" used to throw through the connection's thread).
TEST_F(StoragedTest, Service_NonBooleanMoveIs400) {
  WriteVolume("h1", "l1", "data");
  auto r = Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"l1","move":"yes"})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(Body(r)["error"].get<std::string>().find("move"), std::string::npos) << r.body;
}

// Snapshot a volume, read its metadata, clone it for another host: contents follow.
TEST_F(StoragedTest, Service_SnapshotCloneRoundTrip) {
  WriteVolume("h1", "layer1", "layer-one-bytes");
  auto r = Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer1","meta":{"source":"commit"}})", "k1");
  ASSERT_EQ(r.status, 201) << r.body;
  std::string snap = Body(r)["snapshot"];
  EXPECT_EQ(*ReadFileToString(root_ + "/snapshots/" + snap + ".img"), "layer-one-bytes");
  EXPECT_TRUE(PathExists(root_ + "/volumes/h1/layer1.img"));  // a snapshot keeps the volume
  r = Call("GET", "/v1/snapshots/" + snap);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["meta"]["source"], "commit");
  r = Call("POST", "/v1/clones", json{{"host", "h2"}, {"snapshot", snap}, {"layer", "c1"}}.dump(), "k2");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(*ReadFileToString(root_ + "/volumes/h2/c1.img"), "layer-one-bytes");
  r = Call("POST", "/v1/clones", json{{"host", "h2"}, {"snapshot", std::string(32, 'a')}, {"layer", "c2"}}.dump());
  EXPECT_EQ(r.status, 404) << r.body;
  r = Call("DELETE", "/v1/snapshots/" + snap);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Call("GET", "/v1/snapshots/" + snap).status, 404);
}

// A retried snapshot with the same Idempotency-Key gets the first reply and does not
// snapshot again; a new key snapshots again.
TEST_F(StoragedTest, Service_IdempotentRetryActsOnce) {
  WriteVolume("h1", "layer1", "x");
  std::string body = R"({"host":"h1","layer":"layer1"})";
  auto first = Call("POST", "/v1/snapshots", body, "retry-me");
  ASSERT_EQ(first.status, 201) << first.body;
  auto again = Call("POST", "/v1/snapshots", body, "retry-me");
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(SnapshotCount(), 1u);
  // The record is on disk: a restarted service still replays it.
  OpenService();
  auto after_restart = Call("POST", "/v1/snapshots", body, "retry-me");
  EXPECT_EQ(after_restart.body, first.body);
  EXPECT_EQ(SnapshotCount(), 1u);
  EXPECT_EQ(Call("POST", "/v1/snapshots", body, "another").status, 201);
  EXPECT_EQ(SnapshotCount(), 2u);
}

// storaged is not one server: a clone held up in the kernel does not hold up another
// worker's clone (bench/scale: one lock across every mutation was its bottleneck).
TEST_F(StoragedTest, Service_MutationsWithDifferentKeysRunInParallel) {
  WriteVolume("h1", "base", "image");
  auto snap = Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"base"})", "snap");
  ASSERT_EQ(snap.status, 201) << snap.body;
  std::string id = Body(snap)["snapshot"];
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  os_.BeforeNextFiclone([&] {
    entered.set_value();
    released.wait();
  });
  auto slow = std::async(std::launch::async, [&] {
    return Call("POST", "/v1/clones", fmt::format(R"({{"host":"h1","snapshot":"{}","layer":"a"}})", id), "clone-a");
  });
  entered.get_future().wait();
  auto fast = std::async(std::launch::async, [&] {
    return Call("POST", "/v1/clones", fmt::format(R"({{"host":"h2","snapshot":"{}","layer":"b"}})", id), "clone-b");
  });
  bool done = fast.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  release.set_value();
  ASSERT_TRUE(done) << "a clone waited for another worker's clone in flight";
  EXPECT_EQ(fast.get().status, 201);
  EXPECT_EQ(slow.get().status, 201);
}

// A retry that arrives while its first attempt still runs waits for it and gets its
// reply; the clone runs once.
TEST_F(StoragedTest, Service_ARetryDuringItsFirstAttemptWaitsAndReplays) {
  WriteVolume("h1", "base", "image");
  auto snap = Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"base"})", "snap");
  ASSERT_EQ(snap.status, 201) << snap.body;
  std::string body = fmt::format(R"({{"host":"h1","snapshot":"{}","layer":"a"}})", std::string(Body(snap)["snapshot"]));
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  os_.BeforeNextFiclone([&] {
    entered.set_value();
    released.wait();
  });
  int clones_before = os_.Calls("Ficlone");
  auto first = std::async(std::launch::async, [&] { return Call("POST", "/v1/clones", body, "same-key"); });
  entered.get_future().wait();
  auto retry = std::async(std::launch::async, [&] { return Call("POST", "/v1/clones", body, "same-key"); });
  EXPECT_EQ(retry.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "the retry ran beside its first attempt";
  release.set_value();
  Reply a = first.get(), b = retry.get();
  EXPECT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(b.status, a.status);
  EXPECT_EQ(b.body, a.body);
  EXPECT_EQ(os_.Calls("Ficlone") - clones_before, 1);
}

TEST_F(StoragedTest, Service_IdempotencyKeyReusedForAnotherRequest) {
  WriteVolume("h1", "layer1", "x");
  WriteVolume("h1", "layer2", "y");
  ASSERT_EQ(Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer1"})", "same").status, 201);
  auto r = Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer2"})", "same");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(SnapshotCount(), 1u);
  EXPECT_EQ(Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer2"})", "bad key!").status, 400);
}

// files:clone only reads inside the store and only writes templates/ and volumes/.
TEST_F(StoragedTest, Service_FileCloneStaysInsideTheStore) {
  ASSERT_TRUE(AtomicWriteFile(root_ + "/templates/ext4-1.img", "tmpl", false).ok());
  auto ok = Call("POST", "/v1/files:clone", R"({"src":"templates/ext4-1.img","dst":"volumes/h1/new.img"})");
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(*ReadFileToString(root_ + "/volumes/h1/new.img"), "tmpl");
  for (const char* body :
       {R"({"src":"/etc/passwd","dst":"volumes/h1/x.img"})", R"({"src":"templates/../../x","dst":"volumes/h1/x.img"})",
        R"({"src":"templates/ext4-1.img","dst":"snapshots/0123.img"})",
        R"({"src":"templates/ext4-1.img","dst":"store.json"})", R"({"src":"templates/ext4-1.img"})"}) {
    EXPECT_EQ(Call("POST", "/v1/files:clone", body).status, 400) << body;
  }
  EXPECT_EQ(Call("POST", "/v1/files:clone", R"({"src":"templates/none.img","dst":"volumes/h1/x.img"})").status, 404);
}

// Over HTTP: the client reaches the service; a wrong token is EACCES at once.
TEST_F(StoragedTest, Http_ClientRoundTripAndWrongToken) {
  StartServer();
  storage_backend::StoreServiceClient client(ClientOptions());
  auto desc = storage_backend::FetchStoreDescription(client);
  ASSERT_TRUE(desc.ok()) << desc.status().message();
  EXPECT_EQ((*desc)["export"], "nfs://storage1/srv/slacker");
  storage_backend::StoreServiceClient bad(ClientOptions("nope"));
  auto r = bad.Call("GET", "/v1/store", nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EACCES);
  EXPECT_NE(r.status().message().find("401"), std::string::npos) << r.status().message();
}

// The store is walked for an older release's loose modes once, when storaged starts: not
// again at each new host's first request (every host id walked the whole store under the
// hosts lock before: a 2 s stall of every request when 16 workers joined a busy store,
// bench/scale), and not by a worker opening its view of the store (a round trip per
// entry over NFS). A loose file planted after the start shows whether anything walked.
TEST_F(StoragedTest, Service_TheStoreIsWalkedAtStartNotPerHostNorPerWorker) {
  auto mode = [](const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  };
  std::string before = root_ + "/templates/before.img", after = root_ + "/templates/after.img";
  ASSERT_TRUE(AtomicWriteFile(before, "old", false).ok());
  ASSERT_EQ(::chmod(before.c_str(), 0644), 0);
  OpenService();
  EXPECT_EQ(mode(before), 0600u) << "storaged's start tightens the store";
  ASSERT_TRUE(AtomicWriteFile(after, "later", false).ok());
  ASSERT_EQ(::chmod(after.c_str(), 0644), 0);
  WriteVolume("newhost", "layer1", "data");
  auto r = Call("POST", "/v1/snapshots", R"({"host":"newhost","layer":"layer1"})", "k1");
  ASSERT_EQ(r.status, 201) << r.body;
  StartServer();
  auto view = storage_backend::OpenRestStore(os_, ClientOptions(), root_, "worker9");
  ASSERT_TRUE(view.ok()) << view.status().message();
  EXPECT_EQ(mode(after), 0644u) << "a new host's request or a worker's open walked the whole store";
}

// The transport refuses a body over the bound with 413 (not read into memory).
TEST_F(StoragedTest, Http_OversizeBodyRefused) {
  StartServer();
  storage_backend::StoreServiceClient client(ClientOptions());
  json big = {{"host", "h1"}, {"layer", "l"}, {"meta", {{"pad", std::string(Service::kMaxBody, 'x')}}}};
  auto r = client.Call("POST", "/v1/snapshots", big, "k");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), E2BIG) << r.status().message();
}

// A service that is down: the client retries, then names the service and what to check.
TEST_F(StoragedTest, Http_ServiceDownIsAClearError) {
  StartServer();
  auto opts = ClientOptions();
  server_.reset();  // nobody listens on that port any more
  storage_backend::StoreServiceClient client(opts);
  auto r = client.Call("GET", "/v1/store", nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ECONNREFUSED) << r.status().message();
  EXPECT_NE(r.status().message().find("no answer after 2 attempts"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("slacker-storaged"), std::string::npos);
}

// HTTPS: a client that trusts the server's certificate works; one that does not (or that
// speaks plain HTTP) gets no answer.
TEST_F(StoragedTest, Http_Tls) {
  std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                    "-addext subjectAltName=DNS:localhost -keyout " + dir_ + "/key.pem -out " + dir_ +
                    "/cert.pem >/dev/null 2>&1";
  if (::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI missing: cannot make a test certificate";
  ASSERT_EQ(::system(cmd.c_str()), 0) << cmd;
  ServerOptions so;
  so.tls_cert_file = dir_ + "/cert.pem";
  so.tls_key_file = dir_ + "/key.pem";
  server_ = std::make_unique<HttpServer>(*service_, so);
  ASSERT_TRUE(server_->Start().ok());
  storage_backend::RestOptions o = ClientOptions();
  o.url = "https://localhost:" + std::to_string(server_->port());
  o.ca_file = dir_ + "/cert.pem";
  auto desc = storage_backend::FetchStoreDescription(storage_backend::StoreServiceClient(o));
  ASSERT_TRUE(desc.ok()) << desc.status().message();
  EXPECT_EQ((*desc)["export"], "nfs://storage1/srv/slacker");
  o.attempts = 1;
  o.ca_file = "";  // the system CAs do not vouch for a self-signed certificate
  EXPECT_FALSE(storage_backend::StoreServiceClient(o).Call("GET", "/v1/store", nullptr).ok());
  o.url = "http://localhost:" + std::to_string(server_->port());
  EXPECT_FALSE(storage_backend::StoreServiceClient(o).Call("GET", "/v1/store", nullptr).ok());
}

// The rest backend over a view of the same files (as a kernel NFS mount would give):
// snapshot and clone go through the service, reads through the files.
TEST_F(StoragedTest, RestBackend_SnapshotAndCloneThroughTheService) {
  StartServer();
  auto b = storage_backend::OpenRestStore(os_, ClientOptions(), root_, "w1");
  ASSERT_TRUE(b.ok()) << b.status().message();
  auto& backend = **b;
  ASSERT_TRUE(AtomicWriteFile(backend.VolumePath("vol1"), "volume-bytes", false).ok());
  auto snap = backend.SnapshotVolume("vol1", {{"source", "commit"}});
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_TRUE(backend.SnapshotExists(*snap));
  EXPECT_EQ((*backend.ReadSnapshotMeta(*snap))["source"], "commit");
  ASSERT_TRUE(backend.CloneSnapshot(*snap, "vol2").ok());
  EXPECT_EQ(*ReadFileToString(backend.VolumePath("vol2")), "volume-bytes");
  auto promoted = backend.PromoteVolume("vol2", nullptr);
  ASSERT_TRUE(promoted.ok()) << promoted.status().message();
  EXPECT_FALSE(PathExists(backend.VolumePath("vol2")));
  auto missing = backend.CloneSnapshot(std::string(32, 'b'), "vol3");
  EXPECT_EQ(missing.code(), ENOENT) << missing.message();
  EXPECT_FALSE(backend.CloneFile("/etc/passwd", backend.VolumePath("x")).ok());
  // A files view that belongs to another store is refused.
  std::string other = dir_ + "/other";
  ASSERT_TRUE(MakeDirs(other, 0755).ok());
  ASSERT_TRUE(AtomicWriteFile(other + "/store.json",
                              R"({"format":1,"uuid":"00000000000000000000000000000000","created":"x"})", false)
                  .ok());
  auto wrong = storage_backend::OpenRestStore(os_, ClientOptions(), other, "w1");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("wrong mount"), std::string::npos) << wrong.status().message();
}

// --- Confinement: a worker (root over NFS) can plant symlinks anywhere on the store. ---

// volumes/evil -> a host directory: a clone into volumes/evil/x.img is a 4xx and creates
// nothing outside the store.
TEST_F(StoragedTest, Service_RefusesASymlinkedDirectory) {
  std::string outside = dir_ + "/cron.d";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  ASSERT_TRUE(AtomicWriteFile(root_ + "/templates/ext4-1.img", "tmpl", false).ok());
  ASSERT_TRUE(MakeDirs(root_ + "/volumes", 0700).ok());
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/volumes/evil").c_str()), 0);
  auto r = Call("POST", "/v1/files:clone", R"({"src":"templates/ext4-1.img","dst":"volumes/evil/x.img"})");
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_LT(r.status, 500) << r.body;
  EXPECT_EQ(*ListDir(outside), std::vector<std::string>{});
  r = Call("POST", "/v1/clones", json{{"host", "evil"}, {"snapshot", std::string(32, 'a')}, {"layer", "x"}}.dump());
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_LT(r.status, 500) << r.body;
  EXPECT_EQ(*ListDir(outside), std::vector<std::string>{});
}

// volumes/w1/leak.img -> a host secret (0600): snapshot and promote are refused, nothing
// is copied into the store and the secret is unchanged.
TEST_F(StoragedTest, Service_RefusesASymlinkedVolume) {
  std::string secret = dir_ + "/shadow";
  ASSERT_TRUE(AtomicWriteFile(secret, "root:secret\n", false, 0600).ok());
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  ASSERT_TRUE(MakeDirs(root_ + "/volumes/w1", 0700).ok());
  ASSERT_EQ(::symlink(secret.c_str(), (root_ + "/volumes/w1/leak.img").c_str()), 0);
  for (const char* body : {R"({"host":"w1","layer":"leak"})", R"({"host":"w1","layer":"leak","move":true})"}) {
    auto r = Call("POST", "/v1/snapshots", body);
    EXPECT_GE(r.status, 400) << body << " " << r.body;
    EXPECT_LT(r.status, 500) << body << " " << r.body;
  }
  auto r = Call("POST", "/v1/files:clone", R"({"src":"volumes/w1/leak.img","dst":"volumes/w1/copy.img"})");
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_LT(r.status, 500) << r.body;
  EXPECT_EQ(SnapshotCount(), 0u);
  auto left = ListDir(root_ + "/snapshots");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, std::vector<std::string>{});
  EXPECT_FALSE(PathExists(root_ + "/volumes/w1/copy.img"));
  struct stat st;
  ASSERT_EQ(::lstat(secret.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(*ReadFileToString(secret), "root:secret\n");
}

// ".." and absolute paths, in source and destination, are a 400 and touch nothing.
TEST_F(StoragedTest, Service_RefusesDotDotAndAbsolutePaths) {
  ASSERT_TRUE(AtomicWriteFile(root_ + "/templates/ext4-1.img", "tmpl", false).ok());
  for (const char* body : {R"({"src":"/etc/passwd","dst":"volumes/h1/x.img"})",
                           R"({"src":"templates/../../secret","dst":"volumes/h1/x.img"})",
                           R"({"src":"templates/ext4-1.img","dst":"/tmp/x.img"})",
                           R"({"src":"templates/ext4-1.img","dst":"volumes/h1/../../../escaped.img"})",
                           R"({"src":"templates/ext4-1.img","dst":"volumes/../../escaped.img"})"}) {
    EXPECT_EQ(Call("POST", "/v1/files:clone", body).status, 400) << body;
  }
  EXPECT_FALSE(PathExists(dir_ + "/escaped.img"));
  EXPECT_FALSE(PathExists(root_ + "/volumes/h1/x.img"));
}

// Idempotency records older than the TTL are pruned while the service runs, not only
// when it starts.
TEST_F(StoragedTest, Service_PrunesIdempotencyRecordsWhileRunning) {
  service_.reset();
  ServiceOptions o{root_, "nfs://storage1/srv/slacker", kToken};
  o.idempotency_ttl_seconds = 60;
  o.prune_interval_seconds = 0;
  auto s = Service::Open(os_, o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  service_ = std::move(s).value();
  WriteVolume("h1", "layer1", "x");
  ASSERT_EQ(Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer1"})", "old-key").status, 201);
  std::string old_record = root_ + "/.storaged/requests/old-key.json";
  ASSERT_TRUE(PathExists(old_record));
  struct timespec ts[2] = {{std::time(nullptr) - 3600, 0}, {std::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, old_record.c_str(), ts, 0), 0);
  ASSERT_EQ(Call("POST", "/v1/snapshots", R"({"host":"h1","layer":"layer1"})", "new-key").status, 201);
  EXPECT_FALSE(PathExists(old_record)) << "an expired record survived a later request";
  EXPECT_TRUE(PathExists(root_ + "/.storaged/requests/new-key.json"));
}

// --- Transport limits: nothing a client does before authenticating holds the service. ---

// A connected TCP socket to the test server.
UniqueFd Connect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  return fd;
}

// Seconds until the server closes `fd` (reads until EOF or error), at most `limit`.
double SecondsUntilClosed(int fd, int limit) {
  auto start = std::chrono::steady_clock::now();
  char buf[4096];
  for (;;) {
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > limit) return waited;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
}

std::string ReadAll(int fd, int limit_seconds) {
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// A client that sends half a header and then nothing is dropped after the header
// deadline (it used to be held 8 s and more), and the service keeps answering.
TEST_F(StoragedTest, Http_SlowHeaderClientIsDropped) {
  ServerOptions so;
  so.read_timeout_seconds = 1;
  so.header_timeout_seconds = 1;
  server_ = std::make_unique<HttpServer>(*service_, so);
  ASSERT_TRUE(server_->Start().ok());
  UniqueFd slow = Connect(server_->port());
  ASSERT_TRUE(slow.valid());
  std::string half = "GET /v1/store HTTP/1.1\r\nHost: x\r\nAuthor";
  ASSERT_EQ(::write(slow.get(), half.data(), half.size()), static_cast<ssize_t>(half.size()));
  double held = SecondsUntilClosed(slow.get(), 8);
  EXPECT_LT(held, 4.0) << "a half-sent header held the connection " << held << " s";
  storage_backend::StoreServiceClient client(ClientOptions());
  EXPECT_TRUE(storage_backend::FetchStoreDescription(client).ok());
}

// A body that trickles in slower than the body deadline is dropped too.
TEST_F(StoragedTest, Http_SlowBodyClientIsDropped) {
  ServerOptions so;
  so.body_timeout_seconds = 1;
  server_ = std::make_unique<HttpServer>(*service_, so);
  ASSERT_TRUE(server_->Start().ok());
  UniqueFd slow = Connect(server_->port());
  ASSERT_TRUE(slow.valid());
  std::string head = "POST /v1/snapshots HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"host\":";
  ASSERT_EQ(::write(slow.get(), head.data(), head.size()), static_cast<ssize_t>(head.size()));
  double held = SecondsUntilClosed(slow.get(), 8);
  EXPECT_LT(held, 4.0) << "a half-sent body held the connection " << held << " s";
}

// Beyond the connection limit a client gets 503 at once; the clients within it are
// served, and a slot frees when a connection ends.
TEST_F(StoragedTest, Http_ConnectionLimit) {
  ServerOptions so;
  so.max_connections = 2;
  so.read_timeout_seconds = 30;
  server_ = std::make_unique<HttpServer>(*service_, so);
  ASSERT_TRUE(server_->Start().ok());
  UniqueFd a = Connect(server_->port());
  UniqueFd b = Connect(server_->port());
  ASSERT_TRUE(a.valid() && b.valid());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // both accepted
  UniqueFd c = Connect(server_->port());
  ASSERT_TRUE(c.valid());
  std::string reply = ReadAll(c.get(), 5);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 503")) << reply;
  a.Reset();
  // a's thread sees the close and frees its slot; wait for that (bounded), not a fixed time.
  std::string status;
  for (int i = 0; i < 50 && !status.starts_with("HTTP/1.1 200"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    UniqueFd d = Connect(server_->port());
    std::string req = std::string("GET /v1/store HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ") +
                      kToken + "\r\n\r\n";
    ASSERT_EQ(::write(d.get(), req.data(), req.size()), static_cast<ssize_t>(req.size()));
    status = ReadAll(d.get(), 5);
  }
  EXPECT_TRUE(status.starts_with("HTTP/1.1 200")) << status;
}

// When a connection's thread cannot be created (std::system_error), that connection is
// closed and the service keeps running.
TEST_F(StoragedTest, Http_SurvivesThreadCreationFailure) {
  ServerOptions so;
  std::atomic<int> refused{0};
  so.spawn = [&refused](std::function<void()> run) {
    if (refused.fetch_add(1) == 0) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    std::thread(std::move(run)).detach();
  };
  server_ = std::make_unique<HttpServer>(*service_, so);
  ASSERT_TRUE(server_->Start().ok());
  UniqueFd first = Connect(server_->port());
  ASSERT_TRUE(first.valid());
  EXPECT_LT(SecondsUntilClosed(first.get(), 5), 4.0);
  storage_backend::StoreServiceClient client(ClientOptions());
  EXPECT_TRUE(storage_backend::FetchStoreDescription(client).ok());
  EXPECT_GE(refused.load(), 2);
}

}  // namespace
}  // namespace slacker::storaged
