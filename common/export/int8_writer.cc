// The int8 shadow model: mllm's layout (export_int8_model.py) or plain safetensors
// (export_internal.h).
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/status_macros.h"

namespace qcal::exporter::internal {
namespace {

namespace fs = std::filesystem;

std::vector<int8_t> Transpose(const std::vector<int8_t>& q, int64_t rows, int64_t cols) {
  std::vector<int8_t> t(q.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = q[r * cols + c];
  }
  return t;
}

nlohmann::json QuantConfigJson(const ExportInputs& in, const Decisions& d,
                               const std::vector<std::string>& quantized) {
  const quant::ClipResult& c = d.clips;
  nlohmann::json j;
  j["format"] = FormatName(in.format);
  j["threshold"] = in.threshold;
  j["mode"] = stats::ModeName(in.mode);
  j["smoothing"] = SmoothingName(in.smoothing);
  j["smoothing_fused"] = in.smoothing.fuse;
  j["weight_granularity"] = in.per_channel_weights ? "per_channel" : "per_tensor";
  j["weight_layout"] = in.format == Format::kMllm ? "[in_features, out_features]"
                                                  : "[out_features, in_features]";
  j["shadow_layers"] = d.shadow_layers;
  j["shadow_layers_string"] = quant::FormatLayerSet(d.shadow_layers);
  j["clip_input_num"] = c.clip_input_num;
  j["no_clip_input_num"] = c.no_clip_input_num;
  j["clip_output_num"] = c.clip_output_num;
  j["no_clip_output_num"] = c.no_clip_output_num;
  j["no_clip_input_name"] = c.no_clip_input_name;
  j["no_clip_output_name"] = c.no_clip_output_name;
  j["not_clipped_linears"] = d.not_clipped_linears;
  j["smoothed_inputs"] = d.smoothed_inputs;
  j["smoothed_outputs"] = d.smoothed_outputs;
  nlohmann::json outliers = nlohmann::json::array();
  for (const quant::OutlierChannels& o : d.outliers) {
    outliers.push_back({{"name", o.name},
                        {"side", quant::SideName(o.side)},
                        {"scale", o.scale},
                        {"channels_total", o.channels_total},
                        {"channels", o.channels}});
  }
  j["outlier_channels"] = std::move(outliers);
  j["quantized_linears"] = quantized;
  nlohmann::json linears = nlohmann::json::object();
  for (const quant::LinearClip& l : c.linears) {
    linears[l.name] = {{"clip_input", l.clip_input},
                       {"clip_output", l.clip_output},
                       {"input_scale", l.input_scale},
                       {"output_scale", l.output_scale}};
  }
  j["linears"] = std::move(linears);
  return j;
}

}  // namespace

absl::StatusOr<WriterResult> WriteInt8Model(const ExportInputs& in, const SmoothingPlan& plan,
                                            const Decisions& d, const std::string& dir) {
  const bool mllm = in.format == Format::kMllm;
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<WeightReader> reader,
                        WeightReader::Open(in.model_dir, &plan));
  std::set<std::string> quantized;  // every linear with statistics but lm_head
  std::vector<std::string> quantized_order;
  const std::string lm_head = in.config.ModuleName(TensorRole::kLmHead);
  for (const quant::LinearClip& l : d.clips.linears) {
    if (l.name == lm_head) continue;
    quantized.insert(l.name);
    quantized_order.push_back(l.name);
  }

  // mllm's converter takes one file; the plain safetensors layout may be sharded.
  TensorSink out(dir, kInt8ModelBase, mllm ? 0 : in.max_shard_bytes);
  for (const std::string& name : reader->names()) {
    std::vector<int64_t> shape;
    QCAL_ASSIGN_OR_RETURN(std::vector<float> w, reader->Read(name, &shape));
    const size_t dot = name.rfind('.');
    const std::string module = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    if (quantized.count(module) == 0 || (leaf != "weight" && leaf != "bias")) {
      QCAL_RETURN_IF_ERROR(out.Add(Float32Tensor(name, shape, w.data())));
      continue;
    }
    if (leaf == "bias") {
      QuantizedTensor q = QuantizePerTensorMllm(w);
      QCAL_RETURN_IF_ERROR(out.Add(Int8Tensor(name, shape, q.q)));
      QCAL_RETURN_IF_ERROR(out.Add(ScalarF32(name + ".scale", q.scales[0])));
      continue;
    }
    if (shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(name, " is not a matrix"));
    }
    const int64_t rows = shape[0], cols = shape[1];
    if (in.per_channel_weights) {
      QuantizedTensor q = QuantizePerChannelMllm(w, rows, cols);
      QCAL_RETURN_IF_ERROR(out.Add(Int8Tensor(name, shape, q.q)));
      QCAL_RETURN_IF_ERROR(out.Add(Float32Tensor(name + ".scale", {rows}, q.scales.data())));
    } else {
      QuantizedTensor q = QuantizePerTensorMllm(w);
      if (mllm) {
        QCAL_RETURN_IF_ERROR(
            out.Add(Int8Tensor(name, {cols, rows}, Transpose(q.q, rows, cols))));
      } else {
        QCAL_RETURN_IF_ERROR(out.Add(Int8Tensor(name, shape, q.q)));
      }
      QCAL_RETURN_IF_ERROR(out.Add(ScalarF32(name + ".scale", q.scales[0])));
    }
  }
  // A tied model's state dict holds lm_head.weight too (the embedding).
  const std::string lm_weight = lm_head + ".weight";
  bool has_lm = false;
  for (const std::string& n : reader->names()) has_lm = has_lm || n == lm_weight;
  if (!has_lm && in.config.tie_word_embeddings) {
    std::vector<int64_t> shape;
    QCAL_ASSIGN_OR_RETURN(
        std::vector<float> w,
        reader->Read(in.config.ModuleName(TensorRole::kTokenEmbedding) + ".weight", &shape));
    QCAL_RETURN_IF_ERROR(out.Add(Float32Tensor(lm_weight, shape, w.data())));
  }
  for (const quant::LinearClip& l : d.clips.linears) {
    QCAL_RETURN_IF_ERROR(out.Add(ScalarF32(l.name + ".input_scale", l.input_scale)));
    QCAL_RETURN_IF_ERROR(out.Add(ScalarF32(l.name + ".output_scale", l.output_scale)));
    QCAL_RETURN_IF_ERROR(out.Add(ScalarBool(l.name + ".clip_input", l.clip_input)));
    QCAL_RETURN_IF_ERROR(out.Add(ScalarBool(l.name + ".clip_output", l.clip_output)));
  }
  if (!plan.smoothing.fuse) {
    for (const GroupScales& g : plan.applied) {
      for (const std::string& l : g.group.linears) {
        QCAL_RETURN_IF_ERROR(out.Add(Float32Tensor(l + ".migration_scale",
                                    {static_cast<int64_t>(g.scales.size())}, g.scales.data())));
      }
    }
  }
  QCAL_RETURN_IF_ERROR(out.Finish().status());
  QCAL_RETURN_IF_ERROR(WriteFileSynced((fs::path(dir) / kQuantConfigFile).string(),
                                       QuantConfigJson(in, d, quantized_order).dump(2) + "\n"));
  QCAL_RETURN_IF_ERROR(
      CopyFileSynced((fs::path(in.model_dir) / "config.json").string(),
                     (fs::path(dir) / "config.json").string()));
  QCAL_RETURN_IF_ERROR(CopyTokenizerFiles(in.model_dir, dir));

  WriterResult r;
  r.quantized_linears = static_cast<int64_t>(quantized_order.size());
  r.formula_variants = {
      {"weight_quantization",
       in.per_channel_weights
           ? "per output channel: scale = max(absmax_row, 1e-5) / 127 (float32); "
             "q = round_half_even(w / scale)"
           : "per tensor (mllm quantize_weight_per_tensor_absmax): scale = max(absmax, 1e-5) "
             "/ 127 (float32); q = round_half_even(w / scale)"},
      {"bias_quantization", "per tensor, the weight's per-tensor formula"},
      {"weight_layout", mllm ? "int8 weight transposed to [in_features, out_features]"
                             : "int8 weight [out_features, in_features]"},
      {"clip_rule", "clipped iff top_0_1 * t > ori (ori, top_0_1 in the statistic mode)"},
      {"activation_scale",
       "clipped: ori, else top_0_1 (raw values, not divided by 127); a smoothed side: "
       "clipped with the derived absmax max_j(absmax_j / s_j), since the per-tensor "
       "top_0_1 of the unsmoothed tensor says nothing about x / s"},
      {"lm_head", "float32, not quantized; its scales and clip flags are written"}};
  return r;
}

}  // namespace qcal::exporter::internal
