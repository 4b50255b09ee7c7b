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
#include "storage_backend/store_index.h"

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

// Modes of what the store holds: nothing is open to group or others (the store is root's;
// a local user who could read it would read every container's file system). Snapshots are
// read-only as a signal of their immutability (root ignores it; nothing relies on it).
constexpr unsigned kDirMode = 0700;
constexpr unsigned kFileMode = 0600;
constexpr unsigned kSnapshotMode = 0400;

Status FsyncFd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return Status::FromErrno(errno, "fsync " + what);
  return Status::Ok();
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
  LocalBackend(os::Os& os, std::string root, UniqueFd root_fd, std::string host, CloneMode mode, StoreInfo info)
      : os_(os), root_(std::move(root)), root_fd_(std::move(root_fd)), host_(std::move(host)), mode_(mode),
        info_(std::move(info)), index_(root_fd_.get(), root_) {
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
  std::string SnapshotPath(const std::string& snap) const override { return SnapshotFilePath(snap, kImageSuffix); }
  std::string SnapshotMetaPath(const std::string& snap) const override { return SnapshotFilePath(snap, kMetaSuffix); }
  std::string SnapshotFilePath(const std::string& snap, const std::string& suffix) const override {
    return JoinPath(root_, SnapshotFile(snap, suffix));
  }
  std::string VolumePath(const std::string& layer) const override { return JoinPath(root_, VolumeRel(layer)); }
  std::string TemplatePath(uint64_t size_bytes) const override { return JoinPath(root_, TemplateFile(size_bytes)); }

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
    std::string src = SnapshotFile(snap, kImageSuffix);
    if (!RegularFileExists(src))
      return Errorf(ENOENT, "{}: snapshot not found in store {} (uuid {})", what, root_, info_.uuid);
    return CloneRel(src, VolumeRel(layer)).Context(what);
  }

  Status CloneFile(const std::string& src_path, const std::string& dst_path) override {
    SLACKER_ASSIGN_OR_RETURN(std::string src, RelPath(src_path));
    SLACKER_ASSIGN_OR_RETURN(std::string dst, RelPath(dst_path));
    return CloneRel(src, dst);
  }

  Status RemoveVolume(const std::string& layer) override {
    if (!IsValidLayerName(layer)) return Errorf(EINVAL, "remove volume {}: invalid layer name", layer);
    return RemoveRel(VolumeRel(layer));
  }

  Status RemoveSnapshot(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "remove snapshot {}: invalid snapshot id", snap);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), kSnapshotsDir, O_RDONLY | O_DIRECTORY));
    // The image first: once it is gone the snapshot no longer exists for anyone.
    SLACKER_RETURN_IF_ERROR(UnlinkAtIfExists(dir.get(), snap + kImageSuffix, SnapshotPath(snap)));
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(dir.get(), SnapshotsDir()));
    for (const auto& name : names) {
      if (name.starts_with(snap + "."))
        SLACKER_RETURN_IF_ERROR(UnlinkAtIfExists(dir.get(), name, JoinPath(SnapshotsDir(), name)));
    }
    return Status::Ok();
  }

  bool CanHandOverVolumes() const override { return true; }

  Status HandOverVolume(const std::string& from, const std::string& to) override {
    if (!IsValidLayerName(from) || !IsValidLayerName(to) || from == to)
      return Errorf(EINVAL, "hand over volume {} to {}: invalid layer names", from, to);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), VolumesRel(), O_RDONLY | O_DIRECTORY));
    if (::faccessat(dir.get(), VolumeName(to).c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0)
      return Errorf(EEXIST, "hand over volume {} to {}: {} exists", from, to, JoinPath(VolumesDir(), VolumeName(to)));
    SLACKER_RETURN_IF_ERROR(PrepareHandOver(from));
    Status s = CompleteHandOver(from, to);
    if (!s.ok() && ::faccessat(dir.get(), VolumeName(from).c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
      // Nothing was renamed: the clone is of no use.
      IgnoreError(DiscardHandOver(from), "a leftover clone is deleted at the next start (RecoverHandOvers)");
    }
    return s;
  }

  Status PrepareHandOver(const std::string& from) override {
    if (!IsValidLayerName(from)) return Errorf(EINVAL, "prepare hand-over of volume {}: invalid layer name", from);
    std::string what = fmt::format("prepare hand-over of volume {}", from);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), VolumesRel(), O_RDONLY | O_DIRECTORY));
    std::string copy = VolumeHandOverName(from);
    ::unlinkat(dir.get(), copy.c_str(), 0);  // an older clone, or a leftover of an earlier attempt
    return CloneInto(VolumeRel(from), dir.get(), copy, JoinPath(VolumesDir(), copy), kFileMode, /*durable=*/true)
        .Context(what);
  }

  Status CompleteHandOver(const std::string& from, const std::string& to) override {
    if (!IsValidLayerName(from) || !IsValidLayerName(to) || from == to)
      return Errorf(EINVAL, "hand over volume {} to {}: invalid layer names", from, to);
    std::string what = fmt::format("hand over volume {} to {}", from, to);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), VolumesRel(), O_RDONLY | O_DIRECTORY));
    std::string from_name = VolumeName(from), to_name = VolumeName(to), copy = VolumeHandOverName(from);
    if (::faccessat(dir.get(), to_name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0)
      return Errorf(EEXIST, "{}: {} exists", what, JoinPath(VolumesDir(), to_name));
    struct stat st;
    if (::fstatat(dir.get(), copy.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      return Errorf(ENOENT, "{}: no prepared clone {}", what, JoinPath(VolumesDir(), copy));
    if (::renameat(dir.get(), from_name.c_str(), dir.get(), to_name.c_str()) != 0)
      return Status::FromErrno(errno, what + ": rename " + from_name);
    SLACKER_FAULT_POINT("handover.after_rename");
    if (::renameat(dir.get(), copy.c_str(), dir.get(), from_name.c_str()) != 0) {
      // `from` has no file now; the copy stays for RecoverHandOvers.
      return Status::FromErrno(errno, what + ": rename " + copy);
    }
    return FsyncFd(dir.get(), VolumesDir());
  }

  Status RenameVolume(const std::string& from, const std::string& to) override {
    if (!IsValidLayerName(from) || !IsValidLayerName(to) || from == to)
      return Errorf(EINVAL, "rename volume {} to {}: invalid layer names", from, to);
    std::string what = fmt::format("rename volume {} to {}", from, to);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), VolumesRel(), O_RDONLY | O_DIRECTORY));
    std::string from_name = VolumeName(from), to_name = VolumeName(to);
    if (::renameat2(dir.get(), from_name.c_str(), dir.get(), to_name.c_str(), RENAME_NOREPLACE) != 0)
      return Status::FromErrno(errno, what);
    return FsyncFd(dir.get(), VolumesDir()).Context(what);
  }

  Status DiscardHandOver(const std::string& from) override {
    if (!IsValidLayerName(from)) return Errorf(EINVAL, "discard hand-over of volume {}: invalid layer name", from);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), VolumesRel(), O_RDONLY | O_DIRECTORY));
    std::string copy = VolumeHandOverName(from);
    return UnlinkAtIfExists(dir.get(), copy, JoinPath(VolumesDir(), copy));
  }

  Result<std::vector<std::string>> RecoverHandOvers() override {
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), VolumesRel(), O_RDONLY | O_DIRECTORY));
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(dir.get(), VolumesDir()));
    std::vector<std::string> restored;
    for (const auto& name : names) {
      auto handed = LayerOfHandOverName(name);
      if (!handed) continue;
      const std::string& layer = *handed;
      std::string vol = VolumeName(layer);
      if (::faccessat(dir.get(), vol.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
        if (::renameat(dir.get(), name.c_str(), dir.get(), vol.c_str()) != 0)
          return Status::FromErrno(errno, "restore " + JoinPath(VolumesDir(), vol));
        restored.push_back(layer);
      } else {
        SLACKER_RETURN_IF_ERROR(UnlinkAtIfExists(dir.get(), name, JoinPath(VolumesDir(), name)));
      }
    }
    if (!restored.empty()) SLACKER_RETURN_IF_ERROR(FsyncFd(dir.get(), VolumesDir()));
    return restored;
  }

  bool SnapshotExists(const std::string& snap) const override {
    return IsValidSnapshotId(snap) && RegularFileExists(SnapshotFile(snap, kImageSuffix));
  }

  Result<json> ReadSnapshotMeta(const std::string& snap) const override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "read metadata of snapshot {}: invalid snapshot id", snap);
    std::string path = SnapshotMetaPath(snap);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularBeneath(root_fd_.get(), SnapshotFile(snap, kMetaSuffix), O_RDONLY));
    SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFdToString(fd.get(), path));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Errorf(EINVAL, "{}: not a JSON object", path);
    return j;
  }

  Result<std::string> ReadSnapshotTrace(const std::string& snap, size_t limit) const override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "read trace of snapshot {}: invalid snapshot id", snap);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularBeneath(root_fd_.get(), SnapshotFile(snap, kTraceSuffix), O_RDONLY));
    return ReadFdAtMost(fd.get(), limit, SnapshotFilePath(snap, kTraceSuffix));
  }

  Status WriteSnapshotTrace(const std::string& snap, std::string_view bytes) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "write trace of snapshot {}: invalid snapshot id", snap);
    if (!SnapshotExists(snap)) return Errorf(ENOENT, "write trace of snapshot {}: snapshot not found", snap);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), kSnapshotsDir, O_RDONLY | O_DIRECTORY));
    return AtomicWriteFileAt(dir.get(), snap + kTraceSuffix, bytes, kFileMode)
        .Context("write trace of snapshot " + snap);
  }

  Status AddRef(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "add ref to snapshot {}: invalid snapshot id", snap);
    std::string path = JoinPath(RefsDir(), snap);
    SLACKER_ASSIGN_OR_RETURN(ParentDir p, OpenParentBeneath(root_fd_.get(), RefRel(snap)));
    UniqueFd fd(::openat(p.dir.get(), p.name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, kFileMode));
    if (!fd.valid()) return Status::FromErrno(errno, "create ref marker " + path);
    return FsyncFd(p.dir.get(), RefsDir());  // a lost marker would let gc delete a used snapshot
  }

  Status DropRef(const std::string& snap) override {
    if (!IsValidSnapshotId(snap)) return Errorf(EINVAL, "drop ref to snapshot {}: invalid snapshot id", snap);
    return RemoveRel(RefRel(snap));
  }

  Result<std::vector<std::string>> ListRefs() const override {
    return ListWithSuffix(HostRefsDir(host_), "", SnapshotIdOf);
  }

  Result<std::vector<std::string>> ListSnapshots() const override {
    return ListWithSuffix(kSnapshotsDir, kImageSuffix, SnapshotIdOf);
  }
  Result<std::vector<std::string>> ListVolumes() const override {
    return ListWithSuffix(HostVolumesDir(host_), kImageSuffix, LayerNameOf);
  }

  Result<os::FsStats> Space() const override { return os_.StatFs(root_); }

  Result<std::string> LookupChain(const std::string& key) const override { return index_.LookupChain(key); }
  Status RecordChain(const std::string& key, const std::string& snap) override {
    return index_.RecordChain(key, snap);
  }
  Result<std::vector<ChainEntry>> ListChains() const override { return index_.ListChains(); }
  Result<bool> RemoveChain(const std::string& key, const std::string& snap) override {
    return index_.RemoveChain(key, snap);
  }
  Status PublishName(const NameEntry& e) override { return index_.PublishName(e); }
  Result<NameEntry> LookupName(const std::string& ns, const std::string& name) const override {
    return index_.LookupName(ns, name);
  }
  Result<std::vector<NameEntry>> ListNames() const override { return index_.ListNames(); }
  Result<bool> RemoveName(const std::string& ns, const std::string& name, const std::string& snap) override {
    return index_.RemoveName(ns, name, snap);
  }

 private:
  // Every path is acted on relative to root_fd_, resolved beneath it without following
  // links (common/files.h): any worker can write the store, so a link planted in it
  // must never lead the store's code to a host file.
  std::string SnapshotsDir() const { return JoinPath(root_, kSnapshotsDir); }
  std::string VolumesDir() const { return JoinPath(root_, HostVolumesDir(host_)); }
  std::string RefsDir() const { return JoinPath(root_, HostRefsDir(host_)); }
  std::string VolumeRel(const std::string& layer) const { return VolumeFile(host_, layer); }
  std::string VolumesRel() const { return HostVolumesDir(host_); }
  std::string RefRel(const std::string& snap) const { return RefFile(host_, snap); }

  // A path this backend handed out (root_/...) as a path relative to the store root.
  // EXDEV for anything else; ".." and links are refused later, by the resolution itself.
  Result<std::string> RelPath(const std::string& path) const {
    std::string prefix = root_.ends_with('/') ? root_ : root_ + "/";
    if (!path.starts_with(prefix) || path.size() == prefix.size())
      return Errorf(EXDEV, "{} is outside the store {} (refused)", path, root_);
    return path.substr(prefix.size());
  }

  bool RegularFileExists(const std::string& rel) const {
    return OpenRegularBeneath(root_fd_.get(), rel, O_PATH).ok();
  }

  Status RemoveRel(const std::string& rel) {
    SLACKER_ASSIGN_OR_RETURN(ParentDir p, OpenParentBeneath(root_fd_.get(), rel));
    return UnlinkAtIfExists(p.dir.get(), p.name, JoinPath(root_, rel));
  }

  Status RenameRel(const std::string& from, const std::string& to) {
    SLACKER_ASSIGN_OR_RETURN(ParentDir a, OpenParentBeneath(root_fd_.get(), from));
    SLACKER_ASSIGN_OR_RETURN(ParentDir b, OpenParentBeneath(root_fd_.get(), to));
    if (::renameat(a.dir.get(), a.name.c_str(), b.dir.get(), b.name.c_str()) != 0)
      return Status::FromErrno(errno, fmt::format("rename {} to {}", JoinPath(root_, from), JoinPath(root_, to)));
    return Status::Ok();
  }

  Status FsyncDirRel(const std::string& rel) {
    SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, OpenBeneath(root_fd_.get(), rel, O_RDONLY | O_DIRECTORY));
    return FsyncFd(fd.get(), JoinPath(root_, rel));
  }

  // Clones src to dst (both relative) through "<dst>.tmp-XXXX" and a rename in dst's
  // directory, so a crash never leaves a half-copied dst.
  Status CloneRel(const std::string& src, const std::string& dst) {
    SLACKER_ASSIGN_OR_RETURN(ParentDir p, OpenParentBeneath(root_fd_.get(), dst));
    std::string tmp = CloneTempName(p.name, RandomHex(4));
    SLACKER_RETURN_IF_ERROR(CloneInto(src, p.dir.get(), tmp, JoinPath(root_, dst), kFileMode, /*durable=*/true));
    SLACKER_FAULT_POINT("clone.before_rename");
    if (::renameat(p.dir.get(), tmp.c_str(), p.dir.get(), p.name.c_str()) != 0) {
      Status s = Status::FromErrno(errno, fmt::format("rename {} to {}", tmp, JoinPath(root_, dst)));
      ::unlinkat(p.dir.get(), tmp.c_str(), 0);
      return s;
    }
    return FsyncFd(p.dir.get(), JoinPath(root_, dst));
  }

  using IdOf = std::optional<std::string> (*)(std::string_view name, std::string_view suffix);
  Result<std::vector<std::string>> ListWithSuffix(const std::string& rel, std::string_view suffix, IdOf id_of) const {
    SLACKER_ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root_fd_.get(), rel, O_RDONLY | O_DIRECTORY));
    SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(dir.get(), JoinPath(root_, rel)));
    std::vector<std::string> out;
    for (auto& name : names) {
      if (auto id = id_of(name, suffix)) out.push_back(std::move(*id));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Clone (or move) the volume to snapshots/<id>.img.tmp, make it read-only and durable,
  // write <id>.json, mark the ref, then rename the image into place: the rename publishes.
  // The volume must be a regular file: a link there is refused (ELOOP), never followed.
  Result<std::string> Publish(const std::string& layer, const json& meta, bool move) {
    std::string verb = move ? "promote" : "snapshot";
    if (!IsValidLayerName(layer)) return Errorf(EINVAL, "{} volume {}: invalid layer name", verb, layer);
    if (!meta.is_null() && !meta.is_object()) return Errorf(EINVAL, "{} volume {}: metadata must be a JSON object", verb, layer);
    std::string vol = VolumePath(layer);
    std::string vol_rel = VolumeRel(layer);
    {
      SLACKER_ASSIGN_OR_RETURN(ParentDir p, OpenParentBeneath(root_fd_.get(), vol_rel));
      struct stat st;
      if (::fstatat(p.dir.get(), p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return Errorf(ENOENT, "{} volume of layer {}: {} does not exist", verb, layer, vol);
        return Status::FromErrno(errno, "stat " + vol);
      }
      if (S_ISLNK(st.st_mode)) return Errorf(ELOOP, "{} volume of layer {}: {} is a symbolic link (refused)", verb, layer, vol);
      if (!S_ISREG(st.st_mode)) return Errorf(EINVAL, "{} volume of layer {}: {} is not a regular file (refused)", verb, layer, vol);
    }
    std::string id = RandomHex(16);
    std::string what = fmt::format("{} volume of layer {} as snapshot {}", verb, layer, id);
    std::string img_rel = SnapshotFile(id, kImageSuffix);
    std::string img_name = id + kImageSuffix, tmp_name = SnapshotImageTempName(id), meta_name = id + kMetaSuffix;
    std::string tmp_rel = JoinPath(kSnapshotsDir, tmp_name);
    SLACKER_ASSIGN_OR_RETURN(UniqueFd snaps, OpenBeneath(root_fd_.get(), kSnapshotsDir, O_RDONLY | O_DIRECTORY));

    if (move) {
      SLACKER_RETURN_IF_ERROR(RenameRel(vol_rel, tmp_rel).Context(what));
    } else {
      SLACKER_RETURN_IF_ERROR(
          CloneInto(vol_rel, snaps.get(), tmp_name, JoinPath(root_, tmp_rel), kSnapshotMode, false).Context(what));
    }
    auto rollback = [&](const Status& s) {
      if (move) {
        if (!RenameRel(tmp_rel, vol_rel).ok())
          log::Error("promote_rollback_failed",
                     {{"file", JoinPath(root_, tmp_rel)}, {"volume", vol}, {"action", "rename it back by hand"}});
      } else {
        ::unlinkat(snaps.get(), tmp_name.c_str(), 0);
      }
      ::unlinkat(snaps.get(), meta_name.c_str(), 0);
      IgnoreError(RemoveRel(RefRel(id)), "best effort: a stray marker only delays gc");
      return s.Context(what);
    };
    // Through the fd, never the name: what was renamed in is re-checked to be a regular
    // file (a link raced in is refused here and renamed back).
    auto image = OpenRegularBeneath(root_fd_.get(), tmp_rel, O_RDONLY);
    if (!image.ok()) return rollback(image.status());
    if (::fchmod(image->get(), kSnapshotMode) != 0) return rollback(Status::FromErrno(errno, "chmod " + tmp_rel));
    Status s = FsyncFd(image->get(), JoinPath(root_, tmp_rel));
    if (!s.ok()) return rollback(s);
    json m = meta.is_object() ? meta : json::object();
    if (!m.contains("created")) m["created"] = NowRfc3339();
    s = AtomicWriteFileAt(snaps.get(), meta_name, m.dump() + "\n", kFileMode);
    if (!s.ok()) return rollback(s);
    s = AddRef(id);
    if (!s.ok()) return rollback(s);
    if (::renameat(snaps.get(), tmp_name.c_str(), snaps.get(), img_name.c_str()) != 0)
      return rollback(Status::FromErrno(errno, "publish " + JoinPath(root_, img_rel)));
    s = FsyncFd(snaps.get(), SnapshotsDir());
    if (s.ok() && move) s = FsyncDirRel(HostVolumesDir(host_));
    if (!s.ok()) return s.Context(what + " (published, not yet durable)");
    log::Debug("snapshot_published", {{"snapshot", id}, {"layer", layer}, {"how", verb}});
    return id;
  }

  // Creates `name` (O_EXCL, exactly `mode`) in the open directory dir_fd and fills it with
  // a clone of the regular file `src` (relative to the root). On failure it is removed.
  // With durable the new file is fsynced. `dst_path` names it in messages.
  Status CloneInto(const std::string& src, int dir_fd, const std::string& name, const std::string& dst_path,
                   unsigned mode, bool durable) {
    std::string what = fmt::format("clone {} to {}", JoinPath(root_, src), dst_path);
    auto in = OpenRegularBeneath(root_fd_.get(), src, O_RDONLY);
    if (!in.ok()) return in.status().Context(what + ": open source");
    struct stat st;
    if (::fstat(in->get(), &st) != 0) return Status::FromErrno(errno, what + ": stat source");
    UniqueFd out(::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!out.valid()) return Status::FromErrno(errno, what + ": create");
    Status s;
    if (::fchmod(out.get(), mode) != 0) s = Status::FromErrno(errno, "chmod");
    if (s.ok()) s = CopyData(in->get(), out.get(), static_cast<uint64_t>(st.st_size));
    if (s.ok() && durable && ::fsync(out.get()) != 0) s = Status::FromErrno(errno, "fsync");
    if (!s.ok()) {
      out.Reset();
      ::unlinkat(dir_fd, name.c_str(), 0);
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
  const UniqueFd root_fd_;  // the store root, opened once; every path is resolved beneath it
  const std::string host_;
  const CloneMode mode_;
  const StoreInfo info_;
  StoreIndex index_;  // chains/ and containerd/names/, beneath root_fd_
  std::atomic<int> path_{0};
  std::atomic<bool> used_[3] = {false, false, false};
};

// Reads store.json in the store root `root_fd`, or creates it (no-clobber via linkat, so
// two hosts opening a fresh shared store concurrently agree on one uuid).
Result<StoreInfo> LoadOrCreateStoreInfo(int root_fd, const std::string& root) {
  std::string path = JoinPath(root, kStoreInfoFile);
  struct stat st;
  if (::fstatat(root_fd, kStoreInfoFile, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) return Status::FromErrno(errno, "stat " + path);
    json j = {{"format", kStoreFormat}, {"uuid", RandomHex(16)}, {"created", NowRfc3339()}};
    std::string tmp = StoreInfoTempName(RandomHex(4));
    SLACKER_RETURN_IF_ERROR(AtomicWriteFileAt(root_fd, tmp, j.dump() + "\n", kFileMode));
    int rc = ::linkat(root_fd, tmp.c_str(), root_fd, kStoreInfoFile, 0);
    int err = errno;
    ::unlinkat(root_fd, tmp.c_str(), 0);
    if (rc != 0 && err != EEXIST) return Status::FromErrno(err, "create " + path);
    if (rc == 0) {
      SLACKER_RETURN_IF_ERROR(FsyncFd(root_fd, root));
      log::Info("store_created", {{"store", root}, {"uuid", j["uuid"].get<std::string>()}});
    }
  }
  SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularBeneath(root_fd, kStoreInfoFile, O_RDONLY));
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadFdToString(fd.get(), path));
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

// Walks the directory `dir_fd` (named `path`) for entries open to group or others, not
// following links and not crossing into other file systems.
Status WalkLoose(int dir_fd, const std::string& path, dev_t dev, bool fix, int depth,
                 std::vector<LoosePermission>* out) {
  if (depth > 16) return Status::Ok();  // the layout is 3 deep; deeper is not ours
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(dir_fd, path));
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::string child = JoinPath(path, name);
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      return Status::FromErrno(errno, "stat " + child);
    }
    if (st.st_dev != dev || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) continue;
    if (S_ISREG(st.st_mode) && (st.st_mode & 077) == 0) continue;  // the common case: no open()
    // O_NONBLOCK | O_NOFOLLOW: what was checked above may have been swapped for a link
    // or a FIFO meanwhile; chmod only what the fd is.
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
                                                   (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0)));
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ELOOP) continue;
      return Status::FromErrno(errno, "open " + child);
    }
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + child);
    if ((st.st_mode & 077) != 0) {
      out->push_back({child, static_cast<unsigned>(st.st_mode & 07777), S_ISDIR(st.st_mode)});
      if (fix && ::fchmod(fd.get(), st.st_mode & 07700) != 0) return Status::FromErrno(errno, "chmod " + child);
    }
    if (S_ISDIR(st.st_mode)) SLACKER_RETURN_IF_ERROR(WalkLoose(fd.get(), child, dev, fix, depth + 1, out));
  }
  return Status::Ok();
}

Result<std::vector<LoosePermission>> FindLoosePermissionsAt(int root_fd, const std::string& root, bool fix) {
  std::vector<LoosePermission> out;
  struct stat st;
  if (::fstat(root_fd, &st) != 0) return Status::FromErrno(errno, "stat " + root);
  if ((st.st_mode & 077) != 0) {
    out.push_back({root, static_cast<unsigned>(st.st_mode & 07777), true});
    if (fix && ::fchmod(root_fd, st.st_mode & 07700) != 0) return Status::FromErrno(errno, "chmod " + root);
  }
  SLACKER_RETURN_IF_ERROR(WalkLoose(root_fd, root, st.st_dev, fix, 0, &out));
  return out;
}

// Tightens a store written by an older release (0755/0644/0444). Costs one fstatat per
// entry once the store is tight.
Status Tighten(int root_fd, const std::string& root) {
  SLACKER_ASSIGN_OR_RETURN(auto loose, FindLoosePermissionsAt(root_fd, root, /*fix=*/true));
  if (!loose.empty()) {
    log::Warn("store_permissions_tightened",
              {{"store", root}, {"count", std::to_string(loose.size())}, {"first", loose.front().path}});
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Backend>> OpenLocalStore(os::Os& os, const std::string& dir, const std::string& host_id,
                                                CloneMode mode, Tightening tightening) {
  if (!IsValidLayerName(host_id))
    return Errorf(EINVAL, "open store {}: invalid host id {:?} (use [A-Za-z0-9_.-], not starting with '.')", dir,
                  host_id);
  auto ctx = [&](const Status& s) { return s.Context("open store " + dir); };
  SLACKER_RETURN_IF_ERROR(ctx(MakeDirs(dir, kDirMode)));
  // The root itself is the operator's path (it may be reached through a link they made);
  // everything beneath it is resolved from this fd.
  UniqueFd root_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return ctx(Status::FromErrno(errno, "open " + dir));
  if (tightening == Tightening::kWholeStore) SLACKER_RETURN_IF_ERROR(ctx(Tighten(root_fd.get(), dir)));
  SLACKER_ASSIGN_OR_RETURN(StoreInfo info, LoadOrCreateStoreInfo(root_fd.get(), dir));
  for (const std::string& sub : {std::string(kSnapshotsDir), HostVolumesDir(host_id), HostRefsDir(host_id),
                                 std::string(kTemplatesDir)}) {
    SLACKER_RETURN_IF_ERROR(ctx(MakeDirsBeneath(root_fd.get(), sub, kDirMode).status()));
  }
  // Nothing is deleted here: half-made clones ("<layer>.img.tmp-XXXX") may be in flight
  // for the host id's running daemon; its lease holder removes them (driver recovery).
  return std::unique_ptr<Backend>(
      std::make_unique<LocalBackend>(os, dir, std::move(root_fd), host_id, mode, std::move(info)));
}

Result<std::vector<LoosePermission>> FindLoosePermissions(const std::string& dir, bool fix) {
  UniqueFd root_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return Status::FromErrno(errno, "open store " + dir);
  return FindLoosePermissionsAt(root_fd.get(), dir, fix);
}

}  // namespace slacker::storage_backend
