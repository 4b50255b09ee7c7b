#include "ctl/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/nfs_url.h"
#include "storage_backend/cluster_key.h"

namespace slacker::ctl {

using nlohmann::json;

const char* const kUsage = R"(usage: slackerctl [options] COMMAND [ARGS]

Operate a slacker worker: its slackerd state, the shared store, images in dockerd.

commands:
  status                   store identity and space, snapshots, this host's volumes, layers by
                           kind and origin, mounted layers and their loop devices, refs
  verify                   check every layer record against the store and mount every snapshot
                           a record names read-only; exit 1 listing each problem and the fix
  gc [--registry URL | --no-registry] [--delete] [--min-age SEC] [--grace SEC]
                           delete snapshots that no host's refs/ and no registry manifest
                           use, store debris (*.tmp* older than --min-age, default 3600,
                           and never younger than 600 s; of hosts whose lease is stale)
                           and index entries (chains/,
                           containerd/names) of deleted snapshots; a dry run unless
                           --delete. --delete takes the store's gc lock, tombstones what
                           it deletes, waits --grace (default 60) for workers' claims and
                           re-checks refs/ first (storage_backend/STORE.md)
  convert IMAGE NEWREF     load IMAGE again as NEWREF with every layer a reference tar
  key show|rotate|retire   the store's cluster key (by id; never printed): rotate makes a
                           new signing key and keeps the old one accepted; retire refuses
                           every previous key from then on (registry_shim/FORMAT.md §1.1)
  export IMAGE NEWREF [--output FILE]
                           rebuild IMAGE's reference layers as standard layer tars and load
                           the result as NEWREF (or write a docker-save tarball to FILE)

options:
  --state DIR              slackerd's state (default /var/lib/slacker)
  --store STORE            the shared store: DIR, nfs://HOST/EXPORT or http[s]://HOST:PORT
                           (a snapshot service), as slackerd's --store; default
                           <state>/store when it is mounted. For nfs:// and http[s]://
                           without a kernel NFS mount, slackerctl mounts a private
                           slacker-nfs-fuse bridge under <state>/ctl-nfs.XXXXXX for the run
  --store-token-file FILE  snapshot service bearer token (http[s]:// stores)
  --store-ca FILE          CA certificate for an https:// snapshot service
  --nfs-bridge PATH        the slacker-nfs-fuse binary (default: found as slackerd does)
  --host-id ID             this worker's name on the store (default: the hostname)
  --cluster-key FILE       keys for reference tar MACs instead of the store's cluster.key
                           (convert signs with the first line, export checks with all)
  --allow-unsigned-references
                           export: accept unsigned and format 1 reference layers
  --docker-host URL        dockerd for convert/export (default unix:///var/run/docker.sock)
  --docker-data-root DIR   dockerd's data root (default: from docker info)
  --driver NAME            dockerd's storage driver name (default: from docker info)
  --tmp DIR                scratch space for tarballs (default $TMPDIR or /var/tmp)
  --json                   machine-readable output on stdout
  --help                   this text

exit status: 0 ok, 1 error or problems found, 2 usage
)";

int Usage(const std::string& err) {
  std::fprintf(stderr, "slackerctl: %s\n\n%s", err.c_str(), kUsage);
  return kExitUsage;
}

int Fail(const Flags& f, const Status& s) {
  if (f.json) std::printf("%s\n", json{{"error", s.message()}}.dump(2).c_str());
  std::fprintf(stderr, "slackerctl %s: %s\n", f.command.c_str(), s.message().c_str());
  return kExitError;
}

void Progress(const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// with_docker: also find dockerd's data root and driver (convert, export).
Result<Worker> OpenWorker(Flags& f, bool with_docker) {
  Worker w;
  w.os = os::NewRealOs();
  if (f.host_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    f.host_id = host;
  }
  storage_backend::StoreSpec spec{.store = f.store, .state = f.state, .host_id = f.host_id,
                                  .token_file = f.store_token_file, .ca_file = f.store_ca,
                                  .nfs_bridge = f.nfs_bridge, .must_exist = true};
  if (f.store.starts_with("nfs://") || f.store.starts_with("http://") || f.store.starts_with("https://")) {
    if (f.store.starts_with("nfs://")) SLACKER_RETURN_IF_ERROR(ParseNfsUrl(f.store).status());
    // Never <state>/nfs: that is a running slackerd's bridge, which NfsView would detach.
    SLACKER_ASSIGN_OR_RETURN(w.bridge_state, BridgeStateDir::Make(f.state));
    spec.state = w.bridge_state.path();
  }
  SLACKER_ASSIGN_OR_RETURN(w.opened, storage_backend::OpenStore(*w.os, spec));
  w.store = w.opened.backend.get();
  w.trust.allow_unsigned = f.allow_unsigned;
  if (!f.cluster_key_file.empty()) {
    SLACKER_ASSIGN_OR_RETURN(w.trust.keys, storage_backend::ReadKeyFile(f.cluster_key_file));
  } else {
    SLACKER_ASSIGN_OR_RETURN(w.trust.keys, storage_backend::EnsureClusterKeys(w.store->root()));
  }
  if (with_docker) SLACKER_RETURN_IF_ERROR(ctl::CompleteDockerTarget(&f.docker));
  return w;
}

Result<ctl::ScratchDir> MakeScratch(const Flags& f) {
  const char* env = std::getenv("TMPDIR");
  return ctl::ScratchDir::Create(!f.tmp.empty() ? f.tmp : env != nullptr ? env : "/var/tmp");
}

}  // namespace slacker::ctl
