#include "storage_backend/local_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "common/fault.h"
#include "common/fd.h"
#include "common/files.h"
#include "common/log.h"

namespace slacker::storage_backend {
namespace {

using nlohmann::json;

constexpr size_t kCopyChunk = 1 << 20;

enum class ClonePath { kFiclone = 0, kCopyFileRange = 1, kSparseCopy = 2 };

const char* PathName(ClonePath p) {
  switch (p) {
    case ClonePath::kFiclone: return "reflink (FICLONE)";
    case ClonePath::kCopyFileRange: return "copy_file_range";
    case ClonePath::kSparseCopy: return "sparse copy";
  }
  return "?";
}

// The file system cannot do this kind of clone/copy at all (as opposed to an I/O error,
// ENOSPC, ...): fall back to the next path.
bool Refused(int code) {
  return code == EOPNOTSUPP || code == EXDEV || code == EINVAL || code == ENOTTY || code == ENOSYS;
}

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string DirOf(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? "." : pos == 0 ? "/" : path.substr(0, pos);
}

Status FsyncPath(const std::string& path, bool directory) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0)));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync " + path);
  return Status::Ok();
}

Status Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno(errno, fmt::format("rename {} to {}", from, to));
  return Status::Ok();
}

bool IsLowerHex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Copies [0, size) of src into the empty dst, keeping holes: only the data segments that
// SEEK_DATA/SEEK_HOLE report are read and written.
Status SparseCopy(int src, int dst, uint64_t size) {
  if (::ftruncate(dst, static_cast<off_t>(size)) != 0) return Status::FromErrno(errno, "extend copy");
  std::vector<char> buf(kCopyChunk);
  off_t off = 0;
  const off_t end = static_cast<off_t>(size);
  while (off < end) {
    off_t data = ::lseek(src, off, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      if (errno != EINVAL && errno != EOPNOTSUPP) return Status::FromErrno(errno, "SEEK_DATA");
      data = off;  // no hole reporting: treat the rest as data
    }
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0) hole = end;
    hole = std::min(hole, end);
    for (off_t pos = data; pos < hole;) {
      size_t want = static_cast<size_t>(std::min<off_t>(hole - pos, static_cast<off_t>(buf.size())));
      ssize_t n = ::pread(src, buf.data(), want, pos);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, "read for copy");
      }
      if (n == 0) return Errorf(EIO, "source shrank during copy at offset {}", pos);
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::pwrite(dst, buf.data() + done, static_cast<size_t>(n - done), pos + done);
        if (w < 0) {
          if (errno == EINTR) continue;
          return Status::FromErrno(errno, "write copy");
        }
        done += w;
      }
      pos += n;
    }
    off = hole;
  }
  return Status::Ok();
}

class LocalBackend : public Backend {
 public:
  LocalBackend(os::Os& os, std::string root, std::string host, CloneMode mode, StoreInfo info)
      : os_(os), root_(std::move(root)), host_(std::move(host)), mode_(mode), info_(std::move(info)) {
    ClonePath start = mode == CloneMode::kForceCopyFileRange ? ClonePath::kCopyFileRange
                      : mode == CloneMode::kForceSparseCopy  ? ClonePath::kSparseCopy
                                                             : ClonePath::kFiclone;
    path_.store(static_cast<int>(start));
  }

  const StoreInfo& info() const override { return info_; }

  std::string Describe() const override {
    auto path = static_cast<ClonePath>(path_.load());
    std::string clone = PathName(path);
    if (mode_ != CloneMode::kAuto) {
      clone += " (forced)";
    } else if (!used_[static_cast<int>(path)].load()) {
      clone += " (not used yet; falls back to copy_file_range, then sparse copy)";
    }
    return fmt::format("local store {} (uuid {}, host {}, clone: {})", root_, info_.uuid, host_, clone);
  }

  std::string root() const override { return root_; }
  std::string SnapshotPath(const std::string& snap) const override { return SnapshotFilePath(snap, ".img"); }
  std::string SnapshotMetaPath(const std::string& snap) const override { return SnapshotFilePath(snap, ".json"); }
  std::string SnapshotFilePath(const std::string& snap, const std::string& suffix) const override {
    return JoinPath(SnapshotsDir(), snap + suffix);
  }
  std::string VolumePath(const std::string& layer) const override { return JoinPath(VolumesDir(), layer + ".img"); }
  std::string TemplatePath(uint64_t size_bytes) const override {
    return JoinPath(JoinPath(root_, "templates"), fmt::format("ext4-{}.img", size_bytes));
  }

  Result<std::string> SnapshotVolume(const std::string& layer, const json& meta) override {
    return Publish(layer, meta, /*move=*/false);
  }
  Result<std::string> PromoteVolume(const std::string& layer, const json& meta) override {
    return Publish(layer, meta, /*move=*/true);
  }

  Status CloneSnapshot(const std::string& snap, const std::string& layer) override {
    std::string what = fmt::format("clone snapshot {} for layer {}", snap, layer);
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "{}: invalid snapshot id", what);
    if (!IsValidLayerName(layer)) return Errorf(EINVAL, "{}: invalid layer name", what);
    std::string src = SnapshotPath(snap);
    if (!PathExists(src))
      return Errorf(ENOENT, "{}: snapshot not found in store {} (uuid {})", what, root_, info_.uuid);
    return CloneFile(src, VolumePath(layer)).Context(what);
  }

  Status CloneFile(const std::string& src_path, const std::string& dst_path) override {
    std::string tmp = fmt::format("{}.tmp-{}", dst_path, RandomHex(4));
    SLACKER_RETURN_IF_ERROR(CloneInto(src_path, tmp, /*durable=*/true));
    SLACKER_FAULT_POINT("clone.before_rename");
    Status s = Rename(tmp, dst_path);
    if (!s.ok()) {
      RemoveFileIfExists(tmp);
      return s;
    }
    return FsyncPath(DirOf(dst_path), true);
  }

  Status RemoveVolume(const std::string& layer) override {
    if (!IsValidLayerName(layer)) return Errorf(EINVAL, "remove volume {}: invalid layer name", layer);
    return RemoveFileIfExists(VolumePath(layer));
  }

  Status RemoveSnapshot(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "remove snapshot {}: invalid snapshot id", snap);
    // The image first: once it is gone the snapshot no longer exists for anyone.
    SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(SnapshotPath(snap)));
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDir(SnapshotsDir()));
    for (const auto& name : names) {
      if (name.starts_with(snap + ".")) SLACKER_RETURN_IF_ERROR(RemoveFileIfExists(JoinPath(SnapshotsDir(), name)));
    }
    return Status::Ok();
  }

  bool SnapshotExists(const std::string& snap) const override {
    return IsValidSnapshotId(snap) && PathExists(SnapshotPath(snap));
  }

  Result<json> ReadSnapshotMeta(const std::string& snap) const override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "read metadata of snapshot {}: invalid snapshot id", snap);
    std::string path = SnapshotMetaPath(snap);
    SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Errorf(EINVAL, "{}: not a JSON object", path);
    return j;
  }

  Status AddRef(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "add ref to snapshot {}: invalid snapshot id", snap);
    std::string path = JoinPath(RefsDir(), snap);
    if (PathExists(path)) return Status::Ok();
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!fd.valid()) return Status::FromErrno(errno, "create ref marker " + path);
    return FsyncPath(RefsDir(), true);  // a lost marker would let gc delete a used snapshot
  }

  Status DropRef(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "drop ref to snapshot {}: invalid snapshot id", snap);
    return RemoveFileIfExists(JoinPath(RefsDir(), snap));
  }

  Result<std::vector<std::string>> ListRefs() const override {
    return ListWithSuffix(RefsDir(), "", IsValidSnapshotId);
  }

  Result<std::vector<std::string>> ListSnapshots() const override {
    return ListWithSuffix(SnapshotsDir(), ".img", IsValidSnapshotId);
  }
  Result<std::vector<std::string>> ListVolumes() const override {
    return ListWithSuffix(VolumesDir(), ".img", IsValidLayerName);
  }

  Result<os::FsStats> Space() const override { return os_.StatFs(root_); }

 private:
  std::string SnapshotsDir() const { return JoinPath(root_, "snapshots"); }
  std::string VolumesDir() const { return JoinPath(JoinPath(root_, "volumes"), host_); }
  std::string RefsDir() const { return JoinPath(JoinPath(root_, "refs"), host_); }

  static Result<std::vector<std::string>> ListWithSuffix(const std::string& dir, std::string_view suffix,
                                                         bool (*valid)(const std::string&)) {
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDir(dir));
    std::vector<std::string> out;
    for (auto& name : names) {
      if (!name.ends_with(suffix)) continue;
      std::string id = name.substr(0, name.size() - suffix.size());
      if (valid(id)) out.push_back(std::move(id));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Clone (or move) the volume to snapshots/<id>.img.tmp, make it read-only and durable,
  // write <id>.json, mark the ref, then rename the image into place: the rename publishes.
  Result<std::string> Publish(const std::string& layer, const json& meta, bool move) {
    std::string verb = move ? "promote" : "snapshot";
    if (!IsValidLayerName(layer)) return Errorf(EINVAL, "{} volume {}: invalid layer name", verb, layer);
    if (!meta.is_null() && !meta.is_object()) return Errorf(EINVAL, "{} volume {}: metadata must be a JSON object", verb, layer);
    std::string vol = VolumePath(layer);
    if (!PathExists(vol)) return Errorf(ENOENT, "{} volume of layer {}: {} does not exist", verb, layer, vol);
    std::string id = RandomHex(16);
    std::string what = fmt::format("{} volume of layer {} as snapshot {}", verb, layer, id);
    std::string img = SnapshotPath(id);
    std::string tmp = img + ".tmp";
    std::string ref = JoinPath(RefsDir(), id);

    if (move) {
      SLACKER_RETURN_IF_ERROR(Rename(vol, tmp).Context(what));
    } else {
      SLACKER_RETURN_IF_ERROR(CloneInto(vol, tmp, /*durable=*/false).Context(what));
    }
    auto rollback = [&](const Status& s) {
      if (move) {
        if (::rename(tmp.c_str(), vol.c_str()) != 0)
          log::Error("promote_rollback_failed", {{"file", tmp}, {"volume", vol}, {"action", "rename it back by hand"}});
      } else {
        RemoveFileIfExists(tmp);
      }
      RemoveFileIfExists(SnapshotMetaPath(id));
      RemoveFileIfExists(ref);
      return s.Context(what);
    };
    if (::chmod(tmp.c_str(), 0444) != 0) return rollback(Status::FromErrno(errno, "chmod " + tmp));
    Status s = FsyncPath(tmp, false);
    if (!s.ok()) return rollback(s);
    json m = meta.is_object() ? meta : json::object();
    if (!m.contains("created")) m["created"] = NowRfc3339();
    s = AtomicWriteFile(SnapshotMetaPath(id), m.dump() + "\n");
    if (!s.ok()) return rollback(s);
    s = AddRef(id);
    if (!s.ok()) return rollback(s);
    s = Rename(tmp, img);
    if (!s.ok()) return rollback(s);
    s = FsyncPath(SnapshotsDir(), true);
    if (s.ok() && move) s = FsyncPath(VolumesDir(), true);
    if (!s.ok()) return s.Context(what + " (published, not yet durable)");
    log::Debug("snapshot_published", {{"snapshot", id}, {"layer", layer}, {"how", verb}});
    return id;
  }

  // Creates (or truncates) `dst` and fills it with a clone of `src`. On failure dst is
  // removed. With durable the new file is fsynced.
  Status CloneInto(const std::string& src, const std::string& dst, bool durable) {
    std::string what = fmt::format("clone {} to {}", src, dst);
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) return Status::FromErrno(errno, what + ": open source");
    struct stat st;
    if (::fstat(in.get(), &st) != 0) return Status::FromErrno(errno, what + ": stat source");
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out.valid()) return Status::FromErrno(errno, what + ": create");
    Status s = CopyData(in.get(), out.get(), static_cast<uint64_t>(st.st_size));
    if (s.ok() && durable && ::fsync(out.get()) != 0) s = Status::FromErrno(errno, "fsync");
    if (!s.ok()) {
      out.Reset();
      RemoveFileIfExists(dst);
      return s.Context(what);
    }
    return Status::Ok();
  }

  Status CopyData(int src, int dst, uint64_t size) {
    auto path = static_cast<ClonePath>(path_.load());
    if (path == ClonePath::kFiclone) {
      Status s = os_.Ficlone(dst, src);
      if (s.ok()) return Used(path);
      if (!Refused(s.code())) return s;
      Downgrade(path, ClonePath::kCopyFileRange, s);
      path = ClonePath::kCopyFileRange;
    }
    if (path == ClonePath::kCopyFileRange) {
      auto n = os_.CopyFileRange(src, dst, size);
      if (n.ok()) {
        if (*n != size) return Errorf(EIO, "copy_file_range copied {} of {} bytes", *n, size);
        return Used(path);
      }
      if (!Refused(n.status().code())) return n.status();
      if (::ftruncate(dst, 0) != 0) return Status::FromErrno(errno, "reset partial copy");
      Downgrade(path, ClonePath::kSparseCopy, n.status());
      path = ClonePath::kSparseCopy;
    }
    SLACKER_RETURN_IF_ERROR(SparseCopy(src, dst, size));
    return Used(path);
  }

  // Remembers that `from` is refused by this store, so later clones go straight to `to`.
  void Downgrade(ClonePath from, ClonePath to, const Status& why) {
    int expected = static_cast<int>(from);
    if (path_.compare_exchange_strong(expected, static_cast<int>(to))) {
      log::Warn("clone_fallback", {{"store", root_}, {"refused", PathName(from)}, {"now", PathName(to)},
                                   {"err", why.message()},
                                   {"action", "use a store with reflink (XFS reflink=1, NFSv4.2) for O(1) clones"}});
    }
  }

  Status Used(ClonePath path) {
    if (!used_[static_cast<int>(path)].exchange(true))
      log::Info("clone_path", {{"store", root_}, {"path", PathName(path)}});
    return Status::Ok();
  }

  os::Os& os_;
  const std::string root_;
  const std::string host_;
  const CloneMode mode_;
  const StoreInfo info_;
  std::atomic<int> path_{0};
  std::atomic<bool> used_[3] = {false, false, false};
};

// Reads root/store.json, or creates it (no-clobber via link(2), so two hosts opening a
// fresh shared store concurrently agree on one uuid).
Result<StoreInfo> LoadOrCreateStoreInfo(const std::string& root) {
  std::string path = JoinPath(root, "store.json");
  if (!PathExists(path)) {
    json j = {{"format", kStoreFormat}, {"uuid", RandomHex(16)}, {"created", NowRfc3339()}};
    std::string tmp = fmt::format("{}.new-{}", path, RandomHex(4));
    SLACKER_RETURN_IF_ERROR(AtomicWriteFile(tmp, j.dump() + "\n"));
    int rc = ::link(tmp.c_str(), path.c_str());
    int err = errno;
    RemoveFileIfExists(tmp);
    if (rc != 0 && err != EEXIST) return Status::FromErrno(err, "create " + path);
    if (rc == 0) {
      SLACKER_RETURN_IF_ERROR(FsyncPath(root, true));
      log::Info("store_created", {{"store", root}, {"uuid", j["uuid"].get<std::string>()}});
    }
  }
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Errorf(EINVAL, "{}: not a JSON object; is {} a slacker store?", path, root);
  if (!j.contains("format") || !j["format"].is_number_integer())
    return Errorf(EINVAL, "{}: no integer \"format\" field", path);
  int format = j["format"].get<int>();
  if (format != kStoreFormat) {
    return Errorf(EINVAL, "{}: store format {} is not supported by this build (it reads format {}); upgrade slacker",
                  path, format, kStoreFormat);
  }
  StoreInfo info;
  info.format = format;
  if (j.contains("uuid") && j["uuid"].is_string()) info.uuid = j["uuid"].get<std::string>();
  if (!IsValidSnapshotId(info.uuid)) return Errorf(EINVAL, "{}: \"uuid\" must be 32 lowercase hex characters", path);
  if (j.contains("created") && j["created"].is_string()) info.created = j["created"].get<std::string>();
  return info;
}

}  // namespace

bool IsValidSnapshotId(const std::string& snap) { return snap.size() == 32 && IsLowerHex(snap); }

bool IsValidLayerName(const std::string& layer) {
  if (layer.empty() || layer.size() > 255 || layer[0] == '.') return false;
  return std::all_of(layer.begin(), layer.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

Result<std::unique_ptr<Backend>> OpenLocalStore(os::Os& os, const std::string& dir, const std::string& host_id,
                                                CloneMode mode) {
  if (!IsValidLayerName(host_id))
    return Errorf(EINVAL, "open store {}: invalid host id {:?} (use [A-Za-z0-9_.-], not starting with '.')", dir,
                  host_id);
  SLACKER_RETURN_IF_ERROR(MakeDirs(dir, 0755).Context("open store " + dir));
  SLACKER_ASSIGN_OR_RETURN(StoreInfo info, LoadOrCreateStoreInfo(dir));
  for (const std::string& sub : {std::string("snapshots"), JoinPath("volumes", host_id), JoinPath("refs", host_id),
                                 std::string("templates")}) {
    SLACKER_RETURN_IF_ERROR(MakeDirs(JoinPath(dir, sub), 0755).Context("open store " + dir));
  }
  // Nothing is deleted here: half-made clones ("<layer>.img.tmp-XXXX") may be in flight
  // for the host id's running daemon; its lease holder removes them (driver recovery).
  return std::unique_ptr<Backend>(std::make_unique<LocalBackend>(os, dir, host_id, mode, std::move(info)));
}

}  // namespace slacker::storage_backend
