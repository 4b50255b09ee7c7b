#include "snapshotter/grpc_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "common/files.h"
#include "common/log.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/list_filter.h"

namespace slacker::snapshotter {

namespace pb = containerd::services::snapshots::v1;

grpc::StatusCode GrpcCodeFor(int code) {
  switch (code) {
    case 0:
      return grpc::StatusCode::OK;
    case ENOENT:
      return grpc::StatusCode::NOT_FOUND;
    case EEXIST:
      return grpc::StatusCode::ALREADY_EXISTS;
    case EINVAL:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case EBUSY:
    case ENOTEMPTY:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case EACCES:
    case EPERM:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ENOTSUP:
      return grpc::StatusCode::UNIMPLEMENTED;
    case ENOSPC:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    default:
      return grpc::StatusCode::UNKNOWN;
  }
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(GrpcCodeFor(s.code()), s.message());
}

namespace {

Labels FromPb(const google::protobuf::Map<std::string, std::string>& m) { return Labels(m.begin(), m.end()); }

void SetTime(google::protobuf::Timestamp* t, int64_t ns) {
  t->set_seconds(ns / 1000000000);
  t->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void ToPb(const Info& in, pb::Info* out) {
  out->set_name(in.name);
  out->set_parent(in.parent);
  out->set_kind(static_cast<pb::Kind>(static_cast<int>(in.kind)));
  SetTime(out->mutable_created_at(), in.created_ns);
  SetTime(out->mutable_updated_at(), in.updated_ns);
  for (const auto& [k, v] : in.labels) (*out->mutable_labels())[k] = v;
}

template <typename R>
void AddMounts(const std::vector<Mount>& mounts, R* resp) {
  for (const auto& m : mounts) {
    auto* pm = resp->add_mounts();
    pm->set_type(m.type);
    pm->set_source(m.source);
    for (const auto& o : m.options) pm->add_options(o);
  }
}

using Clock = std::chrono::steady_clock;

// Every call ends here: a failure is logged (at debug for the NOT_FOUND/ALREADY_EXISTS
// containerd expects), and at debug level each call's latency, since `t0` (`event=rpc
// rpc=Prepare key=… ms=3.21`): the snapshotter's share of a pull or a pod start.
grpc::Status Logged(const char* rpc, const std::string& key, const Status& s, Clock::time_point t0) {
  if (!s.ok()) {
    auto level = (s.code() == ENOENT || s.code() == EEXIST) ? log::Level::kDebug : log::Level::kWarn;
    log::Emit(level, "rpc_error", {{"rpc", rpc}, {"key", key}, {"err", s.message()}});
  }
  if (log::Enabled(log::Level::kDebug)) {
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.2f", std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    log::Debug("rpc", {{"rpc", rpc}, {"key", key}, {"ms", ms}, {"code", std::to_string(s.code())}});
  }
  return ToGrpc(s);
}

}  // namespace

class GrpcServer::Impl final : public pb::Snapshots::Service {
 public:
  explicit Impl(SnapshotService& s) : s_(s) {}

  grpc::Status Prepare(grpc::ServerContext*, const pb::PrepareSnapshotRequest* req,
                       pb::PrepareSnapshotResponse* resp) override {
    const auto t0 = Clock::now();
    auto r = s_.Prepare(req->key(), req->parent(), FromPb(req->labels()));
    if (r.ok()) AddMounts(*r, resp);
    return Logged("Prepare", req->key(), r.status(), t0);
  }
  grpc::Status View(grpc::ServerContext*, const pb::ViewSnapshotRequest* req, pb::ViewSnapshotResponse* resp) override {
    const auto t0 = Clock::now();
    auto r = s_.View(req->key(), req->parent(), FromPb(req->labels()));
    if (r.ok()) AddMounts(*r, resp);
    return Logged("View", req->key(), r.status(), t0);
  }
  grpc::Status Mounts(grpc::ServerContext*, const pb::MountsRequest* req, pb::MountsResponse* resp) override {
    const auto t0 = Clock::now();
    auto r = s_.Mounts(req->key());
    if (r.ok()) AddMounts(*r, resp);
    return Logged("Mounts", req->key(), r.status(), t0);
  }
  grpc::Status Commit(grpc::ServerContext*, const pb::CommitSnapshotRequest* req, google::protobuf::Empty*) override {
    const auto t0 = Clock::now();
    return Logged("Commit", req->key(), s_.Commit(req->name(), req->key(), FromPb(req->labels())), t0);
  }
  grpc::Status Remove(grpc::ServerContext*, const pb::RemoveSnapshotRequest* req, google::protobuf::Empty*) override {
    const auto t0 = Clock::now();
    return Logged("Remove", req->key(), s_.Remove(req->key()), t0);
  }
  grpc::Status Stat(grpc::ServerContext*, const pb::StatSnapshotRequest* req, pb::StatSnapshotResponse* resp) override {
    const auto t0 = Clock::now();
    auto r = s_.Stat(req->key());
    if (r.ok()) ToPb(*r, resp->mutable_info());
    return Logged("Stat", req->key(), r.status(), t0);
  }
  grpc::Status Update(grpc::ServerContext*, const pb::UpdateSnapshotRequest* req,
                      pb::UpdateSnapshotResponse* resp) override {
    const auto t0 = Clock::now();
    Info in;
    in.name = req->info().name();
    in.labels = FromPb(req->info().labels());
    std::vector<std::string> paths(req->update_mask().paths().begin(), req->update_mask().paths().end());
    auto r = s_.Update(in, paths);
    if (r.ok()) ToPb(*r, resp->mutable_info());
    return Logged("Update", in.name, r.status(), t0);
  }
  // Filters in containerd's syntax (list_filter.h): any of them matches; none = all.
  grpc::Status List(grpc::ServerContext*, const pb::ListSnapshotsRequest* req,
                    grpc::ServerWriter<pb::ListSnapshotsResponse>* writer) override {
    const auto t0 = Clock::now();
    auto filter = ListFilter::Parse({req->filters().begin(), req->filters().end()});
    if (!filter.ok()) return Logged("List", "", filter.status(), t0);
    auto all = s_.Walk();
    constexpr size_t kBatch = 100;
    pb::ListSnapshotsResponse resp;
    for (const auto& info : all) {
      if (!filter->Match(info)) continue;
      ToPb(info, resp.add_info());
      if (static_cast<size_t>(resp.info_size()) == kBatch) {
        if (!writer->Write(resp)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
        resp.Clear();
      }
    }
    if (resp.info_size() > 0 && !writer->Write(resp)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    return Logged("List", "", Status::Ok(), t0);
  }
  grpc::Status Usage(grpc::ServerContext*, const pb::UsageRequest* req, pb::UsageResponse* resp) override {
    const auto t0 = Clock::now();
    auto r = s_.GetUsage(req->key());
    if (r.ok()) {
      resp->set_size(r->size);
      resp->set_inodes(r->inodes);
    }
    return Logged("Usage", req->key(), r.status(), t0);
  }
  grpc::Status Cleanup(grpc::ServerContext*, const pb::CleanupRequest*, google::protobuf::Empty*) override {
    const auto t0 = Clock::now();
    return Logged("Cleanup", "", s_.Cleanup(), t0);
  }

 private:
  SnapshotService& s_;
};

GrpcServer::GrpcServer(SnapshotService& service) : impl_(std::make_unique<Impl>(service)) {}
GrpcServer::~GrpcServer() { Stop(); }

Status GrpcServer::Start(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) SLACKER_RETURN_IF_ERROR(MakeDirs(path.substr(0, slash), 0755));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Errorf(EEXIST, "{} exists and is not a socket", path);
    ::unlink(path.c_str());
  }
  grpc::ServerBuilder b;
  b.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials());
  b.RegisterService(impl_.get());
  server_ = b.BuildAndStart();
  if (!server_) return Errorf(EADDRINUSE, "cannot listen on unix socket {}", path);
  ::chmod(path.c_str(), 0600);
  return Status::Ok();
}

void GrpcServer::Stop() {
  if (server_) {
    server_->Shutdown();
    server_->Wait();
    server_.reset();
  }
}

}  // namespace slacker::snapshotter
