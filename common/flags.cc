#include "common/flags.h"

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>

namespace slacker {

void FlagSet::String(const std::string& name, std::string* target) {
  flags_[name] = {true, [target](const std::string& v) {
                    *target = v;
                    return Status::Ok();
                  }};
}

void FlagSet::Custom(const std::string& name, std::function<Status(const std::string& value)> parse) {
  flags_[name] = {true, std::move(parse)};
}

void FlagSet::Switch(const std::string& name, bool* target) {
  flags_[name] = {false, [target](const std::string&) {
                    *target = true;
                    return Status::Ok();
                  }};
}

Result<FlagSet::Parsed> FlagSet::Parse(const std::vector<std::string>& args) const {
  Parsed out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    if (name == "--") {
      out.positional.insert(out.positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (name == "--help" || name == "-h") {
      out.help = true;
      return out;
    }
    if (!name.starts_with("-") || name == "-") {
      out.positional.push_back(name);
      continue;
    }
    std::string value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos && name.starts_with("--")) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) return Errorf(EINVAL, "unknown option {}", name);
    const Flag& flag = it->second;
    if (!flag.takes_value) {
      if (inline_value) return Errorf(EINVAL, "{} takes no value", name);
    } else if (!inline_value) {
      if (i + 1 >= args.size()) return Errorf(EINVAL, "{} needs a value", name);
      value = args[++i];
    }
    Status st = flag.set(value);
    if (!st.ok()) return st.code() == EINVAL ? st : Errorf(EINVAL, "{}: {}", name, st.message());
  }
  return out;
}

std::vector<std::string> ParseCommandLineOrExit(const FlagSet& flags, const std::vector<std::string>& args,
                                                const char* program, const char* usage, bool positional_allowed) {
  auto parsed = flags.Parse(args);
  if (parsed.ok() && parsed->help) {
    std::fputs(usage, stdout);
    std::exit(0);
  }
  if (parsed.ok() && !positional_allowed && !parsed->positional.empty())
    parsed = Errorf(EINVAL, "unexpected argument {}", parsed->positional[0]);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s: %s\n%s", program, parsed.status().message().c_str(), usage);
    std::exit(2);
  }
  return std::move(parsed->positional);
}

Result<long long> ParseIntFlag(const std::string& flag, const std::string& value, long long min, long long max) {
  long long n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || n < min || n > max)
    return Errorf(EINVAL, "{} wants a whole number from {} to {}, not {:?}", flag, min, max, value);
  return n;
}

}  // namespace slacker
