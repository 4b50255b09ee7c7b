#include "driver/layer.h"

#include "common/fault.h"
#include "common/log.h"
#include "loopdev/loop_device.h"

namespace slacker::driver {

using common::MutexLock;

std::shared_ptr<Layer> LayerTable::Find(const std::string& id) const {
  MutexLock l(mu_);
  auto it = layers_.find(id);
  return it == layers_.end() ? nullptr : it->second;
}

bool LayerTable::Contains(const std::string& id) const {
  MutexLock l(mu_);
  return layers_.count(id) != 0;
}

Status LayerTable::Create(const LayerRecord& rec, const std::function<Status()>& persist) {
  MutexLock l(mu_);
  if (layers_.count(rec.id)) return Errorf(EEXIST, "layer {} already exists", rec.id);
  if (!rec.parent.empty() && !layers_.count(rec.parent))
    return Errorf(ENOENT, "create layer {}: parent layer {} does not exist", rec.id, rec.parent);
  SLACKER_RETURN_IF_ERROR(persist().Context("create layer " + rec.id));
  SLACKER_FAULT_POINT("create.after_record");
  layers_[rec.id] = std::make_shared<Layer>(rec);
  return Status::Ok();
}

void LayerTable::Insert(std::shared_ptr<Layer> layer, const std::string& id) {
  MutexLock l(mu_);
  layers_[id] = std::move(layer);
}

void LayerTable::Erase(const std::string& id) {
  MutexLock l(mu_);
  layers_.erase(id);
}

std::vector<std::shared_ptr<Layer>> LayerTable::All() const {
  MutexLock l(mu_);
  std::vector<std::shared_ptr<Layer>> all;
  all.reserve(layers_.size());
  for (const auto& [id, layer] : layers_) all.push_back(layer);
  return all;
}

std::vector<std::string> LayerTable::Ids() const {
  MutexLock l(mu_);
  std::vector<std::string> ids;
  ids.reserve(layers_.size());
  for (const auto& [id, layer] : layers_) ids.push_back(id);
  return ids;
}

std::optional<uint64_t> FlushBeforeUnmount(os::Os& os, const std::string& id, const std::string& mnt,
                                           int loop_index) {
  Status f = os.Freeze(mnt);
  std::optional<uint64_t> frozen_at;
  if (f.ok() && loop_index >= 0) {
    auto w = loopdev::WriteSectors(os, loop_index);
    if (w.ok()) frozen_at = *w;
  }
  Status t = f.ok() ? os.Thaw(mnt) : Status::Ok();
  if (!f.ok() || !t.ok()) {
    log::Warn("flush_before_unmount_failed", {{"layer", id}, {"err", !f.ok() ? f.message() : t.message()}});
    return std::nullopt;
  }
  return frozen_at;
}

}  // namespace slacker::driver
