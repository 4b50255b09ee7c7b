#include "loopdev/run_tool.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/fd.h"

extern char** environ;

namespace slacker::loopdev {
namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Result<ToolOutput> RunTool(const std::vector<std::string>& argv) {
  if (argv.empty()) return Errorf(EINVAL, "run tool: empty command");
  std::string cmd = fmt::format("{}", fmt::join(argv, " "));
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe for " + cmd);
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe for " + cmd);
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);

  // posix_spawn, not fork: safe in a multi-threaded daemon. dup2 clears O_CLOEXEC on the
  // child's copies; every other descriptor of ours is O_CLOEXEC.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status::FromErrno(rc, "start " + cmd);
  out_w.Reset();
  err_w.Reset();

  ToolOutput result;
  struct pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.stdout_text, &result.stderr_text};
  int open_streams = 2;
  while (open_streams > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_streams;
      }
    }
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno(errno, "wait for " + cmd);
  }
  result.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  return result;
}

Status RunToolChecked(const std::vector<std::string>& argv) {
  SLACKER_ASSIGN_OR_RETURN(ToolOutput out, RunTool(argv));
  if (out.exit_code != 0) {
    std::string detail = Trim(out.stderr_text.empty() ? out.stdout_text : out.stderr_text);
    return Errorf(EIO, "{} exited with status {}: {}", fmt::join(argv, " "), out.exit_code,
                  detail.empty() ? "(no output)" : detail);
  }
  return Status::Ok();
}

}  // namespace slacker::loopdev
