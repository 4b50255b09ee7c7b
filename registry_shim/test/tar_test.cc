#include "registry_shim/tar.h"

#include <gtest/gtest.h>

#include <cstring>

namespace slacker::registry_shim {
namespace {

TarEntry File(std::string name, size_t size = 0) {
  TarEntry e;
  e.name = std::move(name);
  e.typeflag = kTarRegular;
  e.size = size;
  return e;
}

struct ReadBack {
  std::vector<TarEntry> entries;
  std::vector<std::string> bodies;
  std::string raw;          // what the reader forwarded to its raw sink
  std::string reassembled;  // raw and bodies interleaved in stream order
  uint64_t trailing = 0;
};

// A sink that also feeds `reassembled`, so the stream can be rebuilt in order.
class OrderSink : public ByteSink {
 public:
  explicit OrderSink(ReadBack* rb) : rb_(rb) {}
  Status Write(const void* buf, size_t n) override {
    rb_->raw.append(static_cast<const char*>(buf), n);
    rb_->reassembled.append(static_cast<const char*>(buf), n);
    return Status::Ok();
  }

 private:
  ReadBack* rb_;
};

// Reads every entry and body; `chunk` bounds each source read (exercises short reads).
class ChunkedSource : public ByteSource {
 public:
  ChunkedSource(std::string data, size_t chunk) : data_(std::move(data)), chunk_(chunk) {}
  Result<size_t> Read(void* buf, size_t n) override {
    size_t k = std::min({n, chunk_, data_.size() - pos_});
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t chunk_;
  size_t pos_ = 0;
};

Result<ReadBack> ReadAll(const std::string& tar, size_t chunk = 1 << 20) {
  ReadBack rb;
  ChunkedSource src(tar, chunk);
  OrderSink sink(&rb);
  TarReader reader(src, &sink);
  for (;;) {
    TarEntry e;
    SLACKER_ASSIGN_OR_RETURN(bool more, reader.Next(&e));
    if (!more) break;
    std::string body(e.size, '\0');
    size_t got = 0;
    while (got < body.size()) {
      SLACKER_ASSIGN_OR_RETURN(size_t n, reader.ReadBody(body.data() + got, body.size() - got));
      got += n;
    }
    rb.reassembled += body;
    rb.entries.push_back(std::move(e));
    rb.bodies.push_back(std::move(body));
  }
  SLACKER_ASSIGN_OR_RETURN(rb.trailing, reader.Drain());
  return rb;
}

std::string Write(const std::vector<std::pair<TarEntry, std::string>>& entries,
                  TarWriter::LongNames style = TarWriter::LongNames::kPax, size_t record = 0) {
  StringSink out;
  TarWriter w(out, style);
  for (const auto& [e, body] : entries) EXPECT_TRUE(w.Add(e, body).ok());
  EXPECT_TRUE(w.Finish(record).ok());
  return out.data();
}

void Rechecksum(std::string& block) {
  std::memset(block.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += static_cast<unsigned char>(block[i]);
  std::snprintf(block.data() + 148, 8, "%06o", sum);
  block[155] = ' ';
}

// One PAX record with its self-inclusive length.
std::string Rec(std::string_view key, std::string_view value) {
  size_t body = key.size() + value.size() + 3;
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return std::to_string(len) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

std::string PaxHeader(std::string_view records) {
  TarEntry h = File("PaxHeaders/x", records.size());
  h.typeflag = kTarPaxHeader;
  std::string out = EncodeUstarHeader(h).value();
  out += records;
  out.append((512 - records.size() % 512) % 512, '\0');
  return out;
}

TEST(TarReader, UstarEntriesRoundTrip) {
  // Every kind of ustar entry comes back with its fields; raw + bodies rebuild the stream.
  TarEntry dir = File("etc/");
  dir.typeflag = kTarDirectory;
  dir.mode = 0755;
  TarEntry file = File("etc/passwd");
  file.mode = 04755;
  file.uid = 1000;
  file.gid = 100;
  file.uname = "user";
  file.gname = "users";
  file.mtime_sec = 1700000000;
  TarEntry link = File("etc/link");
  link.typeflag = kTarSymlink;
  link.linkname = "passwd";
  TarEntry dev = File("dev/null");
  dev.typeflag = kTarCharDevice;
  dev.devmajor = 1;
  dev.devminor = 3;
  std::string tar = Write({{dir, ""}, {file, "root:x:0:0\n"}, {link, ""}, {dev, ""}});
  auto rb = ReadAll(tar, 7);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  ASSERT_EQ(rb->entries.size(), 4u);
  EXPECT_EQ(rb->entries[0].typeflag, kTarDirectory);
  EXPECT_EQ(rb->entries[1].name, "etc/passwd");
  EXPECT_EQ(rb->entries[1].mode, 04755u);
  EXPECT_EQ(rb->entries[1].uid, 1000u);
  EXPECT_EQ(rb->entries[1].gid, 100u);
  EXPECT_EQ(rb->entries[1].uname, "user");
  EXPECT_EQ(rb->entries[1].mtime_sec, 1700000000);
  EXPECT_EQ(rb->bodies[1], "root:x:0:0\n");
  EXPECT_EQ(rb->entries[2].linkname, "passwd");
  EXPECT_EQ(rb->entries[3].devmajor, 1u);
  EXPECT_EQ(rb->entries[3].devminor, 3u);
  EXPECT_EQ(rb->entries[1].raw_header, tar.substr(512, 512));
  EXPECT_EQ(rb->reassembled, tar);
}

struct NameCase {
  const char* scenario;
  TarWriter::LongNames style;
  std::string name;
  std::string linkname;
  size_t header_blocks;  // blocks in raw_header
};

class TarReaderNames : public ::testing::TestWithParam<NameCase> {};

TEST_P(TarReaderNames, LongNamesAndLinks) {
  const NameCase& c = GetParam();
  TarEntry e = File(c.name);
  if (!c.linkname.empty()) {
    e.typeflag = kTarSymlink;
    e.linkname = c.linkname;
  }
  std::string tar = Write({{e, ""}}, c.style);
  auto rb = ReadAll(tar);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  ASSERT_EQ(rb->entries.size(), 1u);
  EXPECT_EQ(rb->entries[0].name, c.name);
  EXPECT_EQ(rb->entries[0].linkname, c.linkname);
  EXPECT_EQ(rb->entries[0].raw_header.size(), c.header_blocks * 512) << c.scenario;
  EXPECT_EQ(rb->entries[0].raw_header, tar.substr(0, c.header_blocks * 512));
  EXPECT_EQ(rb->reassembled, tar);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TarReaderNames,
    ::testing::Values(
        NameCase{"ustar prefix split", TarWriter::LongNames::kPax, std::string(120, 'd') + "/file",
                 "", 1},
        NameCase{"pax path", TarWriter::LongNames::kPax, std::string(300, 'p'), "", 3},
        NameCase{"pax linkpath", TarWriter::LongNames::kPax, "l", std::string(200, 't'), 3},
        NameCase{"gnu longname", TarWriter::LongNames::kGnu, std::string(150, 'g'), "", 3},
        NameCase{"gnu longname+longlink", TarWriter::LongNames::kGnu, std::string(150, 'g'),
                 std::string(700, 'k'), 6}),
    [](const ::testing::TestParamInfo<NameCase>& info) {
      std::string name = info.param.scenario;
      for (char& ch : name) {
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST(TarReader, PaxRecordsOverrideHeader) {
  // PAX size/uid/gid/mtime/atime/xattrs win over the ustar fields.
  std::string records = Rec("mtime", "1700000000.123456789") + Rec("uid", "70000000") +
                        Rec("gid", "80000000") + Rec("atime", "1700000001") +
                        Rec("SCHILY.xattr.security.capability", "\x01\x02") +
                        Rec("SCHILY.xattr.user.k", "a\nb=c");
  std::string tar = PaxHeader(records);
  tar += EncodeUstarHeader(File("f", 3)).value() + "abc" + std::string(509, '\0') +
         std::string(1024, '\0');
  auto rb = ReadAll(tar);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  const TarEntry& e = rb->entries.at(0);
  EXPECT_EQ(e.mtime_sec, 1700000000);
  EXPECT_EQ(e.mtime_nsec, 123456789u);
  EXPECT_EQ(e.uid, 70000000u);
  EXPECT_EQ(e.gid, 80000000u);
  EXPECT_TRUE(e.has_atime);
  EXPECT_EQ(e.atime_sec, 1700000001);
  ASSERT_EQ(e.xattrs.size(), 2u);
  EXPECT_EQ(e.xattrs[0].first, "security.capability");
  EXPECT_EQ(e.xattrs[0].second, std::string("\x01\x02", 2));
  EXPECT_EQ(e.xattrs[1].second, "a\nb=c");
  EXPECT_EQ(rb->reassembled, tar);
}

TEST(TarReader, WriterPaxFieldsRoundTrip) {
  TarEntry e = File("f");
  e.uid = 1u << 30;
  e.mtime_sec = 5;
  e.mtime_nsec = 7;
  e.xattrs = {{"user.a", "1"}, {"trusted.b", std::string("\0x", 2)}};
  auto rb = ReadAll(Write({{e, "body"}}));
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(rb->entries[0].uid, 1u << 30);
  EXPECT_EQ(rb->entries[0].mtime_nsec, 7u);
  EXPECT_EQ(rb->entries[0].xattrs, e.xattrs);
  EXPECT_EQ(rb->bodies[0], "body");
}

TEST(TarReader, GlobalHeaderIsSkippedButKeptRaw) {
  TarEntry g = File("pax_global_header", 0);
  std::string records = "16 comment=abcd\n";
  g.typeflag = kTarPaxGlobal;
  g.size = records.size();
  std::string tar =
      EncodeUstarHeader(g).value() + records + std::string(512 - records.size(), '\0');
  tar += Write({{File("a"), "x"}});
  auto rb = ReadAll(tar);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  ASSERT_EQ(rb->entries.size(), 1u);
  EXPECT_EQ(rb->entries[0].name, "a");
  EXPECT_EQ(rb->entries[0].raw_header.size(), 3u * 512);
  EXPECT_EQ(rb->reassembled, tar);
}

TEST(TarReader, TrailingBytesAfterEndAreDrained) {
  // GNU tar pads to 10240; anything after the two zero blocks belongs to the stream too.
  std::string tar = Write({{File("a"), "x"}}, TarWriter::LongNames::kPax, 10240) + "junk";
  auto rb = ReadAll(tar);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(tar.size(), 10244u);
  EXPECT_EQ(rb->trailing, 10240u - 2048 + 4);
  EXPECT_EQ(rb->reassembled, tar);
}

TEST(TarReader, EndOfStreamOnBlockBoundaryEndsArchive) {
  std::string tar = Write({{File("a"), "x"}});
  tar.resize(1024);  // no end-of-archive blocks (Go accepts this)
  auto rb = ReadAll(tar);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(rb->entries.size(), 1u);
}

TEST(TarReader, SparseEntriesAreDetected) {
  TarEntry s = File("sparse", 0);
  s.typeflag = kTarGnuSparse;
  auto rb = ReadAll(EncodeUstarHeader(s).value() + std::string(1024, '\0'));
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_TRUE(rb->entries[0].sparse);
  std::string pax = PaxHeader(Rec("GNU.sparse.major", "1") + Rec("GNU.sparse.minor", "0") +
                              Rec("GNU.sparse.name", "real")) +
                    EncodeUstarHeader(File("GNUSparseFile.0/real")).value() +
                    std::string(1024, '\0');
  rb = ReadAll(pax);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_TRUE(rb->entries[0].sparse);
  EXPECT_EQ(rb->entries[0].name, "real");
}

struct BadCase {
  const char* scenario;
  std::string tar;
  std::string message;  // substring of the error
};

std::vector<BadCase> BadCases() {
  std::string good = Write({{File("a"), "hello"}});
  std::vector<BadCase> cases;
  std::string bad_sum = good;
  bad_sum[0] = 'b';
  cases.push_back({"bad checksum", bad_sum, "bad header checksum"});
  cases.push_back({"truncated header", good.substr(0, 300), "truncated tar stream"});
  cases.push_back({"truncated body", good.substr(0, 514), "truncated tar stream"});
  cases.push_back({"truncated padding", good.substr(0, 600), "truncated tar stream"});
  std::string huge = EncodeUstarHeader(File("big")).value();
  huge[124] =
      static_cast<char>(0x80);  // base-256 size 2^64/..: 0x80 00.. 10 00 00 00 00 = 2^40 * 16
  std::memset(huge.data() + 125, 0, 11);
  huge[130] = 0x10;  // 0x10 << 40 = 16 TiB
  Rechecksum(huge);
  cases.push_back({"size over 64 GiB", huge + std::string(1024, '\0'), "exceeds"});
  cases.push_back(
      {"pax size over 64 GiB", PaxHeader(Rec("size", "68719476737")) + good, "exceeds"});
  TarEntry big_pax = File("PaxHeaders/x", (1 << 20) + 1);
  big_pax.typeflag = kTarPaxHeader;
  cases.push_back({"pax header over 1 MiB",
                   EncodeUstarHeader(big_pax).value() + std::string(1024, '\0'), "limit"});
  cases.push_back(
      {"malformed pax record", PaxHeader("99 path=x\n") + good, "malformed PAX record"});
  cases.push_back(
      {"pax without entry", PaxHeader(Rec("path", "x")) + std::string(1024, '\0'), "not followed"});
  cases.push_back(
      {"zero block then garbage", std::string(512, '\0') + good, "followed by a non-zero block"});
  std::string bad_octal = EncodeUstarHeader(File("a")).value();
  bad_octal[100] = '9';
  Rechecksum(bad_octal);
  cases.push_back({"bad octal", bad_octal + std::string(1024, '\0'), "invalid octal"});
  return cases;
}

TEST(TarReader, RejectsMalformedStreams) {
  for (const BadCase& c : BadCases()) {
    auto rb = ReadAll(c.tar);
    ASSERT_FALSE(rb.ok()) << c.scenario;
    EXPECT_NE(rb.status().message().find(c.message), std::string::npos)
        << c.scenario << ": " << rb.status().message();
  }
}

TEST(TarWriter, IsDeterministicAndPadsRecords) {
  TarEntry e = File("a/b");
  e.xattrs = {{"user.x", "y"}};
  std::string one = Write({{e, "data"}}, TarWriter::LongNames::kPax, 10240);
  std::string two = Write({{e, "data"}}, TarWriter::LongNames::kPax, 10240);
  EXPECT_EQ(one, two);
  EXPECT_EQ(one.size(), 10240u);
}

TEST(TarWriter, RejectsBodyOnNonRegularEntry) {
  StringSink out;
  TarWriter w(out);
  TarEntry d = File("d");
  d.typeflag = kTarDirectory;
  EXPECT_FALSE(w.Add(d, "x").ok());
}

}  // namespace
}  // namespace slacker::registry_shim
