#include "plugin/router.h"

#include <exception>
#include <nlohmann/json.hpp>

namespace slacker::plugin {
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

}  // namespace

std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Reply ErrorReply(int status, std::string_view message) {
  Reply r;
  r.status = status;
  r.error = std::string(message);
  r.body = DumpJson(nlohmann::json{{"Err", r.error}});
  return r;
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

Status Router::Add(std::string path, Handler handler) {
  if (!path.starts_with('/')) return Errorf(EINVAL, "route {} must start with '/'", path);
  if (routes_.contains(path)) return Errorf(EEXIST, "route {} is already registered", path);
  routes_.emplace(std::move(path), std::move(handler));
  return Status::Ok();
}

Reply Router::Dispatch(std::string_view http_method, Request& req) const {
  auto it = routes_.find(req.path);
  if (it == routes_.end()) return ErrorReply(404, "unknown route " + req.path);
  if (http_method != "POST") {
    return ErrorReply(405, fmt::format("{} takes POST, not {}", req.path, http_method));
  }
  try {
    return it->second(req);
  } catch (const std::exception& e) {
    return ErrorReply(500, fmt::format("{}: internal error: {}", req.path.substr(1), e.what()));
  }
}

}  // namespace slacker::plugin
