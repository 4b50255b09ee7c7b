#include "nfs_bridge/nfs_session.h"

#include <cerrno>

#include <fmt/format.h>

namespace slacker::nfs_bridge {

Status NfsCallStatus(std::string_view what, RpcOutcome rpc, const char* rpc_error, bool nfs_ok, int nfs_errno,
                     std::string_view nfs_status_name) {
  if (rpc != RpcOutcome::kSuccess) {
    const char* why = rpc == RpcOutcome::kError && rpc_error != nullptr ? rpc_error : "cancelled or timed out";
    return Errorf(EIO, "NFS {}: {}", what, why);
  }
  if (nfs_ok) return Status::Ok();
  int err = nfs_errno < 0 ? -nfs_errno : nfs_errno;  // libnfs gives -errno
  return Errorf(err > 0 ? err : EIO, "NFS {}: {}", what, nfs_status_name);
}

std::string StatsJson(std::string_view url, const Counters& c) {
  // The URL is an nfs:// URL given on the command line; escape what JSON needs anyway.
  std::string escaped;
  for (char ch : url) {
    if (ch == '"' || ch == '\\') escaped += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      escaped += fmt::format("\\u{:04x}", static_cast<unsigned char>(ch));
      continue;
    }
    escaped += ch;
  }
  return fmt::format(
      "{{\"url\":\"{}\",\"read_bytes\":{},\"write_bytes\":{},\"reads\":{},\"writes\":{},\"commits\":{},"
      "\"metadata_ops\":{},\"errors\":{},\"resent_bytes\":{}}}\n",
      escaped, c.read_bytes.load(), c.write_bytes.load(), c.reads.load(), c.writes.load(), c.commits.load(),
      c.metadata_ops.load(), c.errors.load(), c.resent_bytes.load());
}

NfsSession::NfsSession(std::vector<std::unique_ptr<NfsClient>> clients) {
  for (auto& c : clients) {
    auto slot = std::make_unique<Slot>();
    slot->client = std::move(c);
    slots_.push_back(std::move(slot));
  }
}

NfsSession::Lease::Lease(NfsSession& session) : session_(session) {
  auto& slots = session_.slots_;
  unsigned start = session_.next_.fetch_add(1);
  for (size_t i = 0; i < slots.size(); ++i) {
    size_t k = (start + i) % slots.size();
    if (slots[k]->mu.try_lock()) {
      index_ = k;
      return;
    }
  }
  index_ = start % slots.size();
  slots[index_]->mu.lock();
}

NfsSession::Lease::Lease(NfsSession& session, size_t index) : session_(session), index_(index) {
  session_.slots_[index_]->mu.lock();
}

NfsSession::Lease::~Lease() { session_.slots_[index_]->mu.unlock(); }

Result<FileChannel::WriteReply> SessionFileChannel::Write(uint64_t offset, std::span<const char> data,
                                                          Stability how) {
  NfsSession::Lease l(*session_);
  return l.nfs().Write3(handle_, offset, data, how);
}

Result<WriteVerifier> SessionFileChannel::Commit() {
  NfsSession::Lease l(*session_);
  Result<WriteVerifier> v = l.nfs().Commit3(handle_);
  if (v.ok()) session_->counters().commits++;
  return v;
}

}  // namespace slacker::nfs_bridge
