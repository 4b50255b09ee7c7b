// Byte streams between the protocol layer and the driver, so that ApplyDiff bodies and
// Diff responses are streamed, never buffered whole.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace slacker {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into buf. Returns the count read; 0 means end of stream.
  virtual Result<size_t> Read(void* buf, size_t n) = 0;
};

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status Write(const void* buf, size_t n) = 0;
};

// Reads exactly n bytes or fails with EIO ("unexpected end of stream").
Status ReadFull(ByteSource& src, void* buf, size_t n);

// The whole of `src` when it holds at most `limit` bytes; EFBIG ("{what} is larger than
// {limit} bytes") as soon as it yields more (reads at most limit + one buffer).
Result<std::string> ReadAtMost(ByteSource& src, size_t limit, std::string_view what);

// A source over a string in memory (tests, small reference tars).
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  std::string data_;
  size_t pos_ = 0;
};

class StringSink : public ByteSink {
 public:
  Status Write(const void* buf, size_t n) override {
    data_.append(static_cast<const char*>(buf), n);
    return Status::Ok();
  }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
};

}  // namespace slacker
