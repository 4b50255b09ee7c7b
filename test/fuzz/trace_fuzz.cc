// libFuzzer target: the start-up trace codec (driver/prefetch_trace.h), which reads files
// any host on the shared store may have written. Besides "no crash": what it accepts is
// normalised (every extent inside the image, block extents sorted and apart, file extents
// sorted and apart, within the caps) and encodes to a trace that decodes to the same.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "driver/prefetch_trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slacker::driver;
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
  uint64_t block_end = 0, file_end = 0;
  bool in_files = false;
  for (const auto& e : t->extents) {
    if (e.length == 0 || e.offset > image || e.length > image - e.offset) std::abort();
    if (e.kind == ExtentKind::kFile) {
      in_files = true;
      if (e.offset < file_end) std::abort();
      file_end = e.offset + e.length;
    } else {
      if (in_files || e.offset < block_end) std::abort();
      block_end = e.offset + e.length;
    }
  }
  auto again = EncodeTrace(*t);
  if (!again.ok()) std::abort();
  auto back = DecodeTrace(*again, image);
  if (!back.ok() || back->extents != t->extents) std::abort();
  return 0;
}
