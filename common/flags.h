// One command-line parser for slacker's programs (slackerd, slacker-snapshotter,
// slacker-storaged, slacker-nfs-fuse, slackerctl): "--name VALUE", "--name=VALUE",
// switches ("--name", no value), and positional words.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace slacker {

class FlagSet {
 public:
  // A flag with a value, stored in `*target` (the last one given wins).
  void String(const std::string& name, std::string* target);
  // A flag with a value, handed to `parse`; its error (EINVAL) names the flag.
  void Custom(const std::string& name, std::function<Status(const std::string& value)> parse);
  // A switch: sets `*target` to true; "--name=VALUE" is an error.
  void Switch(const std::string& name, bool* target);

  struct Parsed {
    bool help = false;                    // "--help" or "-h": print the usage, exit 0
    std::vector<std::string> positional;  // the words that are not flags, in order
  };
  // Parses `args` (argv without the program name). Any word that starts with "-" (other
  // than "-" itself) must be a known flag. EINVAL with the reason ("unknown option
  // --x", "--x needs a value", "--x takes no value") otherwise. "--" ends the flags:
  // the words after it are positional. Stops at "--help"/"-h".
  Result<Parsed> Parse(const std::vector<std::string>& args) const;
  Result<Parsed> Parse(int argc, char** argv) const {
    return Parse(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
  }

 private:
  struct Flag {
    bool takes_value = true;
    std::function<Status(const std::string&)> set;
  };
  std::map<std::string, Flag> flags_;
};

// For a program's main(): parses `args`; on "--help" prints `usage` to stdout and exits
// 0; on an error, or any positional word when !positional_allowed, prints
// "PROGRAM: reason" and `usage` to stderr and exits 2. Returns the positional words.
std::vector<std::string> ParseCommandLineOrExit(const FlagSet& flags, const std::vector<std::string>& args,
                                                const char* program, const char* usage, bool positional_allowed);

// A whole number in [min, max] given as the value of `flag`; EINVAL naming the flag.
Result<long long> ParseIntFlag(const std::string& flag, const std::string& value, long long min, long long max);

}  // namespace slacker
