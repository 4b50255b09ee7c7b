#include "common/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>

#include "common/files.h"
#include "common/log.h"

namespace slacker::fault {
namespace {

const std::set<std::string, std::less<>>& ArmedPoints() {
  static const std::set<std::string, std::less<>> points = [] {
    const char* env = std::getenv("SLACKER_FAULT");
    auto names = SplitNonEmpty(env ? env : "", ',');
    return std::set<std::string, std::less<>>(names.begin(), names.end());
  }();
  return points;
}

}  // namespace

bool Armed(std::string_view point) { return ArmedPoints().count(point) > 0; }

void Hit(std::string_view point) {
  if (!Armed(point)) return;
  log::Error("fault_point", {{"point", std::string(point)}, {"action", "SIGKILL"}});
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached: SIGKILL cannot be caught
}

}  // namespace slacker::fault
