// libFuzzer target: the streaming tar reader (registry_shim/tar.h) on arbitrary bytes.
// Property checked beyond "no crash, no ASan/UBSan report": when the archive reads to its
// end without error, the bytes forwarded to `raw` plus the bodies handed out are exactly
// the input (the reader's contract, which Diff's byte-exact skeletons rely on).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/io.h"
#include "registry_shim/tar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slacker;
  std::string input(reinterpret_cast<const char*>(data), size);
  StringSource src(input);
  StringSink raw;
  registry_shim::TarReader reader(src, &raw);
  uint64_t body_bytes = 0;
  char buf[4096];
  for (int entries = 0; entries < 100000; ++entries) {
    registry_shim::TarEntry e;
    auto more = reader.Next(&e);
    if (!more.ok()) return 0;
    if (!*more) {
      auto trailing = reader.Drain();
      if (!trailing.ok()) return 0;
      if (raw.data().size() + body_bytes != input.size()) std::abort();
      return 0;
    }
    // Read half of the bodies, skip the others (Next forwards what is left to raw).
    if (entries % 2 == 0) {
      for (;;) {
        auto n = reader.ReadBody(buf, sizeof buf);
        if (!n.ok()) return 0;
        if (*n == 0) break;
        body_bytes += *n;
      }
    }
  }
  return 0;
}
