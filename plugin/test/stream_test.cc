// ApplyDiff bodies and Diff replies are streamed through, byte for byte.
#include <gtest/gtest.h>

#include <random>

#include "plugin/test/server_fixture.h"

namespace slacker::plugin {
namespace {

using nlohmann::json;

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen());
  return s;
}

class Streaming : public PluginServerTest {
 protected:
  void SetUp() override {
    PluginServerTest::SetUp();
    fake_.AddLayer("l1");
    fake_.apply_size = 0;  // the bodies here are random bytes, not tars
  }
};

// dockerd sends layers chunked. The driver reads with a buffer larger than the whole body
// and still gets it in many pieces: the server hands over what arrives, not the body.
TEST_F(Streaming, ApplyDiffChunkedBodyArrivesByteIdentical) {
  std::string tar = RandomBytes(6 << 20, 1);
  fake_.apply_read_size = 8 << 20;
  fake_.apply_size = 6 << 20;
  HttpReply r = Client().PostChunked("/GraphDriver.ApplyDiff?id=l1&parent=l0", tar, 100'000);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Size":6291456})"));
  EXPECT_TRUE(fake_.applied() == tar) << "applied " << fake_.applied().size() << " bytes";
  EXPECT_GT(fake_.apply_reads(), 1);
}

// A plain Content-Length body works as well.
TEST_F(Streaming, ApplyDiffContentLengthBodyArrivesByteIdentical) {
  std::string tar = RandomBytes(3 << 20, 2);
  HttpReply r = Client().Post("/GraphDriver.ApplyDiff?id=l1", tar);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(fake_.applied() == tar) << "applied " << fake_.applied().size() << " bytes";
}

// The driver gives up after 1 MiB of a 4 MiB body: the client still finishes sending and
// gets the JSON error, and the connection is not reused.
TEST_F(Streaming, ApplyDiffFailingEarlyStillRepliesJsonError) {
  fake_.apply_fail_after = 1 << 20;
  TestClient client = Client();
  HttpReply r = client.PostChunked("/GraphDriver.ApplyDiff?id=l1", RandomBytes(4 << 20, 3), 65536);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"Err":"scripted apply failure for layer l1"})"));
  EXPECT_FALSE(r.keep_alive);
  EXPECT_EQ(client.Post("/GraphDriver.Get", R"({"ID":"l1"})").status, 200);
}

// After a complete ApplyDiff the same connection serves the next call.
TEST_F(Streaming, ApplyDiffKeepsConnectionAlive) {
  TestClient client = Client();
  HttpReply r = client.PostChunked("/GraphDriver.ApplyDiff?id=l1", RandomBytes(1 << 20, 4), 4096);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.keep_alive);
  HttpReply put = client.Post("/GraphDriver.Put", R"({"ID":"l1"})");
  EXPECT_EQ(put.error, "");  // a closed connection would fail here, not reconnect
  EXPECT_EQ(put.status, 200);
}

// Diff is a raw, chunked tar stream, not JSON.
TEST_F(Streaming, DiffStreamsSeveralMiBByteIdentical) {
  fake_.diff_data = RandomBytes(5 << 20 | 123, 5);
  TestClient client = Client();
  HttpReply r = client.Post("/GraphDriver.Diff", R"({"ID":"l1","Parent":"l0"})");
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/x-tar");
  EXPECT_TRUE(r.chunked);
  EXPECT_TRUE(r.body == fake_.diff_data) << "got " << r.body.size() << " bytes";
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].parent, "l0");
  EXPECT_EQ(client.Post("/GraphDriver.Put", R"({"ID":"l1"})").status, 200);
}

// An empty layer's diff (just the end-of-archive blocks) passes through unchanged.
TEST_F(Streaming, DiffOfEmptyLayerIsEndOfArchive) {
  fake_.diff_data = std::string(1024, '\0');
  HttpReply r = Client().Post("/GraphDriver.Diff", R"({"ID":"l1"})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, fake_.diff_data);
}

// A stream failing mid-way must not look like a complete (short) tar to dockerd: the
// connection is cut before the final chunk.
TEST_F(Streaming, DiffFailingMidwayTruncatesStream) {
  fake_.diff_data = RandomBytes(3 << 20, 6);
  fake_.diff_fail_after = 1 << 20;
  HttpReply r = Client().Post("/GraphDriver.Diff", R"({"ID":"l1"})");
  EXPECT_NE(r.error, "");
  EXPECT_LE(r.body.size(), size_t{1} << 20);
}

}  // namespace
}  // namespace slacker::plugin
