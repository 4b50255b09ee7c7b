#include "driver/prefetch_trace.h"

#include <algorithm>
#include <cstring>

#include "common/hash.h"

namespace slacker::driver {
namespace {

constexpr char kMagic[8] = {'S', 'L', 'K', 'T', 'R', 'A', 'C', 'E'};

template <typename T>
void Put(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

template <typename T>
T Get(std::string_view in, size_t at) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

bool ByOffset(const TraceExtent& a, const TraceExtent& b) {
  return a.offset != b.offset ? a.offset < b.offset : a.length > b.length;
}

// Touching or overlapping block extents become one, split again at kMaxExtentLength.
std::vector<TraceExtent> MergeBlocks(std::vector<TraceExtent> blocks) {
  std::sort(blocks.begin(), blocks.end(), ByOffset);
  std::vector<TraceExtent> out;
  uint64_t start = 0, end = 0;  // the run being merged, [start, end); empty at first
  auto flush = [&] {
    for (uint64_t at = start; at < end; at += kMaxExtentLength)
      out.push_back({.offset = at, .length = static_cast<uint32_t>(std::min<uint64_t>(kMaxExtentLength, end - at))});
  };
  for (const auto& e : blocks) {
    if (e.offset <= end && end > start) {
      end = std::max(end, e.offset + e.length);
      continue;
    }
    flush();
    start = e.offset;
    end = e.offset + e.length;
  }
  flush();
  return out;
}

// File extents in snapshot order; one that overlaps the last kept one is dropped.
std::vector<TraceExtent> DisjointFiles(std::vector<TraceExtent> files) {
  std::sort(files.begin(), files.end(), ByOffset);
  std::vector<TraceExtent> out;
  uint64_t end = 0;
  for (const auto& e : files) {
    if (!out.empty() && e.offset < end) continue;
    out.push_back(e);
    end = e.offset + e.length;
  }
  return out;
}

}  // namespace

std::string TraceChecksum(std::string_view body) {
  std::string hex = Sha256Hex(body), raw;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) raw.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return raw;
}

uint64_t Trace::TotalBytes() const {
  uint64_t n = 0;
  for (const auto& e : extents) n += e.length;
  return n;
}

void NormaliseTrace(Trace& trace) {
  std::vector<TraceExtent> blocks, files;
  for (auto e : trace.extents) {
    if (e.length == 0 || e.offset >= trace.image_bytes) continue;
    e.length = static_cast<uint32_t>(std::min<uint64_t>(e.length, trace.image_bytes - e.offset));
    if (e.kind == ExtentKind::kBlock) {
      e.inode = e.generation = 0;
      e.file_offset = 0;
      blocks.push_back(e);
    } else {
      files.push_back(e);
    }
  }
  trace.extents = MergeBlocks(std::move(blocks));
  auto disjoint = DisjointFiles(std::move(files));
  trace.extents.insert(trace.extents.end(), disjoint.begin(), disjoint.end());
}

Result<std::string> EncodeTrace(Trace trace) {
  NormaliseTrace(trace);
  if (trace.extents.size() > kMaxTraceExtents || trace.TotalBytes() > kMaxTraceBytes)
    return Errorf(EINVAL, "trace of {} extents, {} bytes: over the caps ({} extents, {} bytes)", trace.extents.size(),
                  trace.TotalBytes(), kMaxTraceExtents, kMaxTraceBytes);
  std::string out(kMagic, sizeof(kMagic));
  Put<uint32_t>(out, kTraceVersion);
  Put<uint32_t>(out, static_cast<uint32_t>(trace.extents.size()));
  Put<uint64_t>(out, trace.image_bytes);
  Put<uint64_t>(out, 0);
  for (const auto& e : trace.extents) {
    Put<uint64_t>(out, e.offset);
    Put<uint32_t>(out, e.length);
    Put<uint32_t>(out, static_cast<uint8_t>(e.kind));  // kind byte and 3 zero bytes
    Put<uint32_t>(out, e.inode);
    Put<uint32_t>(out, e.generation);
    Put<uint64_t>(out, e.file_offset);
  }
  out += TraceChecksum(out);
  return out;
}

Result<Trace> DecodeTrace(std::string_view in, uint64_t image_bytes) {
  if (in.size() < kTraceHeaderBytes + kTraceTrailerBytes)
    return Errorf(EINVAL, "trace of {} bytes: shorter than its header and checksum", in.size());
  if (std::memcmp(in.data(), kMagic, sizeof(kMagic)) != 0) return Errorf(EINVAL, "not a trace (bad magic)");
  if (uint32_t v = Get<uint32_t>(in, 8); v != kTraceVersion) return Errorf(EINVAL, "trace version {} unknown", v);
  uint32_t count = Get<uint32_t>(in, 12);
  if (count > kMaxTraceExtents) return Errorf(EINVAL, "trace of {} extents: over the cap of {}", count, kMaxTraceExtents);
  if (in.size() != kTraceHeaderBytes + size_t{count} * kTraceExtentBytes + kTraceTrailerBytes)
    return Errorf(EINVAL, "trace of {} bytes does not hold its {} extents (truncated?)", in.size(), count);
  std::string_view body = in.substr(0, in.size() - kTraceTrailerBytes);
  if (TraceChecksum(body) != in.substr(body.size())) return Errorf(EINVAL, "trace checksum mismatch");
  Trace t;
  t.image_bytes = Get<uint64_t>(in, 16);
  if (t.image_bytes != image_bytes)
    return Errorf(EINVAL, "trace made for an image of {} bytes, this one has {}", t.image_bytes, image_bytes);
  if (Get<uint64_t>(in, 24) != 0) return Errorf(EINVAL, "trace header's reserved field is not zero");
  t.extents.reserve(count);
  uint64_t total = 0;
  for (size_t i = 0, at = kTraceHeaderBytes; i < count; ++i, at += kTraceExtentBytes) {
    TraceExtent e;
    e.offset = Get<uint64_t>(in, at);
    e.length = Get<uint32_t>(in, at + 8);
    uint32_t kind = Get<uint32_t>(in, at + 12);
    e.inode = Get<uint32_t>(in, at + 16);
    e.generation = Get<uint32_t>(in, at + 20);
    e.file_offset = Get<uint64_t>(in, at + 24);
    if (kind > static_cast<uint32_t>(ExtentKind::kFile)) return Errorf(EINVAL, "trace extent {}: unknown kind {}", i, kind);
    e.kind = static_cast<ExtentKind>(kind);
    if (e.length == 0 || e.length > kMaxExtentLength || e.offset > image_bytes || e.length > image_bytes - e.offset)
      return Errorf(EINVAL, "trace extent {} ({}+{}) is empty, too long or outside the image", i, e.offset, e.length);
    if (e.kind == ExtentKind::kFile && (e.inode == 0 || e.file_offset > UINT64_MAX - e.length))
      return Errorf(EINVAL, "trace extent {}: bad file range", i);
    total += e.length;
    t.extents.push_back(e);
  }
  if (total > kMaxTraceBytes) return Errorf(EINVAL, "trace of {} bytes: over the cap of {}", total, kMaxTraceBytes);
  NormaliseTrace(t);
  return t;
}

}  // namespace slacker::driver
