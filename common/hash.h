// SHA-256 (OpenSSL) and lowercase hex: the digests of layers and images
// ("sha256:<64 hex>"), chain ids, key ids and reference MACs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace slacker {

// Lowercase hex of `bytes`, two characters per byte.
std::string HexEncode(std::span<const unsigned char> bytes);
std::string HexEncode(std::string_view bytes);

// 64 lowercase hex characters: SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// "sha256:" + Sha256Hex(data): an OCI digest (a DiffID, an image id).
std::string Sha256Digest(std::string_view data);
// 64 lowercase hex characters: HMAC-SHA256 of `data` under `key`.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// SHA-256 of a stream, fed in pieces.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t n);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // Total bytes fed so far.
  uint64_t bytes() const { return bytes_; }
  // 64 lowercase hex characters. REQUIRES: called once; no Update after it.
  std::string FinishHex();

 private:
  void* ctx_;  // EVP_MD_CTX, opaque so that callers need no OpenSSL headers
  uint64_t bytes_ = 0;
};

}  // namespace slacker
