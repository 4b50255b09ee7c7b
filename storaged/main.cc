// slacker-storaged: the store-side snapshot service (DESIGN.md §2, §7;
// storage_backend/API.md). Runs on the storage host next to the exported store.
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/files.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "os/os.h"
#include "storaged/http_server.h"
#include "storaged/service.h"

namespace {

constexpr const char* kUsage = R"(usage: slacker-storaged --root DIR --token-file F [options]

The slacker snapshot service: snapshot, clone and delete of layer files on the storage
host (FICLONE on the exported XFS), over HTTP/JSON (storage_backend/API.md).

  --root DIR           the store directory this host exports (created if new)
  --token-file F       bearer token clients must send (first line of F; required)
  --listen ADDR        HOST:PORT to listen on (default 127.0.0.1:7010; PORT alone binds
                       127.0.0.1)
  --export URL         the NFS export workers mount for the same store, reported by
                       GET /v1/store (e.g. nfs://storage1/srv/slacker)
  --tls-cert F         serve HTTPS with this PEM certificate (chain) ...
  --tls-key F          ... and this PEM key
  --header-timeout S   drop a client whose request header takes longer (default 10)
  --body-timeout S     drop a client whose body (or reading the reply) takes longer
                       (default 30)
  --idle-timeout S     close a keep-alive connection idle this long (default 30)
  --max-connections N  connections served at once; more get 503 (default 128)
  --log-level L        debug|info|warn|error (default info)

The token file must be readable by root only (mode 0600); a looser one is refused.
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace slacker;
  std::string root, token_file, listen = "127.0.0.1:7010", export_url, cert, key, level_name = "info";
  storaged::ServerOptions sopts;
  FlagSet cli;
  cli.String("--root", &root);
  cli.String("--token-file", &token_file);
  cli.String("--listen", &listen);
  cli.String("--export", &export_url);
  cli.String("--tls-cert", &cert);
  cli.String("--tls-key", &key);
  cli.String("--log-level", &level_name);
  auto positive = [&cli](const char* name, int* target) {
    cli.Custom(name, [name, target](const std::string& v) {
      SLACKER_ASSIGN_OR_RETURN(long long n, ParseIntFlag(name, v, 1, 1000000));
      *target = static_cast<int>(n);
      return Status::Ok();
    });
  };
  positive("--header-timeout", &sopts.header_timeout_seconds);
  positive("--body-timeout", &sopts.body_timeout_seconds);
  positive("--idle-timeout", &sopts.read_timeout_seconds);
  positive("--max-connections", &sopts.max_connections);
  ParseCommandLineOrExit(cli, {argv + 1, argv + argc}, "slacker-storaged", kUsage, /*positional_allowed=*/false);
  if (root.empty() || token_file.empty()) {
    std::fprintf(stderr, "slacker-storaged: --root and --token-file are required\n%s", kUsage);
    return 2;
  }
  log::Level level;
  if (!log::ParseLevel(level_name, &level)) {
    std::fprintf(stderr, "slacker-storaged: unknown --log-level %s\n", level_name.c_str());
    return 2;
  }
  log::SetLevel(level);
  auto addr = storaged::ParseListen(listen);
  if (!addr.ok()) {
    std::fprintf(stderr, "slacker-storaged: --listen: %s\n", addr.status().message().c_str());
    return 2;
  }
  // Anyone who reads the token can snapshot, clone and delete every layer on the store.
  struct stat token_st;
  if (::stat(token_file.c_str(), &token_st) == 0 && (token_st.st_mode & 077) != 0) {
    std::fprintf(stderr, "slacker-storaged: token file %s is mode %o: make it readable by root only (chmod 0600 %s)\n",
                 token_file.c_str(), token_st.st_mode & 07777, token_file.c_str());
    return 1;
  }
  auto token = ReadFileToString(token_file);
  if (!token.ok()) {
    std::fprintf(stderr, "slacker-storaged: read token: %s\n", token.status().message().c_str());
    return 1;
  }
  std::string t = token->substr(0, token->find('\n'));
  while (!t.empty() && t.back() == '\r') t.pop_back();

  sigset_t stop = BlockStopSignals();

  auto os = os::NewRealOs();
  auto service = storaged::Service::Open(*os, {root, export_url, t});
  if (!service.ok()) {
    log::Error("startup_failed", {{"step", "open store"}, {"err", service.status().message()}});
    std::fprintf(stderr, "slacker-storaged: open store %s: %s\n", root.c_str(), service.status().message().c_str());
    return 1;
  }
  sopts.host = addr->first;
  sopts.port = addr->second;
  sopts.tls_cert_file = cert;
  sopts.tls_key_file = key;
  storaged::HttpServer server(**service, sopts);
  Status s = server.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "slacker-storaged: %s\n", s.message().c_str());
    return 1;
  }
  log::Info("storaged_started", {{"listen", fmt::format("{}:{}", sopts.host, server.port())}, {"root", root},
                                 {"export", export_url}, {"tls", cert.empty() ? "off" : "on"}});
  WaitForStopSignal(stop, "storaged_");
  server.Stop();
  return 0;
}
