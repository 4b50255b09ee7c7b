// slacker-snapshotter: slacker as a containerd snapshotter (proxy plugin). See
// snapshotter/README.md.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

#include "cmd/daemon.h"
#include "common/flags.h"
#include "common/files.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/state_layout.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "driver/slacker_driver.h"
#include "os/os.h"
#include "snapshotter/grpc_service.h"
#include "snapshotter/snapshot_service.h"

namespace {

constexpr const char* kUsage = R"(usage: slacker-snapshotter [options]
       slacker-snapshotter adopt --containerd SOCK [--namespace NS] [--snapshotter NAME]
                                 [--parent P] NAME

Serves containerd's snapshots API (containerd.services.snapshots.v1) on a unix socket:
slacker as a containerd proxy-plugin snapshotter. Every snapshot is an ext4 file system in
a file on the shared store (the same store and layout as slackerd).

  --address PATH      gRPC socket (default /run/slacker/snapshotter.sock)
  --state DIR         host-local state (default /var/lib/slacker-snapshotter)
  --store STORE       the shared store, as for slackerd: a mounted reflink directory;
                      nfs://HOST/EXPORT; http[s]://HOST:PORT (slacker-storaged, with
                      --store-token-file, --store-ca, --nfs-bridge). Omitted: an embedded
                      store <state>/store.img loop-mounted at <state>/store. (The e2e test
                      covers the directory form.)
  --host-id ID        this snapshotter's name on the store (default: <hostname>-ctrd;
                      must differ from any slackerd's --host-id on the same store)
  --cluster-key FILE  sign and verify reference tars with the key in FILE (several lines:
                      the first signs, all verify) instead of the store's cluster.key, which
                      is created with the store and used by default
  --allow-unsigned-references
                      accept unsigned and old (format 1) reference tars: UNSAFE, for a
                      migration only (registry_shim/FORMAT.md)
  --log-level L       debug|info|warn|error (default info)

adopt: make snapshot NAME, committed by any slacker snapshotter on the same store (by
`ctr snapshots commit` or by unpacking an image layer: NAME is then the chain id), known
to the containerd at SOCK, through containerd's own API (a Prepare with label
containerd.io/snapshot.ref=NAME, as containerd's unpacker does), labelled
containerd.io/gc.root so containerd's garbage collector keeps it (remove the label, or the
snapshot, to let it go). Exit 0 when containerd reports it exists.
)";

struct Flags {
  std::string address = "/run/slacker/snapshotter.sock";
  slacker::cmd::StoreFlags store{.state = "/var/lib/slacker-snapshotter"};
  slacker::cmd::KeyFlags keys;
  std::string log_level = "info";
  // adopt
  std::string containerd;
  std::string ns = "default";
  std::string snapshotter = "slacker";
  std::string parent;
  std::vector<std::string> args;
};

int Fail(const slacker::Status& s, const char* what) {
  return slacker::cmd::StartupFailed("slacker-snapshotter", s, what);
}

int Adopt(const Flags& f) {
  namespace pb = containerd::services::snapshots::v1;
  if (f.containerd.empty() || f.args.size() != 1) {
    std::fprintf(stderr, "slacker-snapshotter adopt: needs --containerd SOCK and one NAME\n%s", kUsage);
    return 2;
  }
  const std::string& name = f.args[0];
  auto channel = grpc::CreateChannel("unix://" + f.containerd, grpc::InsecureChannelCredentials());
  auto stub = pb::Snapshots::NewStub(channel);
  pb::PrepareSnapshotRequest req;
  req.set_snapshotter(f.snapshotter);
  req.set_key("extract-adopt-" + slacker::RandomHex(6) + " " + name);
  req.set_parent(f.parent);
  (*req.mutable_labels())[slacker::snapshotter::kLabelSnapshotRef] = name;
  // Nothing in containerd (image, container, lease) references an adopted snapshot: without
  // a root label its garbage collector removes it at the next run.
  (*req.mutable_labels())["containerd.io/gc.root"] = std::to_string(std::time(nullptr));
  pb::PrepareSnapshotResponse resp;
  grpc::ClientContext ctx;
  ctx.AddMetadata("containerd-namespace", f.ns);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  grpc::Status st = stub->Prepare(&ctx, req, &resp);
  if (st.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
    std::printf("adopted %s\n", name.c_str());
    return 0;
  }
  if (st.ok()) {
    // Not published: containerd made a plain active snapshot; take it back.
    pb::RemoveSnapshotRequest rm;
    rm.set_snapshotter(f.snapshotter);
    rm.set_key(req.key());
    google::protobuf::Empty empty;
    grpc::ClientContext ctx2;
    ctx2.AddMetadata("containerd-namespace", f.ns);
    stub->Remove(&ctx2, rm, &empty);
    std::fprintf(stderr, "slacker-snapshotter adopt: %s is not published on the shared store\n", name.c_str());
    return 1;
  }
  std::fprintf(stderr, "slacker-snapshotter adopt: %s: %s\n", name.c_str(), st.error_message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace slacker;
  bool adopt = argc > 1 && std::string(argv[1]) == "adopt";
  Flags flags;
  FlagSet cli;
  cli.String("--address", &flags.address);
  cli.String("--state", &flags.store.state);
  cli.String("--store", &flags.store.store);
  cli.String("--host-id", &flags.store.host_id);
  cli.String("--store-token-file", &flags.store.token_file);
  cli.String("--store-ca", &flags.store.ca_file);
  cli.String("--nfs-bridge", &flags.store.nfs_bridge);
  cli.String("--cluster-key", &flags.keys.cluster_key_file);
  cli.String("--log-level", &flags.log_level);
  cli.String("--containerd", &flags.containerd);
  cli.String("--namespace", &flags.ns);
  cli.String("--snapshotter", &flags.snapshotter);
  cli.String("--parent", &flags.parent);
  cli.Switch("--allow-unsigned-references", &flags.keys.allow_unsigned_references);
  // `adopt NAME`: the subcommand is the first word; its arguments follow.
  flags.args = ParseCommandLineOrExit(cli, {argv + (adopt ? 2 : 1), argv + argc}, "slacker-snapshotter", kUsage,
                                      /*positional_allowed=*/true);
  if (adopt) return Adopt(flags);
  if (!flags.args.empty()) {
    std::fprintf(stderr, "slacker-snapshotter: unexpected argument %s\n%s", flags.args[0].c_str(), kUsage);
    return 2;
  }
  if (!cmd::ApplyLogLevel("slacker-snapshotter", flags.log_level)) return 2;
  if (flags.store.host_id.empty()) flags.store.host_id = cmd::DefaultHostId("-ctrd");
  sigset_t stop = BlockStopSignals();

  std::string step, driver_state = common::SnapshotterDriverState(flags.store.state);
  auto core = cmd::OpenDaemonCore("slacker-snapshotter", flags.store, driver_state, flags.keys, &step);
  if (!core.ok()) return Fail(core.status(), step.c_str());
  driver::SlackerDriver& drv = *core->driver;
  const storage_backend::OpenedStore& store = core->store;
  storage_backend::Backend& backend = *store.backend;
  Status s;

  snapshotter::ServiceOptions sopts;
  sopts.state_dir = flags.store.state;
  sopts.store_uuid = backend.info().uuid;
  sopts.trust = [trust = core->trust, reload = core->reload_keys]() mutable {
    if (reload) {
      auto keys = reload();
      if (keys.ok() && !keys->empty()) trust.keys = *keys;
    }
    return trust;
  };
  sopts.host_id = flags.store.host_id;
  sopts.index = std::make_shared<snapshotter::StoreIndex>(backend);
  auto service = snapshotter::SnapshotService::Open(drv, sopts);
  if (!service.ok()) return Fail(service.status(), "open snapshot catalog");

  snapshotter::GrpcServer server(**service);
  s = server.Start(flags.address);
  if (!s.ok()) return Fail(s, "listen");
  log::Info("started", {{"address", flags.address}, {"state", flags.store.state},
                        {"store", store.description}, {"host_id", flags.store.host_id},
                        {"backend", backend.Describe()}});
  WaitForStopSignal(stop);
  // Mounts stay: containers may run on them, and the next start adopts them.
  server.Stop();
  if (store.nfs_view) store.nfs_view->Close();
  cmd::LogCleanStop(*core);
  return 0;
}
