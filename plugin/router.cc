#include "plugin/router.h"

#include <nlohmann/json.hpp>

namespace slacker::plugin {

std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Reply ErrorReply(int status, std::string_view message) {
  Reply r;
  r.status = status;
  r.content_type = std::string(kJsonContentType);
  r.error = std::string(message);
  r.body = DumpJson(nlohmann::json{{"Err", r.error}});
  return r;
}

Router NewRouter() {
  return Router([](int status, std::string message, const Request&) {
    return ErrorReply(status, message);
  });
}

}  // namespace slacker::plugin
