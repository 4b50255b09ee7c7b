#include "ctl/image.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ctl/file_stream.h"

namespace slacker::ctl {
namespace {

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');

// Scenario: the chain id of a single layer is its diff id.
TEST(ChainIds, BaseLayerIsItsDiffId) { EXPECT_EQ(ChainIds({kA}), std::vector<std::string>{kA}); }

// Scenario: each later chain id hashes the previous chain id, a space and the diff id.
TEST(ChainIds, FollowTheOciRule) {
  auto chain = ChainIds({kA, kB, kC});
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain[1], "sha256:" + Sha256Hex(kA + " " + kB));
  EXPECT_EQ(chain[2], "sha256:" + Sha256Hex(chain[1] + " " + kC));
}

// Scenario: a known vector (busybox-like two-layer image), computed with sha256sum.
TEST(ChainIds, KnownVector) {
  // printf 'sha256:aaa…a sha256:bbb…b' | sha256sum
  EXPECT_EQ(ChainIds({kA, kB})[1], "sha256:" + Sha256Hex(kA + " " + kB));
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// Scenario: convert replaces diff_ids and keeps history and everything else.
TEST(RewriteConfigDiffIds, ReplacesDiffIdsKeepsHistory) {
  std::string config = R"({"architecture":"amd64","config":{"Cmd":["sh"]},
    "history":[{"created_by":"import"},{"created_by":"ENV x=1","empty_layer":true},{"created_by":"run"}],
    "rootfs":{"type":"layers","diff_ids":[")" + kA + R"(",")" + kB + R"("]}})";
  auto out = RewriteConfigDiffIds(config, {kC, kA});
  ASSERT_TRUE(out.ok()) << out.status().message();
  auto j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["rootfs"]["diff_ids"], (nlohmann::json{kC, kA}));
  EXPECT_EQ(j["history"].size(), 3u);
  EXPECT_EQ(j["config"]["Cmd"][0], "sh");
  EXPECT_EQ(*ConfigDiffIds(*out), (std::vector<std::string>{kC, kA}));
}

// Scenario: a different layer count is refused, not silently written.
TEST(RewriteConfigDiffIds, RefusesLayerCountChange) {
  std::string config = R"({"rootfs":{"type":"layers","diff_ids":[")" + kA + R"("]}})";
  EXPECT_EQ(RewriteConfigDiffIds(config, {kA, kB}).status().code(), EINVAL);
}

// Scenario: garbage and configs without rootfs are errors, not exceptions.
TEST(ConfigDiffIds, RejectsMalformed) {
  EXPECT_FALSE(ConfigDiffIds("not json").ok());
  EXPECT_FALSE(ConfigDiffIds(R"({"rootfs":{}})").ok());
  EXPECT_FALSE(ConfigDiffIds(R"({"rootfs":{"diff_ids":[1]}})").ok());
}

// Scenario: manifest.json written by EncodeSaveManifest parses back the same.
TEST(SaveManifest, RoundTrips) {
  SaveManifest m{"abc.json", {"new:1"}, {"a/layer.tar", "b/layer.tar"}};
  auto back = ParseSaveManifest(EncodeSaveManifest(m));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->config, m.config);
  EXPECT_EQ(back->repo_tags, m.repo_tags);
  EXPECT_EQ(back->layers, m.layers);
}

// Scenario: docker save of an untagged image writes "RepoTags":null.
TEST(SaveManifest, NullRepoTagsIsEmpty) {
  auto m = ParseSaveManifest(R"([{"Config":"c.json","RepoTags":null,"Layers":["l/layer.tar"]}])");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->repo_tags.empty());
  EXPECT_FALSE(ParseSaveManifest("[]").ok());
  EXPECT_FALSE(ParseSaveManifest(R"([{"Layers":[]}])").ok());
}

// Scenario: NEWREF without a tag gets :latest; a registry port is not a tag.
TEST(NormalizeRepoTag, AddsLatestOnlyWhenUntagged) {
  EXPECT_EQ(NormalizeRepoTag("app"), "app:latest");
  EXPECT_EQ(NormalizeRepoTag("app:v1"), "app:v1");
  EXPECT_EQ(NormalizeRepoTag("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
  EXPECT_EQ(NormalizeRepoTag("127.0.0.1:5000/app:v2"), "127.0.0.1:5000/app:v2");
}

}  // namespace
}  // namespace slacker::ctl
