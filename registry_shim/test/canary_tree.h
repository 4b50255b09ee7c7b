// Canaries outside a layer root for hostile-tar tests and the tar fuzz target: what a write,
// chmod, chown, utimes, xattr or removal through a link on the host would change.
// No gtest dependency, so the fuzz target links it too.
#pragma once

#include <string>

#include "common/status.h"

namespace slacker::registry_shim::testing {

class CanaryTree {
 public:
  // Creates under `dir` (REQUIRES: dir does not exist): the directory itself (0700), a
  // file `secret` (0600), a directory `dir` (0700) holding a file `inner` (0600), all with
  // old times (2001) and, when run as root, owned by kUid:kGid.
  static Result<CanaryTree> Create(const std::string& dir);

  static constexpr unsigned kUid = 4321;
  static constexpr unsigned kGid = 4322;

  const std::string& path() const { return dir_; }
  std::string file() const { return dir_ + "/secret"; }
  std::string subdir() const { return dir_ + "/dir"; }

  // One line per path under (and including) the tree: type, mode, owner, link count, size,
  // mtime, ctime (any chmod, chown, utimes or xattr change moves it), xattrs, symlink
  // target and content. Two snapshots are equal iff nothing in the tree changed.
  Result<std::string> Snapshot() const;

 private:
  explicit CanaryTree(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace slacker::registry_shim::testing
