// A hand-written GraphDriver for the plugin's tests: records every call with its
// arguments and answers with scripted results or errors. Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "driver/graph_driver.h"

namespace slacker::plugin {

class FakeGraphDriver : public driver::GraphDriver {
 public:
  struct Call {
    // Default initializers let callers name only the fields a method has.
    std::string method = {};  // "Get", "ApplyDiff", ...
    std::string id = {};
    std::string parent = {};
    std::string mount_label = {};
    std::map<std::string, std::string> storage_opt = {};
    std::string home = {};
    std::vector<std::string> options = {};
  };

  // Scripted answers; set them before the server sees a request.
  std::map<std::string, Status> errors;  // method -> error it returns
  driver::Capabilities capabilities;
  std::vector<std::pair<std::string, std::string>> status_rows;
  std::map<std::string, std::string> metadata;
  std::string dir = "/var/lib/slacker/mnt/l1";
  bool exists = true;
  std::vector<driver::Change> changes;
  std::string diff_data;
  // The Diff stream fails with EIO after this many bytes (-1: never).
  int64_t diff_fail_after = -1;
  int64_t diff_size = 0;
  int64_t apply_size = 0;
  // ApplyDiff reads with this buffer size, and fails with EIO after this many bytes
  // (-1: reads to the end).
  size_t apply_read_size = 1 << 20;
  int64_t apply_fail_after = -1;

  std::vector<Call> calls() const;
  // The bytes ApplyDiff read, and how many of its Read calls returned data.
  std::string applied() const;
  int apply_reads() const;

  // Makes ApplyDiff wait, before reading anything, until ReleaseApplyDiff().
  void BlockApplyDiff();
  // Waits until a blocked ApplyDiff has been entered.
  void WaitApplyDiffEntered();
  void ReleaseApplyDiff();
  // Waits until ApplyDiff has returned (after which the fake is no longer touched by it).
  void WaitApplyDiffReturned();

  Status Init(const std::string& home, const std::vector<std::string>& options) override;
  driver::Capabilities GetCapabilities() override;
  std::vector<std::pair<std::string, std::string>> StatusRows() override;
  Result<std::map<std::string, std::string>> GetMetadata(const std::string& id) override;
  Status Create(const driver::CreateRequest& req) override;
  Status CreateReadWrite(const driver::CreateRequest& req) override;
  Status Remove(const std::string& id) override;
  Result<std::string> Get(const std::string& id, const std::string& mount_label) override;
  Status Put(const std::string& id) override;
  bool Exists(const std::string& id) override;
  Result<driver::DiffStream> Diff(const std::string& id, const std::string& parent) override;
  Result<std::vector<driver::Change>> Changes(const std::string& id,
                                              const std::string& parent) override;
  Result<int64_t> ApplyDiff(const std::string& id, const std::string& parent,
                            ByteSource& tar) override;
  Result<int64_t> DiffSize(const std::string& id, const std::string& parent) override;
  Status Cleanup() override;

 private:
  // Records `call` and returns the scripted error for its method (OK if none).
  Status Record(Call call);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::string applied_;
  int apply_reads_ = 0;
  bool apply_blocked_ = false;
  bool apply_entered_ = false;
  bool apply_returned_ = false;
};

}  // namespace slacker::plugin
