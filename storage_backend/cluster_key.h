// The store's cluster key: the HMAC key every worker of a store signs and verifies
// reference tars with (registry_shim/FORMAT.md §1.1). It lives on the store, so every
// slackerd, slacker-snapshotter and slackerctl that reaches the store's files has it with
// no configuration; the store is root-only, so nothing else does.
//
// Files under the store root (text, one key per line, mode 0600):
//   cluster.key        the current key: 64 lowercase hex characters (32 random bytes)
//   cluster.key.prev   keys retired by `slackerctl key rotate`, newest first; still
//                      accepted until `slackerctl key retire` removes the file
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "storage_backend/store_layout.h"  // kClusterKeyFile, kPreviousClusterKeysFile

namespace slacker::storage_backend {

// The store's keys, current first. Creates cluster.key when the store has none (a new
// store, or one written by a release without keys). Creation is atomic across workers
// starting together: each writes its candidate to a private temporary file and link()s
// it into place; link never replaces, so every worker then reads the same winner.
// Key files are opened without following links and must be regular files.
Result<std::vector<std::string>> EnsureClusterKeys(const std::string& store_root);

// Reads the store's keys, current first; ENOENT when the store has no cluster.key.
Result<std::vector<std::string>> ReadClusterKeys(const std::string& store_root);

// The keys in an operator's key file (--cluster-key FILE): one per line, current first.
// EINVAL if it holds none.
Result<std::vector<std::string>> ReadKeyFile(const std::string& path);

struct Rotation {
  std::string new_key_id;       // KeyId of the new current key
  std::vector<std::string> previous_key_ids;  // still accepted, newest first
};
// Makes a new random current key and moves the old one to the head of cluster.key.prev
// (written first, so a crash between the two steps only adds an accepted key).
Result<Rotation> RotateClusterKey(const std::string& store_root);
// Removes cluster.key.prev: references signed with retired keys are refused from then on
// (by each process once it reloads the keys; daemons reload them when a MAC fails).
// Returns how many keys were retired.
Result<size_t> RetirePreviousClusterKeys(const std::string& store_root);

// A short public name of a key for logs and slackerctl: the first 12 hex characters of
// sha256(key). Never the key itself.
std::string KeyId(const std::string& key);

}  // namespace slacker::storage_backend
