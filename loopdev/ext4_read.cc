#include "loopdev/ext4_read.h"

#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <unistd.h>

#include <memory>

#include <fmt/format.h>

#include "common/fd.h"
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

Result<bool> Ext4NeedsRecovery(const std::string& image_path) {
  // The superblock: 1024 bytes at offset 1024; s_magic (0xEF53) at 0x38, s_feature_incompat
  // at 0x60, EXT3_FEATURE_INCOMPAT_RECOVER = 0x4. Little-endian on disk.
  UniqueFd fd(::open(image_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + image_path);
  unsigned char sb[1024];
  ssize_t n = ::pread(fd.get(), sb, sizeof sb, 1024);
  if (n < 0) return Status::FromErrno(errno, "read the superblock of " + image_path);
  if (n != static_cast<ssize_t>(sizeof sb)) return Errorf(EINVAL, "{}: too short for ext4", image_path);
  auto le16 = [&](size_t off) { return static_cast<uint32_t>(sb[off] | (sb[off + 1] << 8)); };
  auto le32 = [&](size_t off) { return le16(off) | (le16(off + 2) << 16); };
  if (le16(0x38) != 0xEF53) return Errorf(EINVAL, "{}: no ext4 superblock (magic {:#x})", image_path, le16(0x38));
  return (le32(0x60) & 0x4u) != 0;
}

}  // namespace slacker::loopdev
