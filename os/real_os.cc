#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/files.h"
#include "os/os.h"

#ifndef EXT4_IOC_RESIZE_FS
#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)
#endif

namespace slacker::os {
namespace {

class RealOs : public Os {
 public:
  Status Mount(const std::string& source, const std::string& target, const std::string& fstype,
               unsigned long flags, const std::string& data) override {
    if (::mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
                data.empty() ? nullptr : data.c_str()) != 0) {
      return Status::FromErrno(errno, fmt::format("mount {} on {} (type {}, options {:?})", source,
                                                  target, fstype, data));
    }
    return Status::Ok();
  }

  Status Unmount(const std::string& target, int flags) override {
    if (::umount2(target.c_str(), flags) != 0)
      return Status::FromErrno(errno, "unmount " + target);
    return Status::Ok();
  }

  Result<int> LoopGetFree() override {
    UniqueFd ctl(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (!ctl.valid()) return Status::FromErrno(errno, "open /dev/loop-control");
    int index = ::ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return Status::FromErrno(errno, "LOOP_CTL_GET_FREE");
    return index;
  }

  Result<UniqueFd> LoopConfigure(int index, const std::string& backing_file,
                                 const LoopConfig& config) override {
    std::string dev = fmt::format("/dev/loop{}", index);
    int mode = config.read_only ? O_RDONLY : O_RDWR;
    UniqueFd loop(::open(dev.c_str(), mode | O_CLOEXEC));
    if (!loop.valid() && errno == ENOENT) {
      // udev-less containers: make the node ourselves (block major 7).
      ::mknod(dev.c_str(), S_IFBLK | 0660, makedev(7, index));
      loop.Reset(::open(dev.c_str(), mode | O_CLOEXEC));
    }
    if (!loop.valid()) return Status::FromErrno(errno, "open " + dev);
    bool direct = config.direct_io;
    UniqueFd file(::open(backing_file.c_str(), mode | O_CLOEXEC | (direct ? O_DIRECT : 0)));
    if (!file.valid() && direct && errno == EINVAL) {
      direct = false;
      file.Reset(::open(backing_file.c_str(), mode | O_CLOEXEC));
    }
    if (!file.valid()) return Status::FromErrno(errno, "open " + backing_file);
    struct loop_config lc = {};
    lc.fd = static_cast<uint32_t>(file.get());
    lc.block_size = config.block_size;
    lc.info.lo_flags = (config.read_only ? LO_FLAGS_READ_ONLY : 0) |
                       (config.autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
                       (direct ? LO_FLAGS_DIRECT_IO : 0);
    std::snprintf(reinterpret_cast<char*>(lc.info.lo_file_name), LO_NAME_SIZE, "%s",
                  backing_file.c_str());
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &lc) != 0) {
      int err = errno;
      if (err == EINVAL && direct) {
        // The backing file system refused direct I/O at this block size: buffered.
        file.Reset(::open(backing_file.c_str(), mode | O_CLOEXEC));
        lc.fd = static_cast<uint32_t>(file.get());
        lc.info.lo_flags &= ~LO_FLAGS_DIRECT_IO;
        if (::ioctl(loop.get(), LOOP_CONFIGURE, &lc) == 0) return loop;
        err = errno;
      }
      return Status::FromErrno(err, fmt::format("LOOP_CONFIGURE {} with {}", dev, backing_file));
    }
    return loop;
  }

  Status LoopClear(int index) override {
    std::string dev = fmt::format("/dev/loop{}", index);
    UniqueFd loop(::open(dev.c_str(), O_RDONLY | O_CLOEXEC));
    if (!loop.valid()) return Status::FromErrno(errno, "open " + dev);
    if (::ioctl(loop.get(), LOOP_CLR_FD, 0) != 0) return Status::FromErrno(errno, "LOOP_CLR_FD " + dev);
    return Status::Ok();
  }

  Status Ficlone(int dst_fd, int src_fd) override {
    if (::ioctl(dst_fd, FICLONE, src_fd) != 0) return Status::FromErrno(errno, "FICLONE");
    return Status::Ok();
  }

  Result<uint64_t> CopyFileRange(int src_fd, int dst_fd, uint64_t len) override {
    uint64_t done = 0;
    while (done < len) {
      loff_t in = static_cast<loff_t>(done), out = static_cast<loff_t>(done);
      ssize_t n = ::copy_file_range(src_fd, &in, dst_fd, &out, len - done, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, "copy_file_range");
      }
      if (n == 0) break;
      done += static_cast<uint64_t>(n);
    }
    return done;
  }

  Status Freeze(const std::string& mountpoint) override { return FsIoctl(mountpoint, FIFREEZE, "FIFREEZE"); }
  Status Thaw(const std::string& mountpoint) override { return FsIoctl(mountpoint, FITHAW, "FITHAW"); }

  Status Shutdown(const std::string& mountpoint) override {
    // From linux/fs/ext4/ext4.h (not in every uapi header set).
    constexpr unsigned long kExt4IocShutdown = _IOR('X', 125, __u32);
    constexpr __u32 kGoingFlagsNoLogFlush = 0x2;
    UniqueFd fd(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + mountpoint);
    __u32 flags = kGoingFlagsNoLogFlush;
    if (::ioctl(fd.get(), kExt4IocShutdown, &flags) != 0) {
      return Status::FromErrno(errno, "EXT4_IOC_SHUTDOWN " + mountpoint);
    }
    return Status::Ok();
  }

  Status SyncFs(const std::string& path) override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
    if (::syncfs(fd.get()) != 0) return Status::FromErrno(errno, "syncfs " + path);
    return Status::Ok();
  }

  Result<FsStats> StatFs(const std::string& path) override {
    struct statfs s;
    if (::statfs(path.c_str(), &s) != 0) return Status::FromErrno(errno, "statfs " + path);
    FsStats out;
    out.total_bytes = static_cast<uint64_t>(s.f_blocks) * s.f_bsize;
    out.free_bytes = static_cast<uint64_t>(s.f_bavail) * s.f_bsize;
    out.total_inodes = s.f_files;
    out.free_inodes = s.f_ffree;
    out.fs_type = s.f_type;
    return out;
  }

  Status Ext4GrowTo(const std::string& mountpoint, uint64_t blocks) override {
    UniqueFd fd(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + mountpoint);
    if (::ioctl(fd.get(), EXT4_IOC_RESIZE_FS, &blocks) != 0)
      return Status::FromErrno(errno, fmt::format("EXT4_IOC_RESIZE_FS {} to {} blocks", mountpoint, blocks));
    return Status::Ok();
  }

  Result<std::string> ReadKernelFile(const std::string& path) override { return ReadFileToString(path); }
  Result<std::vector<std::string>> ListKernelDir(const std::string& path) override { return ListDir(path); }

 private:
  Status FsIoctl(const std::string& mountpoint, unsigned long req, const char* name) {
    UniqueFd fd(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + mountpoint);
    if (::ioctl(fd.get(), req, 0) != 0) return Status::FromErrno(errno, fmt::format("{} {}", name, mountpoint));
    return Status::Ok();
  }
};

}  // namespace

std::unique_ptr<Os> NewRealOs() { return std::make_unique<RealOs>(); }

}  // namespace slacker::os
