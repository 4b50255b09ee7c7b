#include "ctl/gc.h"

#include <sys/stat.h>

#include <algorithm>

#include "common/files.h"

namespace slacker::ctl {

GcPlan PlanGc(const std::vector<std::string>& snapshots, const std::set<std::string>& host_refs,
              const std::set<std::string>* registry) {
  GcPlan plan;
  for (const auto& s : snapshots) {
    if (host_refs.count(s)) {
      plan.kept_by_refs.push_back(s);
    } else if (registry != nullptr && registry->count(s)) {
      plan.kept_by_registry.push_back(s);
    } else {
      plan.deletable.push_back(s);
    }
  }
  return plan;
}

namespace {
void ScanDir(const std::string& dir, time_t cutoff, bool companions, std::vector<Debris>* out) {
  auto names = ListDir(dir);
  if (!names.ok()) return;  // a missing dir has no debris
  std::sort(names->begin(), names->end());
  for (const auto& n : *names) {
    std::string path = JoinPath(dir, n);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_mtime > cutoff) continue;
    bool debris = n.find(".tmp") != std::string::npos;
    if (!debris && companions && !n.ends_with(".img")) {
      size_t dot = n.find('.');
      debris = dot != std::string::npos && !PathExists(JoinPath(dir, n.substr(0, dot) + ".img"));
    }
    if (debris) out->push_back({path, static_cast<uint64_t>(st.st_blocks) * 512});
  }
}
}  // namespace

Result<std::vector<Debris>> FindDebris(const std::string& store_root, time_t now, time_t min_age_sec) {
  std::vector<Debris> out;
  time_t cutoff = now - min_age_sec;
  ScanDir(JoinPath(store_root, "snapshots"), cutoff, true, &out);
  ScanDir(JoinPath(store_root, "templates"), cutoff, false, &out);
  std::string volumes = JoinPath(store_root, "volumes");
  auto hosts = ListDir(volumes);
  if (hosts.ok()) {
    std::sort(hosts->begin(), hosts->end());
    for (const auto& h : *hosts) ScanDir(JoinPath(volumes, h), cutoff, false, &out);
  }
  return out;
}

}  // namespace slacker::ctl
