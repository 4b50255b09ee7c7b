#include "ctl/docker.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "common/fd.h"
#include "common/files.h"
#include "ctl/image.h"

extern char** environ;

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

Result<std::string> RunDocker(const DockerTarget& t, const std::vector<std::string>& args,
                              bool passthrough) {
  std::vector<std::string> argv = {kDockerCli, "-H", t.host};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::string cmd = "docker " + [&] {
    std::string s;
    for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
    return s;
  }();

  int out[2] = {-1, -1}, err[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!passthrough) {
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      posix_spawn_file_actions_destroy(&fa);
      return Status::FromErrno(errno, "pipe for " + cmd);
    }
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  } else {
    posix_spawn_file_actions_adddup2(&fa, 2, 1);  // progress to our stderr: stdout stays clean
  }
  pid_t pid = -1;
  int rc = posix_spawn(&pid, kDockerCli, &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  if (rc != 0) return Status::FromErrno(rc, std::string("run ") + kDockerCli);
  out_w.Reset();
  err_w.Reset();

  std::string stdout_text, stderr_text;
  if (!passthrough) {
    struct pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
    std::string* bufs[2] = {&stdout_text, &stderr_text};
    int open_fds = 2;
    while (open_fds > 0) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buf[65536];
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          bufs[i]->append(buf, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          fds[i].fd = -1;
          --open_fds;
        }
      }
    }
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return Errorf(EIO, "{} failed (status {}){}{}", cmd, WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1,
                  stderr_text.empty() ? "" : ": ", Trim(stderr_text));
  }
  return stdout_text;
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
    auto text = ReadFileToString(JoinPath(state_dir, "layers/" + l.cache_id + ".json"));
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
