#include "loopdev/ext4_read.h"

#include <ext2fs/ext2fs.h>

#include <memory>

#include "common/files.h"

namespace slacker::loopdev {
namespace {

struct FsCloser {
  void operator()(ext2_filsys fs) const { ext2fs_close_free(&fs); }
};
struct FileCloser {
  void operator()(ext2_file_t f) const { ext2fs_file_close(f); }
};

Status Ext2Error(errcode_t err, const std::string& what) {
  return Errorf(err == EXT2_ET_FILE_NOT_FOUND ? ENOENT : EIO, "{}: {}", what, error_message(err));
}

}  // namespace

Result<std::string> ReadExt4RegularFile(const std::string& image_path, std::string_view path, uint64_t max_bytes) {
  std::string what = fmt::format("read {} from ext4 image {}", path, image_path);
  std::vector<std::string> parts = SplitNonEmpty(path, '/');
  if (parts.empty()) return Errorf(EINVAL, "{}: empty path", what);
  for (const std::string& p : parts) {
    if (p == "." || p == "..") return Errorf(EINVAL, "{}: '.' and '..' are not allowed", what);
  }
  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_open(image_path.c_str(), EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &raw);
  if (err) return Ext2Error(err, what + ": open");
  std::unique_ptr<struct struct_ext2_filsys, FsCloser> fs(raw);
  ext2_ino_t ino = EXT2_ROOT_INO;
  struct ext2_inode inode;
  for (size_t i = 0; i < parts.size(); ++i) {
    ext2_ino_t next = 0;
    err = ext2fs_lookup(fs.get(), ino, parts[i].c_str(), static_cast<int>(parts[i].size()), nullptr, &next);
    if (err) return Ext2Error(err, fmt::format("{}: look up {}", what, parts[i]));
    err = ext2fs_read_inode(fs.get(), next, &inode);
    if (err) return Ext2Error(err, fmt::format("{}: read inode of {}", what, parts[i]));
    bool last = i + 1 == parts.size();
    if (!last && !LINUX_S_ISDIR(inode.i_mode))
      return Errorf(EINVAL, "{}: {} is not a directory (mode {:o}; links are not followed)", what, parts[i],
                    inode.i_mode);
    if (last && !LINUX_S_ISREG(inode.i_mode))
      return Errorf(EINVAL, "{}: not a regular file (mode {:o}; links are not followed)", what, inode.i_mode);
    ino = next;
  }
  uint64_t size = EXT2_I_SIZE(&inode);
  if (size > max_bytes) return Errorf(EFBIG, "{}: {} bytes (limit {})", what, size, max_bytes);
  ext2_file_t raw_file = nullptr;
  err = ext2fs_file_open(fs.get(), ino, 0, &raw_file);
  if (err) return Ext2Error(err, what + ": open file");
  std::unique_ptr<struct ext2_file, FileCloser> file(raw_file);
  std::string out(size, '\0');
  size_t got = 0;
  while (got < size) {
    unsigned int n = 0;
    err = ext2fs_file_read(file.get(), out.data() + got, static_cast<unsigned int>(size - got), &n);
    if (err) return Ext2Error(err, what + ": read");
    if (n == 0) break;
    got += n;
  }
  if (got != size) return Errorf(EIO, "{}: read {} of {} bytes", what, got, size);
  return out;
}

}  // namespace slacker::loopdev
