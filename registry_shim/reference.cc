#include "registry_shim/reference.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "common/io.h"
#include "registry_shim/tar.h"

namespace slacker::registry_shim {
namespace {

constexpr size_t kIdHexLen = 32;

bool IsLowerHexId(std::string_view s) {
  return s.size() == kIdHexLen && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

TarEntry ReferenceEntry(uint64_t body_size) {
  TarEntry e;
  e.name = std::string(kReferenceTarEntryName);
  e.mode = 0644;
  e.typeflag = kTarRegular;
  e.size = body_size;
  return e;
}

}  // namespace

bool IsChainId(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256:";
  if (!s.starts_with(kPrefix) || s.size() != kPrefix.size() + 64) return false;
  s.remove_prefix(kPrefix.size());
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string NextChainId(std::string_view parent_chain, std::string_view diff_id) {
  if (parent_chain.empty()) return std::string(diff_id);
  return Sha256Digest(fmt::format("{} {}", parent_chain, diff_id));
}

std::string ReferenceMacInput(const Reference& ref) {
  if (ref.format == 1) return fmt::format("1|{}|{}|{}", ref.store, ref.snapshot, ref.bytes);
  return fmt::format("{}|{}|{}|{}|{}", ref.format, ref.store, ref.snapshot, ref.parent, ref.bytes);
}

std::string EncodeReferenceTar(const Reference& ref, std::string_view cluster_key) {
  nlohmann::ordered_json j;
  j["format"] = ref.format;
  j["store"] = ref.store;
  j["snapshot"] = ref.snapshot;
  if (ref.format != 1) j["parent"] = ref.parent;
  j["bytes"] = ref.bytes;
  if (!cluster_key.empty()) j["mac"] = HmacSha256Hex(cluster_key, ReferenceMacInput(ref));
  std::string body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // Cannot fail: the name is short and the body far below the 8 GiB ustar size limit.
  std::string out = EncodeUstarHeader(ReferenceEntry(body.size())).value();
  out += body;
  out.append((kTarBlockSize - body.size() % kTarBlockSize) % kTarBlockSize, '\0');
  out.append(2 * kTarBlockSize, '\0');
  return out;
}

Result<Reference> ParseReferenceTar(std::string_view tar_bytes) {
  StringSource src{std::string(tar_bytes)};
  TarReader reader(src);
  TarEntry entry;
  auto more = reader.Next(&entry);
  if (!more.ok()) return more.status().Context("reference tar");
  if (!*more) return Errorf(EINVAL, "reference tar is empty");
  if (entry.name != kReferenceTarEntryName || !entry.IsRegular()) {
    return Errorf(EINVAL,
                  "not a reference tar: first entry is {:?} (type '{}'), want regular file {}",
                  entry.name, entry.typeflag, kReferenceTarEntryName);
  }
  if (entry.raw_header.size() != kTarBlockSize) {
    return Errorf(EINVAL, "reference tar: {} carries extension headers", kReferenceTarEntryName);
  }
  if (entry.size > kMaxReferenceBody) {
    return Errorf(EINVAL, "reference tar: {} is {} bytes (limit {})", kReferenceTarEntryName,
                  entry.size, kMaxReferenceBody);
  }
  std::string body(entry.size, '\0');
  Status read = ReadFull(src, body.data(), body.size());
  if (!read.ok())
    return read.Context("reference tar: body of " + std::string(kReferenceTarEntryName));
  uint64_t end =
      kTarBlockSize + entry.size + (kTarBlockSize - entry.size % kTarBlockSize) % kTarBlockSize;
  std::string_view rest = end <= tar_bytes.size() ? tar_bytes.substr(end) : std::string_view();
  if (end > tar_bytes.size())
    return Errorf(EINVAL, "reference tar is truncated after {}", kReferenceTarEntryName);
  if (rest.size() < 2 * kTarBlockSize || rest.size() % kTarBlockSize != 0 ||
      !std::all_of(rest.begin(), rest.end(), [](char c) { return c == 0; })) {
    return Errorf(
        EINVAL,
        "reference tar has extra entries (or is not terminated by zero blocks): {} bytes after {}",
        rest.size(), kReferenceTarEntryName);
  }

  return ParseReferenceBody(body);
}

Result<Reference> ParseReferenceBody(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Errorf(EINVAL, "reference tar: {} is not a JSON object", kReferenceTarEntryName);
  }
  Reference ref;
  if (auto it = j.find("store"); it != j.end() && it->is_string())
    ref.store = it->get<std::string>();
  if (auto it = j.find("snapshot"); it != j.end() && it->is_string())
    ref.snapshot = it->get<std::string>();
  std::string what =
      fmt::format("reference to snapshot {:?} on store {:?}", ref.snapshot, ref.store);
  for (const auto& [key, value] : j.items()) {
    if (key != "format" && key != "store" && key != "snapshot" && key != "parent" && key != "bytes" &&
        key != "mac") {
      return Errorf(EINVAL, "{}: unknown key {:?}", what, key);
    }
  }
  auto format = j.find("format");
  if (format == j.end() || !format->is_number_integer() ||
      (format->get<int64_t>() != 1 && format->get<int64_t>() != 2)) {
    return Errorf(EINVAL, "{}: unsupported format {} (this build reads formats 1 and 2)", what,
                  format == j.end() ? "(missing)" : format->dump());
  }
  ref.format = static_cast<int>(format->get<int64_t>());
  auto parent = j.find("parent");
  if (ref.format == 1 && parent != j.end())
    return Errorf(EINVAL, "{}: format 1 has no parent", what);
  if (ref.format == 2) {
    if (parent == j.end() || !parent->is_string())
      return Errorf(EINVAL, "{}: parent is missing or not a string", what);
    ref.parent = parent->get<std::string>();
    if (!ref.parent.empty() && !IsChainId(ref.parent))
      return Errorf(EINVAL, "{}: parent is not \"\" or a chain id sha256:<64 hex>", what);
  }
  if (!IsLowerHexId(ref.store))
    return Errorf(EINVAL, "{}: store is not 32 lowercase hex characters", what);
  if (!IsLowerHexId(ref.snapshot))
    return Errorf(EINVAL, "{}: snapshot is not 32 lowercase hex characters", what);
  auto bytes = j.find("bytes");
  if (bytes == j.end() || !bytes->is_number_unsigned()) {
    return Errorf(EINVAL, "{}: bytes is missing or not an unsigned integer", what);
  }
  ref.bytes = bytes->get<uint64_t>();
  auto mac = j.find("mac");
  if (mac != j.end()) {
    if (!mac->is_string()) return Errorf(EINVAL, "{}: mac is not a string", what);
    ref.mac = mac->get<std::string>();
  }
  return ref;
}

Status VerifyReference(const Reference& ref, const ReferenceTrust& trust, std::string_view parent_chain) {
  std::string what = fmt::format("reference to snapshot {} on store {}", ref.snapshot, ref.store);
  if (ref.format != 1 && ref.parent != parent_chain) {
    return Errorf(EACCES,
                  "{}: it was made for the parent layer {:?} but is applied on top of {:?} (a reference "
                  "cannot be moved to another parent; pull the image it was pushed with)",
                  what, ref.parent, parent_chain);
  }
  if (trust.allow_unsigned && (ref.mac.empty() || ref.format == 1 || trust.keys.empty())) return Status::Ok();
  if (ref.mac.empty() || ref.format == 1) {
    return Errorf(EACCES,
                  "{}: refusing an {} reference (anyone who can read a snapshot id can forge one); push the "
                  "image again from a worker of this store running this release, or `slackerctl convert` "
                  "it there; --allow-unsigned-references accepts it at your own risk",
                  what, ref.mac.empty() ? "unsigned" : "old format 1 (not bound to its parent)");
  }
  if (trust.keys.empty()) {
    return Errorf(EACCES,
                  "{}: this worker has no cluster key to verify it (the store's cluster.key is missing; "
                  "pass --cluster-key FILE)",
                  what);
  }
  std::string input = ReferenceMacInput(ref);
  for (const std::string& key : trust.keys) {
    if (key.empty()) continue;
    std::string want = HmacSha256Hex(key, input);
    if (want.size() == ref.mac.size() && CRYPTO_memcmp(want.data(), ref.mac.data(), want.size()) == 0)
      return Status::Ok();
  }
  return Errorf(EACCES,
                "{}: MAC verification failed (made with another store's or a retired cluster key, or "
                "tampered with); push the image again from a worker of this store",
                what);
}

Result<Reference> DecodeReferenceTar(std::string_view tar_bytes, const ReferenceTrust& trust,
                                     std::string_view parent_chain) {
  SLACKER_ASSIGN_OR_RETURN(Reference ref, ParseReferenceTar(tar_bytes));
  SLACKER_RETURN_IF_ERROR(VerifyReference(ref, trust, parent_chain));
  return ref;
}

bool IsReferenceTarHeader(const char* header512) {
  TarEntry e;
  return ParseTarHeaderBlock(header512, &e).ok() && e.name == kReferenceTarEntryName &&
         e.IsRegular() && e.size <= kMaxReferenceBody;
}

}  // namespace slacker::registry_shim
