// slackerctl: the operator's tool for a slacker worker (DESIGN.md §2). The command
// line and what commands share: cli.h; gc: cmd_gc.cc; convert and export: cmd_images.cc.

#include "ctl/cli.h"

#include "common/flags.h"
#include "ctl/state.h"
#include "ctl/verify.h"
#include "storage_backend/cluster_key.h"

namespace {

using namespace slacker;
using namespace slacker::ctl;
using nlohmann::json;

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
