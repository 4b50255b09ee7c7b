#include "loopdev/ext4_format.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "common/fd.h"

namespace slacker::loopdev {

constexpr unsigned kMaxJournalBlocks = 4096;  // 16 MiB of 4 KiB blocks
namespace {

constexpr uint32_t kBlockSize = 4096;
constexpr uint32_t kLogBlockSize = 2;         // 1024 << 2
constexpr uint32_t kInodeSize = 256;
constexpr uint32_t kLogGroupsPerFlex = 4;     // flex_bg of 16 groups, as mke2fs
constexpr uint64_t kMinSize = 16ull << 20;
constexpr uint64_t kBlocksPerGroup = kBlockSize * 8;  // one block bitmap block per group
constexpr uint64_t kGrowthReserve = 16;               // online growth covered by resize_inode

Status Ext2Error(errcode_t err, std::string_view what) {
  // libext2fs codes are errno values or com_err codes (EXT2_ET_*); keep the number for
  // errno-like codes and report the rest as EIO with the library's message.
  int code = (err > 0 && err < 4096) ? static_cast<int>(err) : EIO;
  return Errorf(code, "{}: {}", what, error_message(err));
}

// A UUID version 4 (random) from the kernel's CSPRNG.
Status RandomUuid(uint8_t out[16]) {
  if (::getrandom(out, 16, 0) != 16) return Status::FromErrno(errno, "getrandom");
  out[6] = static_cast<uint8_t>((out[6] & 0x0f) | 0x40);
  out[8] = static_cast<uint8_t>((out[8] & 0x3f) | 0x80);
  return Status::Ok();
}

struct FsCloser {
  void operator()(ext2_filsys fs) const { ext2fs_free(fs); }
};

}  // namespace

Status FormatExt4(const std::string& image_path, uint64_t size_bytes, const Ext4FormatOptions& options) {
  auto ctx = [&](std::string_view step) { return fmt::format("format ext4 {} ({} bytes): {}", image_path, size_bytes, step); };
  if (size_bytes < kMinSize) return Errorf(EINVAL, "{}", ctx(fmt::format("smaller than the minimum {} bytes", kMinSize)));
  if (options.bytes_per_inode < kInodeSize) return Errorf(EINVAL, "{}", ctx("bytes_per_inode below the inode size"));
  {
    // Truncating to zero first guarantees every block we do not write reads as zero.
    UniqueFd fd(::open(image_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::FromErrno(errno, ctx("create"));
    if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) return Status::FromErrno(errno, ctx("extend"));
  }

  uint64_t blocks = size_bytes / kBlockSize;
  struct ext2_super_block param = {};
  ext2fs_blocks_count_set(&param, blocks);
  param.s_log_block_size = kLogBlockSize;
  param.s_log_cluster_size = kLogBlockSize;
  param.s_rev_level = EXT2_DYNAMIC_REV;
  param.s_inode_size = kInodeSize;
  uint64_t inodes = size_bytes / options.bytes_per_inode;
  param.s_inodes_count = static_cast<uint32_t>(std::min<uint64_t>(inodes, 0xFFFFFFFFull - 1));
  ext2fs_r_blocks_count_set(&param, 0);
  param.s_log_groups_per_flex = kLogGroupsPerFlex;
  // mke2fs reserves GDT blocks for 1024x online growth (1022 blocks for 10 GiB, written
  // one by one: most of the format time and 4 MiB per image). A layer grows by a quota
  // option, rarely 16x; beyond the reservation the kernel converts to meta_bg online and
  // resize2fs moves blocks offline, so growth still works, just slower.
  {
    uint64_t groups = (blocks + kBlocksPerGroup - 1) / kBlocksPerGroup;
    uint64_t descs_per_block = kBlockSize / EXT2_MIN_DESC_SIZE_64BIT;
    uint64_t now = (groups + descs_per_block - 1) / descs_per_block;
    uint64_t later = (groups * kGrowthReserve + descs_per_block - 1) / descs_per_block;
    param.s_reserved_gdt_blocks = static_cast<uint16_t>(std::clamp<uint64_t>(later - now, 1, kBlockSize / 4));
  }
  param.s_default_mount_opts = EXT2_DEFM_XATTR_USER | EXT2_DEFM_ACL;
  ext2fs_set_feature_xattr(&param);
  ext2fs_set_feature_resize_inode(&param);
  ext2fs_set_feature_dir_index(&param);
  ext2fs_set_feature_sparse_super(&param);
  ext2fs_set_feature_large_file(&param);
  ext2fs_set_feature_huge_file(&param);
  ext2fs_set_feature_dir_nlink(&param);
  ext2fs_set_feature_extra_isize(&param);
  ext2fs_set_feature_metadata_csum(&param);
  ext2fs_set_feature_filetype(&param);
  ext2fs_set_feature_extents(&param);
  ext2fs_set_feature_flex_bg(&param);
  ext2fs_set_feature_64bit(&param);
  if (options.journal) ext2fs_set_feature_journal(&param);

  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_initialize(image_path.c_str(), EXT2_FLAG_64BITS, &param, unix_io_manager, &raw);
  if (err) return Ext2Error(err, ctx("initialize"));
  std::unique_ptr<struct struct_ext2_filsys, FsCloser> fs(raw);
  ext2_super_block* sb = fs->super;

  SLACKER_RETURN_IF_ERROR(RandomUuid(sb->s_uuid));
  ext2fs_init_csum_seed(fs.get());
  uint8_t hash_seed[16];
  SLACKER_RETURN_IF_ERROR(RandomUuid(hash_seed));
  std::memcpy(sb->s_hash_seed, hash_seed, sizeof hash_seed);
  sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
  sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
  sb->s_kbytes_written = 1;
  sb->s_max_mnt_count = -1;
  sb->s_checkinterval = 0;

  err = ext2fs_allocate_tables(fs.get());
  if (err) return Ext2Error(err, ctx("allocate group tables"));
  err = ext2fs_convert_subcluster_bitmap(fs.get(), &fs->block_map);
  if (err) return Ext2Error(err, ctx("convert block bitmap"));
  blk64_t overhead = 0;
  err = ext2fs_count_used_clusters(fs.get(), sb->s_first_data_block, ext2fs_blocks_count(sb) - 1, &overhead);
  if (err) return Ext2Error(err, ctx("count overhead"));

  // Inode tables are holes in a fresh file: tell the kernel they are zeroed already.
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    ext2fs_bg_flags_set(fs.get(), g, EXT2_BG_INODE_ZEROED);
    ext2fs_group_desc_csum_set(fs.get(), g);
  }
  // Reserved inodes must carry valid checksums under metadata_csum.
  {
    std::vector<char> zero(kInodeSize, 0);
    for (ext2_ino_t ino = 1; ino < EXT2_FIRST_INO(sb); ++ino) {
      err = ext2fs_write_inode_full(fs.get(), ino, reinterpret_cast<ext2_inode*>(zero.data()), kInodeSize);
      if (err) return Ext2Error(err, ctx(fmt::format("write reserved inode {}", ino)));
    }
  }

  fs->umask = 022;
  err = ext2fs_mkdir(fs.get(), EXT2_ROOT_INO, EXT2_ROOT_INO, nullptr);
  if (err) return Ext2Error(err, ctx("create root directory"));
  for (ext2_ino_t ino = EXT2_ROOT_INO + 1; ino < EXT2_FIRST_INODE(sb); ++ino)
    ext2fs_inode_alloc_stats2(fs.get(), ino, +1, 0);
  ext2fs_mark_ib_dirty(fs.get());
  // Bad block inode: marked in use, empty list (as mke2fs).
  ext2fs_mark_inode_bitmap2(fs->inode_map, EXT2_BAD_INO);
  ext2fs_inode_alloc_stats2(fs.get(), EXT2_BAD_INO, +1, 0);
  err = ext2fs_update_bb_inode(fs.get(), nullptr);
  if (err) return Ext2Error(err, ctx("write bad block inode"));

  if (ext2fs_has_feature_resize_inode(sb)) {
    err = ext2fs_create_resize_inode(fs.get());
    if (err) return Ext2Error(err, ctx("reserve blocks for online resize"));
  }

  if (options.journal) {
    struct ext2fs_journal_params jparams = {};
    err = ext2fs_get_journal_params(&jparams, fs.get());
    if (err || jparams.num_journal_blocks == 0) {
      // Too small for a journal (mke2fs drops the feature the same way).
      ext2fs_clear_feature_journal(sb);
    } else {
      // At most 16 MiB (mke2fs's size for 1-2 GiB file systems): a layer's journal
      // must fit into the smallest per-container quota a clone may be shrunk to
      // (`--storage-opt size=`, resize2fs cannot move or shrink the journal).
      if (jparams.num_journal_blocks > kMaxJournalBlocks) jparams.num_journal_blocks = kMaxJournalBlocks;
      err = ext2fs_add_journal_inode3(fs.get(), &jparams, ~0ULL,
                                      EXT2_MKJOURNAL_LAZYINIT | EXT2_MKJOURNAL_NO_MNT_CHECK);
      if (err) return Ext2Error(err, ctx("create journal"));
      overhead += EXT2FS_NUM_B2C(fs.get(), jparams.num_journal_blocks + jparams.num_fc_blocks);
    }
  }
  overhead += EXT2FS_NUM_B2C(fs.get(), sb->s_first_data_block);
  sb->s_overhead_clusters = static_cast<uint32_t>(overhead);

  // ext2fs_close2 writes superblocks (+ backups), group descriptors and bitmaps, then
  // flushes (fsync) the file.
  err = ext2fs_close2(fs.get(), 0);
  if (err) return Ext2Error(err, ctx("write and close"));  // not freed on error: fs still owns it
  fs.release();  // freed by ext2fs_close2
  return Status::Ok();
}

}  // namespace slacker::loopdev
