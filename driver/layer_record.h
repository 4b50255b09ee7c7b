// Host-local metadata of one layer, persisted as <state>/layers/<id>.json (atomic
// replace). See DESIGN.md §3-§4 and driver/README.md for the state machine.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace slacker::driver {

enum class LayerKind { kImage, kReadWrite };

// Where the layer's current snapshot came from; decides what Diff returns.
enum class Origin {
  kNone,       // no snapshot yet (fresh or only written through Get)
  kVolume,     // snapshot taken of this layer's own volume: Diff → reference tar
  kReference,  // applied from a reference tar: Diff → the exact bytes applied
  kTar,        // applied from a standard tar: Diff → skeleton + snapshot files
};

struct LayerRecord {
  std::string id;
  std::string parent;
  LayerKind kind = LayerKind::kImage;
  Origin origin = Origin::kNone;
  std::string snapshot;      // last snapshot of this layer's content ("" none)
  bool has_volume = false;   // volumes/<host>/<id>.img exists and is the live content
  bool dirty = false;        // the volume may differ from `snapshot`
  uint64_t size_bytes = 0;   // requested file system size (0 = inherit / default)
  int64_t diff_size = 0;     // what ApplyDiff returned (dockerd's layer size)
  // Image layers: the chain id of the DiffIDs up to this layer, as dockerd and containerd
  // compute it ("sha256:<hex>"); references made on top of this layer are bound to it
  // (registry_shim/FORMAT.md). "" = not known yet (records of earlier releases, layers
  // written through Get before ApplyDiff): computed from Diff on first use.
  std::string chain_id;
  // Read-write layers in overlay form (DriverOptions::share_page_cache): the snapshot
  // this layer's volume was cloned from, mounted read-only once per host as the lower of
  // the layer's overlay. The volume's root is that snapshot's tree, untouched; what the
  // layer wrote is in <volume>/.slacker-overlay/upper (driver/README.md "Shared page
  // cache"). "" = the volume's root is the layer's content (every layer before it).
  std::string lower;

  std::string ToJson() const;
  static Result<LayerRecord> FromJson(const std::string& text);
};

// <state>/layers/<id>.removing (common/state_layout.h LayerRemovingFile): the record of a
// removed layer whose teardown (unmount, volume file) is still running after Remove
// returned. Its volume is not an orphan meanwhile; start-up finishes what a crash
// interrupted and deletes it.

const char* KindName(LayerKind k);
const char* OriginName(Origin o);

}  // namespace slacker::driver
