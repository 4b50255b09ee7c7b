#include "storage_backend/cluster_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fd.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/log.h"

namespace slacker::storage_backend {
namespace {

constexpr size_t kMaxKeyFile = 64 * 1024;

// The keys in a key file's text: one per line, trailing spaces and CRs dropped, blank
// lines skipped.
std::vector<std::string> ParseKeyLines(std::string_view text) {
  std::vector<std::string> keys;
  for (std::string& line : SplitNonEmpty(text, '\n')) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) keys.push_back(line);
  }
  return keys;
}

// The lines of `name` under `root`: opened with O_NOFOLLOW, a regular file, at most
// kMaxKeyFile bytes (the store is shared: a planted link or FIFO must not be followed).
Result<std::vector<std::string>> ReadKeyLines(const std::string& root, const std::string& name) {
  std::string path = JoinPath(root, name);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) return Errorf(EINVAL, "{} is not a regular file", path);
  if (static_cast<uint64_t>(st.st_size) > kMaxKeyFile)
    return Errorf(EINVAL, "{} is {} bytes (limit {})", path, st.st_size, kMaxKeyFile);
  if ((st.st_mode & 077) != 0) {
    log::Warn("cluster_key_mode_loose", {{"path", path}, {"mode", fmt::format("{:o}", st.st_mode & 07777)},
                                         {"action", "tightened to 0600"}});
    if (::fchmod(fd.get(), 0600) != 0) return Status::FromErrno(errno, "chmod 0600 " + path);
  }
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFdAtMost(fd.get(), kMaxKeyFile, path));
  return ParseKeyLines(text);
}

std::string NewKey() { return RandomHex(32); }

void FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) ::fsync(fd.get());
}

}  // namespace

std::string KeyId(const std::string& key) { return Sha256Hex(key).substr(0, 12); }

Result<std::vector<std::string>> ReadKeyFile(const std::string& path) {
  // The operator's file: links are followed (it is configuration), but a FIFO or a huge
  // file must not hang or exhaust the daemon (O_NONBLOCK, kMaxKeyFile).
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileAtMost(path, kMaxKeyFile, O_NONBLOCK));
  std::vector<std::string> keys = ParseKeyLines(text);
  if (keys.empty()) return Errorf(EINVAL, "{} holds no key (an empty key would sign with nothing)", path);
  return keys;
}

Result<std::vector<std::string>> ReadClusterKeys(const std::string& store_root) {
  SLACKER_ASSIGN_OR_RETURN(auto keys, ReadKeyLines(store_root, kClusterKeyFile));
  if (keys.size() != 1) {
    return Errorf(EINVAL, "{} holds {} keys, want exactly one (restore it from a backup, or rotate)",
                  JoinPath(store_root, kClusterKeyFile), keys.size());
  }
  auto prev = ReadKeyLines(store_root, kPreviousClusterKeysFile);
  if (prev.ok()) {
    keys.insert(keys.end(), prev->begin(), prev->end());
  } else if (prev.status().code() != ENOENT) {
    return prev.status();
  }
  return keys;
}

Result<std::vector<std::string>> EnsureClusterKeys(const std::string& store_root) {
  auto keys = ReadClusterKeys(store_root);
  if (keys.ok() || keys.status().code() != ENOENT) return keys;
  std::string path = JoinPath(store_root, kClusterKeyFile);
  std::string tmp = fmt::format("{}.new-{}", path, RandomHex(8));
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::FromErrno(errno, "create " + tmp);
    std::string content = NewKey() + "\n";
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()) ||
        ::fsync(fd.get()) != 0) {
      int err = errno ? errno : EIO;
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "write " + tmp);
    }
  }
  // link() never replaces: of workers racing here exactly one key wins, and all read it.
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) return Status::FromErrno(err, "create " + path);
  FsyncDir(store_root);
  if (rc == 0) log::Info("cluster_key_created", {{"path", path}});
  return ReadClusterKeys(store_root);
}

Result<Rotation> RotateClusterKey(const std::string& store_root) {
  SLACKER_ASSIGN_OR_RETURN(auto keys, EnsureClusterKeys(store_root));
  std::string prev;
  Rotation r;
  for (const std::string& k : keys) {
    prev += k + "\n";
    r.previous_key_ids.push_back(KeyId(k));
  }
  SLACKER_RETURN_IF_ERROR(AtomicWriteFile(JoinPath(store_root, kPreviousClusterKeysFile), prev, true, 0600));
  std::string key = NewKey();
  SLACKER_RETURN_IF_ERROR(AtomicWriteFile(JoinPath(store_root, kClusterKeyFile), key + "\n", true, 0600));
  r.new_key_id = KeyId(key);
  log::Info("cluster_key_rotated", {{"key_id", r.new_key_id}, {"previous", std::to_string(keys.size())}});
  return r;
}

Result<size_t> RetirePreviousClusterKeys(const std::string& store_root) {
  auto prev = ReadKeyLines(store_root, kPreviousClusterKeysFile);
  if (!prev.ok() && prev.status().code() == ENOENT) return size_t{0};
  if (!prev.ok()) return prev.status();
  SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(JoinPath(store_root, kPreviousClusterKeysFile)));
  FsyncDir(store_root);
  log::Info("cluster_keys_retired", {{"count", std::to_string(prev->size())}});
  return prev->size();
}

}  // namespace slacker::storage_backend
