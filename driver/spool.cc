#include "driver/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "common/fault.h"
#include "common/hash.h"

namespace slacker::driver {

SpoolFile::~SpoolFile() {
  if (!path_.empty()) ::unlink(path_.c_str());
}

Status SpoolFile::Fill(const std::string& path, ByteSource& src, uint64_t limit) {
  path_ = path;
  fd_.Reset(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd_.valid()) return Status::FromErrno(errno, "create spool " + path);
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  Status result;
  for (;;) {
    auto n = src.Read(buf.data(), buf.size());
    if (!n.ok()) {
      result = n.status();
      break;
    }
    if (*n == 0) break;
    SLACKER_FAULT_POINT("apply.mid_spool");
    if (size_ + *n > limit) {
      result = Errorf(EFBIG,
                      "the layer's tar is larger than the spool limit of {} bytes (slackerd --max-spool); "
                      "raise the limit or make sure <state>/spool has room for the layer",
                      limit);
      break;
    }
    hash.Update(buf.data(), *n);
    size_ += *n;
    result = WriteAll(buf.data(), *n);
    if (!result.ok()) break;
  }
  digest_ = "sha256:" + hash.FinishHex();
  if (result.ok() && ::lseek(fd_.get(), 0, SEEK_SET) != 0) result = Status::FromErrno(errno, "rewind spool");
  if (!result.ok()) {
    fd_.Reset(-1);
    ::unlink(path_.c_str());
    path_.clear();
  }
  return result;
}

Status SpoolFile::WriteAll(const char* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd_.get(), p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::FromErrno(errno, "write spool " + path_);
    done += static_cast<size_t>(w);
  }
  return Status::Ok();
}

Result<size_t> SpoolFile::Read(void* buf, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd_.get(), buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno != EINTR) return Status::FromErrno(errno, "read spool " + path_);
  }
}

Result<std::string> Sha256Digest(ByteSource& src) {
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  for (;;) {
    SLACKER_ASSIGN_OR_RETURN(size_t n, src.Read(buf.data(), buf.size()));
    if (n == 0) break;
    hash.Update(buf.data(), n);
  }
  return "sha256:" + hash.FinishHex();
}

std::string ChainKey(const std::string& base_snapshot, const std::string& diff_id) {
  return Sha256Hex(base_snapshot + " " + diff_id);
}

}  // namespace slacker::driver
