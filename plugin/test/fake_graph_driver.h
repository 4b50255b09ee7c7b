// A hand-written GraphDriver for the plugin's tests: records every call with its
// arguments and answers from a small in-memory model of the driver contract, unless a test
// scripts an answer or an error. Thread-safe.
//
// The model is held to SlackerDriver's behaviour by the GraphDriver contract suite
// (graph_driver_contract_test.cc, run against both): layers are created, refused when they
// exist or their parent does not, removed idempotently; Get makes `<state_dir>/mnt/<id>`
// and counts references, Put never underflows; ApplyDiff keeps the tar it read, and Diff,
// Changes and DiffSize answer from it. Its limits: a layer's content is only what was
// applied to it (what is written through Get is not seen, and Diff of such a layer is the
// empty tar where SlackerDriver returns a reference tar), and Changes lists what the
// layer's own tar adds and deletes, not a comparison with its parent's tree.
//
// It is a driver::SnapshotDriver too, with a model of the store: every ApplyDiff and every
// CommitSnapshot of a layer written since its last one (MarkWritten: the fake cannot see
// writes through Get) makes a snapshot id; CreateFromSnapshot accepts only those, and a
// created layer's Diff is an unsigned reference tar to its snapshot. Chain ids are
// computed as SlackerDriver computes them from the bytes each layer diffs to.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "driver/graph_driver.h"

namespace slacker::plugin {

class FakeGraphDriver : public driver::GraphDriver, public driver::SnapshotDriver {
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

  // Scripted answers; set them before the server sees a request. A scripted answer
  // replaces the model's for its method (existence checks included); `errors` wins over
  // everything.
  std::map<std::string, Status> errors;  // method -> error it returns
  driver::Capabilities capabilities;
  std::vector<std::pair<std::string, std::string>> status_rows;
  std::optional<std::map<std::string, std::string>> metadata;
  std::optional<std::string> dir;  // what Get returns
  std::optional<bool> exists;
  std::optional<std::vector<driver::Change>> changes;
  std::optional<std::string> diff_data;
  // The scripted Diff stream fails with EIO after this many bytes (-1: never).
  int64_t diff_fail_after = -1;
  std::optional<int64_t> diff_size;
  // ApplyDiff reads the stream to its end and returns this, whatever the bytes are.
  std::optional<int64_t> apply_size;
  // ApplyDiff reads with this buffer size, and fails with EIO after this many bytes
  // (-1: reads to the end).
  size_t apply_read_size = 1 << 20;
  int64_t apply_fail_after = -1;
  // Where the model's Get makes layer directories (`<state_dir>/mnt/<id>`); "": Get fails
  // with EINVAL unless `dir` is scripted.
  std::string state_dir;

  // Puts a layer in the model without recording a call: the state a test starts from.
  void AddLayer(const std::string& id, const std::string& parent = "", bool read_write = false);

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
  Result<std::string> ChainId(const std::string& id) override;

  // SnapshotDriver.
  Result<driver::CommittedSnapshot> CommitSnapshot(const std::string& id) override;
  Result<int64_t> CreateFromSnapshot(const driver::SnapshotLayerRequest& req) override;
  Result<std::vector<driver::LayerSnapshot>> ListLayers() override;
  // Something was written into layer `id` through Get: its next CommitSnapshot makes a
  // new snapshot.
  void MarkWritten(const std::string& id);

 private:
  // Records `call` and returns the scripted error for its method (OK if none).
  Status Record(Call call);

  // One layer of the model.
  struct Layer {
    std::string parent = {};
    bool read_write = false;
    int refs = 0;
    bool applied = false;
    std::string tar = {};                      // the stream ApplyDiff read
    std::vector<driver::Change> changes = {};  // what that tar adds and deletes, sorted by path
    int64_t size = 0;                          // the sizes of its regular files
    std::string snapshot = {};                 // its last snapshot ("" none)
    bool volume = false;                       // written through Get (a volume of its own)
    bool written = false;                      // ... since its last snapshot
  };
  // REQUIRES mu_. The chain id references on top of layer `id` are bound to (as
  // SlackerDriver's ReferenceParent of a layer whose parent is `id`).
  Result<std::string> ChainOfLocked(const std::string& id);
  Status CreateLayer(const driver::CreateRequest& req, bool read_write);
  // Reads `tar` to its end with the scripted buffer size and failure; keeps what it read
  // in applied_. Returns everything read.
  Result<std::string> ReadApplyStream(const std::string& id, ByteSource& tar);

  mutable std::mutex mu_;
  std::map<std::string, Layer> layers_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::map<std::string, uint64_t> snapshots_;  // the store: snapshot id -> bytes
  std::string applied_;
  int apply_reads_ = 0;
  bool apply_blocked_ = false;
  bool apply_entered_ = false;
  bool apply_returned_ = false;
};

}  // namespace slacker::plugin
