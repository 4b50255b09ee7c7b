#include "common/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>

#include "common/log.h"

namespace slacker::fault {
namespace {

const std::set<std::string, std::less<>>& ArmedPoints() {
  static const std::set<std::string, std::less<>> points = [] {
    std::set<std::string, std::less<>> out;
    const char* env = std::getenv("SLACKER_FAULT");
    std::string list = env ? env : "";
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      if (comma > start) out.insert(list.substr(start, comma - start));
      start = comma + 1;
    }
    return out;
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
