#include "ctl/file_stream.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <utility>

#include "common/files.h"

namespace slacker::ctl {

Result<size_t> FdSource::Read(void* buf, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd_, buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno != EINTR) return Status::FromErrno(errno, "read");
  }
}

Status FdSink::Write(const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

Sha256Sink::Sha256Sink(ByteSink& next) : next_(next) {}

Status Sha256Sink::Write(const void* buf, size_t n) {
  hash_.Update(buf, n);
  return next_.Write(buf, n);
}

std::string Sha256Sink::Digest() { return "sha256:" + hash_.FinishHex(); }

Result<MappedFile> MappedFile::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) return Errorf(EINVAL, "{} is not a regular file", path);
  if (st.st_size == 0) return MappedFile(nullptr, 0);
  void* addr = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (addr == MAP_FAILED) return Status::FromErrno(errno, "mmap " + path);
  return MappedFile(addr, static_cast<size_t>(st.st_size));
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile::~MappedFile() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

Result<ScratchDir> ScratchDir::Create(const std::string& parent) {
  std::string tmpl = JoinPath(parent, "slackerctl.XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "create scratch dir in " + parent);
  return ScratchDir(tmpl);
}

ScratchDir::~ScratchDir() {
  if (!path_.empty()) IgnoreError(RemoveTree(path_), "a destructor cannot fail; a leftover scratch dir only wastes space");
}

}  // namespace slacker::ctl
