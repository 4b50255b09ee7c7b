// The snapshotter's holds on driver layer mounts: one driver Get per layer while the
// service uses its mount (an active snapshot's, or the read-only mount its views share),
// and the driver's Get and Put of one layer ordered by that layer's lock.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/mutex.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "driver/graph_driver.h"

namespace slacker::snapshotter {

class LayerMounts {
 public:
  // REQUIRES: `driver` outlives this.
  explicit LayerMounts(driver::GraphDriver& driver) : driver_(driver) {}

  // The layer's mount directory (a driver Get the first time; a mount the driver adopted
  // at start-up, which we held when we stopped, is reused).
  Result<std::string> Ensure(const std::string& layer) EXCLUDES(mu_);
  // A view's hold on the layer's mount; the last ReleaseView Puts it.
  Result<std::string> AcquireView(const std::string& layer) EXCLUDES(mu_);
  Status ReleaseView(const std::string& layer) EXCLUDES(mu_);
  // Releases our Get of `layer` (if held) and removes the layer from the driver.
  Status Drop(const std::string& layer) EXCLUDES(mu_);

 private:
  // Per layer: orders the driver's Get and Put of it. Taken before mu_, never under it.
  std::shared_ptr<common::Mutex> LayerMutex(const std::string& layer) EXCLUDES(mu_);
  // REQUIRES the layer's mutex.
  Result<std::string> MountLocked(const std::string& layer) EXCLUDES(mu_);

  driver::GraphDriver& driver_;
  // Held for map work only, never across a driver call.
  common::Mutex mu_;
  std::map<std::string, std::string> mounts_ GUARDED_BY(mu_);  // layer -> mount dir (while we hold a Get)
  std::map<std::string, int> view_refs_ GUARDED_BY(mu_);       // layer -> views on it
  std::map<std::string, std::shared_ptr<common::Mutex>> layer_mu_ GUARDED_BY(mu_);
};

}  // namespace slacker::snapshotter
