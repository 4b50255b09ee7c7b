#include "http/router.h"

#include <strings.h>

#include <exception>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace slacker::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// "/a/b" -> {"a", "b"}; empty segments are kept, so "/a/" is not "/a".
std::vector<std::string> Segments(std::string_view path) {
  std::vector<std::string> out;
  std::string_view rest = path.substr(1);
  for (;;) {
    auto slash = rest.find('/');
    out.emplace_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    rest = rest.substr(slash + 1);
  }
}

bool IsParam(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

std::string Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && ::strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return value;
    }
  }
  return "";
}

void SplitTarget(std::string_view target, std::string* path,
                 std::map<std::string, std::string>* query) {
  auto q = target.find('?');
  *path = std::string(target.substr(0, q));
  query->clear();
  if (q == std::string_view::npos) return;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string key = UrlDecode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
    query->emplace(std::move(key), std::move(value));
  }
}

Status Router::Add(std::string method, std::string pattern, Handler handler) {
  if (!pattern.starts_with('/')) return Errorf(EINVAL, "route {} must start with '/'", pattern);
  if (method.empty()) return Errorf(EINVAL, "route {} needs a method", pattern);
  Route* route = nullptr;
  for (auto& r : routes_) {
    if (r.pattern == pattern) route = &r;
  }
  if (route == nullptr) {
    route = &routes_.emplace_back(Route{pattern, Segments(pattern), {}});
  }
  if (route->by_method.contains(method)) {
    return Errorf(EEXIST, "route {} {} is already registered", method, pattern);
  }
  route->by_method.emplace(std::move(method), std::move(handler));
  return Status::Ok();
}

// A route whose segments are all literal and equal wins over one with "{name}" segments;
// among those, the first registered.
const Router::Route* Router::Find(std::string_view path,
                                  std::map<std::string, std::string>* params) const {
  if (!path.starts_with('/')) return nullptr;
  std::vector<std::string> segments = Segments(path);
  const Route* with_params = nullptr;
  for (const auto& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    bool literal = true, match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      if (IsParam(r.segments[i])) {
        literal = false;
        match = !segments[i].empty();
      } else {
        match = r.segments[i] == segments[i];
      }
    }
    if (!match) continue;
    if (literal) return &r;
    if (with_params == nullptr) with_params = &r;
  }
  if (with_params != nullptr && params != nullptr) {
    for (size_t i = 0; i < segments.size(); ++i) {
      const std::string& s = with_params->segments[i];
      if (IsParam(s)) (*params)[s.substr(1, s.size() - 2)] = segments[i];
    }
  }
  return with_params;
}

Reply Router::Dispatch(Request& req) const {
  const Route* route = Find(req.path, &req.params);
  if (route == nullptr) {
    return fallback_ ? Run(fallback_, req) : format_(404, "unknown route " + req.path, req);
  }
  auto it = route->by_method.find(req.method);
  if (it == route->by_method.end()) {
    std::vector<std::string_view> methods;
    for (const auto& [method, handler] : route->by_method) methods.push_back(method);
    Reply r = format_(405,
                      fmt::format("{} takes {}, not {}", req.path, fmt::join(methods, " or "),
                                  req.method),
                      req);
    r.headers.emplace_back("Allow", fmt::format("{}", fmt::join(methods, ", ")));
    return r;
  }
  return Run(it->second, req);
}

Reply Router::Run(const Handler& handler, Request& req) const {
  try {
    return handler(req);
  } catch (const std::exception& e) {
    std::string_view route = req.path.starts_with('/') ? std::string_view(req.path).substr(1)
                                                        : std::string_view(req.path);
    return format_(500, fmt::format("{}: internal error: {}", route, e.what()), req);
  }
}

}  // namespace slacker::http
