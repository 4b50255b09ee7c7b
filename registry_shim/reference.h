// Reference tars: a layer that travels through the registry as a pointer to a snapshot
// on the shared store (DESIGN.md §5). Byte format: registry_shim/FORMAT.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace slacker::registry_shim {

// The only member of a reference tar.
inline constexpr std::string_view kReferenceTarEntryName = ".slacker/ref.json";
// Upper bound of the JSON body; larger bodies are not reference tars.
inline constexpr uint64_t kMaxReferenceBody = 4096;

struct Reference {
  int format = 1;
  std::string store;     // store uuid, 32 lowercase hex characters
  std::string snapshot;  // snapshot id, 32 lowercase hex characters
  uint64_t bytes = 0;    // size of the layer's change against its parent
  std::string mac;       // hex HMAC-SHA256 of ReferenceMacInput(); empty without a key
};

// The string the MAC covers: "format|store|snapshot|bytes".
std::string ReferenceMacInput(const Reference& ref);

// Deterministic reference tar: the same (ref, cluster_key) always gives the same bytes.
// ref.mac is ignored: the MAC is computed from cluster_key, and omitted when it is empty.
std::string EncodeReferenceTar(const Reference& ref, std::string_view cluster_key);

// Parses and verifies a reference tar (strict: one entry, known keys only, format 1, hex
// ids, MAC checked in constant time when cluster_key is set and required then, nothing but
// zero bytes after the entry). EINVAL (EACCES for a MAC failure) with a message naming the
// snapshot and store when they are known.
Result<Reference> DecodeReferenceTar(std::string_view tar_bytes, std::string_view cluster_key);

// True iff the 512-byte block is a valid tar header of a regular file named
// kReferenceTarEntryName with size <= kMaxReferenceBody: the stream is routed as a reference
// tar after peeking at its first block.
bool IsReferenceTarHeader(const char* header512);

}  // namespace slacker::registry_shim
