#include "client/shadow_layers.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/exit_codes.h"
#include "common/model_config.h"
#include "common/quant/report.h"
#include "common/quant/shadow.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

using Json = nlohmann::ordered_json;

constexpr absl::string_view kIndex = "{i}";

// The down-projection patterns to try for `model_type`.
std::vector<std::string> DownPatterns(absl::string_view model_type) {
  std::vector<std::string> patterns;
  const auto add_from = [&patterns](const ArchSpec& spec) {
    for (const ArchSpec::RoleName& n : spec.names) {
      if (n.role != TensorRole::kDown) continue;
      if (std::find(patterns.begin(), patterns.end(), n.pattern) == patterns.end()) {
        patterns.push_back(n.pattern);
      }
    }
  };
  for (const ArchSpec& spec : ArchTable()) {
    if (spec.model_type == model_type) add_from(spec);
  }
  if (patterns.empty()) {
    for (const ArchSpec& spec : ArchTable()) add_from(spec);
  }
  return patterns;
}

Json ThresholdJson(double t) {
  if (std::trunc(t) == t && std::fabs(t) < 9.2e18) return Json(static_cast<int64_t>(t));
  return Json(t);
}

void AppendNames(const char* title, const std::vector<std::string>& names,
                 std::string* out) {
  absl::StrAppend(out, title, " (", names.size(), "):\n");
  if (names.empty()) absl::StrAppend(out, "  (none)\n");
  for (const std::string& name : names) absl::StrAppend(out, "  ", name, "\n");
}

}  // namespace

std::optional<int64_t> LayerFromPattern(absl::string_view name, absl::string_view pattern) {
  const size_t at = pattern.find(kIndex);
  if (at == absl::string_view::npos) return std::nullopt;
  const absl::string_view prefix = pattern.substr(0, at);
  const absl::string_view suffix = pattern.substr(at + kIndex.size());
  if (name.size() <= prefix.size() + suffix.size() || !absl::StartsWith(name, prefix) ||
      !absl::EndsWith(name, suffix)) {
    return std::nullopt;
  }
  const absl::string_view digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  int64_t layer = 0;
  if (!absl::SimpleAtoi(digits, &layer)) return std::nullopt;
  // Exactly the name the model gives this layer ("01" is not layer 1's).
  if (absl::StrReplaceAll(pattern, {{kIndex, absl::StrCat(layer)}}) != name) {
    return std::nullopt;
  }
  return layer;
}

std::optional<int64_t> DownProjectionLayer(absl::string_view name,
                                           absl::string_view model_type) {
  for (const std::string& pattern : DownPatterns(model_type)) {
    if (std::optional<int64_t> layer = LayerFromPattern(name, pattern)) return layer;
  }
  return std::nullopt;
}

std::vector<int64_t> ShadowLayersByName(const quant::ClipResult& clips,
                                        absl::string_view model_type) {
  const std::vector<std::string> patterns = DownPatterns(model_type);
  std::vector<int64_t> layers;
  for (const quant::LinearClip& c : clips.linears) {
    if (c.clip_input && c.clip_output) continue;
    for (const std::string& pattern : patterns) {
      if (std::optional<int64_t> layer = LayerFromPattern(c.name, pattern)) {
        layers.push_back(*layer);
        break;
      }
    }
  }
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

absl::StatusOr<stats::Mode> ParseEvalMode(absl::string_view name, absl::string_view flag) {
  if (name == "abs") return stats::Mode::kAbs;
  if (name == "mllm") return stats::Mode::kMllm;
  return UsageError(absl::StrCat(flag, " must be abs or mllm (got \"", name, "\")"));
}

ShadowSelection SelectionFromEvaluation(const std::string& job_id,
                                        const std::string& operation,
                                        const v1::EvaluateResponse& response,
                                        const v1::ThresholdResult& result,
                                        bool recommended) {
  ShadowSelection s;
  s.job_id = job_id;
  s.threshold = result.threshold();
  s.mode = response.mode().empty() ? "abs" : response.mode();
  s.recommended = recommended;
  s.layers.assign(result.shadow_layers().begin(), result.shadow_layers().end());
  s.no_clip_input_name.assign(result.no_clip_input_name().begin(),
                              result.no_clip_input_name().end());
  s.no_clip_output_name.assign(result.no_clip_output_name().begin(),
                               result.no_clip_output_name().end());
  s.source = absl::StrCat("evaluation ", operation);
  return s;
}

absl::StatusOr<ShadowSelection> SelectionFromStatistics(const std::string& job_id,
                                                        const stats::StatsSet& set,
                                                        double threshold, stats::Mode mode,
                                                        const std::string& config_dir,
                                                        const std::string& model_type) {
  absl::StatusOr<quant::ClipResult> clips = quant::DecideClips(set, threshold, mode);
  if (!clips.ok()) return clips.status();
  ShadowSelection s;
  s.job_id = job_id;
  s.threshold = threshold;
  s.mode = stats::ModeName(mode);
  s.no_clip_input_name = clips->no_clip_input_name;
  s.no_clip_output_name = clips->no_clip_output_name;
  s.source = "statistics";
  absl::StatusOr<ModelConfig> config =
      config_dir.empty()
          ? absl::NotFoundError("the job names no model folder")
          : LoadModelConfig(config_dir);
  if (config.ok()) {
    absl::StatusOr<std::vector<int64_t>> layers = quant::ShadowLayers(*clips, *config);
    if (!layers.ok()) return layers.status();
    s.layers = *std::move(layers);
    s.layer_index_from = "config";
    return s;
  }
  s.layers = ShadowLayersByName(*clips, model_type);
  s.layer_index_from = "module names";
  s.note = std::string(config.status().message());
  return s;
}

std::string FormatShadowSelection(const ShadowSelection& s) {
  const size_t n = s.layers.size();
  std::string out = absl::StrCat(quant::FormatLayerSet(s.layers), "\n");
  absl::StrAppend(&out, "threshold ", quant::ThresholdKey(s.threshold),
                  s.recommended ? " (recommended)" : "", ", mode ", s.mode, ": ", n,
                  " shadow layer", n == 1 ? "" : "s", " (");
  if (s.source == "statistics") {
    absl::StrAppend(&out, "computed here from the statistics of ", s.job_id);
    if (s.layer_index_from == "config") {
      absl::StrAppend(&out, "; layer indices from the model's config.json");
    } else {
      absl::StrAppend(&out, "; layer indices from module names");
      if (!s.note.empty()) absl::StrAppend(&out, ": ", s.note);
    }
  } else {
    absl::StrAppend(&out, "from ", s.source);
  }
  absl::StrAppend(&out, ")\n");
  AppendNames("not clipped input", s.no_clip_input_name, &out);
  AppendNames("not clipped output", s.no_clip_output_name, &out);
  return out;
}

std::string ShadowSelectionJson(const ShadowSelection& s) {
  Json j = Json::object();
  j["job_id"] = s.job_id;
  j["threshold"] = ThresholdJson(s.threshold);
  j["mode"] = s.mode;
  j["recommended"] = s.recommended;
  j["shadow_layers"] = s.layers;
  j["shadow_layers_set"] = quant::FormatLayerSet(s.layers);
  j["no_clip_input_name"] = s.no_clip_input_name;
  j["no_clip_output_name"] = s.no_clip_output_name;
  j["source"] = s.source;
  j["layer_index_from"] =
      s.source == "statistics" ? Json(s.layer_index_from) : Json("evaluation");
  return j.dump();
}

}  // namespace qcal::client
