// The start-up trace codec (prefetch_trace.h): what it writes it reads back, and a
// trace from the store that is truncated, damaged, hostile or oversized is refused.
#include "driver/prefetch_trace.h"

#include <functional>

#include <gtest/gtest.h>


namespace slacker::driver {
namespace {

constexpr uint64_t kImage = 64ull << 20;

Trace Sample() {
  Trace t;
  t.image_bytes = kImage;
  t.extents = {
      {.offset = 8192, .length = 4096},
      {.offset = 0, .length = 4096},
      {.offset = 1 << 20, .length = 65536, .kind = ExtentKind::kFile, .inode = 12, .generation = 7, .file_offset = 0},
  };
  return t;
}

// `bytes` with its trailer recomputed: a well-formed file whose content is what a test
// planted.
std::string Resign(std::string bytes) {
  bytes.resize(bytes.size() - kTraceTrailerBytes);
  return bytes + TraceChecksum(bytes);
}

void PutU32(std::string& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(std::string& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string Encoded(Trace t = Sample()) {
  auto b = EncodeTrace(std::move(t));
  EXPECT_TRUE(b.ok()) << b.status().message();
  return b.ok() ? *b : "";
}

TEST(PrefetchTrace, EncodeThenDecodeGivesTheNormalisedTrace) {
  std::string b = Encoded();
  EXPECT_EQ(b.size(), kTraceHeaderBytes + 3 * kTraceExtentBytes + kTraceTrailerBytes);
  auto t = DecodeTrace(b, kImage);
  ASSERT_TRUE(t.ok()) << t.status().message();
  Trace want = Sample();
  NormaliseTrace(want);
  EXPECT_EQ(t->extents, want.extents);
  EXPECT_EQ(t->TotalBytes(), 4096u + 4096u + 65536u);
}

TEST(PrefetchTrace, NormaliseMergesBlocksDropsOverlappingFilesAndClips) {
  Trace t;
  t.image_bytes = 100'000;
  t.extents = {
      {.offset = 4096, .length = 4096},
      {.offset = 0, .length = 4096},            // touches the one above: merged
      {.offset = 6000, .length = 100},          // inside it: merged
      {.offset = 99'000, .length = 4096},       // clipped to the image
      {.offset = 200'000, .length = 10},        // outside: dropped
      {.offset = 50'000, .length = 0},          // empty: dropped
      {.offset = 20'000, .length = 8192, .kind = ExtentKind::kFile, .inode = 5, .generation = 1},
      {.offset = 24'000, .length = 4096, .kind = ExtentKind::kFile, .inode = 6, .generation = 1},  // overlaps
      {.offset = 10'000, .length = 4096, .kind = ExtentKind::kFile, .inode = 6, .generation = 1},
  };
  NormaliseTrace(t);
  ASSERT_EQ(t.extents.size(), 4u);
  EXPECT_EQ(t.extents[0], (TraceExtent{.offset = 0, .length = 8192}));
  EXPECT_EQ(t.extents[1], (TraceExtent{.offset = 99'000, .length = 1000}));
  EXPECT_EQ(t.extents[2].offset, 10'000u);
  EXPECT_EQ(t.extents[3].offset, 20'000u);
}

TEST(PrefetchTrace, EveryTruncationIsRefused) {
  std::string b = Encoded();
  for (size_t n = 0; n < b.size(); ++n)
    EXPECT_FALSE(DecodeTrace(b.substr(0, n), kImage).ok()) << "accepted the first " << n << " bytes";
}

TEST(PrefetchTrace, AnyFlippedByteIsRefused) {
  std::string b = Encoded();
  for (size_t i = 0; i < b.size(); ++i) {
    std::string bad = b;
    bad[i] ^= 0x01;
    EXPECT_FALSE(DecodeTrace(bad, kImage).ok()) << "accepted a flip at byte " << i;
  }
}

TEST(PrefetchTrace, AnotherImageSizeIsRefused) {
  EXPECT_FALSE(DecodeTrace(Encoded(), kImage + 4096).ok());
}

TEST(PrefetchTrace, HostileButWellSignedFieldsAreRefused) {
  const size_t first = kTraceHeaderBytes;
  struct Case {
    const char* what;
    std::function<void(std::string&)> plant;
  } cases[] = {
      {"version 2", [](std::string& b) { PutU32(b, 8, 2); }},
      {"count larger than the file", [](std::string& b) { PutU32(b, 12, 4); }},
      {"count over the cap", [](std::string& b) { PutU32(b, 12, kMaxTraceExtents + 1); }},
      {"reserved field set", [](std::string& b) { PutU64(b, 24, 1); }},
      {"extent past the image", [&](std::string& b) { PutU64(b, first, kImage); }},
      {"extent wrapping around", [&](std::string& b) { PutU64(b, first, UINT64_MAX - 100); }},
      {"extent longer than the cap", [&](std::string& b) { PutU32(b, first + 8, kMaxExtentLength + 1); }},
      {"empty extent", [&](std::string& b) { PutU32(b, first + 8, 0); }},
      {"unknown kind", [&](std::string& b) { PutU32(b, first + 12, 2); }},
      {"file extent of inode 0", [&](std::string& b) { PutU32(b, first + 2 * kTraceExtentBytes + 16, 0); }},
      {"file offset wrapping", [&](std::string& b) { PutU64(b, first + 2 * kTraceExtentBytes + 24, UINT64_MAX); }},
  };
  for (const auto& c : cases) {
    std::string b = Encoded();
    c.plant(b);
    EXPECT_FALSE(DecodeTrace(Resign(b), kImage).ok()) << c.what;
  }
}

TEST(PrefetchTrace, TotalBytesOverTheCapAreRefused) {
  // 17 extents of 64 MiB each: 1088 MiB > the 1 GiB a replay may read.
  Trace t;
  t.image_bytes = 2ull << 30;
  for (uint64_t i = 0; i < 17; ++i)
    t.extents.push_back({.offset = i * (kMaxExtentLength + 4096ull), .length = kMaxExtentLength});
  EXPECT_FALSE(EncodeTrace(t).ok());
  // The same bytes written by hand (as a hostile writer would) are refused by the reader.
  t.extents.pop_back();
  std::string b = Encoded(t);
  ASSERT_FALSE(b.empty());
  std::string extra(kTraceExtentBytes, '\0');
  PutU64(extra, 0, 16 * (kMaxExtentLength + 4096ull));
  PutU32(extra, 8, kMaxExtentLength);
  b.insert(b.size() - kTraceTrailerBytes, extra);
  PutU32(b, 12, 17);
  EXPECT_FALSE(DecodeTrace(Resign(b), t.image_bytes).ok());
}

TEST(PrefetchTrace, AnEmptyTraceIsValid) {
  Trace t;
  t.image_bytes = kImage;
  auto back = DecodeTrace(Encoded(t), kImage);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(back->extents.empty());
}

}  // namespace
}  // namespace slacker::driver
