#include "plugin/test/fake_graph_driver.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace slacker::plugin {
namespace {

// Serves `data`, then fails with EIO at `fail_after` (when >= 0) instead of ending.
class ScriptedSource : public ByteSource {
 public:
  ScriptedSource(std::string data, int64_t fail_after)
      : data_(std::move(data)), fail_after_(fail_after) {}
  Result<size_t> Read(void* buf, size_t n) override {
    size_t end = fail_after_ >= 0 ? std::min<size_t>(fail_after_, data_.size()) : data_.size();
    if (pos_ == end && fail_after_ >= 0) return Errorf(EIO, "scripted diff failure");
    size_t k = std::min(n, end - pos_);
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  int64_t fail_after_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<FakeGraphDriver::Call> FakeGraphDriver::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::string FakeGraphDriver::applied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

int FakeGraphDriver::apply_reads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return apply_reads_;
}

void FakeGraphDriver::BlockApplyDiff() {
  std::lock_guard<std::mutex> lock(mu_);
  apply_blocked_ = true;
}

void FakeGraphDriver::WaitApplyDiffEntered() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return apply_entered_; });
}

void FakeGraphDriver::ReleaseApplyDiff() {
  std::lock_guard<std::mutex> lock(mu_);
  apply_blocked_ = false;
  cv_.notify_all();
}

void FakeGraphDriver::WaitApplyDiffReturned() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return apply_returned_; });
}

Status FakeGraphDriver::Record(Call call) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = errors.find(call.method);
  calls_.push_back(std::move(call));
  return it == errors.end() ? Status::Ok() : it->second;
}

Status FakeGraphDriver::Init(const std::string& home, const std::vector<std::string>& options) {
  return Record({.method = "Init", .home = home, .options = options});
}

driver::Capabilities FakeGraphDriver::GetCapabilities() {
  IgnoreError(Record({.method = "Capabilities"}), "Capabilities cannot fail in the driver interface: only recorded");
  return capabilities;
}

std::vector<std::pair<std::string, std::string>> FakeGraphDriver::StatusRows() {
  IgnoreError(Record({.method = "Status"}), "Status cannot fail in the driver interface: only recorded");
  return status_rows;
}

Result<std::map<std::string, std::string>> FakeGraphDriver::GetMetadata(const std::string& id) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "GetMetadata", .id = id}));
  return metadata;
}

Status FakeGraphDriver::Create(const driver::CreateRequest& req) {
  return Record({.method = "Create",
                 .id = req.id,
                 .parent = req.parent,
                 .mount_label = req.mount_label,
                 .storage_opt = req.storage_opt});
}

Status FakeGraphDriver::CreateReadWrite(const driver::CreateRequest& req) {
  return Record({.method = "CreateReadWrite",
                 .id = req.id,
                 .parent = req.parent,
                 .mount_label = req.mount_label,
                 .storage_opt = req.storage_opt});
}

Status FakeGraphDriver::Remove(const std::string& id) {
  return Record({.method = "Remove", .id = id});
}

Result<std::string> FakeGraphDriver::Get(const std::string& id, const std::string& mount_label) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Get", .id = id, .mount_label = mount_label}));
  return dir;
}

Status FakeGraphDriver::Put(const std::string& id) { return Record({.method = "Put", .id = id}); }

bool FakeGraphDriver::Exists(const std::string& id) {
  IgnoreError(Record({.method = "Exists", .id = id}), "Exists cannot fail in the driver interface: only recorded");
  return exists;
}

Result<driver::DiffStream> FakeGraphDriver::Diff(const std::string& id, const std::string& parent) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Diff", .id = id, .parent = parent}));
  return driver::DiffStream(std::make_unique<ScriptedSource>(diff_data, diff_fail_after));
}

Result<std::vector<driver::Change>> FakeGraphDriver::Changes(const std::string& id,
                                                             const std::string& parent) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "Changes", .id = id, .parent = parent}));
  return changes;
}

Result<int64_t> FakeGraphDriver::ApplyDiff(const std::string& id, const std::string& parent,
                                           ByteSource& tar) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "ApplyDiff", .id = id, .parent = parent}));
  struct ReturnSignal {
    FakeGraphDriver* fake;
    ~ReturnSignal() {
      std::lock_guard<std::mutex> lock(fake->mu_);
      fake->apply_returned_ = true;
      fake->cv_.notify_all();
    }
  } signal{this};
  {
    std::unique_lock<std::mutex> lock(mu_);
    apply_entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !apply_blocked_; });
  }
  std::string buf(apply_read_size, '\0');
  for (;;) {
    size_t want = buf.size();
    if (apply_fail_after >= 0) {
      int64_t left = apply_fail_after - static_cast<int64_t>(applied().size());
      if (left <= 0) return Errorf(EIO, "scripted apply failure for layer {}", id);
      want = std::min<size_t>(want, left);
    }
    auto n = tar.Read(buf.data(), want);
    if (!n.ok()) return n.status();
    if (*n == 0) return apply_size;
    std::lock_guard<std::mutex> lock(mu_);
    applied_.append(buf.data(), *n);
    ++apply_reads_;
  }
}

Result<int64_t> FakeGraphDriver::DiffSize(const std::string& id, const std::string& parent) {
  SLACKER_RETURN_IF_ERROR(Record({.method = "DiffSize", .id = id, .parent = parent}));
  return diff_size;
}

Status FakeGraphDriver::Cleanup() { return Record({.method = "Cleanup"}); }

}  // namespace slacker::plugin
