// libFuzzer target: ApplyTar (registry_shim/apply.h) of arbitrary bytes onto a fresh layer
// root. Property checked beyond "no crash, no ASan/UBSan report": nothing outside the root
// changes. Beside the root sits a canary tree (a mode-0600 file, a mode-0700 directory
// holding a 0600 file; registry_shim/test/canary_tree.h); after every input its mode,
// owner, times, xattrs, content and names must be as before, and the scratch directory
// must hold nothing but the root and the canaries, else the target aborts. The seeds
// (make_seeds.py, corpus/tar_apply/) aim symlinks, hardlinks, whiteouts and opaque
// markers at ../canary. Run as root to exercise chown, mknod and every xattr namespace.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/io.h"
#include "registry_shim/apply.h"
#include "registry_shim/test/canary_tree.h"

namespace {

using slacker::registry_shim::testing::CanaryTree;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "tar_apply_fuzz: %s\n", what.c_str());
  std::abort();
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    names.push_back(e.path().filename());
  if (ec) Die("list " + dir + ": " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

// <scratch>/canary (the canaries) and <scratch>/root (the layer root, fresh per input).
struct Scratch {
  Scratch() {
    char tmpl[] = "/tmp/slacker-tar-apply-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp");
    dir = tmpl;
    root = dir + "/root";
    auto tree = CanaryTree::Create(dir + "/canary");
    if (!tree.ok()) Die(tree.status().ToString());
    canary = new CanaryTree(std::move(tree).value());
    auto snap = canary->Snapshot();
    if (!snap.ok()) Die(snap.status().ToString());
    before = *snap;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(Get().dir, ec);
    });
  }
  static Scratch& Get() {
    static Scratch* s = new Scratch();  // leaked on purpose: the atexit hook still uses it
    return *s;
  }
  std::string dir;
  std::string root;
  CanaryTree* canary;
  std::string before;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slacker;
  Scratch& s = Scratch::Get();
  std::error_code ec;
  std::filesystem::remove_all(s.root, ec);  // removes links, never follows them
  if (ec) Die("remove " + s.root + ": " + ec.message());
  if (::mkdir(s.root.c_str(), 0755) != 0) Die("mkdir " + s.root);
  StringSource src(std::string(reinterpret_cast<const char*>(data), size));
  auto stats = registry_shim::ApplyTar(src, s.root, nullptr);
  (void)stats;  // a refused tar is a fine outcome; only the host matters here
  auto after = s.canary->Snapshot();
  if (!after.ok()) Die("canaries: " + after.status().ToString());
  if (*after != s.before) {
    Die("the canaries outside the layer root changed.\nbefore:\n" + s.before + "after:\n" +
        *after);
  }
  if (Names(s.dir) != std::vector<std::string>{"canary", "root"})
    Die("something was created beside the layer root in " + s.dir);
  return 0;
}
