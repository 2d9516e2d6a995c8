#include "common/quant/shadow.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qcal::quant {

absl::StatusOr<std::vector<int64_t>> ShadowLayers(const ClipResult& clips,
                                                  const ModelConfig& config) {
  absl::flat_hash_map<std::string, const LinearModule*> by_name;
  const std::vector<LinearModule> modules = LinearModules(config);
  for (const LinearModule& m : modules) by_name[m.name] = &m;
  std::vector<int64_t> layers;
  for (const LinearClip& c : clips.linears) {
    auto it = by_name.find(c.name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "linear \"", c.name, "\" is not a module of this ", config.model_type, " model"));
    }
    const LinearModule& m = *it->second;
    if (m.role == TensorRole::kDown && !(c.clip_input && c.clip_output)) {
      layers.push_back(m.layer);
    }
  }
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

std::vector<std::string> NotClippedLinears(const ClipResult& clips) {
  std::vector<std::string> out;
  for (const LinearClip& c : clips.linears) {
    if (!c.clip_input || !c.clip_output) out.push_back(c.name);
  }
  return out;
}

std::string FormatLayerSet(const std::vector<int64_t>& layers) {
  return absl::StrCat("{", absl::StrJoin(layers, ", "), "}");
}

const char* SideName(Side side) { return side == Side::kInput ? "input" : "output"; }

namespace {

OutlierChannels ChannelsBeyond(const std::string& name, Side side,
                               const stats::TensorStats& t, float scale) {
  OutlierChannels o;
  o.name = name;
  o.side = side;
  o.scale = scale;
  o.channels_total = t.channels();
  const float limit = std::fabs(scale);
  if (t.empty()) return o;
  for (int64_t c = 0; c < t.channels(); ++c) {
    if (t.absmax(c) > limit) o.channels.push_back(c);
  }
  return o;
}

}  // namespace

absl::StatusOr<std::vector<OutlierChannels>> FindOutlierChannels(const stats::StatsSet& set,
                                                                 const ClipResult& clips) {
  std::vector<OutlierChannels> out;
  for (const LinearClip& c : clips.linears) {
    if (c.clip_input && c.clip_output) continue;
    const stats::LinearStats* l = set.Find(c.name);
    if (l == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("no statistics for linear \"", c.name, "\""));
    }
    if (!c.clip_input) out.push_back(ChannelsBeyond(c.name, Side::kInput, l->input, c.input_scale));
    if (!c.clip_output) {
      out.push_back(ChannelsBeyond(c.name, Side::kOutput, l->output, c.output_scale));
    }
  }
  return out;
}

}  // namespace qcal::quant
