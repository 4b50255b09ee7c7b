// Reference tars: a layer that travels through the registry as a pointer to a snapshot
// on the shared store (DESIGN.md §5). Byte format: registry_shim/FORMAT.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace slacker::registry_shim {

// The only member of a reference tar.
inline constexpr std::string_view kReferenceTarEntryName = ".slacker/ref.json";
// Upper bound of the JSON body; larger bodies are not reference tars.
inline constexpr uint64_t kMaxReferenceBody = 4096;
// Upper bound of a whole reference tar (its member, padding, end blocks; a reference tar
// is a few KiB): a stream, blob or diff larger than this is not read as a reference.
inline constexpr uint64_t kMaxReferenceTar = 64 * 1024;

// The format this build writes. Format 1 (no parent binding) is read, and accepted only
// when the operator opted out of signed references (ReferenceTrust::allow_unsigned).
inline constexpr int kReferenceFormat = 2;

struct Reference {
  int format = kReferenceFormat;
  std::string store;     // store uuid, 32 lowercase hex characters
  std::string snapshot;  // snapshot id, 32 lowercase hex characters
  // Format 2: chain id ("sha256:<64 hex>") of the layer the reference was made on top
  // of, "" for a base layer (FORMAT.md §1 says why the chain id and not a snapshot id).
  std::string parent;
  uint64_t bytes = 0;    // size of the layer's change against its parent
  std::string mac;       // hex HMAC-SHA256 of ReferenceMacInput(); empty without a key
};

// What a worker accepts. keys[0] signs; every key verifies (rotation: FORMAT.md §1.1).
struct ReferenceTrust {
  std::vector<std::string> keys;
  // Operator opt-out (--allow-unsigned-references): accept unsigned and format 1
  // references. The parent binding of a format 2 reference is checked regardless.
  bool allow_unsigned = false;
  const std::string& signing_key() const {
    static const std::string kNone;
    return keys.empty() ? kNone : keys.front();
  }
};

// "sha256:" followed by 64 lowercase hex characters.
bool IsChainId(std::string_view s);

// The OCI/Docker chain id of a layer: its DiffID ("sha256:<hex>" of the uncompressed
// stream it was applied from) on a base layer, else sha256(parent_chain + " " + diff_id).
std::string NextChainId(std::string_view parent_chain, std::string_view diff_id);

// The string the MAC covers: format 1 "1|store|snapshot|bytes", format 2
// "2|store|snapshot|parent|bytes".
std::string ReferenceMacInput(const Reference& ref);

// Deterministic reference tar: the same (ref, cluster_key) always gives the same bytes.
// ref.mac is ignored: the MAC is computed from cluster_key, and omitted when it is empty.
std::string EncodeReferenceTar(const Reference& ref, std::string_view cluster_key);

// Parses a reference tar without checking its MAC (strict: one entry, known keys only,
// format 1 or 2, hex ids, nothing but zero bytes after the entry). For callers that only
// read what a reference names (gc); anything that acts on one must VerifyReference it.
// EINVAL with a message naming the snapshot and store when they are known.
Result<Reference> ParseReferenceTar(std::string_view tar_bytes);
// The same checks on the JSON body alone (the content of .slacker/ref.json).
Result<Reference> ParseReferenceBody(std::string_view body);

// Whether `ref` may be applied on top of the layer with chain id `parent_chain` ("" =
// no parent): EACCES naming the snapshot, the reason and what the operator can do, when
// it is unsigned or format 1 (unless trust.allow_unsigned), was made for another parent,
// or its MAC verifies with none of trust.keys (constant-time compares).
Status VerifyReference(const Reference& ref, const ReferenceTrust& trust, std::string_view parent_chain);

// ParseReferenceTar then VerifyReference.
Result<Reference> DecodeReferenceTar(std::string_view tar_bytes, const ReferenceTrust& trust,
                                     std::string_view parent_chain);

// True iff the 512-byte block is a valid tar header of a regular file named
// kReferenceTarEntryName with size <= kMaxReferenceBody: the stream is routed as a reference
// tar after peeking at its first block.
bool IsReferenceTarHeader(const char* header512);

}  // namespace slacker::registry_shim
