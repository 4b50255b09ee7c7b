// Files as byte streams for the tarball plumbing of convert/export: fd-backed sources and
// sinks, a sink that hashes what passes through it, and read-only mappings so a file's
// body can be handed to TarWriter without copying it onto the heap.
#pragma once

#include <string>
#include <string_view>

#include "common/fd.h"
#include "common/hash.h"
#include "common/io.h"
#include "common/status.h"

namespace slacker::ctl {

class FdSource : public ByteSource {
 public:
  explicit FdSource(int fd) : fd_(fd) {}  // borrows fd
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  int fd_;
};

class FdSink : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}  // borrows fd
  Status Write(const void* buf, size_t n) override;

 private:
  int fd_;
};

// Forwards to `next` and hashes every byte (SHA-256).
class Sha256Sink : public ByteSink {
 public:
  explicit Sha256Sink(ByteSink& next);
  Status Write(const void* buf, size_t n) override;
  // "sha256:<hex>" of everything written. Call once, after the last Write.
  std::string Digest();

 private:
  ByteSink& next_;
  Sha256 hash_;
};

// A whole file mapped read-only (an empty file maps to an empty view).
class MappedFile {
 public:
  static Result<MappedFile> Open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  std::string_view bytes() const { return {static_cast<const char*>(addr_), size_}; }

 private:
  MappedFile(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  size_t size_ = 0;
};

// A directory removed (recursively) when the object dies: scratch space for tarballs.
class ScratchDir {
 public:
  // Creates <parent>/slackerctl.XXXXXX.
  static Result<ScratchDir> Create(const std::string& parent);
  ScratchDir(ScratchDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ScratchDir& operator=(ScratchDir&&) = delete;
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace slacker::ctl
