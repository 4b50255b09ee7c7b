// slacker-nfs-fuse: exposes an NFSv3 export (reached in user space through libnfs) as a
// FUSE file system, so that hosts without a kernel NFS client can loop-attach the
// store's layer files (DESIGN.md §7). See nfs_bridge/README.md.
//
// This file binds the pieces to libfuse: the NFS session (nfs_session.h, over
// libnfs_client.h), the file system's operations (bridge_fs.h) and the process around
// them (supervision.h: command line, stats file).
//
// Data path: every open file is served with FUSE direct I/O (no page cache in the
// bridge's kernel side: the loop device above it attaches with LO_FLAGS_DIRECT_IO, and
// what one worker writes must reach the server, not sit in this host's cache).
#define FUSE_USE_VERSION 35
#include <fuse.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "nfs_bridge/bridge_fs.h"
#include "nfs_bridge/libnfs_client.h"
#include "nfs_bridge/nfs_session.h"
#include "nfs_bridge/supervision.h"

namespace {

using slacker::nfs_bridge::BridgeFs;

// FUSE's callbacks carry no user pointer but the context's private_data; the bridge
// serves one file system per process.
BridgeFs* g_fs = nullptr;

BridgeFs::OpenFile* File(fuse_file_info* fi) {
  return fi != nullptr && fi->fh != 0 ? reinterpret_cast<BridgeFs::OpenFile*>(fi->fh) : nullptr;
}

void* Init(fuse_conn_info* conn, fuse_config* cfg) {
  conn->max_write = slacker::nfs_bridge::kMaxIo;
  conn->max_read = slacker::nfs_bridge::kMaxIo;
  conn->max_readahead = slacker::nfs_bridge::kMaxIo;
  // No asynchronous direct I/O: with it, data a loop device wrote through the bridge was
  // missing when read back right after the unmount (test/e2e/nfs_coherence_repro.sh:
  // 2-7 bad of 10-15 iterations with it, 0 of 27 without).
  conn->want &= ~FUSE_CAP_ASYNC_DIO;
  // Other hosts (and the snapshot service) change the share: do not trust cached
  // names or attributes.
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->direct_io = 1;
  cfg->kernel_cache = 0;
  cfg->use_ino = 1;
  cfg->hard_remove = 1;
  return nullptr;
}

int OpenOrCreate(const char* path, fuse_file_info* fi, bool create, mode_t mode) {
  BridgeFs::OpenFile* f = nullptr;
  int rc = create ? g_fs->Create(path, fi->flags, mode, &f) : g_fs->Open(path, fi->flags, &f);
  if (rc < 0) return rc;
  fi->direct_io = 1;
  fi->keep_cache = 0;
  fi->fh = reinterpret_cast<uint64_t>(f);
  return 0;
}

fuse_operations Operations() {
  fuse_operations ops{};
  ops.init = Init;
  ops.getattr = [](const char* path, struct stat* st, fuse_file_info* fi) {
    return g_fs->GetAttr(path, File(fi), st);
  };
  ops.readdir = [](const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*,
                   fuse_readdir_flags) {
    return g_fs->ReadDir(path, [&](const std::string& name, const struct stat& st) {
      return fill(buf, name.c_str(), &st, 0, static_cast<fuse_fill_dir_flags>(0)) == 0;
    });
  };
  ops.open = [](const char* path, fuse_file_info* fi) { return OpenOrCreate(path, fi, false, 0); };
  ops.create = [](const char* path, mode_t mode, fuse_file_info* fi) { return OpenOrCreate(path, fi, true, mode); };
  ops.release = [](const char*, fuse_file_info* fi) { return g_fs->Release(File(fi)); };
  ops.read = [](const char*, char* buf, size_t size, off_t off, fuse_file_info* fi) {
    return g_fs->Read(File(fi), buf, size, static_cast<uint64_t>(off));
  };
  ops.write = [](const char*, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
    return g_fs->Write(File(fi), buf, size, static_cast<uint64_t>(off));
  };
  ops.fsync = [](const char*, int, fuse_file_info* fi) { return g_fs->Fsync(File(fi)); };
  ops.flush = [](const char*, fuse_file_info* fi) { return g_fs->Flush(File(fi)); };
  // NFSv3 directory operations are synchronous: nothing to sync.
  ops.fsyncdir = [](const char*, int, fuse_file_info*) { return 0; };
  ops.truncate = [](const char* path, off_t size, fuse_file_info* fi) {
    return g_fs->Truncate(path, static_cast<uint64_t>(size), File(fi));
  };
  ops.unlink = [](const char* path) { return g_fs->Unlink(path); };
  ops.rename = [](const char* from, const char* to, unsigned int flags) { return g_fs->Rename(from, to, flags); };
  ops.link = [](const char* from, const char* to) { return g_fs->Link(from, to); };
  ops.symlink = [](const char* target, const char* path) { return g_fs->Symlink(target, path); };
  ops.readlink = [](const char* path, char* buf, size_t size) { return g_fs->ReadLink(path, buf, size); };
  ops.mkdir = [](const char* path, mode_t mode) { return g_fs->MkDir(path, mode); };
  ops.rmdir = [](const char* path) { return g_fs->RmDir(path); };
  ops.chmod = [](const char* path, mode_t mode, fuse_file_info*) { return g_fs->ChMod(path, mode); };
  ops.chown = [](const char* path, uid_t uid, gid_t gid, fuse_file_info*) { return g_fs->ChOwn(path, uid, gid); };
  ops.utimens = [](const char* path, const timespec tv[2], fuse_file_info*) { return g_fs->UTimens(path, tv); };
  ops.statfs = [](const char* path, struct statvfs* out) { return g_fs->StatFs(path, out); };
  ops.access = [](const char*, int) { return 0; };  // the server checks on each call
  return ops;
}

}  // namespace

int main(int argc, char** argv) {
  namespace nb = slacker::nfs_bridge;
  auto args = nb::ParseBridgeArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) {
    std::fprintf(stderr, "slacker-nfs-fuse: %s\n%s", args.status().message().c_str(), nb::kUsage);
    return 2;
  }
  if (args->help) {
    std::fputs(nb::kUsage, stdout);
    return 0;
  }

  std::vector<std::unique_ptr<nb::NfsClient>> clients;
  uint64_t read_max = 0, write_max = 0;
  for (int i = 0; i < args->contexts; ++i) {
    auto client = nb::LibnfsClient::Mount(args->nfs.server, args->nfs.export_path);
    if (!client.ok()) {
      std::fprintf(stderr, "slacker-nfs-fuse: %s: %s\n", args->url.c_str(), client.status().message().c_str());
      return 1;
    }
    read_max = (*client)->read_max();
    write_max = (*client)->write_max();
    clients.push_back(std::move(*client));
  }
  nb::NfsSession session(std::move(clients));
  nb::BridgeFs::Options fs_options = args->fs;
  fs_options.write_max = std::clamp<uint64_t>(write_max, 4096, nb::kMaxIo);
  BridgeFs fs(&session, fs_options);
  g_fs = &fs;
  std::fprintf(stderr, "slacker-nfs-fuse: %s mounted over NFSv3 with %d connections (readmax %llu, writemax %llu)\n",
               args->url.c_str(), args->contexts, static_cast<unsigned long long>(read_max),
               static_cast<unsigned long long>(write_max));

  std::vector<std::string> fuse_args = {"slacker-nfs-fuse", args->mount_point, "-f", "-o", "fsname=" + args->url,
                                        "-o", "subtype=slacker-nfs", "-o", "max_read=1048576", "-o",
                                        "max_threads=64"};
  fuse_args.insert(fuse_args.end(), args->fuse_options.begin(), args->fuse_options.end());
  std::vector<char*> cargs;
  for (auto& a : fuse_args) cargs.push_back(a.data());

  int rc;
  {
    nb::StatsWriter stats(args->stats_file, [&] { return nb::StatsJson(args->url, session.counters()); },
                          std::chrono::seconds(1));
    fuse_operations ops = Operations();
    rc = fuse_main(static_cast<int>(cargs.size()), cargs.data(), &ops, nullptr);
  }
  g_fs = nullptr;
  return rc;
}
