// Crash fault points for recovery tests (test/e2e/crash_e2e.sh).
//
// SLACKER_FAULT_POINT("get.after_clone") does nothing unless the environment variable
// SLACKER_FAULT (read once, at the first point reached; a comma-separated list of point
// names) names the point. Then it logs `event=fault_point point=<name>` and kills the
// process with SIGKILL: no destructors, no flush beyond the log line, no cleanup — what
// a power cut or an OOM kill leaves behind. Production never sets SLACKER_FAULT.
#pragma once

#include <string_view>

namespace slacker::fault {

// True if SLACKER_FAULT names `point`.
bool Armed(std::string_view point);

// If SLACKER_FAULT names `point`: log it and SIGKILL this process (does not return).
void Hit(std::string_view point);

}  // namespace slacker::fault

#define SLACKER_FAULT_POINT(name) ::slacker::fault::Hit(name)
