#include "driver/layer_record.h"

#include <nlohmann/json.hpp>

namespace slacker::driver {

const char* KindName(LayerKind k) { return k == LayerKind::kImage ? "image" : "rw"; }

const char* OriginName(Origin o) {
  switch (o) {
    case Origin::kNone: return "none";
    case Origin::kVolume: return "volume";
    case Origin::kReference: return "reference";
    case Origin::kTar: return "tar";
  }
  return "none";
}

std::string LayerRecord::ToJson() const {
  nlohmann::json j = {{"format", 1},
                      {"id", id},
                      {"parent", parent},
                      {"kind", KindName(kind)},
                      {"origin", OriginName(origin)},
                      {"snapshot", snapshot},
                      {"has_volume", has_volume},
                      {"dirty", dirty},
                      {"size_bytes", size_bytes},
                      {"diff_size", diff_size}};
  if (!chain_id.empty()) j["chain_id"] = chain_id;
  if (!lower.empty()) j["lower"] = lower;
  return j.dump() + "\n";
}

Result<LayerRecord> LayerRecord::FromJson(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Errorf(EINVAL, "layer record is not valid JSON");
  if (j.value("format", 0) != 1) return Errorf(EINVAL, "layer record has unknown format {}", j.value("format", 0));
  LayerRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.parent = j.value("parent", "");
    r.kind = j.value("kind", "image") == "rw" ? LayerKind::kReadWrite : LayerKind::kImage;
    std::string origin = j.value("origin", "none");
    r.origin = origin == "volume"      ? Origin::kVolume
               : origin == "reference" ? Origin::kReference
               : origin == "tar"       ? Origin::kTar
                                       : Origin::kNone;
    r.snapshot = j.value("snapshot", "");
    r.has_volume = j.value("has_volume", false);
    r.dirty = j.value("dirty", false);
    r.size_bytes = j.value("size_bytes", uint64_t{0});
    r.diff_size = j.value("diff_size", int64_t{0});
    r.chain_id = j.value("chain_id", "");
    r.lower = j.value("lower", "");
  } catch (const nlohmann::json::exception& e) {
    return Errorf(EINVAL, "layer record: {}", e.what());
  }
  if (r.id.empty()) return Errorf(EINVAL, "layer record has no id");
  return r;
}

}  // namespace slacker::driver
