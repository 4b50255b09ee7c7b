#include "registry_shim/reference.h"

#include <gtest/gtest.h>

#include "registry_shim/tar.h"

namespace slacker::registry_shim {
namespace {

constexpr char kStore[] = "0123456789abcdef0123456789abcdef";
constexpr char kSnap[] = "fedcba9876543210fedcba9876543210";
constexpr char kKey[] = "cluster-secret";
// python3: hmac.new(b"cluster-secret", b"1|<store>|<snap>|4096", hashlib.sha256).hexdigest()
constexpr char kMac[] = "93e41e3088fe07fb1e826701e5c42cc42cf3e9ea6a88b9c8db509e7df32abeda";

// python3: hmac.new(b"cluster-secret", b"2|<store>|<snap>|<parent>|4096", hashlib.sha256).hexdigest()
constexpr char kMac2[] = "b2662f3bb65db8475ae73fbbea710fcb241ecdb5602b762f229f8c446df1360c";
const std::string kParentChain = "sha256:abababababababababababababababababababababababababababababababab";

// Format 1 (the previous release's, no parent).
Reference Ref() { return Reference{1, kStore, kSnap, "", 4096, ""}; }
Reference Ref2() { return Reference{2, kStore, kSnap, kParentChain, 4096, ""}; }

ReferenceTrust Trust(std::string_view key) {
  ReferenceTrust t;
  if (!key.empty()) t.keys.push_back(std::string(key));
  return t;
}
ReferenceTrust OptOut() { return ReferenceTrust{{}, true}; }

// A tar whose only member is .slacker/ref.json with `body`, then `extra` entries.
std::string TarWithBody(std::string_view body, bool extra_entry = false) {
  StringSink out;
  TarWriter w(out);
  TarEntry e;
  e.name = std::string(kReferenceTarEntryName);
  EXPECT_TRUE(w.Add(e, body).ok());
  if (extra_entry) {
    e.name = "etc/passwd";
    EXPECT_TRUE(w.Add(e, "root:x:0:0\n").ok());
  }
  EXPECT_TRUE(w.Finish().ok());
  return out.data();
}

std::string BodyOf(const std::string& tar) {
  TarEntry e;
  EXPECT_TRUE(ParseTarHeaderBlock(tar.data(), &e).ok());
  return tar.substr(512, e.size);
}

TEST(ReferenceTar, RoundTripsWithAndWithoutKey) {
  for (std::string_view key : {std::string_view(), std::string_view(kKey)}) {
    auto ref = ParseReferenceTar(EncodeReferenceTar(Ref(), key));
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    EXPECT_EQ(ref->format, 1);
    EXPECT_EQ(ref->store, kStore);
    EXPECT_EQ(ref->snapshot, kSnap);
    EXPECT_EQ(ref->bytes, 4096u);
    EXPECT_EQ(ref->mac, key.empty() ? "" : kMac);
  }
  auto ref = DecodeReferenceTar(EncodeReferenceTar(Ref2(), kKey), Trust(kKey), kParentChain);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(ref->format, 2);
  EXPECT_EQ(ref->parent, kParentChain);
  EXPECT_EQ(ref->mac, kMac2);
}

TEST(ReferenceTar, Format2GoldenBindsTheParent) {
  std::string tar = EncodeReferenceTar(Ref2(), kKey);
  ASSERT_EQ(tar.size(), 2048u);
  EXPECT_EQ(BodyOf(tar), std::string(R"({"format":2,"store":")") + kStore + R"(","snapshot":")" + kSnap +
                             R"(","parent":")" + kParentChain + R"(","bytes":4096,"mac":")" + kMac2 + R"("})");
}

// Scenario: a default install (a key, no opt-out) gets a reference with no MAC, as anyone
// who read a snapshot id out of /sys/block/loop*/loop/backing_file can write.
TEST(VerifyReference, RefusesUnsignedAndFormat1UnlessOptedOut) {
  Reference unsigned_ref = Ref2();
  Status s = VerifyReference(unsigned_ref, Trust(kKey), kParentChain);
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_NE(s.message().find("refusing an unsigned reference"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(kSnap), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("--allow-unsigned-references"), std::string::npos) << s.message();
  // Also with no key at all: no key never means "accept anything".
  EXPECT_EQ(VerifyReference(unsigned_ref, Trust(""), kParentChain).code(), EACCES);
  auto old = ParseReferenceTar(EncodeReferenceTar(Ref(), kKey));
  ASSERT_TRUE(old.ok());
  s = VerifyReference(*old, Trust(kKey), "");
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_NE(s.message().find("format 1"), std::string::npos) << s.message();
  EXPECT_TRUE(VerifyReference(unsigned_ref, OptOut(), kParentChain).ok());
  EXPECT_TRUE(VerifyReference(*old, OptOut(), "").ok());
}

// Scenario: a valid signed reference grafted onto another parent layer.
TEST(VerifyReference, RefusesAReparentedReference) {
  auto ref = ParseReferenceTar(EncodeReferenceTar(Ref2(), kKey));
  ASSERT_TRUE(ref.ok());
  ASSERT_TRUE(VerifyReference(*ref, Trust(kKey), kParentChain).ok());
  for (const std::string& other : {std::string(), "sha256:" + std::string(64, 'c')}) {
    Status s = VerifyReference(*ref, Trust(kKey), other);
    EXPECT_EQ(s.code(), EACCES) << other;
    EXPECT_NE(s.message().find("cannot be moved to another parent"), std::string::npos) << s.message();
    // The opt-out does not lift the parent binding.
    EXPECT_EQ(VerifyReference(*ref, OptOut(), other).code(), EACCES);
  }
  // Editing the parent in the body breaks the MAC.
  std::string body = BodyOf(EncodeReferenceTar(Ref2(), kKey));
  body.replace(body.find(kParentChain), kParentChain.size(), "sha256:" + std::string(64, 'c'));
  auto edited = ParseReferenceTar(TarWithBody(body));
  ASSERT_TRUE(edited.ok());
  Status s = VerifyReference(*edited, Trust(kKey), "sha256:" + std::string(64, 'c'));
  EXPECT_NE(s.message().find("MAC verification failed"), std::string::npos) << s.message();
}

// Scenario: key rotation; keys[0] is the new key, keys[1] the previous one.
TEST(VerifyReference, AcceptsAnyKeyOfTheRingAndRefusesARetiredOne) {
  std::string by_old = EncodeReferenceTar(Ref2(), "old-key");
  ReferenceTrust during{{"new-key", "old-key"}, false};
  EXPECT_TRUE(DecodeReferenceTar(by_old, during, kParentChain).ok());
  EXPECT_TRUE(DecodeReferenceTar(EncodeReferenceTar(Ref2(), during.signing_key()), during, kParentChain).ok());
  ReferenceTrust after{{"new-key"}, false};
  auto retired = DecodeReferenceTar(by_old, after, kParentChain);
  ASSERT_FALSE(retired.ok());
  EXPECT_NE(retired.status().message().find("MAC verification failed"), std::string::npos);
}

TEST(ReferenceTar, EncodingIsDeterministicGolden) {
  std::string tar = EncodeReferenceTar(Ref(), kKey);
  EXPECT_EQ(tar, EncodeReferenceTar(Ref(), kKey));
  ASSERT_EQ(tar.size(), 2048u);  // header, body block, two zero blocks; no record padding
  EXPECT_EQ(BodyOf(tar), std::string(R"({"format":1,"store":")") + kStore + R"(","snapshot":")" +
                             kSnap + R"(","bytes":4096,"mac":")" + kMac + R"("})");
  EXPECT_EQ(tar.substr(0, 17), ".slacker/ref.json");
  EXPECT_EQ(tar.substr(100, 8), std::string("0000644\0", 8));  // mode
  EXPECT_EQ(tar.substr(108, 16), std::string("0000000\0"
                                             "0000000\0",
                                             16));                   // uid, gid
  EXPECT_EQ(tar.substr(136, 12), std::string("00000000000\0", 12));  // mtime 0
  EXPECT_EQ(tar[156], '0');
  EXPECT_EQ(tar.substr(257, 8), std::string("ustar\0"
                                            "00",
                                            8));
  EXPECT_EQ(tar.substr(265, 64), std::string(64, '\0'));  // uname, gname empty
  EXPECT_EQ(tar.substr(1024), std::string(1024, '\0'));
  // Without a key the MAC is omitted.
  EXPECT_EQ(BodyOf(EncodeReferenceTar(Ref(), "")), std::string(R"({"format":1,"store":")") +
                                                       kStore + R"(","snapshot":")" + kSnap +
                                                       R"(","bytes":4096})");
}

TEST(ReferenceTar, ParsesRecordPadding) {
  std::string tar = EncodeReferenceTar(Ref(), kKey) + std::string(10240 - 2048, '\0');
  auto ref = ParseReferenceTar(tar);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(ref->mac, kMac);
}

struct Rejection {
  const char* scenario;
  std::string tar;
  std::string key;
  std::string message;     // substring of the error
  bool names_ids = false;  // the error names the snapshot and the store
};

std::vector<Rejection> Rejections() {
  std::string good_body = BodyOf(EncodeReferenceTar(Ref2(), ""));
  auto json = [](std::string_view fields) { return std::string("{") + std::string(fields) + "}"; };
  std::string ids = std::string(R"("store":")") + kStore + R"(","snapshot":")" + kSnap + R"(")";
  std::vector<Rejection> r;
  r.push_back(
      {"bad MAC", EncodeReferenceTar(Ref2(), "other-key"), kKey, "MAC verification failed", true});
  r.push_back({"missing MAC", EncodeReferenceTar(Ref2(), ""), kKey, "refusing an unsigned reference", true});
  Reference tampered = Ref2();
  std::string t = EncodeReferenceTar(tampered, kKey);
  std::string body = BodyOf(t);
  body.replace(body.find("4096"), 4, "8192");
  r.push_back({"tampered bytes", TarWithBody(body), kKey, "MAC verification failed", true});
  r.push_back(
      {"foreign extra entry", TarWithBody(good_body, true), "", "reference tar has extra entries"});
  std::string garbage = EncodeReferenceTar(Ref(), "");
  garbage[garbage.size() - 1] = 'x';
  r.push_back({"garbage after entry", garbage, "", "reference tar has extra entries"});
  r.push_back(
      {"missing end blocks", EncodeReferenceTar(Ref(), "").substr(0, 1024), "", "not terminated"});
  r.push_back({"malformed JSON", TarWithBody("{\"format\":1,"), "", "not a JSON object"});
  r.push_back({"JSON array", TarWithBody("[1]"), "", "not a JSON object"});
  r.push_back({"format 3", TarWithBody(json(R"("format":3,)" + ids + R"(,"bytes":1)")), "",
               "unsupported format", true});
  r.push_back({"format 2 without parent", TarWithBody(json(R"("format":2,)" + ids + R"(,"bytes":1)")), "",
               "parent is missing", true});
  r.push_back({"format 2 bad parent",
               TarWithBody(json(R"("format":2,)" + ids + R"(,"parent":"../x","bytes":1)")), "",
               "parent is not", true});
  r.push_back({"format 1 with parent",
               TarWithBody(json(R"("format":1,)" + ids + R"(,"parent":"","bytes":1)")), "",
               "format 1 has no parent", true});
  r.push_back(
      {"missing format", TarWithBody(json(ids + R"(,"bytes":1)")), "", "unsupported format"});
  r.push_back(
      {"uppercase snapshot",
       TarWithBody(json(std::string(R"("format":1,"store":")") + kStore + R"(","snapshot":")" +
                        "FEDCBA9876543210FEDCBA9876543210" + R"(","bytes":1)")),
       "", "snapshot is not 32 lowercase hex"});
  r.push_back({"short store",
               TarWithBody(json(std::string(R"("format":1,"store":"abc","snapshot":")") + kSnap +
                                R"(","bytes":1)")),
               "", "store is not 32 lowercase hex"});
  r.push_back({"negative bytes", TarWithBody(json(R"("format":1,)" + ids + R"(,"bytes":-1)")), "",
               "bytes"});
  r.push_back({"unknown key",
               TarWithBody(json(R"("format":1,)" + ids + R"(,"bytes":1,"extra":true)")), "",
               "unknown key", true});
  r.push_back({"body over 4096", TarWithBody(std::string(4097, ' ')), "", "limit 4096"});
  StringSink other;
  TarWriter w(other);
  TarEntry e;
  e.name = "etc/passwd";
  EXPECT_TRUE(w.Add(e, "x").ok());
  EXPECT_TRUE(w.Finish().ok());
  r.push_back({"other first entry", other.data(), "", "not a reference tar"});
  r.push_back({"empty tar", std::string(1024, '\0'), "", "empty"});
  r.push_back({"not a tar", std::string(600, 'x'), "", "bad header checksum"});
  return r;
}

TEST(ReferenceTar, RejectsEveryMalformedOrForeignTar) {
  for (const Rejection& c : Rejections()) {
    auto ref = DecodeReferenceTar(c.tar, Trust(c.key), kParentChain);
    ASSERT_FALSE(ref.ok()) << c.scenario;
    const std::string& msg = ref.status().message();
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.scenario << ": " << msg;
    if (c.names_ids) {
      EXPECT_NE(msg.find(kSnap), std::string::npos) << c.scenario << ": " << msg;
      EXPECT_NE(msg.find(kStore), std::string::npos) << c.scenario << ": " << msg;
    }
  }
}

TEST(ReferenceTar, HeaderPeekRoutesOnlyReferenceTars) {
  EXPECT_TRUE(IsReferenceTarHeader(EncodeReferenceTar(Ref(), kKey).data()));
  std::string other = TarWithBody("x", true);
  other.replace(0, 1, "x");  // breaks the checksum
  EXPECT_FALSE(IsReferenceTarHeader(other.data()));
  StringSink out;
  TarWriter w(out);
  TarEntry e;
  e.name = "etc/passwd";
  ASSERT_TRUE(w.Add(e, "x").ok());
  EXPECT_FALSE(IsReferenceTarHeader(out.data().data()));
  EXPECT_FALSE(IsReferenceTarHeader(TarWithBody(std::string(4097, ' ')).data()));
  StringSink dir_out;
  TarWriter dw(dir_out);
  e.name = std::string(kReferenceTarEntryName);
  e.typeflag = kTarDirectory;
  ASSERT_TRUE(dw.Add(e).ok());
  EXPECT_FALSE(IsReferenceTarHeader(dir_out.data().data()));
  EXPECT_FALSE(IsReferenceTarHeader(std::string(512, '\0').data()));
}

}  // namespace
}  // namespace slacker::registry_shim
