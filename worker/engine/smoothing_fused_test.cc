// Fused smoothing (common/export) against the libtorch runtime: the fused float model
// computes Hugging Face's reference logits, and the statistics DeriveSmoothedStats
// predicts without a forward pass are those a fresh calibration of the fused model
// measures.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>

#include "common/export/export.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "worker/engine/engine.h"
#include "worker/model/causal_lm.h"

namespace qcal {
namespace {

namespace fs = std::filesystem;
using exporter::SmoothingMethod;
const std::string kData = QCAL_TEST_DATA_DIR;
// tests/model_reference_test.cc's tolerance against the HF reference.
constexpr double kAtol = 1e-4, kRtol = 1e-4;

at::Tensor RefTensor(const SafetensorsFile& f, const std::string& name) {
  auto v = f.Get(name);
  EXPECT_TRUE(v.ok()) << v.status();
  if (!v.ok()) return at::Tensor();
  at::ScalarType t = v->dtype == DType::kI64 ? at::kLong : at::kFloat;
  return at::from_blob(const_cast<uint8_t*>(v->data), v->shape, at::TensorOptions().dtype(t))
      .clone();
}

std::vector<int32_t> Ids(const at::Tensor& ids) {
  at::Tensor flat = ids.reshape({-1}).to(at::kLong);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < flat.size(0); ++i) out.push_back(static_cast<int32_t>(flat[i].item<int64_t>()));
  return out;
}

absl::StatusOr<stats::StatsSet> Calibrate(const std::string& dir,
                                          const std::vector<std::vector<int32_t>>& samples) {
  EngineOptions o;
  o.threads = 1;
  o.batch_size = 2;
  auto e = CalibrationEngine::Load(dir, o);
  if (!e.ok()) return e.status();
  stats::StatsSet set;
  absl::Status s = (*e)->Accumulate(samples, &set);
  if (!s.ok()) return s;
  return set;
}

// Largest |got - want| over per-channel arrays and whether every entry satisfies
// |got - want| <= atol + rtol |want|.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& what, double* worst_rel) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t c = 0; c < got.size(); ++c) {
    const double d = std::fabs(static_cast<double>(got[c]) - want[c]);
    if (d > 1e-6 + 1e-4 * std::fabs(want[c])) ++bad;
    if (std::fabs(want[c]) > 1e-3) *worst_rel = std::max(*worst_rel, d / std::fabs(want[c]));
  }
  EXPECT_EQ(bad, 0) << what;
}

// Fuses `sm` into the model at `dir` and checks the fused model's logits on `ids`
// against `want_logits` and DeriveSmoothedStats against a fresh calibration.
// `groups`: the groups the plan must apply; `changed_sides`: the statistics sides
// smoothing must change.
void CheckFusedModel(const std::string& dir, const std::string& tag,
                     const std::vector<at::Tensor>& ids, const std::vector<at::Tensor>& want_logits,
                     const exporter::Smoothing& sm, size_t groups, int changed_sides) {
  std::vector<std::vector<int32_t>> samples;
  for (const at::Tensor& t : ids) samples.push_back(Ids(t));
  auto original = Calibrate(dir, samples);
  ASSERT_TRUE(original.ok()) << original.status();
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  auto plan = exporter::PlanSmoothing(*config, dir, *original, sm);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->applied.size(), groups);
  // The scales really move the weights (a plan of ones would pass trivially).
  double max_log_s = 0;
  for (const auto& g : plan->applied) {
    for (float s : g.scales) {
      max_log_s = std::max(max_log_s, std::fabs(std::log(static_cast<double>(s))));
    }
  }
  EXPECT_GT(max_log_s, 0.5);

  const fs::path out = fs::path(::testing::TempDir()) /
                       ("fused-" + tag + "-" + exporter::SmoothingName(sm));
  fs::remove_all(out);
  ASSERT_TRUE(exporter::WriteFusedFloatModel(dir, *plan, out.string()).ok());

  // 1. The fused float model computes the same logits.
  auto fused = CausalLM::Load(out.string());
  ASSERT_TRUE(fused.ok()) << fused.status();
  double worst_logit = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto fwd = (*fused)->Forward(ids[i], at::Tensor());
    ASSERT_TRUE(fwd.ok()) << fwd.status();
    const at::Tensor& want = want_logits[i];
    at::Tensor diff = (fwd->logits - want).abs();
    EXPECT_TRUE((diff <= kAtol + kRtol * want.abs()).all().item<bool>())
        << tag << " sample " << i << " max |diff| " << diff.max().item<double>();
    worst_logit = std::max(worst_logit, diff.max().item<double>());
  }

  // 2. Derived statistics = a fresh calibration of the fused model.
  auto derived = exporter::DeriveSmoothedStats(*original, *plan);
  ASSERT_TRUE(derived.ok()) << derived.status();
  auto fresh = Calibrate(out.string(), samples);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ASSERT_EQ(fresh->size(), derived->size());
  double worst_rel = 0;
  int changed = 0;
  for (const stats::LinearStats& f : *fresh) {
    const stats::LinearStats* d = derived->Find(f.name);
    const stats::LinearStats* o = original->Find(f.name);
    ASSERT_NE(d, nullptr) << f.name;
    EXPECT_EQ(d->input.count(), f.input.count());
    ExpectClose(d->input.min(), f.input.min(), f.name + " input min", &worst_rel);
    ExpectClose(d->input.max(), f.input.max(), f.name + " input max", &worst_rel);
    ExpectClose(d->output.min(), f.output.min(), f.name + " output min", &worst_rel);
    ExpectClose(d->output.max(), f.output.max(), f.name + " output max", &worst_rel);
    changed += d->input.max() != o->input.max();
    changed += d->output.max() != o->output.max();
  }
  EXPECT_EQ(changed, changed_sides);
  std::printf("%-14s %-12s logits max |diff| %.3g; derived vs fresh per-channel min/max "
              "worst relative diff %.3g\n",
              tag.c_str(), exporter::SmoothingName(sm).c_str(), worst_logit, worst_rel);
}

exporter::Smoothing Fused(SmoothingMethod m) {
  exporter::Smoothing sm;
  sm.method = m;
  sm.alpha = 0.5;
  sm.fuse = true;
  return sm;
}

class FusedSmoothingTest
    : public ::testing::TestWithParam<std::tuple<const char*, SmoothingMethod>> {};

// Against Hugging Face's reference logits.
TEST_P(FusedSmoothingTest, SameLogitsAndDerivedStatsMatchFreshCalibration) {
  const std::string model = std::get<0>(GetParam());
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/" + model + ".safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  std::vector<at::Tensor> ids, logits;
  for (const std::string p : {"A", "B"}) {
    ids.push_back(RefTensor(**ref, p + ".input_ids"));
    logits.push_back(RefTensor(**ref, p + ".logits"));
  }
  // 2 layers x (input_layernorm, post_attention_layernorm, up_proj -> down_proj); the
  // changed sides: q, k, v, gate, up, down inputs and up's output per layer.
  CheckFusedModel(kData + "/models/" + model, model, ids, logits, Fused(std::get<1>(GetParam())),
                  6, 2 * 7);
}

// All test models use grouped-query attention; this one is qwen2-tiny made multi-head
// (k/v projections, biases included, stacked with a perturbed copy), so v_proj ->
// o_proj is smoothed too, a linear source with a bias. Reference: the unfused model.
TEST(FusedSmoothingTest, MultiHeadAttentionSmoothsVProjIntoOProj) {
  const std::string src = kData + "/models/qwen2-tiny";
  const fs::path dir = fs::path(::testing::TempDir()) / "qwen2-tiny-mha";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ifstream in(src + "/config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string config = ss.str();
    const std::string from = "\"num_key_value_heads\": 2";
    ASSERT_NE(config.find(from), std::string::npos);
    config.replace(config.find(from), from.size(), "\"num_key_value_heads\": 4");
    std::ofstream(dir / "config.json") << config;
  }
  auto weights = SafetensorsFile::Open(src + "/model.safetensors");
  ASSERT_TRUE(weights.ok());
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : (*weights)->names()) {
    auto v = (*weights)->Get(name);
    auto w = (*weights)->ReadFloat32(name);
    ASSERT_TRUE(v.ok() && w.ok()) << name;
    std::vector<int64_t> shape = v->shape;
    std::vector<float> data = *w;
    if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
      for (float x : *w) data.push_back(0.8f * x + 0.01f);  // two more heads
      shape[0] *= 2;
    }
    tensors.push_back(Float32Tensor(name, shape, data.data()));
  }
  ASSERT_TRUE(WriteSafetensors((dir / "model.safetensors").string(), tensors).ok());

  auto ref = SafetensorsFile::Open(kData + "/reference/forward/qwen2-tiny.safetensors");
  ASSERT_TRUE(ref.ok());
  auto model = CausalLM::Load(dir.string());
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<at::Tensor> ids, logits;
  for (const std::string p : {"A", "B"}) {
    ids.push_back(RefTensor(**ref, p + ".input_ids"));
    auto out = (*model)->Forward(ids.back(), at::Tensor());
    ASSERT_TRUE(out.ok()) << out.status();
    logits.push_back(out->logits);
  }
  // Per layer 4 groups; changed sides: q, k, v, o, gate, up, down inputs and the
  // outputs of v and up.
  for (SmoothingMethod m : {SmoothingMethod::kSmoothQuant, SmoothingMethod::kLogEq}) {
    CheckFusedModel(dir.string(), "qwen2-tiny-mha", ids, logits, Fused(m), 8, 2 * 9);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, FusedSmoothingTest,
    ::testing::Combine(::testing::Values("llama-tiny", "qwen2-tiny"),
                       ::testing::Values(SmoothingMethod::kSmoothQuant, SmoothingMethod::kLogEq)),
    [](const auto& info) {
      std::string n = std::get<0>(info.param);
      std::replace(n.begin(), n.end(), '-', '_');
      return n + (std::get<1>(info.param) == SmoothingMethod::kLogEq ? "_logeq" : "_sq");
    });

}  // namespace
}  // namespace qcal
