#include "common/hash.h"

#include <gtest/gtest.h>

#include <string>

namespace slacker {
namespace {

// FIPS 180-2 / RFC 4231 vectors.
constexpr const char* kSha256Abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* kSha256Empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(HexEncodeTest, LowercaseTwoCharactersPerByte) {
  EXPECT_EQ("", HexEncode(std::string_view()));
  EXPECT_EQ("00ff7f0a", HexEncode(std::string_view("\x00\xff\x7f\x0a", 4)));
  const unsigned char raw[] = {0xde, 0xad, 0xbe, 0xef};
  EXPECT_EQ("deadbeef", HexEncode(std::span<const unsigned char>(raw)));
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(kSha256Abc, Sha256Hex("abc"));
  EXPECT_EQ(kSha256Empty, Sha256Hex(""));
  EXPECT_EQ(std::string("sha256:") + kSha256Abc, Sha256Digest("abc"));
}

// Fed in pieces (of any size) it gives the one-shot digest, and counts the bytes.
TEST(Sha256Test, StreamingEqualsOneShot) {
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  Sha256 h;
  for (size_t at = 0; at < data.size();) {
    size_t n = std::min<size_t>(data.size() - at, 1 + at % 4097);
    h.Update(data.data() + at, n);
    at += n;
  }
  EXPECT_EQ(data.size(), h.bytes());
  EXPECT_EQ(Sha256Hex(data), h.FinishHex());
  Sha256 empty;
  EXPECT_EQ(kSha256Empty, empty.FinishHex());
}

TEST(HmacSha256Test, Rfc4231Case2) {
  EXPECT_EQ("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            HmacSha256Hex("Jefe", "what do ya want for nothing?"));
}

TEST(HmacSha256Test, DependsOnTheKey) {
  EXPECT_NE(HmacSha256Hex("k1", "data"), HmacSha256Hex("k2", "data"));
  EXPECT_EQ(64u, HmacSha256Hex("", "").size());
}

}  // namespace
}  // namespace slacker
