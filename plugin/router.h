// The plugin's route table: the http::Router (http/router.h) with the graphdriver
// protocol's error replies ({"Err": message}) and content types. Transport-free, so routes
// and handlers are testable without a socket.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "http/router.h"

namespace slacker::plugin {

using http::Handler;
using http::Reply;
using http::Request;
using http::Router;

inline constexpr std::string_view kJsonContentType = "application/vnd.docker.plugins.v1+json";
inline constexpr std::string_view kTarContentType = "application/x-tar";

// {"Err": message} with `status`.
Reply ErrorReply(int status, std::string_view message);

// Serializes without throwing: invalid UTF-8 (a file name in Changes, say) becomes U+FFFD,
// as Go's encoding/json does.
std::string DumpJson(const nlohmann::json& value);

// An empty router whose own errors (unknown route 404, non-POST 405, a handler's exception
// 500, a malformed request 400) are ErrorReply()s. Every plugin route takes POST.
Router NewRouter();

}  // namespace slacker::plugin
