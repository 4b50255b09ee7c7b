#include "ctl/docker.h"

#include <sstream>

#include "common/files.h"
#include "common/state_layout.h"
#include "ctl/image.h"
#include "loopdev/run_tool.h"

namespace slacker::ctl {

namespace {
std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string HexOf(const std::string& digest) {
  return digest.starts_with("sha256:") ? digest.substr(7) : digest;
}
}  // namespace

Result<std::string> RunDocker(const DockerTarget& t, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kDockerCli, "-H", t.host};
  argv.insert(argv.end(), args.begin(), args.end());
  SLACKER_ASSIGN_OR_RETURN(auto out, loopdev::RunTool(argv));
  if (out.exit_code != 0) {
    std::string cmd = "docker";
    for (const auto& a : args) cmd += " " + a;
    return Errorf(EIO, "{} failed (status {}): {}", cmd, out.exit_code, Trim(out.stderr_text));
  }
  return std::move(out.stdout_text);
}

Status CompleteDockerTarget(DockerTarget* t) {
  if (!t->data_root.empty() && !t->driver.empty()) return Status::Ok();
  SLACKER_ASSIGN_OR_RETURN(std::string info,
                           RunDocker(*t, {"info", "--format", "{{.DockerRootDir}} {{.Driver}}"}));
  std::istringstream in(info);
  std::string root, driver;
  in >> root >> driver;
  if (root.empty() || driver.empty()) {
    return Errorf(EIO, "docker info did not report the data root and driver (got '{}'): pass "
                  "--docker-data-root and --driver", Trim(info));
  }
  if (t->data_root.empty()) t->data_root = root;
  if (t->driver.empty()) t->driver = driver;
  return Status::Ok();
}

Result<ImageConfig> ReadImageConfig(const DockerTarget& t, const std::string& image) {
  SLACKER_ASSIGN_OR_RETURN(std::string id, RunDocker(t, {"image", "inspect", "--format", "{{.Id}}", image}));
  ImageConfig c;
  c.id = Trim(id);
  std::string path = JoinPath(t.data_root, "image/" + t.driver + "/imagedb/content/sha256/" + HexOf(c.id));
  SLACKER_ASSIGN_OR_RETURN(c.bytes, ReadFileToString(path));
  return c;
}

Result<std::vector<ImageLayer>> ResolveImageLayers(const DockerTarget& t, const std::string& state_dir,
                                                   const std::vector<std::string>& diff_ids) {
  std::vector<std::string> chain = ChainIds(diff_ids);
  std::vector<ImageLayer> layers;
  std::string inherited;
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    ImageLayer l;
    l.diff_id = diff_ids[i];
    l.chain_id = chain[i];
    std::string cache_path =
        JoinPath(t.data_root, "image/" + t.driver + "/layerdb/sha256/" + HexOf(chain[i]) + "/cache-id");
    auto cache_id = ReadFileToString(cache_path);
    if (!cache_id.ok()) {
      return Errorf(ENOENT, "layer {} (chain {}): dockerd has no cache-id: {} (is --driver {} right?)", i,
                    chain[i], cache_id.status().message(), t.driver);
    }
    l.cache_id = Trim(*cache_id);
    auto text = ReadFileToString(common::LayerRecordFile(state_dir, l.cache_id));
    if (!text.ok()) {
      return Errorf(ENOENT, "layer {} ({}): slackerd has no record of it in {}: is --state right?", i,
                    l.cache_id, state_dir);
    }
    auto rec = driver::LayerRecord::FromJson(*text);
    if (!rec.ok()) return rec.status().Context("layer " + l.cache_id);
    l.record = *rec;
    if (!l.record.snapshot.empty()) inherited = l.record.snapshot;
    l.content_snapshot = inherited;
    layers.push_back(std::move(l));
  }
  return layers;
}

}  // namespace slacker::ctl
