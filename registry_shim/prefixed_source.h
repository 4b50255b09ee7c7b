// A source that replays bytes already taken from another source, then continues with it
// (the driver peeks at the first tar block to route ApplyDiff).
#pragma once

#include <string>

#include "common/io.h"

namespace slacker::registry_shim {

class PrefixedSource : public ByteSource {
 public:
  // `rest` must outlive this object.
  PrefixedSource(std::string prefix, ByteSource& rest) : prefix_(std::move(prefix)), rest_(rest) {}
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  std::string prefix_;
  size_t pos_ = 0;
  ByteSource& rest_;
};

}  // namespace slacker::registry_shim
