// One snapshot as the snapshotter's catalog records it (catalog.h). Apart from catalog.h
// so that code which includes gRPC's headers can use it: abseil (under gRPC) defines the
// thread-safety macros common/thread_annotations.h defines, differently.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace slacker::snapshotter {

using Labels = std::map<std::string, std::string>;

// Values as in containerd's snapshots.proto (Kind enum).
enum class Kind : int { kView = 1, kActive = 2, kCommitted = 3 };
const char* KindName(Kind k);

// One snapshot.
struct Record {
  std::string name;  // containerd's backend key ("<namespace>/<seq>/<key>")
  Kind kind = Kind::kActive;
  std::string parent;  // "" = none
  std::string layer;   // driver layer id ("" for a view: it uses its parent's layer)
  Labels labels;
  int64_t created_ns = 0;  // Unix time, nanoseconds
  int64_t updated_ns = 0;
  uint64_t bytes = 0;  // committed: size of the change against the parent
  // committed: inodes the change added (known when this host committed it from an active
  // snapshot, or from the store's index; 0 for a reference layer's snapshot)
  uint64_t inodes = 0;
  // active: the file system's use when it was prepared (the parent's tree), so Usage
  // reports what the snapshot itself added, as containerd's contract asks.
  int64_t base_bytes = 0;
  int64_t base_inodes = 0;
  bool operator==(const Record&) const = default;
};

}  // namespace slacker::snapshotter
