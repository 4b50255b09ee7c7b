// Runs an external tool (resize2fs, mkfs.xfs, e2fsck) as a child process and captures its
// output. Used only where libext2fs or the Os seam has no equivalent.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace slacker::loopdev {

struct ToolOutput {
  int exit_code = 0;    // 128+N when killed by signal N
  std::string stdout_text;
  std::string stderr_text;
};

// Spawns argv[0] (looked up in PATH) with argv, stdin from /dev/null, and waits for it.
// Returns the exit code and both output streams; an error only when the tool could not
// be started or waited for (ENOENT: not installed).
Result<ToolOutput> RunTool(const std::vector<std::string>& argv);

// RunTool, then an error (EIO) naming the command and carrying its stderr if it exited
// non-zero.
Status RunToolChecked(const std::vector<std::string>& argv);

}  // namespace slacker::loopdev
