// How the daemons (slackerd, slacker-snapshotter, slacker-storaged) wait to be stopped.
#pragma once

#include <signal.h>

namespace slacker {

// Blocks SIGTERM and SIGINT in this thread and all it starts (call it before starting
// threads) and ignores SIGPIPE. Pass the returned set to WaitForStopSignal.
sigset_t BlockStopSignals();

// Waits in the calling thread for one of `stop`, logs "stopping" with `event_prefix`
// (e.g. "storaged_" gives storaged_stopping) and returns the signal's number.
int WaitForStopSignal(const sigset_t& stop, const char* event_prefix = "");

}  // namespace slacker
