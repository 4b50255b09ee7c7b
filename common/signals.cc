#include "common/signals.h"

#include <cstring>
#include <string>

#include "common/log.h"

namespace slacker {

sigset_t BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return stop;
}

int WaitForStopSignal(const sigset_t& stop, const char* event_prefix) {
  int sig = 0;
  while (sigwait(&stop, &sig) != 0) {
  }
  log::Info(std::string(event_prefix) + "stopping", {{"signal", strsignal(sig)}});
  return sig;
}

}  // namespace slacker
