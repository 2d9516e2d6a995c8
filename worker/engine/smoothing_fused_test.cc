// Fused smoothing (common/export) against the libtorch runtime: the fused float model
// computes Hugging Face's reference logits, and the statistics DeriveSmoothedStats
// predicts without a forward pass are those a fresh calibration of the fused model
// measures.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

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

class FusedSmoothingTest
    : public ::testing::TestWithParam<std::tuple<const char*, SmoothingMethod>> {};

TEST_P(FusedSmoothingTest, SameLogitsAndDerivedStatsMatchFreshCalibration) {
  const std::string model = std::get<0>(GetParam());
  const std::string dir = kData + "/models/" + model;
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/" + model + ".safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const std::vector<std::vector<int32_t>> samples = {Ids(RefTensor(**ref, "A.input_ids")),
                                                     Ids(RefTensor(**ref, "B.input_ids"))};
  auto original = Calibrate(dir, samples);
  ASSERT_TRUE(original.ok()) << original.status();
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());

  exporter::Smoothing sm;
  sm.method = std::get<1>(GetParam());
  sm.alpha = 0.5;
  sm.fuse = true;
  auto plan = exporter::PlanSmoothing(*config, dir, *original, sm);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->applied.size(), 6u);
  // The scales really move the weights (a plan of ones would pass trivially).
  double max_log_s = 0;
  for (const auto& g : plan->applied) {
    for (float s : g.scales) {
      max_log_s = std::max(max_log_s, std::fabs(std::log(static_cast<double>(s))));
    }
  }
  EXPECT_GT(max_log_s, 0.5);

  const fs::path out = fs::path(::testing::TempDir()) /
                       ("fused-" + model + "-" + exporter::SmoothingName(sm));
  fs::remove_all(out);
  ASSERT_TRUE(exporter::WriteFusedFloatModel(dir, *plan, out.string()).ok());

  // 1. The fused float model computes the same logits (HF reference, A and B).
  auto fused = CausalLM::Load(out.string());
  ASSERT_TRUE(fused.ok()) << fused.status();
  double worst_logit = 0;
  for (const std::string p : {"A", "B"}) {
    auto fwd = (*fused)->Forward(RefTensor(**ref, p + ".input_ids"), at::Tensor());
    ASSERT_TRUE(fwd.ok()) << fwd.status();
    at::Tensor want = RefTensor(**ref, p + ".logits");
    at::Tensor diff = (fwd->logits - want).abs();
    EXPECT_TRUE((diff <= kAtol + kRtol * want.abs()).all().item<bool>())
        << model << " " << p << " max |diff| " << diff.max().item<double>();
    worst_logit = std::max(worst_logit, diff.max().item<double>());
  }

  // 2. Derived statistics = a fresh calibration of the fused model.
  auto derived = exporter::DeriveSmoothedStats(*original, *plan);
  ASSERT_TRUE(derived.ok()) << derived.status();
  auto fresh = Calibrate(out.string(), samples);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ASSERT_EQ(fresh->size(), derived->size());
  double worst_rel = 0;
  int changed_sides = 0;
  for (const stats::LinearStats& f : *fresh) {
    const stats::LinearStats* d = derived->Find(f.name);
    const stats::LinearStats* o = original->Find(f.name);
    ASSERT_NE(d, nullptr) << f.name;
    EXPECT_EQ(d->input.count(), f.input.count());
    ExpectClose(d->input.min(), f.input.min(), f.name + " input min", &worst_rel);
    ExpectClose(d->input.max(), f.input.max(), f.name + " input max", &worst_rel);
    ExpectClose(d->output.min(), f.output.min(), f.name + " output min", &worst_rel);
    ExpectClose(d->output.max(), f.output.max(), f.name + " output max", &worst_rel);
    changed_sides += d->input.max() != o->input.max();
    changed_sides += d->output.max() != o->output.max();
  }
  // q, k, v, gate, up, down inputs and up outputs of both layers.
  EXPECT_EQ(changed_sides, 2 * 7);
  std::printf("%-12s %-16s logits max |diff| %.3g; derived vs fresh per-channel min/max "
              "worst relative diff %.3g\n",
              model.c_str(), exporter::SmoothingName(sm).c_str(), worst_logit, worst_rel);
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
