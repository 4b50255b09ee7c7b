// A temporary directory for one test, removed (without crossing mount points) at the end.
#pragma once

#include <stdlib.h>

#include <string>

#include "common/files.h"

namespace slacker::loopdev::testing {

class ScratchDir {
 public:
  // Creates /tmp/slacker-<tag>.XXXXXX; path() is empty if that failed.
  explicit ScratchDir(const std::string& tag) {
    std::string tmpl = "/tmp/slacker-" + tag + ".XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    if (!path_.empty()) IgnoreError(RemoveTree(path_), "test teardown: a leftover scratch dir only wastes space");
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return JoinPath(path_, name); }

 private:
  std::string path_;
};

}  // namespace slacker::loopdev::testing
