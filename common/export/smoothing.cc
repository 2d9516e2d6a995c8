// Smoothing groups and scales (export.h): SmoothQuant's smooth.py and logarithmic
// equalization, computed from the statistics and the original weights.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/export/export.h"
#include "common/model_files.h"
#include "common/status_macros.h"

namespace qcal::exporter {
namespace {

using R = TensorRole;

// max over rows of |W[r, j]| for a row-major [rows, cols] weight, folded into *out.
void FoldColumnAbsMax(const std::vector<float>& w, int64_t rows, int64_t cols,
                      std::vector<float>* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w.data() + r * cols;
    for (int64_t j = 0; j < cols; ++j) (*out)[j] = std::max((*out)[j], std::fabs(row[j]));
  }
}

// The group's scales, or the reason it is skipped (empty scales).
absl::StatusOr<std::vector<float>> GroupScalesOf(const SmoothGroup& g, const ModelConfig& config,
                                                 const ModelFiles& files,
                                                 const stats::StatsSet& set,
                                                 const Smoothing& smoothing, std::string* why) {
  if (!SmoothableGroup(g)) {
    *why = "a reader of the activation is not among the smoothed linears";
    return std::vector<float>();
  }
  for (const std::string& l : g.linears) {
    const stats::LinearStats* s = set.Find(l);
    if (s == nullptr || s->input.empty()) {
      *why = absl::StrCat("no input statistics for ", l);
      return std::vector<float>();
    }
    if (s->input.channels() != g.channels) {
      return absl::InvalidArgumentError(absl::StrCat("statistics of ", l, " have ",
                                                     s->input.channels(), " input channels; ",
                                                     "the model has ", g.channels));
    }
  }
  const std::vector<float> act = ChannelAbsmax(set.Find(g.linears[0])->input);
  if (smoothing.method == SmoothingMethod::kLogEq) return LogEqScales(act);

  std::vector<float> weight_absmax(static_cast<size_t>(g.channels), 0.0f);
  for (const std::string& l : g.linears) {
    int64_t out_features = -1;
    for (const LinearModule& m : LinearModules(config)) {
      if (m.name == l) out_features = m.out_features;
    }
    if (out_features < 0) {
      return absl::InvalidArgumentError(absl::StrCat(l, " is not a linear of the model"));
    }
    const std::string tensor = l + ".weight";
    QCAL_ASSIGN_OR_RETURN(auto found, files.Find(tensor));
    QCAL_ASSIGN_OR_RETURN(std::vector<float> w,
                          found.first->ReadFloat32(tensor, {out_features, g.channels}));
    FoldColumnAbsMax(w, out_features, g.channels, &weight_absmax);
  }
  return SmoothQuantScales(act, weight_absmax, smoothing.alpha);
}

}  // namespace

std::vector<SmoothGroup> SmoothGroups(const ModelConfig& c) {
  std::vector<SmoothGroup> out;
  const bool gated = c.spec().gated_mlp;
  auto group = [&](std::string source, bool norm, std::vector<std::string> linears,
                   int64_t channels) {
    SmoothGroup g;
    g.source = std::move(source);
    g.source_is_norm = norm;
    g.linears = linears;
    g.readers = std::move(linears);  // llama, mistral, qwen2: exactly the linears
    g.channels = channels;
    out.push_back(std::move(g));
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    group(c.ModuleName(R::kAttnNorm, i), true,
          {c.ModuleName(R::kQ, i), c.ModuleName(R::kK, i), c.ModuleName(R::kV, i)},
          c.hidden_size);
    if (c.num_kv_heads == c.num_heads) {
      group(c.ModuleName(R::kV, i), false, {c.ModuleName(R::kO, i)},
            c.num_kv_heads * c.head_dim);
    }
    std::vector<std::string> mlp_in;
    if (gated) mlp_in.push_back(c.ModuleName(R::kGate, i));
    mlp_in.push_back(c.ModuleName(R::kUp, i));
    group(c.ModuleName(R::kMlpNorm, i), true, std::move(mlp_in), c.hidden_size);
    if (gated) group(c.ModuleName(R::kUp, i), false, {c.ModuleName(R::kDown, i)},
                     c.intermediate_size);
  }
  return out;
}

bool SmoothableGroup(const SmoothGroup& g) {
  if (g.linears.empty() || g.channels <= 0) return false;
  const std::set<std::string> linears(g.linears.begin(), g.linears.end());
  const std::set<std::string> readers(g.readers.begin(), g.readers.end());
  return linears == readers;
}

absl::StatusOr<std::vector<float>> SmoothQuantScales(const std::vector<float>& act_absmax,
                                                     const std::vector<float>& weight_absmax,
                                                     double alpha) {
  if (!(alpha >= 0 && alpha <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("alpha ", alpha, " not in [0, 1]"));
  }
  if (act_absmax.size() != weight_absmax.size()) {
    return absl::InvalidArgumentError(absl::StrCat("activation absmax has ", act_absmax.size(),
                                                   " channels, weight absmax ",
                                                   weight_absmax.size()));
  }
  const float a = static_cast<float>(alpha);
  const float b = static_cast<float>(1.0 - alpha);
  std::vector<float> s(act_absmax.size());
  for (size_t j = 0; j < s.size(); ++j) {
    const float w = std::max(weight_absmax[j], 1e-5f);
    s[j] = std::max(std::pow(act_absmax[j], a) / std::pow(w, b), 1e-5f);
  }
  return s;
}

std::vector<float> LogEqScales(const std::vector<float>& act_absmax) {
  std::vector<float> s(act_absmax.size());
  for (size_t j = 0; j < s.size(); ++j) {
    s[j] = std::max(act_absmax[j] / std::log2(2.0f + act_absmax[j]), 1e-5f);
  }
  return s;
}

std::vector<float> ChannelAbsmax(const stats::TensorStats& t) { return t.AbsMaxPerChannel(); }

absl::StatusOr<SmoothingPlan> PlanSmoothing(const ModelConfig& config,
                                            const std::string& model_dir,
                                            const stats::StatsSet& set,
                                            const Smoothing& smoothing) {
  SmoothingPlan plan;
  plan.smoothing = smoothing;
  if (smoothing.method == SmoothingMethod::kNone) return plan;
  if (!(smoothing.alpha >= 0 && smoothing.alpha <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("alpha ", smoothing.alpha, " not in [0, 1]"));
  }
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<ModelFiles> files, ModelFiles::Open(model_dir));
  for (int64_t i = 0; i < config.num_layers; ++i) {
    if (config.num_kv_heads != config.num_heads) {
      plan.skipped.emplace_back(config.ModuleName(TensorRole::kV, i),
                                "grouped-query attention: one v_proj channel feeds several "
                                "o_proj input channels");
    }
    if (!config.spec().gated_mlp) {
      plan.skipped.emplace_back(config.ModuleName(TensorRole::kUp, i),
                                "MLP not gated: up_proj's output passes a non-linearity");
    }
  }
  for (const SmoothGroup& g : SmoothGroups(config)) {
    std::string why;
    QCAL_ASSIGN_OR_RETURN(std::vector<float> scales,
                          GroupScalesOf(g, config, *files, set, smoothing, &why));
    if (scales.empty()) {
      plan.skipped.emplace_back(g.source, why);
      continue;
    }
    plan.applied.push_back({g, std::move(scales)});
  }
  return plan;
}

}  // namespace qcal::exporter
