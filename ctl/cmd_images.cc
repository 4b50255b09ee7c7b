// slackerctl convert and export: an image's layers as references, or back to standard tars.
#include "ctl/cli.h"

#include <fcntl.h>

#include "ctl/changes_tar.h"
#include "ctl/image.h"
#include "ctl/save_tarball.h"
#include "ctl/state.h"

namespace slacker::ctl {

using nlohmann::json;

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

}  // namespace slacker::ctl
