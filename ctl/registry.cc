#include "ctl/registry.h"

#include <zlib.h>

#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "registry_shim/reference.h"

namespace slacker::ctl {

namespace http = boost::beast::http;
using nlohmann::json;

namespace {

constexpr const char* kManifestAccept =
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

Result<std::string> Gunzip(std::string_view in) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return Errorf(EINVAL, "gzip: inflateInit failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  int rc = Z_OK;
  char buf[16384];
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
    if (rc != Z_OK) break;  // Z_STREAM_END, or an error (Z_BUF_ERROR: truncated input)
    // A reference tar is a few KiB; a blob that inflates far beyond is not one.
    if (out.size() > 4 * registry_shim::kMaxReferenceTar) {
      out.clear();  // callers then see "not a reference"
      rc = Z_STREAM_END;
      break;
    }
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) return Errorf(EINVAL, "corrupt or truncated gzip stream");
  return out;
}

struct Endpoint {
  std::string host, port;
};

Result<Endpoint> ParseUrl(std::string url) {
  if (url.starts_with("https://")) return Errorf(ENOTSUP, "registry {}: https is not supported; use http://", url);
  if (url.starts_with("http://")) url = url.substr(7);
  while (url.ends_with("/")) url.pop_back();
  size_t colon = url.rfind(':');
  if (url.empty() || url.find('/') != std::string::npos) return Errorf(EINVAL, "bad registry URL {}", url);
  if (colon == std::string::npos) return Endpoint{url, "80"};
  return Endpoint{url.substr(0, colon), url.substr(colon + 1)};
}

class RegistryClient {
 public:
  explicit RegistryClient(Endpoint ep) : ep_(std::move(ep)) {}

  // GET target; non-200 is an error naming the target.
  Result<std::string> Get(const std::string& target, const char* accept, uint64_t limit) {
    boost::beast::error_code ec;
    boost::asio::ip::tcp::resolver resolver(io_);
    auto results = resolver.resolve(ep_.host, ep_.port, ec);
    if (ec) return Errorf(EHOSTUNREACH, "resolve {}: {}", ep_.host, ec.message());
    boost::beast::tcp_stream stream(io_);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(results, ec);
    if (ec) return Errorf(ECONNREFUSED, "connect {}:{}: {}", ep_.host, ep_.port, ec.message());
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, ep_.host + ":" + ep_.port);
    req.set(http::field::user_agent, "slackerctl");
    if (accept != nullptr) req.set(http::field::accept, accept);
    http::write(stream, req, ec);
    if (ec) return Errorf(EIO, "GET {}: {}", target, ec.message());
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(limit);
    http::read(stream, buffer, parser, ec);
    if (ec) return Errorf(EIO, "GET {}: {}", target, ec.message());
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    auto& res = parser.get();
    if (res.result() != http::status::ok) {
      return Errorf(res.result_int() == 404 ? ENOENT : EIO, "GET http://{}:{}{}: HTTP {}", ep_.host, ep_.port, target,
                    res.result_int());
    }
    return std::move(res.body());
  }

  Result<json> GetJson(const std::string& target, const char* accept = nullptr) {
    SLACKER_ASSIGN_OR_RETURN(std::string body, Get(target, accept, 16 << 20));
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Errorf(EINVAL, "GET {}: response is not a JSON object", target);
    return j;
  }

 private:
  Endpoint ep_;
  boost::asio::io_context io_;
};

Status ScanManifest(RegistryClient& client, const std::string& repo, const std::string& ref, int depth,
                    RegistryScan* scan) {
  auto got = client.GetJson("/v2/" + repo + "/manifests/" + ref, kManifestAccept);
  if (!got.ok() && got.status().code() == ENOENT && depth == 0) {
    ++scan->untagged;  // the tag was deleted during the walk
    return Status::Ok();
  }
  SLACKER_ASSIGN_OR_RETURN(json m, std::move(got));
  ++scan->manifests;
  if (m.contains("manifests") && m["manifests"].is_array() && depth == 0) {
    for (const auto& sub : m["manifests"]) {
      if (!sub.is_object() || !sub.contains("digest") || !sub["digest"].is_string()) continue;
      SLACKER_RETURN_IF_ERROR(ScanManifest(client, repo, sub["digest"].get<std::string>(), 1, scan));
    }
    return Status::Ok();
  }
  if (!m.contains("layers") || !m["layers"].is_array()) {
    return Errorf(EINVAL, "manifest {}:{} has no layers (schema 1 manifests are not supported)", repo, ref);
  }
  for (const auto& l : m["layers"]) {
    if (!l.is_object() || !l.contains("digest") || !l["digest"].is_string()) continue;
    uint64_t size = l.value("size", uint64_t{0});
    if (size == 0 || size >= registry_shim::kMaxReferenceTar) continue;
    std::string digest = l["digest"].get<std::string>();
    SLACKER_ASSIGN_OR_RETURN(std::string blob,
                             client.Get("/v2/" + repo + "/blobs/" + digest, nullptr, registry_shim::kMaxReferenceTar));
    auto snap = ReferencedSnapshot(blob);
    if (!snap.ok()) {
      scan->unreadable.push_back(repo + "@" + digest + ": " + snap.status().message());
    } else if (!snap->empty()) {
      ++scan->reference_blobs;
      scan->snapshots.insert(*snap);
    }
  }
  return Status::Ok();
}

// A paginated list (catalog, tags): pages of kPage names, continued with `last=` (the
// registry caps n, 1000 by default, and answers 400 above it). A null list is empty
// (a repository whose tags were all deleted).
Result<std::vector<std::string>> ListPaged(RegistryClient& client, const std::string& path, const char* key) {
  constexpr size_t kPage = 1000;
  std::vector<std::string> out;
  std::string last;
  for (;;) {
    std::string target = path + "?n=" + std::to_string(kPage) + (last.empty() ? "" : "&last=" + last);
    SLACKER_ASSIGN_OR_RETURN(json page, client.GetJson(target));
    auto it = page.find(key);
    if (it == page.end() || it->is_null()) return out;
    if (!it->is_array()) return Errorf(EINVAL, "GET {}: {} is not an array", target, key);
    size_t n = 0;
    for (const auto& v : *it) {
      if (!v.is_string()) continue;
      out.push_back(v.get<std::string>());
      ++n;
    }
    if (n < kPage) return out;
    last = out.back();
  }
}

}  // namespace

Result<std::string> ReferencedSnapshot(std::string_view blob) {
  std::string plain;
  if (blob.size() >= 2 && static_cast<unsigned char>(blob[0]) == 0x1f && static_cast<unsigned char>(blob[1]) == 0x8b) {
    SLACKER_ASSIGN_OR_RETURN(plain, Gunzip(blob));
    blob = plain;
  } else if (blob.size() >= 4 && blob.substr(0, 4) == std::string_view("\x28\xb5\x2f\xfd", 4)) {
    return Errorf(EINVAL, "zstd-compressed blob: this build cannot read it");
  }
  if (blob.size() < 512 || !registry_shim::IsReferenceTarHeader(blob.data())) return std::string();
  // No cluster key: the MAC is not verified, only the snapshot id is needed here.
  auto ref = registry_shim::ParseReferenceTar(blob);
  if (!ref.ok()) return ref.status();
  return ref->snapshot;
}

Result<RegistryScan> ScanRegistry(const std::string& url) {
  SLACKER_ASSIGN_OR_RETURN(Endpoint ep, ParseUrl(url));
  RegistryClient client(ep);
  RegistryScan scan;
  SLACKER_ASSIGN_OR_RETURN(auto repos, ListPaged(client, "/v2/_catalog", "repositories"));
  for (const auto& repo : repos) {
    ++scan.repositories;
    auto tags = ListPaged(client, "/v2/" + repo + "/tags/list", "tags");
    if (!tags.ok() && tags.status().code() == ENOENT) {
      ++scan.untagged;
      continue;
    }
    if (!tags.ok()) return tags.status();
    for (const auto& tag : *tags) {
      SLACKER_RETURN_IF_ERROR(
          ScanManifest(client, repo, tag, 0, &scan).Context("registry " + url + " repository " + repo));
    }
  }
  return scan;
}

}  // namespace slacker::ctl
