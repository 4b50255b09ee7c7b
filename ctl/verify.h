// `slackerctl verify`: checks this host's layer records against the store.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "os/os.h"
#include "storage_backend/backend.h"

namespace slacker::ctl {

struct Problem {
  std::string subject;  // "layer <id>", "snapshot <snap>", "volume <layer>"
  std::string message;  // what is wrong and what to do about it
  std::string Line() const { return subject + ": " + message; }
};

struct VerifyOptions {
  // Mount every snapshot a record names read-only (ro loop, ro,noload) at a fresh dir
  // under <state>/ctl-views, then unmount it. Off in unit tests.
  bool mount_snapshots = true;
  std::string host_id;      // whose refs/<host-id>/ must mark this host's snapshots
};

struct VerifyReport {
  int layers = 0;
  int snapshots_checked = 0;
  int snapshots_mounted = 0;
  std::vector<Problem> problems;
};

// Each record parses and is named after its id; its snapshot exists and this host's refs/
// marks it (else gc could delete it); has_volume ⇒ the volume exists; a volume without a
// record claiming it is reported; origin tar ⇒ the snapshot's .skel exists; origin
// reference ⇒ <state>/layers/<id>.ref exists, decodes, and names the record's snapshot.
// Errors only when the state cannot be read at all; findings go into the report.
Result<VerifyReport> Verify(os::Os& os, const storage_backend::Backend& store, const std::string& state_dir,
                            const VerifyOptions& options);

}  // namespace slacker::ctl
