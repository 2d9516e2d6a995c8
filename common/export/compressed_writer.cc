// A W8A8 checkpoint in compressed-tensors' "int-quantized" layout, which vLLM loads
// (export_internal.h).
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/status_macros.h"

namespace qcal::exporter::internal {
namespace {

namespace fs = std::filesystem;

// compressed-tensors' QuantizationArgs. Fields that newer releases added with a None
// default (scale_dtype, zp_dtype; the scheme's format) are left out: the models use
// extra="forbid", so naming them would make older releases (as pinned by many vLLM
// versions) refuse the config, while leaving them out means None everywhere.
nlohmann::json QuantArgs(const char* strategy) {
  return {{"num_bits", 8},
          {"type", "int"},
          {"symmetric", true},
          {"group_size", nullptr},
          {"strategy", strategy},
          {"block_structure", nullptr},
          {"dynamic", false},
          {"actorder", nullptr},
          {"observer", "minmax"},
          {"observer_kwargs", nlohmann::json::object()}};
}

nlohmann::json QuantizationConfig(const std::vector<std::string>& ignore) {
  nlohmann::json group = {{"targets", {"Linear"}},
                          {"weights", QuantArgs("channel")},
                          {"input_activations", QuantArgs("tensor")},
                          {"output_activations", nullptr}};
  return {{"config_groups", {{"group_0", group}}},
          {"quant_method", "compressed-tensors"},
          {"kv_cache_scheme", nullptr},
          {"format", "int-quantized"},
          {"quantization_status", "compressed"},
          {"global_compression_ratio", nullptr},
          {"ignore", ignore}};
}

}  // namespace

absl::StatusOr<WriterResult> WriteCompressedTensors(const ExportInputs& in,
                                                    const SmoothingPlan& plan,
                                                    const Decisions& d, const std::string& dir) {
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<WeightReader> reader,
                        WeightReader::Open(in.model_dir, &plan));
  const std::string lm_head = in.config.ModuleName(TensorRole::kLmHead);
  std::vector<std::string> ignore = {lm_head};
  for (int64_t layer : d.shadow_layers) {
    ignore.push_back(in.config.ModuleName(TensorRole::kDown, layer));
  }
  const std::set<std::string> ignored(ignore.begin(), ignore.end());
  std::set<std::string> quantized;
  for (const quant::LinearClip& l : d.clips.linears) {
    if (ignored.count(l.name) == 0) quantized.insert(l.name);
  }

  TensorSink out(dir, "model", in.max_shard_bytes);
  for (const std::string& name : reader->names()) {
    const size_t dot = name.rfind('.');
    const std::string module = dot == std::string::npos ? "" : name.substr(0, dot);
    const bool is_weight = dot != std::string::npos && name.substr(dot + 1) == "weight";
    if (is_weight && quantized.count(module) != 0) {
      std::vector<int64_t> shape;
      QCAL_ASSIGN_OR_RETURN(std::vector<float> w, reader->Read(name, &shape));
      if (shape.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(name, " is not a matrix"));
      }
      QuantizedTensor q = QuantizePerChannelCompressed(w, shape[0], shape[1]);
      QCAL_RETURN_IF_ERROR(out.Add(Int8Tensor(name, shape, q.q)));
      QCAL_RETURN_IF_ERROR(
          out.Add(Float32Tensor(module + ".weight_scale", {shape[0], 1}, q.scales.data())));
      const float input_scale = CompressedTensorsScale(d.input_absmax.at(module));
      QCAL_RETURN_IF_ERROR(out.Add(Float32Tensor(module + ".input_scale", {1}, &input_scale)));
    } else if (reader->Changed(name)) {
      std::vector<int64_t> shape;
      QCAL_ASSIGN_OR_RETURN(std::vector<float> w, reader->Read(name, &shape));
      QCAL_RETURN_IF_ERROR(out.Add(Float32Tensor(name, shape, w.data())));
    } else {
      QCAL_ASSIGN_OR_RETURN(TensorView v, reader->Raw(name));
      TensorToWrite t;
      t.name = name;
      t.dtype = v.dtype;
      t.shape = v.shape;
      t.bytes.assign(reinterpret_cast<const char*>(v.data), v.nbytes);
      QCAL_RETURN_IF_ERROR(out.Add(std::move(t)));
    }
  }
  QCAL_RETURN_IF_ERROR(out.Finish().status());

  const std::string config_path = (fs::path(in.model_dir) / "config.json").string();
  QCAL_ASSIGN_OR_RETURN(std::string config_text, ReadFile(config_path));
  nlohmann::json config = nlohmann::json::parse(config_text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  config["quantization_config"] = QuantizationConfig(ignore);
  QCAL_RETURN_IF_ERROR(
      WriteFileSynced((fs::path(dir) / "config.json").string(), config.dump(2) + "\n"));
  QCAL_RETURN_IF_ERROR(CopyTokenizerFiles(in.model_dir, dir));

  WriterResult r;
  r.quantized_linears = static_cast<int64_t>(quantized.size());
  r.formula_variants = {
      {"weight_quantization",
       "compressed-tensors calculate_qparams, symmetric int8 per output channel: "
       "scale = max(absmax_row / 127.5, float32 eps); q = clamp(round_half_even(w / "
       "scale), -128, 127); computed on float32 weights"},
      {"input_scale",
       "static per tensor: max(absmax / 127.5, float32 eps) of the input's exact "
       "absmax over the calibration (minmax observer); a smoothed input: the derived "
       "absmax max_j(absmax_j / s_j)"},
      {"not_quantized", "lm_head and the down_proj of every shadow layer (not clipped on "
                        "input or output at the threshold: clip rule top_0_1 * t > ori)"},
      {"float_tensors", "untouched tensors keep their bytes and dtype; tensors changed by "
                        "smoothing are float32"}};
  return r;
}

}  // namespace qcal::exporter::internal
