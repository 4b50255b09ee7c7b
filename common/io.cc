#include "common/io.h"

#include <cstring>

namespace slacker {

Status ReadFull(ByteSource& src, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < n) {
    auto r = src.Read(p + done, n - done);
    if (!r.ok()) return r.status();
    if (*r == 0) return Errorf(EIO, "unexpected end of stream after {} of {} bytes", done, n);
    done += *r;
  }
  return Status::Ok();
}

Result<std::string> ReadAtMost(ByteSource& src, size_t limit, std::string_view what) {
  std::string out;
  char buf[8192];
  for (;;) {
    SLACKER_ASSIGN_OR_RETURN(size_t n, src.Read(buf, sizeof buf));
    if (n == 0) return out;
    if (n > limit - out.size()) return Errorf(EFBIG, "{} is larger than {} bytes", what, limit);
    out.append(buf, n);
  }
}

Result<size_t> StringSource::Read(void* buf, size_t n) {
  size_t k = std::min(n, data_.size() - pos_);
  std::memcpy(buf, data_.data() + pos_, k);
  pos_ += k;
  return k;
}

}  // namespace slacker
