// libFuzzer target: the start-up trace codec (driver/prefetch_trace.h), which reads files
// any host on the shared store may have written. Besides "no crash": what it accepts is
// normalised (every extent inside the image, block extents sorted and apart, file extents
// sorted and apart, within the caps) and encodes to a trace that decodes to the same.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "driver/prefetch_trace.h"

namespace {

using namespace slacker::driver;

// Aborts unless `t` is normalised: extents inside the image, block extents first, each
// kind sorted and apart.
void CheckNormalised(const Trace& t) {
  uint64_t block_end = 0, file_end = 0;
  bool in_files = false;
  for (const auto& e : t.extents) {
    if (e.length == 0 || e.offset > t.image_bytes || e.length > t.image_bytes - e.offset) std::abort();
    if (e.kind == ExtentKind::kFile) {
      in_files = true;
      if (e.offset < file_end) std::abort();
      file_end = e.offset + e.length;
    } else {
      if (in_files || e.offset < block_end) std::abort();
      block_end = e.offset + e.length;
    }
  }
}

// The checksum keeps random inputs away from the normalisation: also run it on extents
// taken straight from the input (what a hostile writer could sign), then the round trip.
void NormaliseRaw(const uint8_t* data, size_t size) {
  Trace t;
  t.image_bytes = 1 << 30;
  for (size_t at = 0; at + 24 <= size && t.extents.size() < 4096; at += 24) {
    TraceExtent e;
    std::memcpy(&e.offset, data + at, 8);
    e.offset %= (1ull << 31);
    std::memcpy(&e.length, data + at + 8, 4);
    e.length %= kMaxExtentLength + 1;
    e.kind = (data[at + 12] & 1) ? ExtentKind::kFile : ExtentKind::kBlock;
    std::memcpy(&e.inode, data + at + 16, 4);
    e.inode |= 1;
    std::memcpy(&e.file_offset, data + at + 20, 4);
    t.extents.push_back(e);
  }
  NormaliseTrace(t);
  CheckNormalised(t);
  auto bytes = EncodeTrace(t);
  if (!bytes.ok()) return;  // over the caps
  auto back = DecodeTrace(*bytes, t.image_bytes);
  if (!back.ok() || back->extents != t.extents) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  NormaliseRaw(data, size);
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The image size the header claims (so valid traces are reachable), else a fixed one.
  uint64_t image = 1 << 26;
  if (size >= 24) {
    image = 0;
    for (int i = 7; i >= 0; --i) image = (image << 8) | data[16 + i];
  }
  auto t = DecodeTrace(in, image);
  if (!t.ok()) return 0;
  if (t->extents.size() > kMaxTraceExtents || t->TotalBytes() > kMaxTraceBytes) std::abort();
  CheckNormalised(*t);
  auto again = EncodeTrace(*t);
  if (!again.ok()) std::abort();
  auto back = DecodeTrace(*again, image);
  if (!back.ok() || back->extents != t->extents) std::abort();
  return 0;
}
