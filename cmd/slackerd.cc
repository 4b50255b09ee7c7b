// slackerd: the slacker graphdriver plugin daemon (DESIGN.md §2).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "cmd/daemon.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "driver/slacker_driver.h"
#include "os/os.h"
#include "plugin/metrics_server.h"
#include "plugin/server.h"

namespace {

constexpr const char* kUsage = R"(usage: slackerd [options]

slacker graphdriver plugin: every layer is an ext4 file system in a file on a shared store.

  --socket PATH       plugin socket (default /run/docker/plugins/slacker.sock; dockerd then
                      uses -s slacker)
  --state DIR         host-local state (default /var/lib/slacker)
  --store DIR         the shared store: a mounted reflink-capable directory (XFS reflink=1,
                      NFSv4.2). Omitted: an embedded store, <state>/store.img (sparse XFS,
                      reflink=1) loop-mounted at <state>/store, created on first start.
  --store http[s]://HOST:PORT
                      the snapshot service (slacker-storaged) does snapshot and clone; the
                      files are reached through the NFS export it advertises: this host's
                      kernel NFS mount of it if there is one, else slacker-nfs-fuse mounted
                      at <state>/nfs (stopped and unmounted on exit)
  --store nfs://HOST/EXPORT
                      the export through slacker-nfs-fuse, no snapshot service: clones
                      become full copies over NFS (correct, slow: use http:// in production)
  --store-token-file F  bearer token for the snapshot service (required with http[s]://)
  --store-ca FILE     CA certificates (PEM) to verify an https:// snapshot service
  --nfs-bridge PATH   the slacker-nfs-fuse binary (default: next to slackerd, or in the
                      build tree's nfs_bridge/, or on PATH)
  --host-id ID        this worker's name on the store (default: the hostname)
  --cluster-key FILE  sign and verify reference tars with the key in FILE (several lines:
                      the first signs, all verify) instead of the store's cluster.key, which
                      is created with the store and used by default
  --allow-unsigned-references
                      accept unsigned and old (format 1) reference tars: UNSAFE, any image
                      author who learns a snapshot id can then read that image; for a
                      migration only (registry_shim/FORMAT.md)
  --max-spool SIZE    largest uncompressed standard layer an ApplyDiff spools to
                      <state>/spool before unpacking (default 64G); larger: EFBIG
  --unmount-delay SEC a layer stays mounted SEC seconds after its last Put (default 10; 0:
                      unmount at Put): a container started again meanwhile reuses the
                      mount, and a container removed meanwhile is discarded without
                      writing its file system back; on the local store it is also how
                      long a spare volume (the next init layer's clone, mounted) is kept
                      (driver/README.md "Start and stop")
  --share-page-cache  containers share their image's page cache: a container layer is an
                      overlay of the image's snapshot, mounted read-only once per host,
                      and of an upper directory in its own volume; commits fold the upper
                      into a clone (same snapshots, same references). Default off
                      (driver/README.md "Shared page cache")
  --prefetch on|off   start-up prefetch (default on): the first start of an image's
                      container records what it reads as a trace beside the image's
                      snapshot on the store; later cold starts on any worker read it ahead
                      in parallel (driver/README.md "Start-up prefetch")
  --log-level L       debug|info|warn|error (default info)
  --metrics-listen A  serve Prometheus metrics at GET /metrics on A: unix:/path.sock or
                      HOST:PORT (PORT alone binds 127.0.0.1); default off
  --help              this text
)";

struct Flags {
  std::string socket = "/run/docker/plugins/slacker.sock";
  std::string log_level = "info";
  std::string metrics_listen;  // "" = no metrics endpoint
  slacker::cmd::KeyFlags keys;
  slacker::cmd::StoreFlags store{.state = "/var/lib/slacker", .unmount_delay = "10", .prefetch = "on"};
};

int Fail(const slacker::Status& s, const char* what) {
  return slacker::cmd::StartupFailed("slackerd", s, what);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace slacker;
  Flags flags;
  FlagSet cli;
  cli.String("--socket", &flags.socket);
  cli.String("--state", &flags.store.state);
  cli.String("--store", &flags.store.store);
  cli.String("--host-id", &flags.store.host_id);
  cli.String("--cluster-key", &flags.keys.cluster_key_file);
  cli.String("--log-level", &flags.log_level);
  cli.String("--metrics-listen", &flags.metrics_listen);
  cli.String("--store-token-file", &flags.store.token_file);
  cli.String("--store-ca", &flags.store.ca_file);
  cli.String("--nfs-bridge", &flags.store.nfs_bridge);
  cli.String("--max-spool", &flags.store.max_spool);
  cli.String("--unmount-delay", &flags.store.unmount_delay);
  cli.String("--prefetch", &flags.store.prefetch);
  cli.Switch("--allow-unsigned-references", &flags.keys.allow_unsigned_references);
  cli.Switch("--share-page-cache", &flags.store.share_page_cache);
  ParseCommandLineOrExit(cli, {argv + 1, argv + argc}, "slackerd", kUsage, /*positional_allowed=*/false);
  if (!cmd::ApplyLogLevel("slackerd", flags.log_level)) return 2;
  Result<plugin::MetricsAddress> metrics_at = plugin::MetricsAddress{};
  if (!flags.metrics_listen.empty()) {
    metrics_at = plugin::ParseMetricsAddress(flags.metrics_listen);
    if (!metrics_at.ok()) {
      std::fprintf(stderr, "slackerd: --metrics-listen: %s\n", metrics_at.status().message().c_str());
      return 2;
    }
  }
  if (flags.store.host_id.empty()) flags.store.host_id = cmd::DefaultHostId();

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t stop = BlockStopSignals();

  if (const char* faults = std::getenv("SLACKER_FAULT"); faults && *faults) {
    fault::Armed("");  // read SLACKER_FAULT now, once
    log::Warn("fault_points_armed", {{"points", faults}, {"note", "test only: the process SIGKILLs itself there"}});
  }
  std::string step;
  auto core = cmd::OpenDaemonCore("slackerd", flags.store, flags.store.state, flags.keys, &step);
  if (!core.ok()) return Fail(core.status(), step.c_str());
  driver::SlackerDriver& drv = *core->driver;
  const storage_backend::OpenedStore& store = core->store;
  storage_backend::Backend& backend = *store.backend;
  Status s;

  plugin::ServerOptions sopts;
  sopts.socket_path = flags.socket;
  std::unique_ptr<plugin::MetricsServer> metrics_server;
  if (!flags.metrics_listen.empty()) {
    sopts.metrics = std::make_shared<plugin::PluginMetrics>();
    metrics_server = std::make_unique<plugin::MetricsServer>(drv, sopts.metrics, *metrics_at);
    s = metrics_server->Start();
    if (!s.ok()) return Fail(s, "listen for metrics");
  }
  plugin::Server server(drv, sopts);
  s = server.Start();
  if (!s.ok()) return Fail(s, "listen");
  log::Info("started", {{"socket", flags.socket}, {"state", flags.store.state},
                        {"store", store.description}, {"host_id", flags.store.host_id},
                        {"backend", backend.Describe()}});

  WaitForStopSignal(stop);
  server.Stop();
  if (metrics_server) metrics_server->Stop();
  if (store.nfs_view) store.nfs_view->Close();
  cmd::LogCleanStop(*core);
  return 0;
}
