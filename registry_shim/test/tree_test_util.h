// Helpers for root tests that apply tars to a scratch tree.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/io.h"
#include "registry_shim/tar.h"

namespace slacker::registry_shim::testing {

// A fresh directory under /tmp, removed (recursively) on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

TarEntry FileEntry(std::string name, uint32_t mode = 0644);
TarEntry DirEntry(std::string name, uint32_t mode = 0755);
TarEntry SymlinkEntry(std::string name, std::string target);
TarEntry HardlinkEntry(std::string name, std::string target);

// A tar made with TarWriter from (entry, body) pairs; record_size as TarWriter::Finish.
std::string MakeTar(const std::vector<std::pair<TarEntry, std::string>>& entries,
                    size_t record_size = 0);

std::string ReadSource(ByteSource& src, std::string* error);
std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& content);
// Runs `sh -c command`; returns its stdout; *status gets the exit status.
std::string Shell(const std::string& command, int* status);

}  // namespace slacker::registry_shim::testing
