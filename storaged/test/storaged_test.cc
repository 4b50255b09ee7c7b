// The snapshot service: request logic (Service) on FakeOs in a temp dir, and the HTTP
// transport with the rest backend's client against an in-process server.
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
    RemoveTree(dir_);
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

}  // namespace
}  // namespace slacker::storaged
