// slacker-cri: a small CRI v1 client (what kubelet calls on a container runtime), for
// the CRI end-to-end test (test/e2e/cri_e2e.sh) and for checking a node by hand where
// crictl is not installed. One call per invocation; output is `key=value` lines that a
// shell script can read. The pod sandbox is always host-network (no CNI needed), and
// its config is rebuilt from the same flags for each call that needs it (kubelet sends
// the sandbox config with PullImage and CreateContainer too).
//
//   slacker-cri -r SOCK [--timeout S] COMMAND [ARGS]
//
// Commands:
//   version | status | imagefsinfo | images | pods | ps [--pod ID] [--state S]
//   pull IMAGE [pod flags]            prints image_ref=
//   inspecti IMAGE                    prints id= size= tag=... (exit 3 if absent)
//   rmi IMAGE
//   runp [pod flags]                  prints pod_id=
//   inspectp ID | stopp ID | rmp ID
//   create --pod ID --name N --image IMG [--log-path REL] [--mount HOST:CTR[,HOST:CTR...]]
//          [pod flags] [--] CMD...     prints container_id=; --mount binds host directories
//                                     read-write (what kubelet sends for an emptyDir)
//   start ID | stop ID [--grace S] | rm ID | inspect ID | exec ID CMD...
//   stats ID                          the writable layer's usage (kubelet's ephemeral storage)
// Pod flags: --pod-name N --pod-uid U --pod-ns NS --log-dir DIR --cgroup-parent CG
// Exit status: 0 ok, 1 the call failed (gRPC status printed), 2 usage, 3 not found.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cri_v1.grpc.pb.h"

namespace {

namespace cri = runtime::v1;

struct Args {
  std::string socket;
  int timeout_s = 300;
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  std::vector<std::string> tail;  // after `--`
};

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << "slacker-cri: " << why
            << "\nusage: slacker-cri -r SOCK [--timeout S] COMMAND [ARGS] (see cri_client.cc)\n";
  std::exit(2);
}

Args Parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> v(argv + 1, argv + argc);
  size_t i = 0;
  for (; i < v.size(); ++i) {
    if (v[i] == "-r" && i + 1 < v.size()) {
      a.socket = v[++i];
    } else if (v[i] == "--timeout" && i + 1 < v.size()) {
      a.timeout_s = std::atoi(v[++i].c_str());
    } else {
      break;
    }
  }
  if (a.socket.empty()) Usage("-r SOCK is required");
  if (i == v.size()) Usage("no command");
  a.command = v[i++];
  for (; i < v.size(); ++i) {
    if (v[i] == "--") {
      a.tail.assign(v.begin() + static_cast<long>(i) + 1, v.end());
      break;
    }
    if (v[i].rfind("--", 0) == 0) {
      if (i + 1 >= v.size()) Usage("flag " + v[i] + " needs a value");
      a.flags[v[i].substr(2)] = v[i + 1];
      ++i;
    } else {
      a.positional.push_back(v[i]);
    }
  }
  return a;
}

std::string Flag(const Args& a, const std::string& name, const std::string& def) {
  auto it = a.flags.find(name);
  return it == a.flags.end() ? def : it->second;
}

std::string Need(const Args& a, const std::string& name) {
  auto it = a.flags.find(name);
  if (it == a.flags.end()) Usage(a.command + ": --" + name + " is required");
  return it->second;
}

// Split("a,b", ',') = {"a", "b"}; Split("", ',') = {}.
std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  for (size_t start = 0; start < s.size();) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string Arg(const Args& a, size_t n, const std::string& what) {
  if (a.positional.size() <= n) Usage(a.command + ": " + what + " is required");
  return a.positional[n];
}

// The sandbox config kubelet sends for a hostNetwork pod: network NODE (no CNI), its own
// pid namespace per container, a pod ipc namespace; logs under --log-dir.
cri::PodSandboxConfig PodConfig(const Args& a) {
  cri::PodSandboxConfig c;
  auto* m = c.mutable_metadata();
  m->set_name(Flag(a, "pod-name", "slacker-pod"));
  m->set_uid(Flag(a, "pod-uid", "slacker-pod-uid"));
  m->set_namespace_(Flag(a, "pod-ns", "default"));
  m->set_attempt(0);
  // No hostname: kubelet sets none for a hostNetwork pod (it shares the node's UTS
  // namespace; runc refuses to set a hostname there).
  c.set_log_directory(Flag(a, "log-dir", ""));
  c.mutable_linux()->set_cgroup_parent(Flag(a, "cgroup-parent", ""));
  (*c.mutable_labels())["io.kubernetes.pod.name"] = m->name();
  (*c.mutable_labels())["io.kubernetes.pod.namespace"] = m->namespace_();
  (*c.mutable_labels())["io.kubernetes.pod.uid"] = m->uid();
  auto* ns = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
  ns->set_network(cri::NODE);
  ns->set_pid(cri::CONTAINER);
  ns->set_ipc(cri::POD);
  return c;
}

class Client {
 public:
  explicit Client(const Args& a)
      : channel_(grpc::CreateChannel("unix:" + a.socket, grpc::InsecureChannelCredentials())),
        runtime_(cri::RuntimeService::NewStub(channel_)),
        images_(cri::ImageService::NewStub(channel_)),
        timeout_s_(a.timeout_s) {}

  cri::RuntimeService::Stub& runtime() { return *runtime_; }
  cri::ImageService::Stub& images() { return *images_; }

  // A fresh context per call, bounded by --timeout.
  std::unique_ptr<grpc::ClientContext> Ctx() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s_));
    return ctx;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cri::RuntimeService::Stub> runtime_;
  std::unique_ptr<cri::ImageService::Stub> images_;
  int timeout_s_;
};

int Check(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return 0;
  std::cerr << "slacker-cri: " << what << ": " << s.error_code() << " " << s.error_message()
            << "\n";
  return s.error_code() == grpc::StatusCode::NOT_FOUND ? 3 : 1;
}

const char* ContainerStateName(cri::ContainerState s) {
  switch (s) {
    case cri::CONTAINER_CREATED:
      return "created";
    case cri::CONTAINER_RUNNING:
      return "running";
    case cri::CONTAINER_EXITED:
      return "exited";
    default:
      return "unknown";
  }
}

void PrintImage(const cri::Image& i) {
  std::cout << "id=" << i.id() << "\nsize=" << i.size() << "\n";
  for (const auto& t : i.repo_tags()) std::cout << "tag=" << t << "\n";
  for (const auto& d : i.repo_digests()) std::cout << "digest=" << d << "\n";
}

int Run(const Args& a) {
  Client c(a);
  const std::string& cmd = a.command;
  if (cmd == "version") {
    cri::VersionRequest req;
    cri::VersionResponse resp;
    if (int rc = Check(c.runtime().Version(c.Ctx().get(), req, &resp), cmd)) return rc;
    std::cout << "runtime_name=" << resp.runtime_name()
              << "\nruntime_version=" << resp.runtime_version()
              << "\nruntime_api_version=" << resp.runtime_api_version() << "\n";
    return 0;
  }
  if (cmd == "status") {
    cri::StatusRequest req;
    cri::StatusResponse resp;
    if (int rc = Check(c.runtime().Status(c.Ctx().get(), req, &resp), cmd)) return rc;
    for (const auto& cond : resp.status().conditions()) {
      std::cout << "condition=" << cond.type() << ":" << (cond.status() ? "true" : "false")
                << (cond.reason().empty() ? "" : " reason=" + cond.reason()) << "\n";
    }
    return 0;
  }
  if (cmd == "imagefsinfo") {
    cri::ImageFsInfoRequest req;
    cri::ImageFsInfoResponse resp;
    if (int rc = Check(c.images().ImageFsInfo(c.Ctx().get(), req, &resp), cmd)) return rc;
    for (const auto& f : resp.image_filesystems()) {
      std::cout << "mountpoint=" << f.fs_id().mountpoint()
                << "\nused_bytes=" << f.used_bytes().value()
                << "\ninodes_used=" << f.inodes_used().value() << "\ntimestamp=" << f.timestamp()
                << "\n";
    }
    return 0;
  }
  if (cmd == "images") {
    cri::ListImagesRequest req;
    cri::ListImagesResponse resp;
    if (int rc = Check(c.images().ListImages(c.Ctx().get(), req, &resp), cmd)) return rc;
    for (const auto& i : resp.images()) {
      std::cout << "image=" << i.id() << " size=" << i.size();
      for (const auto& t : i.repo_tags()) std::cout << " " << t;
      std::cout << "\n";
    }
    return 0;
  }
  if (cmd == "pull") {
    cri::PullImageRequest req;
    cri::PullImageResponse resp;
    req.mutable_image()->set_image(Arg(a, 0, "IMAGE"));
    *req.mutable_sandbox_config() = PodConfig(a);
    if (int rc = Check(c.images().PullImage(c.Ctx().get(), req, &resp), cmd)) return rc;
    std::cout << "image_ref=" << resp.image_ref() << "\n";
    return 0;
  }
  if (cmd == "inspecti") {
    cri::ImageStatusRequest req;
    cri::ImageStatusResponse resp;
    req.mutable_image()->set_image(Arg(a, 0, "IMAGE"));
    if (int rc = Check(c.images().ImageStatus(c.Ctx().get(), req, &resp), cmd)) return rc;
    if (!resp.has_image()) {  // CRI answers an absent image with an empty status
      std::cerr << "slacker-cri: image " << req.image().image() << " not present\n";
      return 3;
    }
    PrintImage(resp.image());
    return 0;
  }
  if (cmd == "rmi") {
    cri::RemoveImageRequest req;
    cri::RemoveImageResponse resp;
    req.mutable_image()->set_image(Arg(a, 0, "IMAGE"));
    return Check(c.images().RemoveImage(c.Ctx().get(), req, &resp), cmd);
  }
  if (cmd == "runp") {
    cri::RunPodSandboxRequest req;
    cri::RunPodSandboxResponse resp;
    *req.mutable_config() = PodConfig(a);
    if (int rc = Check(c.runtime().RunPodSandbox(c.Ctx().get(), req, &resp), cmd)) return rc;
    std::cout << "pod_id=" << resp.pod_sandbox_id() << "\n";
    return 0;
  }
  if (cmd == "inspectp") {
    cri::PodSandboxStatusRequest req;
    cri::PodSandboxStatusResponse resp;
    req.set_pod_sandbox_id(Arg(a, 0, "POD"));
    if (int rc = Check(c.runtime().PodSandboxStatus(c.Ctx().get(), req, &resp), cmd)) return rc;
    const auto& s = resp.status();
    std::cout << "id=" << s.id()
              << "\nstate=" << (s.state() == cri::SANDBOX_READY ? "ready" : "notready")
              << "\nnetwork=" << cri::NamespaceMode_Name(s.linux().namespaces().options().network())
              << "\n";
    return 0;
  }
  if (cmd == "stopp" || cmd == "rmp") {
    const std::string id = Arg(a, 0, "POD");
    if (cmd == "stopp") {
      cri::StopPodSandboxRequest req;
      cri::StopPodSandboxResponse resp;
      req.set_pod_sandbox_id(id);
      return Check(c.runtime().StopPodSandbox(c.Ctx().get(), req, &resp), cmd);
    }
    cri::RemovePodSandboxRequest req;
    cri::RemovePodSandboxResponse resp;
    req.set_pod_sandbox_id(id);
    return Check(c.runtime().RemovePodSandbox(c.Ctx().get(), req, &resp), cmd);
  }
  if (cmd == "pods") {
    cri::ListPodSandboxRequest req;
    cri::ListPodSandboxResponse resp;
    if (int rc = Check(c.runtime().ListPodSandbox(c.Ctx().get(), req, &resp), cmd)) return rc;
    for (const auto& p : resp.items()) {
      std::cout << "pod=" << p.id() << " name=" << p.metadata().name()
                << " state=" << (p.state() == cri::SANDBOX_READY ? "ready" : "notready") << "\n";
    }
    return 0;
  }
  if (cmd == "create") {
    cri::CreateContainerRequest req;
    cri::CreateContainerResponse resp;
    req.set_pod_sandbox_id(Need(a, "pod"));
    *req.mutable_sandbox_config() = PodConfig(a);
    auto* cfg = req.mutable_config();
    cfg->mutable_metadata()->set_name(Need(a, "name"));
    cfg->mutable_image()->set_image(Need(a, "image"));
    for (const auto& s : a.tail) cfg->add_command(s);
    cfg->set_log_path(Flag(a, "log-path", Need(a, "name") + "/0.log"));
    for (const auto& spec : Split(Flag(a, "mount", ""), ',')) {
      auto colon = spec.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
        Usage("create: --mount wants HOST:CONTAINER, got " + spec);
      }
      auto* m = cfg->add_mounts();
      m->set_host_path(spec.substr(0, colon));
      m->set_container_path(spec.substr(colon + 1));
    }
    auto* ns = cfg->mutable_linux()->mutable_security_context()->mutable_namespace_options();
    ns->set_network(cri::NODE);
    ns->set_pid(cri::CONTAINER);
    ns->set_ipc(cri::POD);
    if (int rc = Check(c.runtime().CreateContainer(c.Ctx().get(), req, &resp), cmd)) return rc;
    std::cout << "container_id=" << resp.container_id() << "\n";
    return 0;
  }
  if (cmd == "start") {
    cri::StartContainerRequest req;
    cri::StartContainerResponse resp;
    req.set_container_id(Arg(a, 0, "CONTAINER"));
    return Check(c.runtime().StartContainer(c.Ctx().get(), req, &resp), cmd);
  }
  if (cmd == "stop") {
    cri::StopContainerRequest req;
    cri::StopContainerResponse resp;
    req.set_container_id(Arg(a, 0, "CONTAINER"));
    req.set_timeout(std::atoll(Flag(a, "grace", "10").c_str()));
    return Check(c.runtime().StopContainer(c.Ctx().get(), req, &resp), cmd);
  }
  if (cmd == "rm") {
    cri::RemoveContainerRequest req;
    cri::RemoveContainerResponse resp;
    req.set_container_id(Arg(a, 0, "CONTAINER"));
    return Check(c.runtime().RemoveContainer(c.Ctx().get(), req, &resp), cmd);
  }
  if (cmd == "inspect") {
    cri::ContainerStatusRequest req;
    cri::ContainerStatusResponse resp;
    req.set_container_id(Arg(a, 0, "CONTAINER"));
    if (int rc = Check(c.runtime().ContainerStatus(c.Ctx().get(), req, &resp), cmd)) return rc;
    const auto& s = resp.status();
    std::cout << "id=" << s.id() << "\nstate=" << ContainerStateName(s.state())
              << "\nexit_code=" << s.exit_code() << "\nimage_ref=" << s.image_ref()
              << "\nreason=" << s.reason() << "\nlog_path=" << s.log_path() << "\n";
    return 0;
  }
  if (cmd == "stats") {
    cri::ContainerStatsRequest req;
    cri::ContainerStatsResponse resp;
    req.set_container_id(Arg(a, 0, "CONTAINER"));
    if (int rc = Check(c.runtime().ContainerStats(c.Ctx().get(), req, &resp), cmd)) return rc;
    const auto& w = resp.stats().writable_layer();
    std::cout << "writable_mountpoint=" << w.fs_id().mountpoint()
              << "\nwritable_used_bytes=" << w.used_bytes().value()
              << "\nwritable_inodes_used=" << w.inodes_used().value()
              << "\nwritable_timestamp=" << w.timestamp() << "\n";
    return 0;
  }
  if (cmd == "ps") {
    cri::ListContainersRequest req;
    cri::ListContainersResponse resp;
    if (a.flags.count("pod")) req.mutable_filter()->set_pod_sandbox_id(a.flags.at("pod"));
    if (a.flags.count("state")) {
      cri::ContainerState st;
      if (!cri::ContainerState_Parse("CONTAINER_" + a.flags.at("state"), &st)) {
        Usage("ps: --state is CREATED, RUNNING, EXITED or UNKNOWN");
      }
      req.mutable_filter()->mutable_state()->set_state(st);
    }
    if (int rc = Check(c.runtime().ListContainers(c.Ctx().get(), req, &resp), cmd)) return rc;
    for (const auto& x : resp.containers()) {
      std::cout << "container=" << x.id() << " name=" << x.metadata().name()
                << " state=" << ContainerStateName(x.state()) << "\n";
    }
    return 0;
  }
  if (cmd == "exec") {
    cri::ExecSyncRequest req;
    cri::ExecSyncResponse resp;
    req.set_container_id(Arg(a, 0, "CONTAINER"));
    for (size_t i = 1; i < a.positional.size(); ++i) req.add_cmd(a.positional[i]);
    for (const auto& s : a.tail) req.add_cmd(s);
    req.set_timeout(a.timeout_s);
    if (int rc = Check(c.runtime().ExecSync(c.Ctx().get(), req, &resp), cmd)) return rc;
    std::cout << resp.stdout();
    std::cerr << resp.stderr();
    return resp.exit_code() == 0 ? 0 : 1;
  }
  Usage("unknown command " + cmd);
}

}  // namespace

int main(int argc, char** argv) { return Run(Parse(argc, argv)); }
