// A read-only view of a layer's tree (Diff of an applied standard tar, Changes,
// DiffSize), released by its destructor. Driver-internal.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "driver/graph_driver.h"
#include "loopdev/mount.h"

namespace slacker::driver {

class LayerView {
 public:
  // The layer's own mount, held with a Get reference of `driver` that the destructor Puts.
  static std::unique_ptr<LayerView> OfLayer(GraphDriver& driver, std::string path, std::string layer_id);
  // A read-only mount of a content snapshot in a directory of its own (<state>/views/…),
  // unmounted and removed by the destructor.
  static std::unique_ptr<LayerView> OfMount(loopdev::MountedImage mount);
  // A directory nobody releases (the empty file system).
  static std::unique_ptr<LayerView> OfDirectory(std::string path);
  ~LayerView();

  const std::string& path() const { return path_; }

 private:
  LayerView() = default;
  GraphDriver* driver_ = nullptr;
  std::string path_;
  std::string layer_id_;                       // Put at the end when driver_ is set
  std::optional<loopdev::MountedImage> mount_;  // the temporary mount, if any
};

// A stream that holds a view until it is destroyed.
class ViewSource : public ByteSource {
 public:
  ViewSource(std::unique_ptr<ByteSource> inner, std::unique_ptr<LayerView> view)
      : view_(std::move(view)), inner_(std::move(inner)) {}
  Result<size_t> Read(void* buf, size_t n) override { return inner_->Read(buf, n); }

 private:
  // Declared first, destroyed last: the stream's open files go before the unmount.
  std::unique_ptr<LayerView> view_;
  std::unique_ptr<ByteSource> inner_;
};

}  // namespace slacker::driver
