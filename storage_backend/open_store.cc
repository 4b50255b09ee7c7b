#include "storage_backend/open_store.h"

#include <unistd.h>

#include <optional>

#include "common/files.h"
#include "common/log.h"
#include "common/state_layout.h"
#include "loopdev/embedded_store.h"
#include "loopdev/mount.h"
#include "storage_backend/local_backend.h"
#include "storage_backend/rest_backend.h"

namespace slacker::storage_backend {
namespace {

Result<std::string> EmbeddedStoreDir(os::Os& os, const StoreSpec& spec) {
  if (!spec.must_exist) {
    return WithContext("set up the embedded store", loopdev::EnsureEmbeddedStore(os, spec.state));
  }
  std::string dir = common::EmbeddedStoreDir(spec.state);
  SLACKER_ASSIGN_OR_RETURN(auto mounts, loopdev::ReadMountInfo(os));
  if (loopdev::FindMount(mounts, dir) != nullptr) return dir;
  return Errorf(EINVAL, "{} is not mounted (slackerd not started with an embedded store?): pass --store", dir);
}

// A store whose files are in `dir` (a directory, or an NFS view of the export).
Result<std::unique_ptr<Backend>> OpenDirStore(os::Os& os, const std::string& dir, const StoreSpec& spec,
                                              const RestOptions* service) {
  if (spec.must_exist && !PathExists(JoinPath(dir, kStoreInfoFile))) {
    return Errorf(ENOENT, "{} is not a slacker store (no store.json): check --store", spec.store.empty() ? dir : spec.store);
  }
  if (service != nullptr) return OpenRestStore(os, *service, dir, spec.host_id);
  return OpenLocalStore(os, dir, spec.host_id);
}

// The snapshot service's options, and the NFS export it advertises.
Result<std::pair<RestOptions, std::string>> AskService(const StoreSpec& spec) {
  if (spec.token_file.empty()) return Errorf(EINVAL, "--store {} needs --store-token-file", spec.store);
  SLACKER_ASSIGN_OR_RETURN(std::string token, WithContext("read --store-token-file", ReadFileToString(spec.token_file)));
  RestOptions ropts;
  ropts.url = spec.store;
  ropts.token = token.substr(0, token.find('\n'));
  ropts.ca_file = spec.ca_file;
  SLACKER_ASSIGN_OR_RETURN(nlohmann::json desc, WithContext("ask the snapshot service for the store",
                                                   FetchStoreDescription(StoreServiceClient(ropts))));
  std::string export_url;
  if (desc.is_object() && desc.contains("export") && desc["export"].is_string()) {
    export_url = desc["export"].get<std::string>();
  }
  if (export_url.empty()) {
    return Errorf(EINVAL,
                  "the snapshot service at {} advertises no NFS export (start slacker-storaged with "
                  "--export nfs://HOST/PATH)",
                  spec.store);
  }
  return std::pair{std::move(ropts), std::move(export_url)};
}

}  // namespace

std::string BridgePath(const std::string& flag) {
  if (!flag.empty()) return flag;
  char self[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string exe(self, static_cast<size_t>(n));
    std::string dir = exe.substr(0, exe.find_last_of('/'));
    for (const std::string& c : {dir + "/slacker-nfs-fuse", dir + "/../nfs_bridge/slacker-nfs-fuse"}) {
      if (::access(c.c_str(), X_OK) == 0) return c;
    }
  }
  for (const char* d : {"/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin"}) {
    std::string c = std::string(d) + "/slacker-nfs-fuse";
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "slacker-nfs-fuse";
}

Result<OpenedStore> OpenStore(os::Os& os, const StoreSpec& spec) {
  OpenedStore out;
  const std::string& store = spec.store;
  bool service = store.starts_with("http://") || store.starts_with("https://");
  if (!service && !store.starts_with("nfs://")) {
    std::string dir = store;
    if (dir.empty()) {
      SLACKER_ASSIGN_OR_RETURN(dir, EmbeddedStoreDir(os, spec));
    }
    SLACKER_ASSIGN_OR_RETURN(out.backend, OpenDirStore(os, dir, spec, nullptr));
    out.description = dir;
    return out;
  }
  std::string export_url = store;
  std::optional<RestOptions> ropts;
  if (service) {
    SLACKER_ASSIGN_OR_RETURN(auto asked, AskService(spec));
    ropts = std::move(asked.first);
    export_url = std::move(asked.second);
  }
  SLACKER_ASSIGN_OR_RETURN(out.nfs_view, WithContext("reach the NFS export",
                                            NfsView::Open(os, {export_url, spec.state, BridgePath(spec.nfs_bridge)})));
  if (!service) {
    log::Warn("nfs_store_without_service",
              {{"store", store},
               {"action", "clones are full copies over NFS (slow); run slacker-storaged and use --store http://"}});
  }
  SLACKER_ASSIGN_OR_RETURN(out.backend, OpenDirStore(os, out.nfs_view->dir(), spec, ropts ? &*ropts : nullptr));
  out.description = out.nfs_view->Describe();
  return out;
}

}  // namespace slacker::storage_backend
