#include "registry_shim/prefixed_source.h"

#include <gtest/gtest.h>

namespace slacker::registry_shim {
namespace {

std::string ReadAllIn(ByteSource& src, size_t chunk) {
  std::string out;
  std::string buf(chunk, '\0');
  for (;;) {
    auto n = src.Read(buf.data(), buf.size());
    EXPECT_TRUE(n.ok());
    if (!n.ok() || *n == 0) return out;
    out.append(buf.data(), *n);
  }
}

TEST(PrefixedSource, ReplaysPrefixThenRest) {
  struct Case {
    std::string prefix, rest;
    size_t chunk;
  };
  for (const Case& c : {Case{"head", "tail", 3}, Case{"", "tail", 2}, Case{"head", "", 100},
                        Case{std::string(512, 'h'), std::string(5000, 't'), 4096}}) {
    StringSource rest(c.rest);
    PrefixedSource src(c.prefix, rest);
    EXPECT_EQ(ReadAllIn(src, c.chunk), c.prefix + c.rest) << "chunk " << c.chunk;
  }
}

TEST(PrefixedSource, NeverMixesPrefixAndRestInOneRead) {
  // A read that crosses the boundary returns only the prefix part (short reads are allowed).
  StringSource rest("tail");
  PrefixedSource src("ab", rest);
  char buf[16];
  auto n = src.Read(buf, sizeof buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::string(buf, *n), "ab");
}

}  // namespace
}  // namespace slacker::registry_shim
