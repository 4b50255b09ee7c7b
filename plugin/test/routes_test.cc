// Golden request → reply pairs for every route, over the real socket.
#include <gtest/gtest.h>

#include "plugin/test/server_fixture.h"

namespace slacker::plugin {
namespace {

using nlohmann::json;
using Call = FakeGraphDriver::Call;

class GraphDriverRoutes : public PluginServerTest {
 protected:
  Call OnlyCall() {
    auto calls = fake_.calls();
    EXPECT_EQ(calls.size(), 1u);
    return calls.empty() ? Call{} : calls[0];
  }
};

// Legacy plugin discovery: dockerd first asks what the plugin implements.
TEST_F(GraphDriverRoutes, ActivateImplementsGraphDriver) {
  ExpectCall("/Plugin.Activate", "null", 200, R"({"Implements":["GraphDriver"]})");
}

// Init hands Home and Opts to the driver; UID/GID maps are accepted and ignored.
TEST_F(GraphDriverRoutes, InitPassesHomeAndOpts) {
  ExpectCall(
      "/GraphDriver.Init",
      R"({"Home":"/var/lib/docker/slacker","Opts":["size=10G","slacker.size=20G"],"UIDMaps":[],"GIDMaps":null})",
      200, "{}");
  Call c = OnlyCall();
  EXPECT_EQ(c.method, "Init");
  EXPECT_EQ(c.home, "/var/lib/docker/slacker");
  EXPECT_EQ(c.options, (std::vector<std::string>{"size=10G", "slacker.size=20G"}));
}

// dockerd sends "Opts":null when no --storage-opt is given.
TEST_F(GraphDriverRoutes, InitAcceptsNullOpts) {
  ExpectCall("/GraphDriver.Init", R"({"Home":"/h","Opts":null,"UIDMaps":null,"GIDMaps":null})", 200,
             "{}");
  EXPECT_TRUE(OnlyCall().options.empty());
}

// Without Home the driver has nowhere to live: the request is refused before the driver.
TEST_F(GraphDriverRoutes, InitWithoutHomeIs400) {
  ExpectCall("/GraphDriver.Init", R"({"Opts":[]})", 400,
             R"({"Err":"GraphDriver.Init: missing field Home"})");
  EXPECT_TRUE(fake_.calls().empty());
}

// Opts must be strings.
TEST_F(GraphDriverRoutes, InitWithNonStringOptsIs400) {
  ExpectCall("/GraphDriver.Init", R"({"Home":"/h","Opts":[1]})", 400,
             R"({"Err":"GraphDriver.Init: field Opts must be an array of strings"})");
}

// A failing Init reports the driver's message with 500.
TEST_F(GraphDriverRoutes, InitDriverErrorIs500) {
  fake_.errors["Init"] = Errorf(EACCES, "create /h/layers: Permission denied");
  ExpectCall("/GraphDriver.Init", R"({"Home":"/h"})", 500,
             R"({"Err":"create /h/layers: Permission denied"})");
}

// The capability that makes dockerd use Diff for push/save.
TEST_F(GraphDriverRoutes, CapabilitiesReportsExactDiffs) {
  ExpectCall("/GraphDriver.Capabilities", "null", 200,
             R"({"Capabilities":{"ReproducesExactDiffs":true}})");
}

TEST_F(GraphDriverRoutes, CapabilitiesReportsInexactDiffs) {
  fake_.capabilities.reproduces_exact_diffs = false;
  ExpectCall("/GraphDriver.Capabilities", "{}", 200,
             R"({"Capabilities":{"ReproducesExactDiffs":false}})");
}

// Status rows keep their order, as `docker info` shows them.
TEST_F(GraphDriverRoutes, StatusListsRows) {
  fake_.status_rows = {{"Store", "/srv/slacker"}, {"Layers", "3"}};
  ExpectCall("/GraphDriver.Status", "null", 200,
             R"({"Status":[["Store","/srv/slacker"],["Layers","3"]]})");
}

TEST_F(GraphDriverRoutes, StatusWithoutRowsIsEmptyList) {
  ExpectCall("/GraphDriver.Status", "", 200, R"({"Status":[]})");
}

TEST_F(GraphDriverRoutes, GetMetadataReturnsMap) {
  fake_.metadata = {{"Snapshot", "3fa"}, {"Store", "/srv"}};
  ExpectCall("/GraphDriver.GetMetadata", R"({"ID":"l1"})", 200,
             R"({"Metadata":{"Snapshot":"3fa","Store":"/srv"}})");
  EXPECT_EQ(OnlyCall().id, "l1");
}

TEST_F(GraphDriverRoutes, GetMetadataEmptyIsEmptyObject) {
  fake_.metadata.emplace();
  ExpectCall("/GraphDriver.GetMetadata", R"({"ID":"l1"})", 200, R"({"Metadata":{}})");
}

// A driver error reaches dockerd as 500 with the driver's own message.
TEST_F(GraphDriverRoutes, GetMetadataUnknownLayerIs500) {
  fake_.errors["GetMetadata"] = Errorf(ENOENT, "layer l9: no such layer");
  ExpectCall("/GraphDriver.GetMetadata", R"({"ID":"l9"})", 500,
             R"({"Err":"layer l9: no such layer"})");
}

// StorageOpt (--storage-opt size=…) reaches the driver as a map.
TEST_F(GraphDriverRoutes, CreatePassesStorageOpt) {
  fake_.AddLayer("l1");
  ExpectCall("/GraphDriver.Create",
             R"({"ID":"l2","Parent":"l1","MountLabel":"lbl","StorageOpt":{"size":"50M"}})", 200,
             "{}");
  Call c = OnlyCall();
  EXPECT_EQ(c.method, "Create");
  EXPECT_EQ(c.id, "l2");
  EXPECT_EQ(c.parent, "l1");
  EXPECT_EQ(c.mount_label, "lbl");
  EXPECT_EQ(c.storage_opt, (std::map<std::string, std::string>{{"size", "50M"}}));
}

// dockerd omits StorageOpt when empty; null and absent both mean none.
TEST_F(GraphDriverRoutes, CreateAcceptsNullOrAbsentStorageOpt) {
  ExpectCall("/GraphDriver.Create", R"({"ID":"l1","Parent":"","StorageOpt":null})", 200, "{}");
  ExpectCall("/GraphDriver.Create", R"({"ID":"l2","Parent":null})", 200, "{}");
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(calls[0].storage_opt.empty());
  EXPECT_EQ(calls[1].parent, "");
}

TEST_F(GraphDriverRoutes, CreateWithNonStringStorageOptIs400) {
  ExpectCall("/GraphDriver.Create", R"({"ID":"l1","StorageOpt":{"size":50}})", 400,
             R"({"Err":"GraphDriver.Create: field StorageOpt must be an object of strings"})");
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(GraphDriverRoutes, CreateReadWriteCallsReadWrite) {
  fake_.AddLayer("l1");
  ExpectCall("/GraphDriver.CreateReadWrite",
             R"({"ID":"c-init","Parent":"l1","MountLabel":"","StorageOpt":{"size":"1G"}})", 200,
             "{}");
  Call c = OnlyCall();
  EXPECT_EQ(c.method, "CreateReadWrite");
  EXPECT_EQ(c.id, "c-init");
  EXPECT_EQ(c.storage_opt.at("size"), "1G");
}

TEST_F(GraphDriverRoutes, CreateExistingLayerIs500) {
  fake_.errors["Create"] = Errorf(EEXIST, "layer l1 already exists");
  ExpectCall("/GraphDriver.Create", R"({"ID":"l1"})", 500, R"({"Err":"layer l1 already exists"})");
}

TEST_F(GraphDriverRoutes, RemoveReturnsEmptyObject) {
  ExpectCall("/GraphDriver.Remove", R"({"ID":"l1"})", 200, "{}");
  EXPECT_EQ(OnlyCall().method, "Remove");
}

TEST_F(GraphDriverRoutes, GetReturnsDir) {
  fake_.AddLayer("l1");
  ExpectCall("/GraphDriver.Get", R"({"ID":"l1","MountLabel":"system_u:object_r:c1"})", 200,
             json{{"Dir", dir_ + "/state/mnt/l1"}}.dump());
  Call c = OnlyCall();
  EXPECT_EQ(c.id, "l1");
  EXPECT_EQ(c.mount_label, "system_u:object_r:c1");
}

// Newer daemons may add fields; they must not break the call.
TEST_F(GraphDriverRoutes, GetIgnoresUnknownFields) {
  fake_.dir = "/var/lib/slacker/mnt/l1";
  ExpectCall("/GraphDriver.Get", R"({"ID":"l1","MountLabel":"","Future":{"x":[1,2]},"N":3})", 200,
             R"({"Dir":"/var/lib/slacker/mnt/l1"})");
}

TEST_F(GraphDriverRoutes, GetMalformedJsonIs400) {
  HttpReply r = Client().Post("/GraphDriver.Get", R"({"ID":)");
  EXPECT_EQ(r.status, 400);
  std::string err = json::parse(r.body, nullptr, false).value("Err", "");
  EXPECT_TRUE(err.starts_with("GraphDriver.Get: request body is not valid JSON: ")) << err;
  EXPECT_NE(err.find("parse error"), std::string::npos) << err;
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(GraphDriverRoutes, GetMissingIdIs400) {
  ExpectCall("/GraphDriver.Get", R"({"MountLabel":""})", 400,
             R"({"Err":"GraphDriver.Get: missing field ID"})");
  EXPECT_TRUE(fake_.calls().empty());
}

// dockerd's plugin client retries a call whose connection broke (slackerd killed during
// it) with the already consumed, now empty, body: the error says so.
TEST_F(GraphDriverRoutes, EmptyBodyRetriedByDockerdSaysSo) {
  ExpectCall("/GraphDriver.Get", "", 400,
             R"({"Err":"GraphDriver.Get: missing field ID: the request body was empty (dockerd retries a call )"
             R"(with an empty body after the plugin restarted during it); run the docker command again"})");
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(GraphDriverRoutes, GetEmptyIdIs400) {
  ExpectCall("/GraphDriver.Get", R"({"ID":""})", 400,
             R"({"Err":"GraphDriver.Get: field ID must not be empty"})");
}

TEST_F(GraphDriverRoutes, GetNonStringIdIs400) {
  ExpectCall("/GraphDriver.Get", R"({"ID":7})", 400,
             R"({"Err":"GraphDriver.Get: field ID must be a string"})");
}

TEST_F(GraphDriverRoutes, GetNonObjectBodyIs400) {
  ExpectCall("/GraphDriver.Get", R"(["l1"])", 400,
             R"({"Err":"GraphDriver.Get: request body must be a JSON object"})");
}

TEST_F(GraphDriverRoutes, GetDriverErrorIs500) {
  fake_.errors["Get"] = Errorf(EIO, "mount layer l1 at /mnt/l1: Input/output error");
  ExpectCall("/GraphDriver.Get", R"({"ID":"l1"})", 500,
             R"({"Err":"mount layer l1 at /mnt/l1: Input/output error"})");
}

TEST_F(GraphDriverRoutes, PutReturnsEmptyObject) {
  fake_.AddLayer("l1");
  ExpectCall("/GraphDriver.Put", R"({"ID":"l1"})", 200, "{}");
  EXPECT_EQ(OnlyCall().method, "Put");
}

TEST_F(GraphDriverRoutes, ExistsReportsTrue) {
  fake_.AddLayer("l1");
  ExpectCall("/GraphDriver.Exists", R"({"ID":"l1"})", 200, R"({"Exists":true})");
}

TEST_F(GraphDriverRoutes, ExistsReportsFalse) {
  ExpectCall("/GraphDriver.Exists", R"({"ID":"l1"})", 200, R"({"Exists":false})");
}

// Kinds are integers: 0 modified, 1 added, 2 deleted.
TEST_F(GraphDriverRoutes, ChangesListsKinds) {
  fake_.changes = {{"/etc/hosts", driver::ChangeKind::kModify},
                   {"/new", driver::ChangeKind::kAdd},
                   {"/gone", driver::ChangeKind::kDelete}};
  ExpectCall("/GraphDriver.Changes", R"({"ID":"c","Parent":"c-init"})", 200,
             R"({"Changes":[{"Path":"/etc/hosts","Kind":0},{"Path":"/new","Kind":1},
                            {"Path":"/gone","Kind":2}]})");
  Call c = OnlyCall();
  EXPECT_EQ(c.id, "c");
  EXPECT_EQ(c.parent, "c-init");
}

// No changes is an empty list, never null.
TEST_F(GraphDriverRoutes, ChangesEmptyIsEmptyList) {
  fake_.AddLayer("c-init");
  fake_.AddLayer("c", "c-init", /*read_write=*/true);
  HttpReply r = Client().Post("/GraphDriver.Changes", R"({"ID":"c","Parent":"c-init"})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"Changes":[]})");
}

// File names need not be UTF-8; like Go's encoding/json the reply replaces bad bytes.
TEST_F(GraphDriverRoutes, ChangesWithNonUtf8PathIsStillJson) {
  fake_.changes = {{"/bad\xff", driver::ChangeKind::kAdd}};
  ExpectCall("/GraphDriver.Changes", R"({"ID":"c"})", 200,
             R"({"Changes":[{"Path":"/bad\ufffd","Kind":1}]})");
}

TEST_F(GraphDriverRoutes, DiffSizeReturnsSize) {
  fake_.diff_size = int64_t{5} << 32;
  ExpectCall("/GraphDriver.DiffSize", R"({"ID":"c","Parent":"c-init"})", 200,
             R"({"Size":21474836480})");
  EXPECT_EQ(OnlyCall().parent, "c-init");
}

TEST_F(GraphDriverRoutes, CleanupReturnsEmptyObject) {
  ExpectCall("/GraphDriver.Cleanup", "null", 200, "{}");
  EXPECT_EQ(OnlyCall().method, "Cleanup");
}

// A Diff that fails before its first byte is an ordinary JSON error.
TEST_F(GraphDriverRoutes, DiffDriverErrorIsJson500) {
  fake_.errors["Diff"] = Errorf(ENOENT, "layer l9: no such layer");
  ExpectCall("/GraphDriver.Diff", R"({"ID":"l9","Parent":""})", 500,
             R"({"Err":"layer l9: no such layer"})");
}

TEST_F(GraphDriverRoutes, ApplyDiffDecodesQuery) {
  fake_.apply_size = 4096;
  ExpectCall("/GraphDriver.ApplyDiff?id=l%32&parent=p1", "tar bytes", 200, R"({"Size":4096})");
  Call c = OnlyCall();
  EXPECT_EQ(c.id, "l2");
  EXPECT_EQ(c.parent, "p1");
  EXPECT_EQ(fake_.applied(), "tar bytes");
}

TEST_F(GraphDriverRoutes, ApplyDiffWithoutIdIs400) {
  ExpectCall("/GraphDriver.ApplyDiff?parent=p1", "tar", 400,
             R"({"Err":"GraphDriver.ApplyDiff: missing query parameter id"})");
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(GraphDriverRoutes, ApplyDiffDriverErrorIs500) {
  fake_.errors["ApplyDiff"] = Errorf(ENOSPC, "apply layer l1: No space left on device");
  ExpectCall("/GraphDriver.ApplyDiff?id=l1&parent=", "tar", 500,
             R"({"Err":"apply layer l1: No space left on device"})");
}

TEST_F(GraphDriverRoutes, UnknownRouteIs404) {
  ExpectCall("/GraphDriver.Frobnicate", "{}", 404,
             R"({"Err":"unknown route /GraphDriver.Frobnicate"})");
}

TEST_F(GraphDriverRoutes, NonPostIs405) {
  HttpReply r = Client().Send("GET", "/GraphDriver.Get", "");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"/GraphDriver.Get takes POST, not GET"})"));
}

// JSON bodies are bounded; only ApplyDiff streams an unbounded body.
TEST_F(GraphDriverRoutes, OversizedJsonIs413) {
  opts_.max_json_body = 64;
  StartServer();
  std::string body = R"({"ID":"l1","Pad":")" + std::string(100, 'x') + R"("})";
  ExpectCall("/GraphDriver.Get", body, 413,
             R"({"Err":"GraphDriver.Get: request body exceeds 64 bytes"})");
  EXPECT_TRUE(fake_.calls().empty());
}

// Every JSON reply, errors included, carries the plugin content type (checked in ExpectCall)
// and a keep-alive connection serves many calls.
TEST_F(GraphDriverRoutes, KeepAliveServesSeveralCalls) {
  fake_.AddLayer("l1");
  TestClient client = Client();
  for (int i = 0; i < 3; ++i) {
    HttpReply r = client.Post("/GraphDriver.Get", R"({"ID":"l1"})");
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.keep_alive);
  }
  EXPECT_EQ(client.Post("/GraphDriver.Nope", "{}").status, 404);
  EXPECT_EQ(client.Post("/GraphDriver.Put", R"({"ID":"l1"})").status, 200);
  EXPECT_EQ(fake_.calls().size(), 4u);
}

}  // namespace
}  // namespace slacker::plugin
