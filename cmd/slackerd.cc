// slackerd: the slacker graphdriver plugin daemon (DESIGN.md §2).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "driver/slacker_driver.h"
#include "loopdev/embedded_store.h"
#include "os/os.h"
#include "plugin/metrics_server.h"
#include "plugin/server.h"
#include "cmd/nfs_view.h"
#include "storage_backend/local_backend.h"
#include "storage_backend/rest_backend.h"

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
  --cluster-key FILE  sign and verify reference tars with HMAC-SHA256 using this key
  --log-level L       debug|info|warn|error (default info)
  --metrics-listen A  serve Prometheus metrics at GET /metrics on A: unix:/path.sock or
                      HOST:PORT (PORT alone binds 127.0.0.1); default off
  --help              this text
)";

struct Flags {
  std::string socket = "/run/docker/plugins/slacker.sock";
  std::string state = "/var/lib/slacker";
  std::string store;
  std::string host_id;
  std::string cluster_key_file;
  std::string log_level = "info";
  std::string metrics_listen;  // "" = no metrics endpoint
  std::string store_token_file;
  std::string store_ca;
  std::string nfs_bridge;
};

bool ParseFlags(int argc, char** argv, Flags* f, std::string* err) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    auto eq = a.find('=');
    if (a.starts_with("--") && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (a != "--help" && a != "-h") {
      if (i + 1 >= argc) {
        *err = a + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--socket") f->socket = value;
    else if (a == "--state") f->state = value;
    else if (a == "--store") f->store = value;
    else if (a == "--host-id") f->host_id = value;
    else if (a == "--cluster-key") f->cluster_key_file = value;
    else if (a == "--log-level") f->log_level = value;
    else if (a == "--metrics-listen") f->metrics_listen = value;
    else if (a == "--store-token-file") f->store_token_file = value;
    else if (a == "--store-ca") f->store_ca = value;
    else if (a == "--nfs-bridge") f->nfs_bridge = value;
    else {
      *err = "unknown option " + a;
      return false;
    }
  }
  return true;
}

// The slacker-nfs-fuse binary: --nfs-bridge, else beside this binary (installed), else
// the build tree's nfs_bridge/, else PATH.
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

int Fail(const slacker::Status& s, const char* what) {
  slacker::log::Error("startup_failed", {{"step", what}, {"err", s.message()}});
  std::fprintf(stderr, "slackerd: %s: %s\n", what, s.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace slacker;
  Flags flags;
  std::string err;
  if (!ParseFlags(argc, argv, &flags, &err)) {
    std::fprintf(stderr, "slackerd: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  log::Level level;
  if (!log::ParseLevel(flags.log_level, &level)) {
    std::fprintf(stderr, "slackerd: unknown --log-level %s\n", flags.log_level.c_str());
    return 2;
  }
  log::SetLevel(level);
  Result<plugin::MetricsAddress> metrics_at = plugin::MetricsAddress{};
  if (!flags.metrics_listen.empty()) {
    metrics_at = plugin::ParseMetricsAddress(flags.metrics_listen);
    if (!metrics_at.ok()) {
      std::fprintf(stderr, "slackerd: --metrics-listen: %s\n", metrics_at.status().message().c_str());
      return 2;
    }
  }
  if (flags.host_id.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    flags.host_id = host;
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (const char* faults = std::getenv("SLACKER_FAULT"); faults && *faults) {
    fault::Armed("");  // read SLACKER_FAULT now, once
    log::Warn("fault_points_armed", {{"points", faults}, {"note", "test only: the process SIGKILLs itself there"}});
  }
  auto os = os::NewRealOs();
  Status s = MakeDirs(flags.state, 0700);
  if (!s.ok()) return Fail(s, "create state directory");

  std::string store_dir = flags.store;
  std::unique_ptr<cmd::NfsView> nfs_view;  // declared before the backend: outlives it
  Result<std::unique_ptr<storage_backend::Backend>> backend = Errorf(EINVAL, "no store");
  bool service = store_dir.starts_with("http://") || store_dir.starts_with("https://");
  if (service || store_dir.starts_with("nfs://")) {
    std::string export_url = store_dir;
    storage_backend::RestOptions ropts;
    if (service) {
      if (flags.store_token_file.empty())
        return Fail(Errorf(EINVAL, "--store {} needs --store-token-file", store_dir), "open store");
      auto token = ReadFileToString(flags.store_token_file);
      if (!token.ok()) return Fail(token.status(), "read --store-token-file");
      ropts.url = store_dir;
      ropts.token = token->substr(0, token->find('\n'));
      ropts.ca_file = flags.store_ca;
      auto desc = storage_backend::FetchStoreDescription(storage_backend::StoreServiceClient(ropts));
      if (!desc.ok()) return Fail(desc.status(), "ask the snapshot service for the store");
      export_url = (*desc)["export"].get<std::string>();
      if (export_url.empty())
        return Fail(Errorf(EINVAL, "the snapshot service at {} advertises no NFS export (start slacker-storaged "
                                   "with --export nfs://HOST/PATH)",
                           store_dir),
                    "open store");
    }
    auto view = cmd::NfsView::Open(*os, {export_url, flags.state, BridgePath(flags.nfs_bridge)});
    if (!view.ok()) return Fail(view.status(), "reach the NFS export");
    nfs_view = std::move(*view);
    if (service) {
      backend = storage_backend::OpenRestStore(*os, ropts, nfs_view->dir(), flags.host_id);
    } else {
      log::Warn("nfs_store_without_service",
                {{"store", store_dir},
                 {"action", "clones are full copies over NFS (slow); run slacker-storaged and use --store http://"}});
      backend = storage_backend::OpenLocalStore(*os, nfs_view->dir(), flags.host_id);
    }
    store_dir = nfs_view->Describe();
  } else {
    if (store_dir.empty()) {
      auto embedded = loopdev::EnsureEmbeddedStore(*os, flags.state);
      if (!embedded.ok()) return Fail(embedded.status(), "set up the embedded store");
      store_dir = *embedded;
    }
    backend = storage_backend::OpenLocalStore(*os, store_dir, flags.host_id);
  }
  if (!backend.ok()) return Fail(backend.status(), "open store");

  driver::DriverOptions opts;
  opts.state_dir = flags.state;
  opts.host_id = flags.host_id;
  if (!flags.cluster_key_file.empty()) {
    auto key = ReadFileToString(flags.cluster_key_file);
    if (!key.ok()) return Fail(key.status(), "read cluster key");
    while (!key->empty() && (key->back() == '\n' || key->back() == '\r')) key->pop_back();
    if (key->empty()) return Fail(Errorf(EINVAL, "{} is empty", flags.cluster_key_file), "read cluster key");
    opts.cluster_key = *key;
  }
  auto drv = driver::SlackerDriver::Open(*os, **backend, opts);
  if (!drv.ok()) return Fail(drv.status(), "open driver state");

  plugin::ServerOptions sopts;
  sopts.socket_path = flags.socket;
  std::unique_ptr<plugin::MetricsServer> metrics_server;
  if (!flags.metrics_listen.empty()) {
    sopts.metrics = std::make_shared<plugin::PluginMetrics>();
    metrics_server = std::make_unique<plugin::MetricsServer>(**drv, sopts.metrics, *metrics_at);
    s = metrics_server->Start();
    if (!s.ok()) return Fail(s, "listen for metrics");
  }
  plugin::Server server(**drv, sopts);
  s = server.Start();
  if (!s.ok()) return Fail(s, "listen");
  log::Info("started", {{"socket", flags.socket}, {"state", flags.state}, {"store", store_dir},
                        {"host_id", flags.host_id}, {"backend", (*backend)->Describe()}});

  int sig = 0;
  sigwait(&stop, &sig);
  log::Info("stopping", {{"signal", strsignal(sig)}});
  server.Stop();
  if (metrics_server) metrics_server->Stop();
  if (nfs_view) nfs_view->Close();
  log::Info("stopped");
  return 0;
}
