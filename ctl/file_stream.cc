#include "ctl/file_stream.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <utility>

#include "common/files.h"

namespace slacker::ctl {

namespace {
std::string Hex(const unsigned char* p, unsigned n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}
}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return Hex(md, n);
}

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

Sha256Sink::Sha256Sink(ByteSink& next) : next_(next), ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256Sink::~Sha256Sink() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

Status Sha256Sink::Write(const void* buf, size_t n) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), buf, n);
  return next_.Write(buf, n);
}

std::string Sha256Sink::Digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &n);
  return "sha256:" + Hex(md, n);
}

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
