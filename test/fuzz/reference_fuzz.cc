// libFuzzer target: the reference tar codec (registry_shim/reference.h). Besides "no
// crash": a tar that decodes re-encodes to a tar that decodes to the same reference, and
// IsReferenceTarHeader never accepts a first block whose full decode then reads past the
// input.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "registry_shim/reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slacker::registry_shim;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (size >= 512) (void)IsReferenceTarHeader(in.data());
  auto ref = ParseReferenceTar(in);
  if (!ref.ok()) return 0;
  // Verification never crashes, whatever the trust and the parent.
  (void)VerifyReference(*ref, ReferenceTrust{{"cluster-secret"}, false}, ref->parent);
  (void)VerifyReference(*ref, ReferenceTrust{{}, true}, "");
  for (std::string_view key : {std::string_view(), std::string_view("cluster-secret")}) {
    std::string again = EncodeReferenceTar(*ref, key);
    if (!IsReferenceTarHeader(again.data())) std::abort();
    auto back = ParseReferenceTar(again);
    if (!back.ok()) std::abort();
    if (back->store != ref->store || back->snapshot != ref->snapshot || back->bytes != ref->bytes ||
        back->format != ref->format || back->parent != ref->parent)
      std::abort();
    // What this worker signs, it verifies (format 2 only: format 1 is never accepted signed).
    if (!key.empty() && ref->format == 2 &&
        !VerifyReference(*back, ReferenceTrust{{std::string(key)}, false}, ref->parent).ok())
      std::abort();
  }
  return 0;
}
