// Exports against independent computations: the test quantizes, smooths and decides
// from the reference weights (read with SafetensorsFile) and the reference activations
// (tests/data/reference/forward) itself, and compares the files WriteExport writes.
#include "common/export/export.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/model_config.h"
#include "common/quant/clip.h"
#include "common/quant/shadow.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::exporter {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kData = QCAL_TEST_DATA_DIR;

std::string ModelDir(const std::string& m) { return kData + "/models/" + m; }

std::string Slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json ReadJson(const std::string& p) { return json::parse(Slurp(p)); }

// A fresh path under the test's temp dir (not created).
std::string OutPath(const std::string& tag) {
  const fs::path p = fs::path(::testing::TempDir()) / ("export_test-" + tag);
  fs::remove_all(p);
  return p.string();
}

// Reference activations of one model: per linear, the rows of its input and output
// over sequences A and B (lm_head's output is the logits).
struct RefActs {
  std::map<std::string, std::vector<float>> input, output;
};

RefActs LoadActs(const ModelConfig& config, const std::string& ref_name) {
  RefActs acts;
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/" + ref_name + ".safetensors");
  EXPECT_TRUE(ref.ok()) << ref.status();
  if (!ref.ok()) return acts;
  for (const LinearModule& m : LinearModules(config)) {
    for (const std::string p : {"A", "B"}) {
      const std::string base = p + ".linear." + m.name;
      auto in = (*ref)->ReadFloat32(base + ".input");
      auto out = (*ref)->ReadFloat32(m.name == "lm_head" ? p + ".logits" : base + ".output");
      EXPECT_TRUE(in.ok() && out.ok()) << base;
      if (!in.ok() || !out.ok()) continue;
      auto& i = acts.input[m.name];
      auto& o = acts.output[m.name];
      i.insert(i.end(), in->begin(), in->end());
      o.insert(o.end(), out->begin(), out->end());
    }
  }
  return acts;
}

stats::StatsSet BuildStats(const ModelConfig& config, const RefActs& acts) {
  stats::StatsSet set;
  for (const LinearModule& m : LinearModules(config)) {
    auto l = set.GetOrCreate(m.name, m.in_features, m.out_features);
    EXPECT_TRUE(l.ok());
    const auto& in = acts.input.at(m.name);
    const auto& out = acts.output.at(m.name);
    EXPECT_TRUE((*l)->input.AddRows(in.data(), in.size() / m.in_features).ok());
    EXPECT_TRUE((*l)->output.AddRows(out.data(), out.size() / m.out_features).ok());
  }
  return set;
}

// Per-channel max |x| over rows, computed from the raw activations.
std::vector<double> RefChannelAbsmax(const std::vector<float>& rows, int64_t channels) {
  std::vector<double> m(channels, 0.0);
  for (size_t i = 0; i < rows.size(); ++i) {
    m[i % channels] = std::max(m[i % channels], std::fabs(static_cast<double>(rows[i])));
  }
  return m;
}

struct Fixture {
  std::string model;
  ModelConfig config;
  RefActs acts;
  stats::StatsSet set;
  std::unique_ptr<SafetensorsFile> weights;  // the original model.safetensors

  std::vector<float> W(const std::string& name) const {
    auto w = weights->ReadFloat32(name);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *w : std::vector<float>();
  }
};

Fixture Load(const std::string& model, const std::string& ref) {
  Fixture f;
  f.model = model;
  auto c = LoadModelConfig(ModelDir(model));
  EXPECT_TRUE(c.ok()) << c.status();
  f.config = *c;
  f.acts = LoadActs(f.config, ref);
  f.set = BuildStats(f.config, f.acts);
  auto w = SafetensorsFile::Open(ModelDir(model) + "/model.safetensors");
  EXPECT_TRUE(w.ok()) << w.status();
  f.weights = std::move(*w);
  return f;
}

ExportInputs Inputs(const Fixture& f, Format format, double threshold) {
  ExportInputs in;
  in.model_dir = ModelDir(f.model);
  in.config = f.config;
  in.stats = f.set;
  in.threshold = threshold;
  in.format = format;
  return in;
}

// The test's own quantizers, written from the formulas in the task.
struct RefQ {
  std::vector<int8_t> q;
  std::vector<float> scale;
};
int8_t Round8(float x) {
  double r = std::nearbyint(static_cast<double>(x));
  return static_cast<int8_t>(std::min(127.0, std::max(-128.0, r)));
}
RefQ MllmRows(const std::vector<float>& w, int64_t rows, int64_t cols) {
  RefQ out;
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(w[r * cols + c]));
    out.scale.push_back((m < 1e-5f ? 1e-5f : m) / 127.0f);
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out.q.push_back(Round8(w[r * cols + c] / out.scale[r]));
  }
  return out;
}
RefQ MllmTensor(const std::vector<float>& w) {
  return MllmRows(w, 1, static_cast<int64_t>(w.size()));
}
RefQ CompressedRows(const std::vector<float>& w, int64_t rows, int64_t cols) {
  RefQ out;
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(w[r * cols + c]));
    out.scale.push_back(std::max(m / 127.5f, FLT_EPSILON));
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out.q.push_back(Round8(w[r * cols + c] / out.scale[r]));
  }
  return out;
}

std::vector<int8_t> I8(const TensorView& v) {
  EXPECT_EQ(v.dtype, DType::kI8) << v.name;
  return std::vector<int8_t>(reinterpret_cast<const int8_t*>(v.data),
                             reinterpret_cast<const int8_t*>(v.data) + v.nbytes);
}
float ScalarOf(const SafetensorsFile& f, const std::string& name,
               std::vector<int64_t> shape = {}) {
  auto v = f.Get(name);
  EXPECT_TRUE(v.ok()) << name;
  if (!v.ok()) return NAN;
  EXPECT_EQ(v->dtype, DType::kF32) << name;
  EXPECT_EQ(v->shape, shape) << name;
  float x;
  std::memcpy(&x, v->data, 4);
  return x;
}
bool BoolOf(const SafetensorsFile& f, const std::string& name) {
  auto v = f.Get(name);
  EXPECT_TRUE(v.ok()) << name;
  if (!v.ok()) return false;
  EXPECT_EQ(v->dtype, DType::kBool) << name;
  EXPECT_TRUE(v->shape.empty()) << name;
  return v->data[0] != 0;
}
uint32_t Bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

const LinearModule& ModuleOf(const ModelConfig& c, const std::string& name) {
  static std::vector<LinearModule> all;
  all = LinearModules(c);
  for (const LinearModule& m : all) {
    if (m.name == name) return m;
  }
  ADD_FAILURE() << name;
  return all[0];
}

// ---- (a) mllm ----

class MllmExportTest : public ::testing::TestWithParam<const char*> {};

TEST_P(MllmExportTest, WeightsScalesAndDecisionsMatchIndependentComputation) {
  const std::string model = GetParam();
  Fixture f = Load(model, model);
  const double t = 8;
  const std::string out = OutPath(std::string("mllm-") + model);
  auto summary = WriteExport(Inputs(f, Format::kMllm, t), out);
  ASSERT_TRUE(summary.ok()) << summary.status();
  auto exported = SafetensorsFile::Open(out + "/model-int8.safetensors");
  ASSERT_TRUE(exported.ok()) << exported.status();
  const SafetensorsFile& e = **exported;

  auto clips = quant::DecideClips(f.set, t, stats::Mode::kAbs);
  ASSERT_TRUE(clips.ok());
  int quantized = 0;
  for (const quant::LinearClip& c : clips->linears) {
    const LinearModule& m = ModuleOf(f.config, c.name);
    // Decisions: exactly quant::DecideClips' (no smoothing).
    EXPECT_EQ(Bits(ScalarOf(e, c.name + ".input_scale")), Bits(c.input_scale)) << c.name;
    EXPECT_EQ(Bits(ScalarOf(e, c.name + ".output_scale")), Bits(c.output_scale)) << c.name;
    EXPECT_EQ(BoolOf(e, c.name + ".clip_input"), c.clip_input) << c.name;
    EXPECT_EQ(BoolOf(e, c.name + ".clip_output"), c.clip_output) << c.name;
    const std::vector<float> w = f.weights->Contains(c.name + ".weight")
                                     ? f.W(c.name + ".weight")
                                     : f.W("model.embed_tokens.weight");  // tied
    auto ew = e.Get(c.name + ".weight");
    ASSERT_TRUE(ew.ok());
    if (c.name == "lm_head") {  // float, unchanged
      EXPECT_EQ(ew->dtype, DType::kF32);
      EXPECT_EQ(*e.ReadFloat32("lm_head.weight"), w);
      EXPECT_FALSE(e.Contains("lm_head.weight.scale"));
      continue;
    }
    ++quantized;
    const RefQ ref = MllmTensor(w);
    const int64_t rows = m.out_features, cols = m.in_features;
    ASSERT_EQ(ew->shape, (std::vector<int64_t>{cols, rows})) << c.name;  // transposed
    const std::vector<int8_t> q = I8(*ew);
    int mismatches = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < cols; ++k) mismatches += q[k * rows + r] != ref.q[r * cols + k];
    }
    EXPECT_EQ(mismatches, 0) << c.name;
    EXPECT_EQ(Bits(ScalarOf(e, c.name + ".weight.scale")), Bits(ref.scale[0])) << c.name;
    if (f.weights->Contains(c.name + ".bias")) {
      const RefQ rb = MllmTensor(f.W(c.name + ".bias"));
      auto eb = e.Get(c.name + ".bias");
      ASSERT_TRUE(eb.ok());
      EXPECT_EQ(eb->shape, (std::vector<int64_t>{rows}));
      EXPECT_EQ(I8(*eb), rb.q) << c.name;
      EXPECT_EQ(Bits(ScalarOf(e, c.name + ".bias.scale")), Bits(rb.scale[0])) << c.name;
    }
  }
  EXPECT_EQ(quantized, 14);
  EXPECT_EQ(summary->quantized_linears, 14);
  if (model == std::string("qwen2-tiny")) {
    EXPECT_TRUE(e.Contains("model.layers.1.self_attn.k_proj.bias.scale"));
  }
  // Every other tensor: float32 and equal to the original (a tied model also gets
  // lm_head.weight, the embedding).
  for (const std::string& name : f.weights->names()) {
    if (name.find("_proj.") != std::string::npos || name == "lm_head.weight") continue;
    auto v = e.Get(name);
    ASSERT_TRUE(v.ok()) << name;
    EXPECT_EQ(v->dtype, DType::kF32);
    EXPECT_EQ(*e.ReadFloat32(name), f.W(name)) << name;
  }
  if (f.config.tie_word_embeddings) {
    EXPECT_EQ(*e.ReadFloat32("lm_head.weight"), f.W("model.embed_tokens.weight"));
  }

  // quant_config.json agrees with shadow.h on the same decisions.
  json qc = ReadJson(out + "/quant_config.json");
  auto shadow = quant::ShadowLayers(*clips, f.config);
  ASSERT_TRUE(shadow.ok());
  EXPECT_EQ(qc["shadow_layers"].get<std::vector<int64_t>>(), *shadow);
  EXPECT_EQ(qc["shadow_layers_string"], quant::FormatLayerSet(*shadow));
  EXPECT_EQ(qc["no_clip_input_name"].get<std::vector<std::string>>(), clips->no_clip_input_name);
  EXPECT_EQ(qc["no_clip_output_name"].get<std::vector<std::string>>(),
            clips->no_clip_output_name);
  EXPECT_EQ(qc["clip_input_num"], clips->clip_input_num);
  EXPECT_EQ(qc["quantized_linears"].size(), 14u);
  EXPECT_EQ(qc["threshold"], t);
  EXPECT_EQ(summary->shadow_layers, *shadow);
  EXPECT_EQ(Slurp(out + "/config.json"), Slurp(ModelDir(model) + "/config.json"));
  EXPECT_EQ(Slurp(out + "/generation_config.json"),
            Slurp(ModelDir(model) + "/generation_config.json"));
}

INSTANTIATE_TEST_SUITE_P(Models, MllmExportTest,
                         ::testing::Values("llama-tiny", "qwen2-tiny", "llama-tiny-tied"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// ---- (b) per-channel safetensors ----

TEST(SafetensorsExportTest, PerChannelScalesPerOutputRow) {
  Fixture f = Load("qwen2-tiny", "qwen2-tiny");
  ExportInputs in = Inputs(f, Format::kSafetensors, 16);
  in.per_channel_weights = true;
  const std::string out = OutPath("per-channel");
  auto summary = WriteExport(in, out);
  ASSERT_TRUE(summary.ok()) << summary.status();
  auto e = SafetensorsFile::Open(out + "/model-int8.safetensors");
  ASSERT_TRUE(e.ok());
  for (const LinearModule& m : LinearModules(f.config)) {
    if (m.name == "lm_head") continue;
    const RefQ ref = MllmRows(f.W(m.name + ".weight"), m.out_features, m.in_features);
    auto w = (*e)->Get(m.name + ".weight");
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->shape, (std::vector<int64_t>{m.out_features, m.in_features}));  // not transposed
    EXPECT_EQ(I8(*w), ref.q) << m.name;
    auto s = (*e)->Get(m.name + ".weight.scale");
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->shape, (std::vector<int64_t>{m.out_features}));
    EXPECT_EQ(*(*e)->ReadFloat32(m.name + ".weight.scale"), ref.scale) << m.name;
  }
}

// ---- (c) smoothing ----

// The test's own scales for a group: act from the raw reference activations, weights
// from the original tensors, in double.
std::vector<double> RefScales(const Fixture& f, const SmoothGroup& g, SmoothingMethod method,
                              double alpha) {
  const std::vector<double> act = RefChannelAbsmax(f.acts.input.at(g.linears[0]), g.channels);
  std::vector<double> w(g.channels, 0.0);
  for (const std::string& l : g.linears) {
    const std::vector<float> wt = f.W(l + ".weight");
    for (size_t i = 0; i < wt.size(); ++i) {
      w[i % g.channels] = std::max(w[i % g.channels], std::fabs(static_cast<double>(wt[i])));
    }
  }
  std::vector<double> s(g.channels);
  for (int64_t j = 0; j < g.channels; ++j) {
    s[j] = method == SmoothingMethod::kLogEq
               ? act[j] / std::log2(2 + act[j])
               : std::pow(act[j], alpha) / std::pow(std::max(w[j], 1e-5), 1 - alpha);
    s[j] = std::max(s[j], 1e-5);
  }
  return s;
}

class SmoothingTest
    : public ::testing::TestWithParam<std::tuple<const char*, SmoothingMethod>> {};

TEST_P(SmoothingTest, ScalesDerivedStatsAndFusedWeights) {
  const std::string model = std::get<0>(GetParam());
  Fixture f = Load(model, model);
  Smoothing sm;
  sm.method = std::get<1>(GetParam());
  sm.alpha = 0.5;
  sm.fuse = true;
  auto plan = PlanSmoothing(f.config, ModelDir(model), f.set, sm);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // 2 layers x (input_layernorm, post_attention_layernorm, up_proj -> down_proj); both
  // models use grouped-query attention, so v_proj -> o_proj is skipped with a reason.
  ASSERT_EQ(plan->applied.size(), 6u);
  int gqa_skips = 0;
  for (const auto& [source, why] : plan->skipped) {
    gqa_skips += source.find("v_proj") != std::string::npos &&
                 why.find("grouped-query") != std::string::npos;
  }
  EXPECT_EQ(gqa_skips, 2);

  for (const GroupScales& g : plan->applied) {
    const std::vector<double> ref = RefScales(f, g.group, sm.method, sm.alpha);
    ASSERT_EQ(g.scales.size(), ref.size());
    for (size_t j = 0; j < ref.size(); ++j) {
      EXPECT_NEAR(g.scales[j], ref[j], 2e-6 * ref[j]) << g.group.source << " " << j;
    }
  }

  // Derived statistics: per-channel min / max divided by s.
  auto derived = DeriveSmoothedStats(f.set, *plan);
  ASSERT_TRUE(derived.ok()) << derived.status();
  int sides = 0;
  for (const GroupScales& g : plan->applied) {
    std::vector<const stats::TensorStats*> orig, got;
    for (const std::string& l : g.group.linears) {
      orig.push_back(&f.set.Find(l)->input);
      got.push_back(&derived->Find(l)->input);
    }
    if (!g.group.source_is_norm) {
      orig.push_back(&f.set.Find(g.group.source)->output);
      got.push_back(&derived->Find(g.group.source)->output);
    }
    for (size_t k = 0; k < orig.size(); ++k) {
      ++sides;
      ASSERT_EQ(got[k]->count(), orig[k]->count());
      for (int64_t c = 0; c < g.group.channels; ++c) {
        EXPECT_EQ(got[k]->min()[c], orig[k]->min()[c] / g.scales[c] + 0.0f);
        EXPECT_EQ(got[k]->max()[c], orig[k]->max()[c] / g.scales[c] + 0.0f);
      }
    }
  }
  EXPECT_EQ(sides, 2 * (3 + 2 + 1 + 1));
  // Sides no group touches are unchanged.
  EXPECT_EQ(derived->Find("model.layers.0.self_attn.o_proj")->input.min(),
            f.set.Find("model.layers.0.self_attn.o_proj")->input.min());

  // The fused float model: norms / s, readers' columns * s, source rows / s.
  const std::string out = OutPath(std::string("fused-") + model);
  ASSERT_TRUE(WriteFusedFloatModel(ModelDir(model), *plan, out).ok());
  auto fused = SafetensorsFile::Open(out + "/model.safetensors");
  ASSERT_TRUE(fused.ok());
  // Expected tensors, built from the original ones and the plan's scales.
  std::map<std::string, std::vector<double>> want;
  for (const std::string& n : f.weights->names()) {
    const std::vector<float> w = f.W(n);
    want[n].assign(w.begin(), w.end());
  }
  for (const GroupScales& g : plan->applied) {
    const int64_t C = g.group.channels;
    for (const std::string& l : g.group.linears) {
      auto& w = want[l + ".weight"];
      for (size_t i = 0; i < w.size(); ++i) w[i] *= g.scales[i % C];
    }
    auto& src = want[g.group.source + ".weight"];
    const size_t cols = src.size() / C;
    for (size_t i = 0; i < src.size(); ++i) src[i] /= g.scales[i / cols];
  }
  for (const auto& [n, w] : want) {
    auto got = (*fused)->ReadFloat32(n);
    ASSERT_TRUE(got.ok()) << n;
    double worst = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      worst = std::max(worst, std::fabs((*got)[i] - w[i]) / std::max(std::fabs(w[i]), 1e-30));
    }
    EXPECT_LT(worst, 3e-7) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, SmoothingTest,
    ::testing::Combine(::testing::Values("llama-tiny", "qwen2-tiny"),
                       ::testing::Values(SmoothingMethod::kSmoothQuant, SmoothingMethod::kLogEq)),
    [](const auto& info) {
      std::string n = std::get<0>(info.param);
      std::replace(n.begin(), n.end(), '-', '_');
      return n + (std::get<1>(info.param) == SmoothingMethod::kLogEq ? "_logeq" : "_sq");
    });

TEST(SmoothingTest, UnfusedWritesMigrationScalesAndScaledWeights) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  ExportInputs in = Inputs(f, Format::kSafetensors, 8);
  in.smoothing.method = SmoothingMethod::kSmoothQuant;
  in.smoothing.alpha = 0.5;
  in.smoothing.fuse = false;
  const std::string out = OutPath("unfused");
  auto summary = WriteExport(in, out);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->smoothed_groups, 6);
  auto e = SafetensorsFile::Open(out + "/model-int8.safetensors");
  ASSERT_TRUE(e.ok());
  auto clips = quant::DecideClips(f.set, 8, stats::Mode::kAbs);
  ASSERT_TRUE(clips.ok());
  for (const SmoothGroup& g : SmoothGroups(f.config)) {
    const std::vector<double> s = RefScales(f, g, SmoothingMethod::kSmoothQuant, 0.5);
    for (const std::string& l : g.linears) {
      auto ms = (*e)->ReadFloat32(l + ".migration_scale", {g.channels});
      ASSERT_TRUE(ms.ok()) << l;
      for (int64_t j = 0; j < g.channels; ++j) EXPECT_NEAR((*ms)[j], s[j], 2e-6 * s[j]);
      // The weight: columns * s (the exported s), per-tensor quantized.
      std::vector<float> w = f.W(l + ".weight");
      for (size_t i = 0; i < w.size(); ++i) w[i] *= (*ms)[i % g.channels];
      const RefQ ref = MllmTensor(w);
      EXPECT_EQ(I8(*(*e)->Get(l + ".weight")), ref.q) << l;
      EXPECT_EQ(Bits(ScalarOf(**e, l + ".weight.scale")), Bits(ref.scale[0])) << l;
      // Input: clipped at the derived absmax of x / s.
      const std::vector<double> act = RefChannelAbsmax(f.acts.input.at(l), g.channels);
      double derived = 0;
      for (int64_t j = 0; j < g.channels; ++j) derived = std::max(derived, act[j] / (*ms)[j]);
      EXPECT_TRUE(BoolOf(**e, l + ".clip_input")) << l;
      EXPECT_NEAR(ScalarOf(**e, l + ".input_scale"), derived, 1e-6 * derived) << l;
    }
    // Unfused: sources untouched (norm weights, up_proj rows) and their outputs keep
    // the statistics' decisions.
    if (g.source_is_norm) {
      EXPECT_EQ(*(*e)->ReadFloat32(g.source + ".weight"), f.W(g.source + ".weight"));
    } else {
      for (const quant::LinearClip& c : clips->linears) {
        if (c.name != g.source) continue;
        EXPECT_EQ(BoolOf(**e, c.name + ".clip_output"), c.clip_output);
        EXPECT_EQ(Bits(ScalarOf(**e, c.name + ".output_scale")), Bits(c.output_scale));
      }
    }
  }
  EXPECT_FALSE((*e)->Contains("model.layers.0.self_attn.o_proj.migration_scale"));
}

TEST(SmoothingTest, GroupsAndReaders) {
  auto c = LoadModelConfig(ModelDir("llama-tiny"));
  ASSERT_TRUE(c.ok());
  std::vector<SmoothGroup> groups = SmoothGroups(*c);
  ASSERT_EQ(groups.size(), 6u);  // GQA: no v_proj -> o_proj
  EXPECT_EQ(groups[0].source, "model.layers.0.input_layernorm");
  EXPECT_EQ(groups[0].linears,
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj",
                                      "model.layers.0.self_attn.k_proj",
                                      "model.layers.0.self_attn.v_proj"}));
  EXPECT_EQ(groups[2].source, "model.layers.0.mlp.up_proj");
  EXPECT_FALSE(groups[2].source_is_norm);
  EXPECT_EQ(groups[2].channels, 160);
  for (const SmoothGroup& g : groups) EXPECT_TRUE(SmoothableGroup(g)) << g.source;
  // Without grouped-query attention v_proj -> o_proj is a group.
  ModelConfig mha = *c;
  mha.num_kv_heads = mha.num_heads;
  EXPECT_EQ(SmoothGroups(mha).size(), 8u);
  EXPECT_EQ(SmoothGroups(mha)[1].source, "model.layers.0.self_attn.v_proj");

  // A hand-made group whose activation has a reader outside it (an MoE router).
  SmoothGroup moe = groups[1];
  moe.readers.push_back("model.layers.0.mlp.gate");
  EXPECT_FALSE(SmoothableGroup(moe));
  SmoothGroup empty = groups[1];
  empty.linears.clear();
  empty.readers.clear();
  EXPECT_FALSE(SmoothableGroup(empty));
}

TEST(SmoothingTest, ScaleFormulasAndParsing) {
  auto s = SmoothQuantScales({4.0f, 0.0f, 1e-12f}, {1.0f, 2.0f, 0.0f}, 0.5);
  ASSERT_TRUE(s.ok());
  EXPECT_FLOAT_EQ((*s)[0], 2.0f);                           // sqrt(4) / sqrt(1)
  EXPECT_FLOAT_EQ((*s)[1], 1e-5f);                          // clamped below
  EXPECT_NEAR((*s)[2], std::sqrt(1e-12) / std::sqrt(1e-5), 1e-9);  // w clamped to 1e-5
  EXPECT_FALSE(SmoothQuantScales({1}, {1, 2}, 0.5).ok());
  EXPECT_FALSE(SmoothQuantScales({1}, {1}, 1.5).ok());
  const std::vector<float> l = LogEqScales({6.0f, 0.0f});
  EXPECT_FLOAT_EQ(l[0], 2.0f);  // 6 / log2(8)
  EXPECT_FLOAT_EQ(l[1], 1e-5f);

  for (const char* t : {"none", "smoothquant", "smoothquant:0.25", "logeq"}) {
    auto p = ParseSmoothing(t);
    ASSERT_TRUE(p.ok()) << t;
    EXPECT_EQ(SmoothingName(*p), t);
  }
  EXPECT_DOUBLE_EQ(ParseSmoothing("smoothquant:0.25")->alpha, 0.25);
  for (const char* t : {"smoothquant:1.5", "smoothquant:-0.1", "smoothquant:x", "awq", ""}) {
    auto p = ParseSmoothing(t);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << t;
  }
  for (Format fm : {Format::kMllm, Format::kSafetensors, Format::kCompressedTensors,
                    Format::kStats}) {
    EXPECT_EQ(*ParseFormat(FormatName(fm)), fm);
  }
  EXPECT_FALSE(ParseFormat("gguf").ok());
}

// ---- (d) compressed-tensors ----

// compressed-tensors' pydantic models (quant_config.py, quant_scheme.py, quant_args.py)
// as a schema: allowed keys, value types and enum values.
void ExpectQuantizationArgs(const json& a, const std::string& strategy) {
  const std::set<std::string> keys = {"num_bits",        "type",      "symmetric",  "group_size",
                                      "strategy",        "block_structure", "dynamic",
                                      "actorder",        "scale_dtype",     "zp_dtype",
                                      "observer",        "observer_kwargs"};
  ASSERT_TRUE(a.is_object());
  for (const auto& [k, v] : a.items()) EXPECT_TRUE(keys.count(k)) << "extra key " << k;
  // Fields only newer releases know are left out (older ones forbid extra keys).
  EXPECT_FALSE(a.contains("scale_dtype"));
  EXPECT_FALSE(a.contains("zp_dtype"));
  EXPECT_TRUE(a["num_bits"].is_number_integer());
  EXPECT_EQ(a["num_bits"], 8);
  const std::set<std::string> types = {"int", "float"};
  EXPECT_TRUE(types.count(a["type"].get<std::string>()));
  EXPECT_EQ(a["type"], "int");
  EXPECT_TRUE(a["symmetric"].is_boolean());
  EXPECT_EQ(a["symmetric"], true);
  EXPECT_TRUE(a["group_size"].is_null() || a["group_size"].is_number_integer());
  const std::set<std::string> strategies = {"tensor", "channel",      "group",    "block",
                                            "token",  "tensor_group", "attn_head"};
  EXPECT_TRUE(strategies.count(a["strategy"].get<std::string>()));
  EXPECT_EQ(a["strategy"], strategy);
  EXPECT_TRUE(a["block_structure"].is_null());
  EXPECT_TRUE(a["dynamic"].is_boolean());
  EXPECT_EQ(a["dynamic"], false);  // static: vLLM reads input_scale
  EXPECT_TRUE(a["actorder"].is_null());
  EXPECT_TRUE(a["observer"].is_null() || a["observer"].is_string());
  EXPECT_TRUE(a["observer_kwargs"].is_object());
}

void ExpectQuantizationConfig(const json& q) {
  const std::set<std::string> keys = {"config_groups", "quant_method", "kv_cache_scheme",
                                      "format", "quantization_status",
                                      "global_compression_ratio", "ignore"};
  ASSERT_TRUE(q.is_object());
  for (const auto& [k, v] : q.items()) EXPECT_TRUE(keys.count(k)) << "extra key " << k;
  EXPECT_EQ(q["quant_method"], "compressed-tensors");
  EXPECT_TRUE(q["kv_cache_scheme"].is_null());
  const std::set<std::string> formats = {
      "dense", "sparse-bitmask", "sparse-24-bitmask", "int-quantized", "float-quantized",
      "naive-quantized", "pack-quantized", "marlin-24", "mixed-precision",
      "nvfp4-pack-quantized"};
  EXPECT_TRUE(formats.count(q["format"].get<std::string>()));
  EXPECT_EQ(q["format"], "int-quantized");
  const std::set<std::string> statuses = {"initialized", "calibration", "frozen", "compressed",
                                          "decompressed"};
  EXPECT_TRUE(statuses.count(q["quantization_status"].get<std::string>()));
  EXPECT_EQ(q["quantization_status"], "compressed");
  EXPECT_TRUE(q["global_compression_ratio"].is_null() ||
              q["global_compression_ratio"].is_number());
  ASSERT_TRUE(q["ignore"].is_array());
  for (const auto& i : q["ignore"]) EXPECT_TRUE(i.is_string());
  ASSERT_TRUE(q["config_groups"].is_object());
  ASSERT_EQ(q["config_groups"].size(), 1u);
  for (const auto& [name, g] : q["config_groups"].items()) {
    const std::set<std::string> scheme_keys = {"targets", "weights", "input_activations",
                                               "output_activations", "format"};
    for (const auto& [k, v] : g.items()) EXPECT_TRUE(scheme_keys.count(k)) << "extra key " << k;
    EXPECT_EQ(g["targets"], json::array({"Linear"}));
    ExpectQuantizationArgs(g["weights"], "channel");
    ExpectQuantizationArgs(g["input_activations"], "tensor");
    EXPECT_TRUE(g["output_activations"].is_null());
    // The scheme's format is a newer field: left out (None) for older releases.
    EXPECT_FALSE(g.contains("format"));
  }
}

// A copy of a model folder with tokenizer files added.
std::string ModelWithTokenizer(const std::string& model) {
  const std::string dir = OutPath(model + "-with-tokenizer");
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(ModelDir(model))) {
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  }
  std::ofstream(dir + "/tokenizer.json") << "{\"model\": {\"type\": \"BPE\"}}";
  std::ofstream(dir + "/tokenizer_config.json") << "{\"bos_token\": \"<s>\"}";
  return dir;
}

class CompressedTensorsTest : public ::testing::TestWithParam<double> {};

TEST_P(CompressedTensorsTest, ConfigWeightsAndScales) {
  const double t = GetParam();
  Fixture f = Load("qwen2-tiny", "qwen2-tiny");
  ExportInputs in = Inputs(f, Format::kCompressedTensors, t);
  in.model_dir = ModelWithTokenizer("qwen2-tiny");
  const std::string out = OutPath("ct-" + std::to_string(static_cast<int64_t>(t)));
  auto summary = WriteExport(in, out);
  ASSERT_TRUE(summary.ok()) << summary.status();

  json config = ReadJson(out + "/config.json");
  json original = ReadJson(ModelDir("qwen2-tiny") + "/config.json");
  ExpectQuantizationConfig(config["quantization_config"]);
  json rest = config;
  rest.erase("quantization_config");
  EXPECT_EQ(rest, original);

  auto clips = quant::DecideClips(f.set, t, stats::Mode::kAbs);
  auto shadow = quant::ShadowLayers(*clips, f.config);
  ASSERT_TRUE(shadow.ok());
  std::vector<std::string> ignore = {"lm_head"};
  for (int64_t l : *shadow) ignore.push_back("model.layers." + std::to_string(l) + ".mlp.down_proj");
  EXPECT_EQ(config["quantization_config"]["ignore"].get<std::vector<std::string>>(), ignore);
  if (t == 1) {
    EXPECT_EQ(ignore.size(), 3u);  // nothing clipped: every layer is shadow
  }
  if (t == 1e7) {
    EXPECT_EQ(ignore.size(), 1u);  // everything clipped
  }

  auto e = SafetensorsFile::Open(out + "/model.safetensors");
  ASSERT_TRUE(e.ok());
  const std::set<std::string> ignored(ignore.begin(), ignore.end());
  int quantized = 0;
  for (const LinearModule& m : LinearModules(f.config)) {
    if (ignored.count(m.name)) {
      auto w = (*e)->Get(m.name + ".weight");
      ASSERT_TRUE(w.ok());
      EXPECT_EQ(w->dtype, DType::kF32);
      EXPECT_EQ(*(*e)->ReadFloat32(m.name + ".weight"), f.W(m.name + ".weight"));
      EXPECT_FALSE((*e)->Contains(m.name + ".weight_scale"));
      EXPECT_FALSE((*e)->Contains(m.name + ".input_scale"));
      continue;
    }
    ++quantized;
    const RefQ ref = CompressedRows(f.W(m.name + ".weight"), m.out_features, m.in_features);
    auto w = (*e)->Get(m.name + ".weight");
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->shape, (std::vector<int64_t>{m.out_features, m.in_features}));
    EXPECT_EQ(I8(*w), ref.q) << m.name;
    auto ws = (*e)->Get(m.name + ".weight_scale");
    ASSERT_TRUE(ws.ok());
    EXPECT_EQ(ws->dtype, DType::kF32);
    EXPECT_EQ(ws->shape, (std::vector<int64_t>{m.out_features, 1}));
    EXPECT_EQ(*(*e)->ReadFloat32(m.name + ".weight_scale"), ref.scale);
    const std::vector<double> act = RefChannelAbsmax(f.acts.input.at(m.name), m.in_features);
    const float absmax = static_cast<float>(*std::max_element(act.begin(), act.end()));
    EXPECT_EQ(Bits(ScalarOf(**e, m.name + ".input_scale", {1})),
              Bits(std::max(absmax / 127.5f, FLT_EPSILON)))
        << m.name;
  }
  EXPECT_EQ(summary->quantized_linears, quantized);
  // Untouched tensors keep their bytes (biases of q/k/v included).
  for (const std::string& n : {std::string("model.embed_tokens.weight"),
                               std::string("model.norm.weight"),
                               std::string("model.layers.0.self_attn.q_proj.bias")}) {
    auto a = f.weights->Get(n);
    auto b = (*e)->Get(n);
    ASSERT_TRUE(a.ok() && b.ok()) << n;
    EXPECT_EQ(a->dtype, b->dtype);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(a->data), a->nbytes),
              std::string(reinterpret_cast<const char*>(b->data), b->nbytes));
  }
  EXPECT_EQ(Slurp(out + "/tokenizer.json"), Slurp(in.model_dir + "/tokenizer.json"));
  EXPECT_EQ(Slurp(out + "/tokenizer_config.json"), Slurp(in.model_dir + "/tokenizer_config.json"));
  EXPECT_FALSE(fs::exists(out + "/tokenizer.model"));
}

INSTANTIATE_TEST_SUITE_P(Thresholds, CompressedTensorsTest, ::testing::Values(1.0, 8.0, 1e7));

TEST(CompressedTensorsTest, FusedSmoothingUsesDerivedInputScale) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  ExportInputs in = Inputs(f, Format::kCompressedTensors, 1e7);
  in.smoothing.method = SmoothingMethod::kLogEq;
  in.smoothing.fuse = true;
  const std::string out = OutPath("ct-fused");
  ASSERT_TRUE(WriteExport(in, out).ok());
  auto e = SafetensorsFile::Open(out + "/model.safetensors");
  ASSERT_TRUE(e.ok());
  for (const SmoothGroup& g : SmoothGroups(f.config)) {
    const std::vector<double> s = RefScales(f, g, SmoothingMethod::kLogEq, 0.5);
    for (const std::string& l : g.linears) {
      const std::vector<double> act = RefChannelAbsmax(f.acts.input.at(l), g.channels);
      double derived = 0;
      for (int64_t j = 0; j < g.channels; ++j) derived = std::max(derived, act[j] / s[j]);
      EXPECT_NEAR(ScalarOf(**e, l + ".input_scale", {1}), derived / 127.5, 1e-5 * derived / 127.5)
          << l;
    }
    if (g.source_is_norm) {  // changed by smoothing: float32, / s
      auto n = (*e)->ReadFloat32(g.source + ".weight");
      const std::vector<float> w = f.W(g.source + ".weight");
      for (int64_t j = 0; j < g.channels; ++j) EXPECT_NEAR((*n)[j], w[j] / s[j], 1e-6 * std::fabs(w[j] / s[j]));
    }
  }
  // Unfused smoothing has no compressed-tensors form.
  in.smoothing.fuse = false;
  EXPECT_EQ(WriteExport(in, OutPath("ct-unfused")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CompressedTensorsTest, ShardedCheckpointHoldsTheSameTensorsAsOneFile) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  ExportInputs in = Inputs(f, Format::kCompressedTensors, 8);
  const std::string one = OutPath("ct-one-file");
  ASSERT_TRUE(WriteExport(in, one).ok());
  in.max_shard_bytes = 200'000;  // llama-tiny's int8 + bf16 tensors: several shards
  const std::string sharded = OutPath("ct-sharded");
  auto summary = WriteExport(in, sharded);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_FALSE(fs::exists(sharded + "/model.safetensors"));
  const auto index = ReadJson(sharded + "/model.safetensors.index.json");
  std::set<std::string> shard_files;
  int64_t total = 0;
  for (const auto& [name, file] : index["weight_map"].items()) shard_files.insert(file.get<std::string>());
  ASSERT_GT(shard_files.size(), 2u);
  const std::string last = *shard_files.rbegin();
  EXPECT_NE(last.find("-of-0000" + std::to_string(shard_files.size()) + ".safetensors"),
            std::string::npos)
      << last;
  for (const std::string& file : shard_files) {
    EXPECT_NE(std::find(summary->files.begin(), summary->files.end(), file), summary->files.end());
    auto shard = SafetensorsFile::Open(sharded + "/" + file);
    ASSERT_TRUE(shard.ok()) << shard.status();
    // At most the limit of data, unless one tensor alone is larger.
    size_t data = 0;
    for (const std::string& name : (*shard)->names()) data += (*shard)->Get(name)->nbytes;
    EXPECT_TRUE(data <= 200'000u || (*shard)->names().size() == 1u) << file << ": " << data;
  }
  // Every tensor of the single file, with the same bytes, is where the index says.
  auto whole = SafetensorsFile::Open(one + "/model.safetensors");
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(index["weight_map"].size(), (*whole)->names().size());
  for (const std::string& name : (*whole)->names()) {
    ASSERT_TRUE(index["weight_map"].contains(name)) << name;
    auto shard = SafetensorsFile::Open(sharded + "/" + index["weight_map"][name].get<std::string>());
    ASSERT_TRUE(shard.ok());
    auto a = (*whole)->Get(name);
    auto b = (*shard)->Get(name);
    ASSERT_TRUE(a.ok() && b.ok()) << name;
    EXPECT_EQ(a->dtype, b->dtype) << name;
    EXPECT_EQ(a->shape, b->shape) << name;
    ASSERT_EQ(a->nbytes, b->nbytes) << name;
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << name;
    total += static_cast<int64_t>(a->nbytes);
  }
  EXPECT_EQ(index["metadata"]["total_size"], total);
  // The same config either way.
  EXPECT_EQ(ReadJson(one + "/config.json"), ReadJson(sharded + "/config.json"));
}

// ---- (e) crash safety, (f) provenance, stats, validation ----

TEST(WriteExportTest, PartialFoldersAndExistingOutput) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  const std::string out = OutPath("crash");
  const std::string stale = out + ".partial-x";
  fs::remove_all(stale);
  fs::create_directories(stale);
  std::ofstream(stale + "/model-int8.safetensors") << "half written";
  auto summary = WriteExport(Inputs(f, Format::kMllm, 8), out);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_FALSE(fs::exists(stale));
  for (const auto& e : fs::directory_iterator(fs::path(out).parent_path())) {
    EXPECT_EQ(e.path().filename().string().find(fs::path(out).filename().string() + ".partial-"),
              std::string::npos)
        << e.path();
  }
  // The summary lists exactly the files, sorted, with their sizes.
  std::vector<std::string> listed;
  int64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    listed.push_back(e.path().filename().string());
    bytes += static_cast<int64_t>(e.file_size());
  }
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(summary->files, listed);
  EXPECT_EQ(summary->files,
            (std::vector<std::string>{"config.json", "generation_config.json",
                                      "model-int8.safetensors", "provenance.json",
                                      "quant_config.json"}));
  EXPECT_EQ(summary->bytes, bytes);
  const std::string before = Slurp(out + "/model-int8.safetensors");
  auto again = WriteExport(Inputs(f, Format::kMllm, 8), out);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Slurp(out + "/model-int8.safetensors"), before);

  // A failing export leaves neither the output nor a partial folder.
  ExportInputs bad = Inputs(f, Format::kMllm, 8);
  bad.model_dir = ModelDir("does-not-exist");
  const std::string out2 = OutPath("crash-fail");
  EXPECT_FALSE(WriteExport(bad, out2).ok());
  EXPECT_FALSE(fs::exists(out2));
  for (const auto& e : fs::directory_iterator(fs::path(out2).parent_path())) {
    EXPECT_EQ(e.path().filename().string().find("export_test-crash-fail.partial-"),
              std::string::npos);
  }
}

TEST(WriteExportTest, ProvenanceCarriesCallerObjectAndAddedFields) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  ExportInputs in = Inputs(f, Format::kSafetensors, 24);
  in.smoothing.method = SmoothingMethod::kSmoothQuant;
  in.smoothing.alpha = 0.75;
  in.smoothing.fuse = true;
  in.mode = stats::Mode::kMllm;
  in.provenance_json = R"({"job": "job-7", "model_sha256": "abc", "spec": {"seq_len": 64}})";
  const std::string out = OutPath("provenance");
  ASSERT_TRUE(WriteExport(in, out).ok());
  json p = ReadJson(out + "/provenance.json");
  EXPECT_EQ(p["job"], "job-7");
  EXPECT_EQ(p["model_sha256"], "abc");
  EXPECT_EQ(p["spec"]["seq_len"], 64);
  EXPECT_EQ(p["statistic_mode"], "mllm");
  EXPECT_EQ(p["threshold"], 24);
  EXPECT_EQ(p["format"], "safetensors");
  EXPECT_EQ(p["smoothing"]["name"], "smoothquant:0.75");
  EXPECT_EQ(p["smoothing"]["alpha"], 0.75);
  EXPECT_EQ(p["smoothing"]["fused"], true);
  EXPECT_EQ(p["smoothing"]["groups_applied"].size(), 6u);
  EXPECT_EQ(p["smoothing"]["groups_skipped"].size(), 2u);
  EXPECT_TRUE(p["formula_variants"].contains("weight_quantization"));
  EXPECT_NE(p["formula_variants"]["clip_rule"].get<std::string>().find("top_0_1 * t > ori"),
            std::string::npos);
  EXPECT_TRUE(p["formula_variants"].contains("activation_scale"));

  in.provenance_json = "[1, 2]";
  EXPECT_EQ(WriteExport(in, OutPath("provenance-bad")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WriteExportTest, StatsFormatWritesStatisticsFiles) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  ExportInputs in = Inputs(f, Format::kStats, 0);
  in.model_res_acc_json = "{\"llama-tiny\": {}}";
  const std::string out = OutPath("stats");
  auto summary = WriteExport(in, out);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->files,
            (std::vector<std::string>{"act_scales.safetensors", "act_scales_distribution.json",
                                      "act_scales_distribution_abs.json", "model_res_acc.json",
                                      "provenance.json"}));
  EXPECT_EQ(Slurp(out + "/model_res_acc.json"), *in.model_res_acc_json);
  auto act = SafetensorsFile::Open(out + "/act_scales.safetensors");
  ASSERT_TRUE(act.ok());
  const std::string q = "model.layers.1.self_attn.q_proj";
  const std::vector<double> ref = RefChannelAbsmax(f.acts.input.at(q), 64);
  auto got = (*act)->ReadFloat32(q);
  ASSERT_TRUE(got.ok());
  for (int j = 0; j < 64; ++j) EXPECT_EQ((*got)[j], static_cast<float>(ref[j]));
  EXPECT_EQ(ReadJson(out + "/provenance.json")["format"], "stats");
}

TEST(WriteExportTest, InvalidCombinations) {
  Fixture f = Load("llama-tiny", "llama-tiny");
  auto code = [&](ExportInputs in) { return WriteExport(in, OutPath("invalid")).status().code(); };
  ExportInputs in = Inputs(f, Format::kMllm, 8);
  in.smoothing.method = SmoothingMethod::kLogEq;
  EXPECT_EQ(code(in), absl::StatusCode::kInvalidArgument);
  in = Inputs(f, Format::kMllm, 8);
  in.per_channel_weights = true;
  EXPECT_EQ(code(in), absl::StatusCode::kInvalidArgument);
  in = Inputs(f, Format::kSafetensors, 0);
  EXPECT_EQ(code(in), absl::StatusCode::kInvalidArgument);
  in = Inputs(f, Format::kSafetensors, 8);
  in.stats = stats::StatsSet();  // statistics that do not cover the model
  EXPECT_EQ(code(in), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(OutPath("invalid")));
}

TEST(Int8Test, FormulasOnEdgeValues) {
  // Half-way cases round to even; an all-zero tensor uses the 1e-5 floor.
  const std::vector<float> w = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -127.0f};
  QuantizedTensor q = QuantizePerTensorMllm(w);
  EXPECT_EQ(q.scales[0], 1.0f);
  EXPECT_EQ(q.q, (std::vector<int8_t>{127, 0, 2, 2, -2, -127}));
  EXPECT_EQ(QuantizePerTensorMllm({0.0f, 0.0f}).scales[0], 1e-5f / 127.0f);
  QuantizedTensor c = QuantizePerChannelCompressed({127.5f, -127.5f, 1.0f, 0.0f}, 2, 2);
  EXPECT_EQ(c.scales, (std::vector<float>{1.0f, 1.0f / 127.5f}));
  EXPECT_EQ(c.q, (std::vector<int8_t>{127, -128, 127, 0}));
  EXPECT_EQ(CompressedTensorsScale(0.0f), FLT_EPSILON);
}

}  // namespace
}  // namespace qcal::exporter
