// slackerctl: the operator's tool for a slacker worker (DESIGN.md §2).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/files.h"
#include "common/flags.h"
#include "common/nfs_url.h"
#include "common/state_layout.h"
#include "ctl/changes_tar.h"
#include "ctl/docker.h"
#include "ctl/file_stream.h"
#include "ctl/gc.h"
#include "ctl/image.h"
#include "ctl/registry.h"
#include "ctl/save_tarball.h"
#include "ctl/state.h"
#include "ctl/verify.h"
#include "loopdev/mount.h"
#include "os/os.h"
#include "registry_shim/reference.h"
#include "storage_backend/cluster_key.h"
#include "storage_backend/lease.h"
#include "storage_backend/open_store.h"

namespace {

using namespace slacker;
using nlohmann::json;

constexpr const char* kUsage = R"(usage: slackerctl [options] COMMAND [ARGS]

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

struct Flags {
  std::string command;
  std::vector<std::string> args;
  std::string state = "/var/lib/slacker";
  std::string store;
  std::string store_token_file;
  std::string store_ca;
  std::string nfs_bridge;
  std::string host_id;
  std::string cluster_key_file;
  std::string registry;
  std::string output;
  std::string tmp;
  ctl::DockerTarget docker;
  long min_age_sec = 3600;
  long grace_sec = 60;
  bool json = false;
  bool do_delete = false;
  bool no_registry = false;
  bool allow_unsigned = false;
};

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2;

int Usage(const std::string& err) {
  std::fprintf(stderr, "slackerctl: %s\n\n%s", err.c_str(), kUsage);
  return kExitUsage;
}

bool ParseFlags(int argc, char** argv, Flags* f, std::string* err) {
  FlagSet cli;
  for (auto [name, target] : {std::pair{"--state", &f->state}, {"--store", &f->store}, {"--host-id", &f->host_id},
                              {"--store-token-file", &f->store_token_file}, {"--store-ca", &f->store_ca},
                              {"--nfs-bridge", &f->nfs_bridge},
                              {"--cluster-key", &f->cluster_key_file}, {"--registry", &f->registry},
                              {"--output", &f->output}, {"--tmp", &f->tmp}, {"--docker-host", &f->docker.host},
                              {"--docker-data-root", &f->docker.data_root}, {"--driver", &f->docker.driver}}) {
    cli.String(name, target);
  }
  cli.Switch("--json", &f->json);
  cli.Switch("--delete", &f->do_delete);
  cli.Switch("--no-registry", &f->no_registry);
  cli.Switch("--allow-unsigned-references", &f->allow_unsigned);
  for (auto [name, target] : {std::pair{"--min-age", &f->min_age_sec}, {"--grace", &f->grace_sec}}) {
    cli.Custom(name, [name, target](const std::string& v) {
      SLACKER_ASSIGN_OR_RETURN(*target, ParseIntFlag(name, v, 0, std::numeric_limits<long>::max()));
      return Status::Ok();
    });
  }
  auto parsed = cli.Parse(argc, argv);
  if (!parsed.ok()) return *err = parsed.status().message(), false;
  if (parsed->help) {
    std::fputs(kUsage, stdout);
    std::exit(kExitOk);
  }
  for (std::string& word : parsed->positional) {
    (f->command.empty() ? f->command : f->args.emplace_back()) = std::move(word);
  }
  return true;
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

// <state>/ctl-nfs.XXXXXX: the state of this run's own NFS bridge (its mount point, log and
// stats), removed file by file when the run ends. Never recursively: were the bridge still
// mounted, that would walk into the store.
class BridgeStateDir {
 public:
  static Result<BridgeStateDir> Make(const std::string& state) {
    std::string tmpl = JoinPath(state, "ctl-nfs.XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "create a directory in " + state);
    return BridgeStateDir(std::move(tmpl));
  }
  BridgeStateDir() = default;
  BridgeStateDir(BridgeStateDir&& o) noexcept : path_(std::exchange(o.path_, "")) {}
  BridgeStateDir& operator=(BridgeStateDir&& o) noexcept {
    std::swap(path_, o.path_);
    return *this;
  }
  ~BridgeStateDir() {
    if (path_.empty()) return;
    for (const std::string& f : {common::NfsBridgeLog(path_), common::NfsStatsFile(path_)}) ::unlink(f.c_str());
    // rmdir fails (and leaves it) if the bridge is still mounted at nfs/.
    if (::rmdir(common::NfsMountPoint(path_).c_str()) != 0 && errno != ENOENT) return;
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  explicit BridgeStateDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Everything a command needs of this worker. Members are destroyed in reverse order: the
// store and its NFS bridge, then the bridge's directory, then the Os they use.
struct Worker {
  std::unique_ptr<os::Os> os;
  BridgeStateDir bridge_state;  // set for nfs:// and http[s]:// stores
  storage_backend::OpenedStore opened;
  storage_backend::Backend* store = nullptr;  // opened.backend
  registry_shim::ReferenceTrust trust;
};

// with_docker: also find dockerd's data root and driver (convert, export).
Result<Worker> OpenWorker(Flags& f, bool with_docker = false) {
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

// ---------------------------------------------------------------------------- status

Result<json> StatusReport(const Flags& f, Worker& w) {
  const auto& info = w.store->info();
  json out;
  out["state"] = f.state;
  out["host_id"] = f.host_id;
  json store = {{"root", w.store->root()}, {"uuid", info.uuid}, {"format", info.format},
                {"created", info.created}, {"backend", w.store->Describe()}};
  SLACKER_ASSIGN_OR_RETURN(auto space, w.store->Space());
  store["total_bytes"] = space.total_bytes;
  store["free_bytes"] = space.free_bytes;
  store["used_bytes"] = space.total_bytes - space.free_bytes;
  out["store"] = store;

  SLACKER_ASSIGN_OR_RETURN(auto snaps, w.store->ListSnapshots());
  uint64_t snap_bytes = 0;
  for (const auto& s : snaps) snap_bytes += AllocatedBytes(w.store->SnapshotPath(s));
  out["snapshots"] = {{"count", snaps.size()}, {"allocated_bytes", snap_bytes}};

  SLACKER_ASSIGN_OR_RETURN(auto volumes, w.store->ListVolumes());
  json vols = json::array();
  for (const auto& v : volumes) vols.push_back({{"layer", v}, {"allocated_bytes", AllocatedBytes(w.store->VolumePath(v))}});
  out["volumes"] = vols;

  SLACKER_ASSIGN_OR_RETURN(auto records, ctl::LoadLayerRecords(f.state));
  json by_kind = json::object(), by_origin = json::object();
  int unreadable = 0;
  for (const auto& r : records) {
    if (!r.record.ok()) {
      ++unreadable;
      continue;
    }
    by_kind[driver::KindName(r.record->kind)] = by_kind.value(driver::KindName(r.record->kind), 0) + 1;
    by_origin[driver::OriginName(r.record->origin)] = by_origin.value(driver::OriginName(r.record->origin), 0) + 1;
  }
  out["layers"] = {{"total", records.size()}, {"by_kind", by_kind}, {"by_origin", by_origin},
                   {"unreadable", unreadable}};

  SLACKER_ASSIGN_OR_RETURN(auto mounts, loopdev::ReadMountInfo(*w.os));
  json mounted = json::array();
  for (const std::string& dir :
       {common::MountsDir(f.state), common::ViewsDir(f.state), common::CtlViewsDir(f.state)}) {
    std::string prefix = dir + "/";
    for (const auto& m : mounts) {
      if (!m.mount_point.starts_with(prefix)) continue;
      json e = {{"layer", m.mount_point.substr(prefix.size())}, {"mount_point", m.mount_point},
                {"device", m.source}, {"view", dir != common::MountsDir(f.state)},
                {"read_only", m.options.starts_with("ro")}};
      if (m.source.starts_with("/dev/loop")) {
        auto backing = w.os->ReadKernelFile("/sys/block/" + m.source.substr(5) + "/loop/backing_file");
        if (backing.ok()) e["backing_file"] = backing->substr(0, backing->find('\n'));
      }
      mounted.push_back(e);
    }
  }
  out["mounts"] = mounted;

  SLACKER_ASSIGN_OR_RETURN(auto refs, ctl::ReadAllRefs(w.store->root()));
  json mine = json::array();
  for (const auto& hr : refs) {
    if (hr.host == f.host_id) mine = hr.snapshots;
  }
  out["refs"] = {{"count", mine.size()}, {"snapshots", mine}};
  return out;
}

void PrintStatus(const json& s) {
  const json& st = s["store"];
  std::printf("store      %s\n", st["root"].get<std::string>().c_str());
  std::printf("  uuid     %s (format %d, created %s)\n", st["uuid"].get<std::string>().c_str(),
              st["format"].get<int>(), st["created"].get<std::string>().c_str());
  std::printf("  backend  %s\n", st["backend"].get<std::string>().c_str());
  std::printf("  space    %s used of %s, %s free\n", HumanBytes(st["used_bytes"]).c_str(),
              HumanBytes(st["total_bytes"]).c_str(), HumanBytes(st["free_bytes"]).c_str());
  std::printf("snapshots  %zu (%s allocated, shared extents counted once per snapshot)\n",
              s["snapshots"]["count"].get<size_t>(), HumanBytes(s["snapshots"]["allocated_bytes"]).c_str());
  std::printf("host       %s: %zu volumes, %zu snapshots referenced\n", s["host_id"].get<std::string>().c_str(),
              s["volumes"].size(), s["refs"]["count"].get<size_t>());
  for (const auto& v : s["volumes"]) {
    std::printf("  volume   %s (%s)\n", v["layer"].get<std::string>().c_str(), HumanBytes(v["allocated_bytes"]).c_str());
  }
  const json& l = s["layers"];
  std::string kinds, origins;
  for (const auto& [k, n] : l["by_kind"].items()) kinds += fmt::format(" {}={}", k, n.get<int>());
  for (const auto& [k, n] : l["by_origin"].items()) origins += fmt::format(" {}={}", k, n.get<int>());
  std::printf("layers     %zu (kind:%s; origin:%s)%s\n", l["total"].get<size_t>(), kinds.c_str(), origins.c_str(),
              l["unreadable"].get<int>() ? fmt::format(", {} UNREADABLE: run slackerctl verify",
                                                       l["unreadable"].get<int>()).c_str() : "");
  std::printf("mounts     %zu\n", s["mounts"].size());
  for (const auto& m : s["mounts"]) {
    std::printf("  %s %s %s on %s%s\n", m["view"].get<bool>() ? "view " : "layer", m["layer"].get<std::string>().c_str(),
                m["read_only"].get<bool>() ? "ro" : "rw", m["device"].get<std::string>().c_str(),
                m.contains("backing_file") ? (" <- " + m["backing_file"].get<std::string>()).c_str() : "");
  }
}

int CmdStatus(Flags& f) {
  auto w = OpenWorker(f);
  if (!w.ok()) return Fail(f, w.status());
  auto s = StatusReport(f, *w);
  if (!s.ok()) return Fail(f, s.status());
  if (f.json) std::printf("%s\n", s->dump(2).c_str());
  else PrintStatus(*s);
  return kExitOk;
}

// ---------------------------------------------------------------------------- verify

int CmdVerify(Flags& f) {
  auto w = OpenWorker(f);
  if (!w.ok()) return Fail(f, w.status());
  ctl::VerifyOptions opts;
  opts.host_id = f.host_id;
  auto r = ctl::Verify(*w->os, *w->store, f.state, opts);
  if (!r.ok()) return Fail(f, r.status());
  if (f.json) {
    json problems = json::array();
    for (const auto& p : r->problems) problems.push_back({{"subject", p.subject}, {"problem", p.message}});
    std::printf("%s\n", json{{"ok", r->problems.empty()}, {"layers", r->layers},
                             {"snapshots_checked", r->snapshots_checked},
                             {"snapshots_mounted", r->snapshots_mounted}, {"problems", problems}}
                            .dump(2).c_str());
  } else {
    for (const auto& p : r->problems) std::printf("%s\n", p.Line().c_str());
    std::printf("%d layers, %d snapshots (%d mounted read-only): %s\n", r->layers, r->snapshots_checked,
                r->snapshots_mounted,
                r->problems.empty() ? "ok" : fmt::format("{} problems", r->problems.size()).c_str());
  }
  return r->problems.empty() ? kExitOk : kExitError;
}

// ---------------------------------------------------------------------------- gc

// Whether `host`'s lease on the store is held now (its temp files may be in flight).
bool HostLeaseLive(const std::string& store_root, const std::string& host) {
  auto h = storage_backend::ReadLease(JoinPath(store_root, storage_backend::kLeasesDir), host);
  return h.ok() && storage_backend::LeaseIsLive(*h, ::time(nullptr));
}

// The gc protocol: storage_backend/STORE.md.
int CmdGc(Flags& f) {
  if (f.registry.empty() && !f.no_registry && f.do_delete) {
    return Usage("gc --delete needs --registry URL (or --no-registry, if no registry can hold references "
                 "to this store)");
  }
  auto w = OpenWorker(f);
  if (!w.ok()) return Fail(f, w.status());
  const std::string root = w->store->root();
  // One gc at a time per store, held (and refreshed) for the whole run.
  std::atomic<bool> lock_lost{false};  // declared first: the refresher writes it until gc_lock goes
  std::unique_ptr<storage_backend::Lease> gc_lock;
  if (f.do_delete) {
    auto l = storage_backend::Lease::Acquire(JoinPath(root, storage_backend::kLocksDir), storage_backend::kGcLockName,
                                             {.program = "slackerctl gc"});
    if (!l.ok()) return Fail(f, l.status().Context("take the store's gc lock"));
    gc_lock = std::move(*l);
    gc_lock->StartRefresher([&](const Status&) { lock_lost = true; });
    auto restored = ctl::LiftTombstones(root);
    if (!restored.ok()) return Fail(f, restored.status().Context("lift the tombstones of a crashed gc"));
    for (const auto& s : *restored) std::fprintf(stderr, "lifted the tombstone of snapshot %s (an interrupted gc)\n", s.c_str());
  }
  // Refs read before the registry walk: a snapshot marked now and pushed during the walk
  // is kept even if its layer is removed before the walk ends. Snapshots made after this
  // moment are never candidates of this run (a commit pushed and removed during the walk).
  time_t now = ::time(nullptr);
  auto refs = ctl::ReadAllRefs(root);
  if (!refs.ok()) return Fail(f, refs.status());
  std::set<std::string> host_refs;
  for (const auto& hr : *refs) host_refs.insert(hr.snapshots.begin(), hr.snapshots.end());
  auto snaps = w->store->ListSnapshots();
  if (!snaps.ok()) return Fail(f, snaps.status());

  std::optional<ctl::RegistryScan> scan;
  bool can_delete = true;
  if (!f.registry.empty()) {
    auto s = ctl::ScanRegistry(f.registry);
    if (!s.ok()) return Fail(f, s.status().Context("walk the registry (nothing deleted)"));
    scan = std::move(*s);
    for (const auto& u : scan->unreadable) {
      std::fprintf(stderr, "WARNING: could not check registry blob %s\n", u.c_str());
    }
    if (!scan->unreadable.empty()) {
      std::fprintf(stderr, "WARNING: %zu registry blobs could not be read; refusing to delete snapshots\n",
                   scan->unreadable.size());
      can_delete = false;
    }
  } else {
    std::fprintf(stderr,
                 "WARNING: REGISTRY REFERENCES WERE NOT CHECKED (no --registry): a snapshot listed below may "
                 "still be named by an image in a registry, and deleting it breaks every pull of that image.\n");
  }

  // Young snapshots may be between publishing and their first use: never touch them.
  std::vector<std::string> old_enough;
  std::vector<std::string> recent;
  for (const auto& s : *snaps) {
    struct stat st;
    bool young = ::stat(w->store->SnapshotPath(s).c_str(), &st) == 0 && st.st_mtime >= now - f.min_age_sec;
    (young ? recent : old_enough).push_back(s);
  }
  ctl::GcPlan plan = ctl::PlanGc(old_enough, host_refs, scan ? &scan->snapshots : nullptr);
  auto debris = ctl::FindDebris(root, now, f.min_age_sec,
                                [&](const std::string& host) { return HostLeaseLive(root, host); });
  if (!debris.ok()) return Fail(f, debris.status());

  bool deleting = f.do_delete && can_delete;
  if (deleting && lock_lost) return Fail(f, Errorf(ESTALE, "lost the store's gc lock during the walk (nothing deleted)"));
  ctl::SweepResult sweep;
  if (deleting) {
    auto r = ctl::SweepSnapshots(*w->store, plan.deletable, [&] {
      if (f.grace_sec > 0) {
        Progress(fmt::format("{} snapshots tombstoned; waiting {} s for workers' claims (--grace)", plan.deletable.size(),
                             f.grace_sec));
        ::sleep(static_cast<unsigned>(f.grace_sec));
      }
    });
    if (!r.ok()) return Fail(f, r.status());
    sweep = std::move(*r);
  }
  std::set<std::string> restored(sweep.restored.begin(), sweep.restored.end());
  std::map<std::string, std::string> failed(sweep.failed.begin(), sweep.failed.end());
  json deleted = json::array(), debris_out = json::array();
  uint64_t total = 0;
  int failures = static_cast<int>(failed.size());
  for (const auto& s : plan.deletable) {
    if (restored.count(s)) {
      if (!f.json) std::printf("kept snapshot %s: a worker claimed it during the gc\n", s.c_str());
      continue;
    }
    uint64_t bytes = AllocatedBytes(w->store->SnapshotPath(s)) +
                     AllocatedBytes(w->store->SnapshotFilePath(s, storage_backend::kSkeletonSuffix));
    total += bytes;
    std::string error = failed.count(s) ? failed[s] : "";
    deleted.push_back({{"snapshot", s}, {"bytes", bytes}, {"error", error}});
    if (!f.json) {
      std::printf("%s snapshot %s (%s)%s\n", deleting ? "deleted" : "would delete", s.c_str(),
                  HumanBytes(bytes).c_str(), error.empty() ? "" : (": FAILED: " + error).c_str());
    }
  }
  for (const auto& d : *debris) {
    total += d.bytes;
    std::string error;
    if (deleting) {
      Status st = RemoveFileIfExists(d.path);
      if (!st.ok()) error = st.message(), ++failures;
    }
    debris_out.push_back({{"path", d.path}, {"bytes", d.bytes}, {"error", error}});
    if (!f.json) {
      std::printf("%s debris %s (%s)%s\n", deleting ? "removed" : "would remove", d.path.c_str(),
                  HumanBytes(d.bytes).c_str(), error.empty() ? "" : (": FAILED: " + error).c_str());
    }
  }
  // Index entries whose snapshot is gone (after this run's deletions).
  auto stale = ctl::PruneIndexes(*w->store, deleting);
  if (!stale.ok()) return Fail(f, stale.status());
  json index_out = json::array();
  for (const auto& e : *stale) {
    if (!e.error.empty()) ++failures;
    index_out.push_back({{"path", e.path}, {"snapshot", e.snapshot}, {"error", e.error}});
    if (!f.json) {
      std::printf("%s index entry %s (snapshot %s is gone)%s\n", deleting ? "removed" : "would remove",
                  e.path.c_str(), e.snapshot.c_str(), e.error.empty() ? "" : (": FAILED: " + e.error).c_str());
    }
  }
  if (f.json) {
    json out = {{"dry_run", !deleting},
                {"registry_checked", scan.has_value()},
                {"snapshots", snaps->size()},
                {"kept_by_refs", plan.kept_by_refs},
                {"kept_by_registry", plan.kept_by_registry},
                {"kept_recent", recent},
                {"kept_claimed", sweep.restored},
                {"deletable", deleted},
                {"debris", debris_out},
                {"stale_index_entries", index_out},
                {"bytes", total}};
    if (scan) {
      out["registry"] = {{"url", f.registry}, {"repositories", scan->repositories}, {"manifests", scan->manifests},
                         {"reference_blobs", scan->reference_blobs}, {"untagged", scan->untagged},
                         {"unreadable", scan->unreadable}};
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%zu snapshots: %zu kept by refs, %zu kept by the registry%s, %zu younger than %lds kept, "
                "%zu claimed during the gc kept; %zu %s, %zu debris files, %zu stale index entries; %s %s\n",
                snaps->size(), plan.kept_by_refs.size(), plan.kept_by_registry.size(),
                scan ? "" : " (NOT CHECKED)", recent.size(), f.min_age_sec, sweep.restored.size(),
                plan.deletable.size() - sweep.restored.size(), deleting ? "deleted" : "deletable", debris->size(),
                stale->size(), HumanBytes(total).c_str(),
                deleting ? "freed" : "would be freed (dry run; --delete to delete)");
  }
  if (f.do_delete && !can_delete) return kExitError;
  return failures == 0 ? kExitOk : kExitError;
}

// ---------------------------------------------------------------------------- convert

Result<ctl::ScratchDir> MakeScratch(const Flags& f) {
  const char* env = std::getenv("TMPDIR");
  return ctl::ScratchDir::Create(!f.tmp.empty() ? f.tmp : env != nullptr ? env : "/var/tmp");
}

int CmdConvert(Flags& f) {
  if (f.args.size() != 2) return Usage("convert needs IMAGE NEWREF");
  auto w = OpenWorker(f, true);
  if (!w.ok()) return Fail(f, w.status());
  Status s;
  auto config = ctl::ReadImageConfig(f.docker, f.args[0]);
  if (!config.ok()) return Fail(f, config.status());
  auto diff_ids = ctl::ConfigDiffIds(config->bytes);
  if (!diff_ids.ok()) return Fail(f, diff_ids.status());
  auto layers = ctl::ResolveImageLayers(f.docker, f.state, *diff_ids);
  if (!layers.ok()) return Fail(f, layers.status());

  std::vector<ctl::SaveLayer> out_layers;
  std::vector<std::string> new_ids;
  std::string chain;  // of the new image's layers so far: what each reference is bound to
  json layers_out = json::array();
  for (size_t i = 0; i < layers->size(); ++i) {
    const auto& l = (*layers)[i];
    if (l.content_snapshot.empty() || !w->store->SnapshotExists(l.content_snapshot)) {
      return Fail(f, Errorf(ENOENT, "layer {} ({}) of {} has no snapshot on store {}: it cannot be referenced",
                            i, l.cache_id, f.args[0], w->store->root()));
    }
    registry_shim::Reference ref;
    ref.store = w->store->info().uuid;
    ref.snapshot = l.content_snapshot;
    ref.bytes = l.record.diff_size > 0 ? static_cast<uint64_t>(l.record.diff_size) : 0;
    ref.parent = chain;
    std::string tar = registry_shim::EncodeReferenceTar(ref, w->trust.signing_key());
    std::string diff_id = Sha256Digest(tar);
    chain = registry_shim::NextChainId(chain, diff_id);
    Progress(fmt::format("layer {}/{} {} ({}) -> reference to snapshot {} ({})", i + 1, layers->size(),
                         l.diff_id.substr(7, 12), driver::OriginName(l.record.origin), ref.snapshot,
                         HumanBytes(ref.bytes)));
    new_ids.push_back(diff_id);
    out_layers.push_back({diff_id, "", std::move(tar)});
    layers_out.push_back({{"old_diff_id", l.diff_id}, {"diff_id", diff_id}, {"snapshot", ref.snapshot},
                          {"bytes", ref.bytes}});
  }
  auto new_config = ctl::RewriteConfigDiffIds(config->bytes, new_ids);
  if (!new_config.ok()) return Fail(f, new_config.status());
  auto scratch = MakeScratch(f);
  if (!scratch.ok()) return Fail(f, scratch.status());
  std::string tarball = JoinPath(scratch->path(), "image.tar");
  std::string repo_tag = ctl::NormalizeRepoTag(f.args[1]);
  s = ctl::WriteSaveTarball(tarball, *new_config, repo_tag, out_layers);
  if (!s.ok()) return Fail(f, s);
  auto loaded = ctl::RunDocker(f.docker, {"load", "-q", "-i", tarball});
  if (!loaded.ok()) return Fail(f, loaded.status());
  std::string image_id = Sha256Digest(*new_config);
  if (f.json) {
    std::printf("%s\n", json{{"image", f.args[0]}, {"new_ref", repo_tag}, {"image_id", image_id},
                             {"layers", layers_out}}.dump(2).c_str());
  } else {
    std::printf("converted %s -> %s (%s): %zu reference layers\n", f.args[0].c_str(), repo_tag.c_str(),
                image_id.c_str(), layers->size());
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------- export

int CmdExport(Flags& f) {
  if (f.args.size() != 2) return Usage("export needs IMAGE NEWREF");
  auto w = OpenWorker(f, true);
  if (!w.ok()) return Fail(f, w.status());
  Status s;
  auto scratch = MakeScratch(f);
  if (!scratch.ok()) return Fail(f, scratch.status());
  std::string saved = JoinPath(scratch->path(), "save.tar"), dir = JoinPath(scratch->path(), "save");
  Progress("saving " + f.args[0]);
  auto out = ctl::RunDocker(f.docker, {"save", "-o", saved, f.args[0]});
  if (!out.ok()) return Fail(f, out.status());
  s = MakeDirs(dir);
  if (s.ok()) s = ctl::ExtractSaveTarball(saved, dir);
  if (!s.ok()) return Fail(f, s);
  ::unlink(saved.c_str());
  auto manifest_text = ReadFileToString(JoinPath(dir, "manifest.json"));
  if (!manifest_text.ok()) return Fail(f, manifest_text.status());
  auto manifest = ctl::ParseSaveManifest(*manifest_text);
  if (!manifest.ok()) return Fail(f, manifest.status());
  auto config = ReadFileToString(JoinPath(dir, manifest->config));
  if (!config.ok()) return Fail(f, config.status());
  auto diff_ids = ctl::ConfigDiffIds(*config);
  if (!diff_ids.ok()) return Fail(f, diff_ids.status());
  if (diff_ids->size() != manifest->layers.size()) {
    return Fail(f, Errorf(EINVAL, "docker save of {}: {} layer tars for {} diff ids", f.args[0],
                          manifest->layers.size(), diff_ids->size()));
  }
  std::optional<std::vector<ctl::ImageLayer>> resolved;  // only needed for reference layers

  std::vector<ctl::SaveLayer> out_layers;
  std::vector<std::string> new_ids;
  json layers_out = json::array();
  std::string chain, parent_chain;  // of IMAGE's layers up to i, and up to i - 1
  for (size_t i = 0; i < diff_ids->size(); ++i) {
    parent_chain = chain;
    chain = registry_shim::NextChainId(chain, (*diff_ids)[i]);
    std::string path = JoinPath(dir, manifest->layers[i]);
    auto head = ctl::MappedFile::Open(path);
    if (!head.ok()) return Fail(f, head.status());
    std::string_view bytes = head->bytes();
    bool is_ref = bytes.size() >= 512 && bytes.size() <= registry_shim::kMaxReferenceTar &&
                  registry_shim::IsReferenceTarHeader(bytes.data());
    std::string label = fmt::format("layer {}/{} {}", i + 1, diff_ids->size(), (*diff_ids)[i].substr(7, 12));
    if (!is_ref) {
      Progress(label + ": standard tar, kept as is");
      out_layers.push_back({(*diff_ids)[i], path, ""});
      new_ids.push_back((*diff_ids)[i]);
      layers_out.push_back({{"diff_id", (*diff_ids)[i]}, {"from", "standard"}});
      continue;
    }
    auto ref = registry_shim::DecodeReferenceTar(bytes, w->trust, parent_chain);
    if (!ref.ok()) return Fail(f, ref.status().Context(label));
    if (ref->store != w->store->info().uuid) {
      return Fail(f, Errorf(EINVAL, "{}: references store {}, this is store {}", label, ref->store,
                            w->store->info().uuid));
    }
    if (!resolved) {
      auto r = ctl::ResolveImageLayers(f.docker, f.state, *diff_ids);
      if (!r.ok()) return Fail(f, r.status());
      resolved = std::move(*r);
    }
    std::string parent_snap = i == 0 ? "" : (*resolved)[i - 1].content_snapshot;
    Progress(fmt::format("{}: reference to snapshot {}, diffing against {}", label, ref->snapshot,
                         parent_snap.empty() ? "an empty tree" : "snapshot " + parent_snap));
    auto upper = ctl::SnapshotView::Mount(*w->os, f.state, w->store->SnapshotPath(ref->snapshot));
    if (!upper.ok()) return Fail(f, upper.status().Context(label));
    std::optional<ctl::SnapshotView> lower;
    if (!parent_snap.empty()) {
      auto l = ctl::SnapshotView::Mount(*w->os, f.state, w->store->SnapshotPath(parent_snap));
      if (!l.ok()) return Fail(f, l.status().Context(label));
      lower.emplace(std::move(*l));
    }
    std::string tar_path = JoinPath(scratch->path(), fmt::format("layer-{}.tar", i));
    UniqueFd fd(::open(tar_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) return Fail(f, Status::FromErrno(errno, "create " + tar_path));
    ctl::FdSink file_sink(fd.get());
    ctl::Sha256Sink sink(file_sink);
    s = ctl::WriteChangesTar(upper->dir(), lower ? lower->dir() : "", sink);
    if (!s.ok()) return Fail(f, s.Context(label));
    std::string diff_id = sink.Digest();
    Progress(fmt::format("{}: standard tar {} ({})", label, diff_id.substr(7, 12), HumanBytes(AllocatedBytes(tar_path))));
    out_layers.push_back({diff_id, tar_path, ""});
    new_ids.push_back(diff_id);
    layers_out.push_back({{"old_diff_id", (*diff_ids)[i]}, {"diff_id", diff_id}, {"from", "reference"},
                          {"snapshot", ref->snapshot}});
  }
  auto new_config = ctl::RewriteConfigDiffIds(*config, new_ids);
  if (!new_config.ok()) return Fail(f, new_config.status());
  std::string repo_tag = ctl::NormalizeRepoTag(f.args[1]);
  std::string tarball = !f.output.empty() ? f.output : JoinPath(scratch->path(), "export.tar");
  s = ctl::WriteSaveTarball(tarball, *new_config, repo_tag, out_layers);
  if (!s.ok()) return Fail(f, s);
  if (f.output.empty()) {
    auto loaded = ctl::RunDocker(f.docker, {"load", "-q", "-i", tarball});
    if (!loaded.ok()) return Fail(f, loaded.status());
  }
  std::string image_id = Sha256Digest(*new_config);
  if (f.json) {
    json o = {{"image", f.args[0]}, {"new_ref", repo_tag}, {"image_id", image_id}, {"layers", layers_out}};
    if (!f.output.empty()) o["output"] = f.output;
    std::printf("%s\n", o.dump(2).c_str());
  } else if (!f.output.empty()) {
    std::printf("exported %s as %s to %s (load it with: docker load -i %s)\n", f.args[0].c_str(), repo_tag.c_str(),
                f.output.c_str(), f.output.c_str());
  } else {
    std::printf("exported %s -> %s (%s)\n", f.args[0].c_str(), repo_tag.c_str(), image_id.c_str());
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------- key

// `key show`, `key rotate`, `key retire` on the store's cluster.key (never --cluster-key:
// an operator's own key file is theirs to rotate). Prints key ids, never keys.
int CmdKey(Flags& f) {
  if (f.args.size() != 1 || (f.args[0] != "show" && f.args[0] != "rotate" && f.args[0] != "retire"))
    return Usage("key needs one of: show, rotate, retire");
  if (!f.cluster_key_file.empty()) return Usage("key works on the store's cluster.key; drop --cluster-key");
  auto w = OpenWorker(f);  // creates the store's key if it has none
  if (!w.ok()) return Fail(f, w.status());
  const std::string root = w->store->root();
  json out = {{"store", root}, {"action", f.args[0]}};
  if (f.args[0] == "rotate") {
    auto r = storage_backend::RotateClusterKey(root);
    if (!r.ok()) return Fail(f, r.status());
  } else if (f.args[0] == "retire") {
    auto n = storage_backend::RetirePreviousClusterKeys(root);
    if (!n.ok()) return Fail(f, n.status());
    out["retired"] = *n;
  }
  auto keys = storage_backend::ReadClusterKeys(root);
  if (!keys.ok()) return Fail(f, keys.status());
  out["current"] = storage_backend::KeyId(keys->front());
  json prev = json::array();
  for (size_t i = 1; i < keys->size(); ++i) prev.push_back(storage_backend::KeyId((*keys)[i]));
  out["previous"] = prev;
  if (f.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("store %s: signing key %s; also accepted: %s\n", root.c_str(), out["current"].get<std::string>().c_str(),
                prev.empty() ? "none" : prev.dump().c_str());
    if (f.args[0] == "rotate")
      std::printf("every slackerd/slacker-snapshotter on the store signs with the new key from its next reference "
                  "on; run `slackerctl key retire` once images signed before are re-pushed or no longer needed\n");
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  std::string err;
  if (!ParseFlags(argc, argv, &f, &err)) return Usage(err);
  if (f.command.empty()) return Usage("no command given");
  const std::map<std::string, int (*)(Flags&)> commands = {
      {"status", CmdStatus}, {"verify", CmdVerify}, {"gc", CmdGc}, {"convert", CmdConvert}, {"export", CmdExport},
      {"key", CmdKey}};
  auto it = commands.find(f.command);
  if (it == commands.end()) return Usage("unknown command " + f.command);
  if ((f.command == "status" || f.command == "verify" || f.command == "gc") && !f.args.empty()) {
    return Usage(f.command + " takes no arguments");
  }
  return it->second(f);
}
