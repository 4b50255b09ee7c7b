// Whether a layer's last snapshot (LayerRecord::snapshot) still holds its volume's
// content: the one question snapshot caching asks (driver/README.md "Snapshot caching").
//
// At rest (volume not mounted) the answer is the persisted LayerRecord::dirty (false: the
// volume equals the snapshot). A rw mount persists dirty=true before anyone can write,
// and from then on the answer is the loop device's write counter (/sys/block/loopN/stat,
// sectors written): unchanged since a sample taken when the content equalled the snapshot
// means nothing was written. Put turns a mount that wrote nothing back into dirty=false.
//
// This type only decides. The driver takes the samples (syncfs then the counter, or the
// counter while the file system is frozen, so that nothing can write in between) and
// persists the record.
#pragma once

#include <cstdint>
#include <optional>

#include "common/status.h"
#include "driver/layer_record.h"

namespace slacker::driver {

class SnapshotCurrency {
 public:
  // Not mounted: whether `rec.snapshot` is the volume's content.
  static bool CurrentAtRest(const LayerRecord& rec) { return !rec.dirty && !rec.snapshot.empty(); }

  // The volume was mounted rw; `sample` was taken right after the mount (syncfs first).
  // `rec` is the record before the mount persisted dirty=true.
  void Mounted(const LayerRecord& rec, const Result<uint64_t>& sample);
  // A rw mount adopted at start-up: what was written while the driver was down is unknown.
  void Forget() { known_ = false; }
  // Mounted rw: whether `rec.snapshot` is still the content, given a fresh sample.
  bool CurrentWhileMounted(const LayerRecord& rec, const Result<uint64_t>& sample) const;
  // A snapshot of the mounted volume was taken while frozen: `frozen_at` sampled while
  // frozen, `thawed` whether FITHAW succeeded. FITHAW writes kThawWriteSectors itself
  // before any writer the freeze blocked resumes, and those writers' writes are not in
  // the snapshot: the baseline is the frozen sample plus the thaw's own write, never a
  // sample taken after the thaw.
  void SnapshotTaken(const Result<uint64_t>& frozen_at, bool thawed);
  // Put of a rw mount, step 1: whether the content still equals the snapshot, from the
  // sample taken while frozen for the flush before the unmount (FIFREEZE writes
  // kFreezeWriteSectors). Nullopt: no sample (unknown, so not clean).
  bool CleanWhenFrozen(std::optional<uint64_t> frozen_at) const;
  // Step 2, only if step 1 said clean: nothing was written since the thaw either (a
  // writer the flush blocked resumes there). `after_thaw` is sampled after syncfs.
  static bool CleanAfterThaw(uint64_t frozen_at, const Result<uint64_t>& after_thaw);

 private:
  uint64_t baseline_ = 0;  // loop write sectors when the content last equalled the snapshot
  bool known_ = false;     // whether the content at baseline_ equals the snapshot
};

}  // namespace slacker::driver
