// What slackerctl reads of a worker: slackerd's host state (<state>/layers/*.json,
// <state>/mnt, <state>/views) and the shared store it uses.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "driver/layer_record.h"
#include "os/os.h"
#include "storage_backend/backend.h"

namespace slacker::ctl {

// The store directory: `flag` when given; else <state>/store when it is a mount point
// (slackerd's embedded store); else EINVAL asking for --store.
Result<std::string> FindStoreDir(os::Os& os, const std::string& state_dir, const std::string& flag);

// Opens an existing store (ENOENT if <dir>/store.json is missing: slackerctl never
// creates a store) for `host_id`.
Result<std::unique_ptr<storage_backend::Backend>> OpenExistingStore(os::Os& os, const std::string& dir,
                                                                    const std::string& host_id);

// One <state>/layers/<name>.json: the record, or why it does not parse.
struct LoadedRecord {
  std::string file;  // path
  std::string name;  // file name without ".json"
  Result<driver::LayerRecord> record = Status::Error(EINVAL, "not read");
};
// Every record file, sorted by name. ENOENT if <state>/layers is missing.
Result<std::vector<LoadedRecord>> LoadLayerRecords(const std::string& state_dir);

// Snapshot ids marked under refs/<host>/ for every host (sorted, unique), by host.
struct HostRefs {
  std::string host;
  std::vector<std::string> snapshots;
};
Result<std::vector<HostRefs>> ReadAllRefs(const std::string& store_root);

}  // namespace slacker::ctl
