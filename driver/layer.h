// The driver's in-memory layers and the table that holds them (driver-internal).
//
// Lock rules (checked by clang -Wthread-safety, common/thread_annotations.h):
// - Layer::mu guards everything of its layer and is held for a whole driver call on it
//   (an ApplyDiff holds it for as long as its pull streams). A call that needs an
//   ancestor's content takes the ancestor's mutex while holding the descendant's: always
//   child → parent, so no cycles.
// - LayerTable's mutex is a leaf: taken with a layer's mutex held, never the other way
//   round. Calls that look at every layer copy the table (All) and then only TryLock the
//   layers, so they never wait for a long operation.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "driver/layer_record.h"
#include "driver/snapshot_currency.h"
#include "loopdev/mount.h"
#include "os/os.h"

namespace slacker::driver {

struct Layer {
  explicit Layer(LayerRecord record) : rec(std::move(record)) {}

  common::Mutex mu;
  LayerRecord rec GUARDED_BY(mu);
  int refs GUARDED_BY(mu) = 0;  // Get minus Put (plus internal views)
  // The mount at the layer's mount point while refs > 0 or parked: the volume (rw) or,
  // for an image layer without a volume, its snapshot (ro). The driver's destructor
  // Releases the held ones: a restarted driver adopts the mounts dockerd still holds.
  std::optional<loopdev::MountedImage> mount GUARDED_BY(mu);
  bool mounted_rw GUARDED_BY(mu) = false;  // `mount` is the volume, mounted rw
  SnapshotCurrency current GUARDED_BY(mu);  // is rec.snapshot the volume's content
  bool removed GUARDED_BY(mu) = false;      // Remove finished; a caller that found it before must not use it
  // Mounted although nobody holds it (refs == 0): its last Put was deferred, a parked
  // mount (driver/README.md "Start and stop"); the reaper unmounts it at park_until.
  bool parked GUARDED_BY(mu) = false;
  std::chrono::steady_clock::time_point park_until GUARDED_BY(mu);
  // Parked, synced and its file cloned ahead for a hand-over ("<id>.img.handover" on the
  // store, Backend::PrepareHandOver): valid while it stays parked (Unpark discards it).
  bool handover_prepared GUARDED_BY(mu) = false;
  // Overlay form (rec.lower): the overlay is mounted at the layer's overlay point, on the
  // volume's mount and the shared read-only mount of `lower_held` (driver/overlay.cc).
  bool overlaid GUARDED_BY(mu) = false;
  std::string lower_held GUARDED_BY(mu);

  bool mounted() const REQUIRES(mu) { return refs > 0 || parked; }

  // Loop device of the mount, -1 when none (or unknown for an adopted mount).
  int loop_index() const REQUIRES(mu) { return mount ? mount->loop_index() : -1; }
};

class LayerTable {
 public:
  std::shared_ptr<Layer> Find(const std::string& id) const EXCLUDES(mu_);
  bool Contains(const std::string& id) const EXCLUDES(mu_);
  // Adds a layer for `rec` unless its id exists (EEXIST) or its parent does not (ENOENT).
  // `persist` writes the record first, under the table's lock, so two Creates of one id
  // never both write.
  Status Create(const LayerRecord& rec, const std::function<Status()>& persist) EXCLUDES(mu_);
  // Start-up: a layer loaded from its record.
  void Insert(std::shared_ptr<Layer> layer, const std::string& id) EXCLUDES(mu_);
  void Erase(const std::string& id) EXCLUDES(mu_);
  std::vector<std::shared_ptr<Layer>> All() const EXCLUDES(mu_);
  std::vector<std::string> Ids() const EXCLUDES(mu_);

 private:
  mutable common::Mutex mu_;
  std::map<std::string, std::shared_ptr<Layer>> layers_ GUARDED_BY(mu_);
};

// Makes a rw-mounted volume file complete before its unmount. A mount namespace made
// while the layer was mounted (a container starting at the same time: runc unshares,
// then detaches the old root) can keep the file system alive past our umount; nothing is
// written back or checkpointed until it goes, and a snapshot of the file taken then
// (docker commit, the next build step) misses the writes. Seen with 10 parallel builds
// (test/e2e/load_e2e.sh). FIFREEZE writes everything back and checkpoints the journal;
// on an idle file system it costs milliseconds. Returns the loop device's write counter
// sampled while frozen (nothing can write between the flush and the sample), when known.
std::optional<uint64_t> FlushBeforeUnmount(os::Os& os, const std::string& id, const std::string& mnt,
                                           int loop_index);

}  // namespace slacker::driver
