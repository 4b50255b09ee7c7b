#include "driver/snapshot_currency.h"

#include "loopdev/freeze.h"

namespace slacker::driver {

void SnapshotCurrency::Mounted(const LayerRecord& rec, const Result<uint64_t>& sample) {
  baseline_ = sample.ok() ? *sample : 0;
  known_ = sample.ok() && CurrentAtRest(rec);
}

bool SnapshotCurrency::CurrentWhileMounted(const LayerRecord& rec, const Result<uint64_t>& sample) const {
  return sample.ok() && known_ && *sample == baseline_ && !rec.snapshot.empty();
}

void SnapshotCurrency::SnapshotTaken(const Result<uint64_t>& frozen_at, bool thawed) {
  baseline_ = frozen_at.ok() ? *frozen_at + loopdev::kThawWriteSectors : 0;
  known_ = frozen_at.ok() && thawed;
}

bool SnapshotCurrency::CleanWhenFrozen(std::optional<uint64_t> frozen_at) const {
  return known_ && frozen_at && *frozen_at == baseline_ + loopdev::kFreezeWriteSectors;
}

bool SnapshotCurrency::CleanAfterThaw(uint64_t frozen_at, const Result<uint64_t>& after_thaw) {
  return after_thaw.ok() && *after_thaw == frozen_at + loopdev::kThawWriteSectors;
}

}  // namespace slacker::driver
