// Making a layer's volume: a reflink clone of a snapshot or of an empty template file
// system, resized to the layer's quota (--storage-opt size), with a copy into a fresh
// file system when resize2fs cannot shrink that far.
#include <sys/stat.h>
#include <unistd.h>

#include "common/files.h"
#include "common/log.h"
#include "driver/slacker_driver.h"
#include "loopdev/ext4_format.h"
#include "loopdev/mount.h"
#include "loopdev/run_tool.h"

namespace slacker::driver {

using common::MutexLock;

Status SlackerDriver::CloneBase(const std::string& snap, const std::string& layer_id, uint64_t size_bytes) {
  if (snap.empty()) {
    uint64_t size = size_bytes ? size_bytes : DefaultSize();
    SLACKER_ASSIGN_OR_RETURN(std::string tmpl, EnsureTemplate(size));
    return backend_.CloneFile(tmpl, backend_.VolumePath(layer_id));
  }
  SLACKER_RETURN_IF_ERROR(backend_.CloneSnapshot(snap, layer_id));
  if (size_bytes == 0) return Status::Ok();
  std::string vol = backend_.VolumePath(layer_id);
  struct stat st;
  if (::stat(vol.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + vol);
  uint64_t cur = static_cast<uint64_t>(st.st_size);
  if (size_bytes / 4096 == cur / 4096) return Status::Ok();
  // A per-container quota that differs from the image's file system: resize the clone
  // offline, before it is attached (online growth needs CAP_SYS_RESOURCE). resize2fs
  // cannot always shrink far (data of top-level directories sits in high block groups);
  // then the tree is copied into a fresh file system of the requested size.
  Status s = loopdev::ResizeExt4Offline(vol, size_bytes);
  if (s.ok()) return Status::Ok();
  if (size_bytes > cur) {
    IgnoreError(backend_.RemoveVolume(layer_id), "rollback: the resize error is what the caller must see; a stray volume is removed at the next start");
    return s.Context(fmt::format("grow layer file system to {} bytes", size_bytes));
  }
  log::Info("quota_copy_fallback", {{"layer", layer_id}, {"bytes", std::to_string(size_bytes)},
                                     {"resize_error", s.message()}});
  s = CopyTreeIntoNewFs(snap, layer_id, size_bytes);
  if (!s.ok()) IgnoreError(backend_.RemoveVolume(layer_id), "rollback: the copy error is what the caller must see; a stray volume is removed at the next start");
  return s;
}

Status SlackerDriver::CopyTreeIntoNewFs(const std::string& snap, const std::string& layer_id,
                                        uint64_t size_bytes) {
  SLACKER_ASSIGN_OR_RETURN(std::string tmpl, EnsureTemplate(size_bytes));
  std::string vol = backend_.VolumePath(layer_id);
  SLACKER_RETURN_IF_ERROR(backend_.CloneFile(tmpl, vol));
  std::string src_dir = JoinPath(common::ViewsDir(opts_.state_dir), RandomHex(8));
  std::string dst_dir = JoinPath(common::ViewsDir(opts_.state_dir), RandomHex(8));
  SLACKER_RETURN_IF_ERROR(MakeDirs(src_dir, 0700));
  SLACKER_RETURN_IF_ERROR(MakeDirs(dst_dir, 0700));
  Status result;
  {
    loopdev::MountedImage::Options ro;
    ro.read_only = true;
    auto src = loopdev::MountedImage::Mount(os_, backend_.SnapshotPath(snap), src_dir, ro);
    auto dst = src.ok() ? loopdev::MountedImage::Mount(os_, vol, dst_dir) : Result<loopdev::MountedImage>(src.status());
    if (!dst.ok()) {
      result = dst.status();
    } else {
      result = loopdev::RunToolChecked({"cp", "-a", "--", src_dir + "/.", dst_dir + "/"});
      if (!result.ok()) {
        result = Errorf(ENOSPC, "the image's files do not fit into storage-opt size={} bytes: {}", size_bytes,
                        result.message());
      }
    }
  }
  ::rmdir(src_dir.c_str());
  ::rmdir(dst_dir.c_str());
  return result;
}

Result<std::string> SlackerDriver::EnsureTemplate(uint64_t size_bytes) {
  MutexLock l(template_mu_);  // one format at a time; others wait and then reuse it
  std::string path = backend_.TemplatePath(size_bytes);
  if (PathExists(path)) return path;
  std::string tmp = fmt::format("{}.tmp-{}-{}", path, opts_.host_id, getpid());
  Status s = loopdev::FormatExt4(tmp, size_bytes);
  if (!s.ok()) {
    IgnoreError(RemoveFileIfExists(tmp), "rollback: the format error is what the caller must see");
    return s.Context("format template");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    IgnoreError(RemoveFileIfExists(tmp), "rollback: the rename error is what the caller must see");
    return Status::FromErrno(err, "publish template " + path);
  }
  log::Info("template_created", {{"path", path}, {"bytes", std::to_string(size_bytes)}});
  return path;
}

}  // namespace slacker::driver
