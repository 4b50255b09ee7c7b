// The chain and name indexes (backend.h "Indexes") over a store directory, implemented
// once for every backend that reaches the store's files: LocalBackend uses them on its
// root descriptor, RestBackend through its file view (a LocalBackend). Every path is
// resolved beneath `root_fd` without following links (common/files.h).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "storage_backend/backend.h"

namespace slacker::storage_backend {

// `root_fd` is the store root, named `root` in messages; both are borrowed and must
// outlive the index. The contracts are Backend's of the same names.
class StoreIndex {
 public:
  StoreIndex(int root_fd, std::string root) : root_fd_(root_fd), root_(std::move(root)) {}

  Result<std::string> LookupChain(const std::string& key) const;
  Status RecordChain(const std::string& key, const std::string& snap);
  Result<std::vector<ChainEntry>> ListChains() const;
  Result<bool> RemoveChain(const std::string& key, const std::string& snap);

  Status PublishName(const NameEntry& e);
  Result<NameEntry> LookupName(const std::string& ns, const std::string& name) const;
  Result<std::vector<NameEntry>> ListNames() const;
  Result<bool> RemoveName(const std::string& ns, const std::string& name, const std::string& snap);

 private:
  // The text of the entry at `rel` (a regular file, not a link; at most 64 KiB).
  Result<std::string> ReadEntry(const std::string& rel) const;
  // Names in the index directory `dir` that may be entries (no writes in flight), sorted;
  // none when the directory does not exist yet.
  Result<std::vector<std::string>> ListEntryNames(const std::string& dir) const;
  Result<NameEntry> ReadNameFile(const std::string& rel) const;
  Status WriteEntry(const std::string& dir, const std::string& name, const std::string& text);

  const int root_fd_;
  const std::string root_;
};

}  // namespace slacker::storage_backend
