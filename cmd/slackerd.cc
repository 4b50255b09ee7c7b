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
#include "storage_backend/local_backend.h"

namespace {

constexpr const char* kUsage = R"(usage: slackerd [options]

slacker graphdriver plugin: every layer is an ext4 file system in a file on a shared store.

  --socket PATH       plugin socket (default /run/docker/plugins/slacker.sock; dockerd then
                      uses -s slacker)
  --state DIR         host-local state (default /var/lib/slacker)
  --store DIR         the shared store: a mounted reflink-capable directory (XFS reflink=1,
                      NFSv4.2). Omitted: an embedded store, <state>/store.img (sparse XFS,
                      reflink=1) loop-mounted at <state>/store, created on first start.
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
    else {
      *err = "unknown option " + a;
      return false;
    }
  }
  return true;
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
  if (store_dir.starts_with("nfs://") || store_dir.starts_with("http://") || store_dir.starts_with("https://")) {
    return Fail(Errorf(ENOTSUP, "store {} is not supported by this build: give a mounted directory", store_dir),
                "open store");
  }
  if (store_dir.empty()) {
    auto embedded = loopdev::EnsureEmbeddedStore(*os, flags.state);
    if (!embedded.ok()) return Fail(embedded.status(), "set up the embedded store");
    store_dir = *embedded;
  }
  auto backend = storage_backend::OpenLocalStore(*os, store_dir, flags.host_id);
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
  log::Info("stopped");
  return 0;
}
