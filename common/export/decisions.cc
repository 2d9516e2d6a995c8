// Clip decisions of the int8 exports, with smoothed sides replaced (export_internal.h).
#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/status_macros.h"

namespace qcal::exporter::internal {
namespace {

// max_j(absmax_j / s_j): the per-tensor absmax of x / s.
float DerivedAbsmax(const stats::TensorStats& t, const std::vector<float>& s) {
  const std::vector<float> a = ChannelAbsmax(t);
  float m = 0;
  for (size_t j = 0; j < a.size() && j < s.size(); ++j) m = std::max(m, a[j] / s[j]);
  return m;
}

}  // namespace

absl::Status CheckStatsMatchModel(const stats::StatsSet& set, const ModelConfig& config) {
  std::map<std::string, const LinearModule*> modules;
  const std::vector<LinearModule> linears = LinearModules(config);
  for (const LinearModule& m : linears) modules[m.name] = &m;
  for (const stats::LinearStats& s : set) {
    auto it = modules.find(s.name);
    if (it == modules.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("statistics hold ", s.name, ", which is not a linear of the model"));
    }
    if (s.input.channels() != it->second->in_features ||
        s.output.channels() != it->second->out_features) {
      return absl::InvalidArgumentError(absl::StrCat(
          "statistics of ", s.name, " have ", s.input.channels(), " -> ", s.output.channels(),
          " channels; the model's linear is ", it->second->in_features, " -> ",
          it->second->out_features));
    }
  }
  for (const LinearModule& m : linears) {
    const stats::LinearStats* s = set.Find(m.name);
    if (s == nullptr || s->input.empty() || s->output.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("statistics lack rows for the linear ", m.name));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Decisions> Decide(const stats::StatsSet& set, const ModelConfig& config,
                                 stats::Mode mode, double threshold,
                                 const SmoothingPlan& plan) {
  Decisions d;
  QCAL_ASSIGN_OR_RETURN(d.clips, quant::DecideClips(set, threshold, mode));
  std::map<std::string, quant::LinearClip*> by_name;
  for (quant::LinearClip& c : d.clips.linears) {
    by_name[c.name] = &c;
    d.input_absmax[c.name] = set.Find(c.name)->input.AbsMax();
  }
  for (const GroupScales& g : plan.applied) {
    for (const std::string& l : g.group.linears) {
      auto it = by_name.find(l);
      if (it == by_name.end()) continue;
      const float a = DerivedAbsmax(set.Find(l)->input, g.scales);
      it->second->clip_input = true;
      it->second->input_scale = a;
      d.input_absmax[l] = a;
      d.smoothed_inputs.push_back(l);
    }
    if (plan.smoothing.fuse && !g.group.source_is_norm) {
      auto it = by_name.find(g.group.source);
      if (it == by_name.end()) continue;
      it->second->clip_output = true;
      it->second->output_scale = DerivedAbsmax(set.Find(g.group.source)->output, g.scales);
      d.smoothed_outputs.push_back(g.group.source);
    }
  }
  quant::ClipResult& c = d.clips;
  c.clip_input_num = c.no_clip_input_num = c.clip_output_num = c.no_clip_output_num = 0;
  c.no_clip_input_name.clear();
  c.no_clip_output_name.clear();
  for (const quant::LinearClip& l : c.linears) {
    ++(l.clip_input ? c.clip_input_num : c.no_clip_input_num);
    ++(l.clip_output ? c.clip_output_num : c.no_clip_output_num);
    if (!l.clip_input) c.no_clip_input_name.push_back(l.name);
    if (!l.clip_output) c.no_clip_output_name.push_back(l.name);
  }
  QCAL_ASSIGN_OR_RETURN(d.shadow_layers, quant::ShadowLayers(c, config));
  d.not_clipped_linears = quant::NotClippedLinears(c);
  // Only not-clipped sides are searched, and those were not smoothed: the original
  // statistics are the right ones.
  QCAL_ASSIGN_OR_RETURN(d.outliers, quant::FindOutlierChannels(set, c));
  return d;
}

}  // namespace qcal::exporter::internal
