#include "registry_shim/prefixed_source.h"

#include <algorithm>
#include <cstring>

namespace slacker::registry_shim {

Result<size_t> PrefixedSource::Read(void* buf, size_t n) {
  if (pos_ < prefix_.size()) {
    size_t k = std::min(n, prefix_.size() - pos_);
    std::memcpy(buf, prefix_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  return rest_.Read(buf, n);
}

}  // namespace slacker::registry_shim
