// containerd.services.snapshots.v1.Snapshots over gRPC (a synchronous server on a unix
// socket), translating to SnapshotService. containerd reaches it as a proxy plugin:
//   [proxy_plugins.slacker] type = "snapshot"  address = "/run/slacker/snapshotter.sock"
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "snapshotter/snapshot_service.h"

namespace slacker::snapshotter {

// The gRPC code containerd's errdefs expects for an errno-style Status code.
grpc::StatusCode GrpcCodeFor(int errno_code);
grpc::Status ToGrpc(const Status& s);

class GrpcServer {
 public:
  // REQUIRES: `service` outlives the server.
  explicit GrpcServer(SnapshotService& service);
  ~GrpcServer();
  // Listens on unix socket `path` (a stale socket file is replaced).
  Status Start(const std::string& path);
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace slacker::snapshotter
