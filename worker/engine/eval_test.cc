// Threshold evaluation in the engine: the float baseline's metrics against a direct
// computation from plain forward logits, the simulated W8A8 linear against an
// independent fake quantization of Hugging Face's reference activations (llama-tiny),
// batch invariance and error handling.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "common/quant/clip.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/engine.h"
#include "worker/engine/w8a8.h"
#include "worker/model/causal_lm.h"

namespace qcal {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;

std::unique_ptr<CalibrationEngine> Engine(const std::string& model, int batch,
                                          bool invariant = true) {
  EngineOptions o;
  o.batch_size = batch;
  o.threads = 1;
  o.batch_invariant = invariant;
  auto e = CalibrationEngine::Load(kData + "/models/" + model, o);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(e).value();
}

std::vector<std::vector<int32_t>> Samples(int n, int max_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> s(1 + rng() % max_len);
    for (auto& id : s) id = static_cast<int32_t>(rng() % 4096);
    out.push_back(std::move(s));
  }
  return out;
}

// Direct computation from the logits of a lone plain forward of each sample, in the
// test's own loops: argmax (first maximum) at L-2, NLL in double with a max-shifted
// logsumexp.
quant::EvalMetrics Direct(const CausalLM& model, const std::vector<std::vector<int32_t>>& samples) {
  quant::EvalMetrics m;
  c10::InferenceMode guard;
  for (const auto& s : samples) {
    const int64_t L = static_cast<int64_t>(s.size());
    if (L < 2) continue;
    std::vector<int64_t> ids(s.begin(), s.end());
    auto out = model.Forward(at::tensor(ids, at::kLong).unsqueeze(0), at::Tensor());
    EXPECT_TRUE(out.ok()) << out.status();
    const at::Tensor logits = out->logits[0].contiguous();
    const int64_t V = logits.size(1);
    const float* p = logits.data_ptr<float>();
    const float* last = p + (L - 2) * V;
    const int64_t pred = std::max_element(last, last + V) - last;
    m.hits += pred == s[L - 1];
    m.total += 1;
    for (int64_t t = 0; t + 1 < L; ++t) {
      const float* row = p + t * V;
      const double mx = *std::max_element(row, row + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
      m.nll_sum += mx + std::log(sum) - row[s[t + 1]];
      m.predictions += 1;
    }
  }
  return m;
}

TEST(EvalTest, FloatBaselineEqualsDirectComputation) {
  auto samples = Samples(11, 40, 5);
  samples.push_back({7});      // one token: scores nothing
  samples.push_back({7, 9});   // two tokens: one prediction
  int64_t scored = 0;
  for (const auto& s : samples) scored += s.size() >= 2;
  // The engine first: it sets the compute threads (1) the direct run then uses too, so
  // both runs compute the same logits.
  auto engine3 = Engine("llama-tiny", 3);
  auto model = CausalLM::Load(kData + "/models/llama-tiny");
  ASSERT_TRUE(model.ok());
  const quant::EvalMetrics want = Direct(**model, samples);
  quant::EvalMetrics got;
  ASSERT_TRUE(engine3->Evaluate(samples, EvalVariant::Float(), &got).ok());
  EXPECT_EQ(got.hits, want.hits);
  EXPECT_EQ(got.total, want.total);
  EXPECT_EQ(got.total, scored);
  EXPECT_EQ(got.predictions, want.predictions);
  EXPECT_NEAR(got.nll_sum, want.nll_sum, 1e-11 * want.nll_sum);
  std::printf("llama-tiny float: res %d/%d, perplexity %.6f (direct %.6f), nll diff %.3g\n",
              static_cast<int>(got.hits), static_cast<int>(got.total), got.perplexity(),
              want.perplexity(), got.nll_sum - want.nll_sum);
  // Batch size changes no figure; partials over disjoint samples merge.
  for (int batch : {1, 5, 13}) {
    quant::EvalMetrics b;
    ASSERT_TRUE(Engine("llama-tiny", batch)->Evaluate(samples, EvalVariant::Float(), &b).ok());
    EXPECT_EQ(b.hits, got.hits);
    EXPECT_EQ(b.nll_sum, got.nll_sum) << batch;  // bitwise
  }
  quant::EvalMetrics parts;
  auto engine = Engine("llama-tiny", 4);
  const std::vector<std::vector<int32_t>> a(samples.begin(), samples.begin() + 6),
      b(samples.begin() + 6, samples.end());
  ASSERT_TRUE(engine->Evaluate(a, EvalVariant::Float(), &parts).ok());
  ASSERT_TRUE(engine->Evaluate(b, EvalVariant::Float(), &parts).ok());
  EXPECT_EQ(parts.hits, got.hits);
  EXPECT_EQ(parts.predictions, got.predictions);
  EXPECT_NEAR(parts.nll_sum, got.nll_sum, 1e-12 * got.nll_sum);
  // The padded-batch mode agrees to float rounding.
  quant::EvalMetrics padded;
  ASSERT_TRUE(Engine("llama-tiny", 5, false)->Evaluate(samples, EvalVariant::Float(), &padded).ok());
  EXPECT_EQ(padded.predictions, got.predictions);
  EXPECT_NEAR(padded.nll_sum, got.nll_sum, 1e-5 * got.nll_sum);
}

// ---- Independent fake quantization (the test's own arithmetic) ----

float Step127(float scale) { return std::max(scale, 1e-5f) / 127.0f; }
float InputStep5(float scale) {
  const float s = Step127(scale);
  return std::nearbyint(s * 100000.0f) / 100000.0f;
}
std::vector<float> FakeQuant(const std::vector<float>& v, float step, bool clamp) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    float q = std::nearbyint(v[i] / step);
    if (clamp) q = std::min(127.0f, std::max(-128.0f, q));
    out[i] = q * step;
  }
  return out;
}
std::vector<float> PerTensor(const std::vector<float>& w) {
  float absmax = 0;
  for (float x : w) absmax = std::max(absmax, std::fabs(x));
  return FakeQuant(w, Step127(absmax), false);
}
std::vector<float> ToVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
at::Tensor FromVector(const std::vector<float>& v, std::vector<int64_t> shape) {
  return at::from_blob(const_cast<float*>(v.data()), shape, at::kFloat).clone();
}

TEST(EvalTest, SimulatedLinearMatchesIndependentFakeQuantOfReferenceActivations) {
  auto model = CausalLM::Load(kData + "/models/llama-tiny");
  ASSERT_TRUE(model.ok());
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/llama-tiny.safetensors");
  ASSERT_TRUE(ref.ok());
  auto weights_file = SafetensorsFile::Open(kData + "/models/llama-tiny/model.safetensors");
  ASSERT_TRUE(weights_file.ok());
  auto weights = W8A8Weights::Create(**model);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const std::vector<LinearModule>& linears = (*model)->linears();
  // Scales: a fraction of each tensor's absmax, so clamping bites when clipped and
  // values beyond int8 survive when not.
  struct Variant {
    bool clip_in, clip_out;
    float in_frac, out_frac;
  };
  const std::vector<Variant> variants = {
      {true, true, 1.0f, 1.0f}, {false, false, 0.4f, 0.3f}, {true, false, 0.5f, 0.6f},
      {false, true, 0.7f, 0.5f}};
  c10::InferenceMode guard;
  double worst_apply = 0;
  int64_t checked = 0, boundary = 0;
  for (const Variant& var : variants) {
    std::vector<quant::LinearClip> clips;
    std::map<std::string, std::pair<float, float>> absmax;  // input, output
    for (const LinearModule& l : linears) {
      auto in = (*ref)->ReadFloat32("B.linear." + l.name + ".input");
      auto out = (*ref)->ReadFloat32(l.name == "lm_head" ? "B.logits"
                                                          : "B.linear." + l.name + ".output");
      ASSERT_TRUE(in.ok() && out.ok()) << l.name;
      float ai = 0, ao = 0;
      for (float x : *in) ai = std::max(ai, std::fabs(x));
      for (float x : *out) ao = std::max(ao, std::fabs(x));
      absmax[l.name] = {ai, ao};
      clips.push_back({l.name, var.clip_in, var.clip_out, ai * var.in_frac, ao * var.out_frac});
    }
    auto sim = W8A8Simulation::Create(**model, weights->get(), clips);
    ASSERT_TRUE(sim.ok()) << sim.status();
    for (size_t i = 0; i < linears.size(); ++i) {
      const LinearModule& l = linears[i];
      const int index = static_cast<int>(i);
      auto x = (*ref)->ReadFloat32("B.linear." + l.name + ".input");
      ASSERT_TRUE(x.ok());
      const int64_t rows = static_cast<int64_t>(x->size()) / l.in_features;
      const at::Tensor xt = FromVector(*x, {1, rows, l.in_features});
      const at::Tensor w = *(*model)->LinearWeight(index);
      const at::Tensor b = *(*model)->LinearBias(index);
      if (l.role == TensorRole::kLmHead) {
        EXPECT_FALSE((*sim)->Apply(index, xt, w, b).defined());  // stays float
        EXPECT_FALSE((*weights)->weight(index).defined());
        continue;
      }
      // Weights: per-tensor fake quant of the file's weights, bitwise.
      auto wf = (*weights_file)->ReadFloat32(l.name + ".weight");
      ASSERT_TRUE(wf.ok());
      const std::vector<float> wq = PerTensor(*wf);
      ASSERT_EQ(ToVector((*weights)->weight(index)), wq) << l.name;
      EXPECT_FALSE((*weights)->bias(index).defined());  // llama: no biases
      // Input: 5-decimal step, clamp only when clipped, bitwise.
      const float in_step = InputStep5(clips[i].input_scale);
      const float out_step = Step127(clips[i].output_scale);
      ASSERT_EQ((*sim)->input_step(index), in_step) << l.name;
      ASSERT_EQ((*sim)->output_step(index), out_step) << l.name;
      const std::vector<float> xq = FakeQuant(*x, in_step, var.clip_in);
      ASSERT_EQ(ToVector((*sim)->QuantizeInput(index, xt)), xq) << l.name;
      // y = xq Wq^T in double, then the output fake quant.
      std::vector<double> yd(rows * l.out_features);
      std::vector<float> yf(yd.size());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = 0; o < l.out_features; ++o) {
          double acc = 0;
          for (int64_t k = 0; k < l.in_features; ++k) {
            acc += static_cast<double>(xq[r * l.in_features + k]) * wq[o * l.in_features + k];
          }
          yd[r * l.out_features + o] = acc;
          yf[r * l.out_features + o] = static_cast<float>(acc);
        }
      }
      // The output stage alone on the same y: bitwise.
      ASSERT_EQ(ToVector((*sim)->QuantizeOutput(index, FromVector(yf, {1, rows, l.out_features}))),
                FakeQuant(yf, out_step, var.clip_out))
          << l.name;
      // The whole linear: equal, except where y / step sits on a rounding boundary
      // within the GEMM's float rounding (then one step apart is allowed).
      const std::vector<float> got = ToVector((*sim)->Apply(index, xt, w, b));
      const std::vector<float> want = FakeQuant(yf, out_step, var.clip_out);
      ASSERT_EQ(got.size(), want.size());
      double worst = 0;
      for (size_t k = 0; k < got.size(); ++k) {
        const double frac = std::fabs(yd[k] / out_step - std::floor(yd[k] / out_step) - 0.5);
        const double d = std::fabs(static_cast<double>(got[k]) - want[k]);
        if (frac < 1e-3 && d > 0) {
          ++boundary;
          EXPECT_LE(d, out_step * 1.0001) << l.name;
          continue;
        }
        worst = std::max(worst, d);
        ++checked;
      }
      EXPECT_LE(worst, 1e-6) << l.name;
      worst_apply = std::max(worst_apply, worst);
      std::printf("  %-34s clip %d/%d  in step %.5f out step %.6g  max |diff| %.3g\n",
                  l.name.c_str(), var.clip_in, var.clip_out, in_step, out_step, worst);
    }
  }
  std::printf("simulated linears vs independent fake quant: %lld values, max |diff| %.3g, "
              "%lld on a rounding boundary one step apart\n",
              static_cast<long long>(checked), worst_apply, static_cast<long long>(boundary));
}

TEST(EvalTest, ForwardThroughTheSimulationQuantizesEveryDecoderLinear) {
  auto model = CausalLM::Load(kData + "/models/llama-tiny");
  ASSERT_TRUE(model.ok());
  auto engine = Engine("llama-tiny", 2);
  stats::StatsSet stats;
  const auto calib = Samples(6, 30, 9);
  ASSERT_TRUE(engine->Accumulate(calib, &stats).ok());
  auto clips = quant::DecideClips(stats, 8);
  ASSERT_TRUE(clips.ok());
  auto weights = W8A8Weights::Create(**model);
  ASSERT_TRUE(weights.ok());
  auto sim = W8A8Simulation::Create(**model, weights->get(), clips->linears);
  ASSERT_TRUE(sim.ok()) << sim.status();
  struct Capture : LinearObserver {
    absl::Status OnLinear(int index, const at::Tensor& in, const at::Tensor& out) override {
      outputs[index] = out.clone();
      inputs[index] = in.clone();
      return absl::OkStatus();
    }
    std::map<int, at::Tensor> inputs, outputs;
  } capture;
  c10::InferenceMode guard;
  const at::Tensor ids = at::tensor(std::vector<int64_t>{5, 17, 300, 2, 99, 1000}, at::kLong).unsqueeze(0);
  auto plain = (*model)->Forward(ids, at::Tensor());
  auto out = (*model)->Forward(ids, at::Tensor(), &capture, false, sim->get());
  ASSERT_TRUE(plain.ok() && out.ok());
  const auto& linears = (*model)->linears();
  for (size_t i = 0; i < linears.size(); ++i) {
    const at::Tensor y = capture.outputs[static_cast<int>(i)];
    if (linears[i].role == TensorRole::kLmHead) {
      EXPECT_TRUE(at::equal(y, out->logits));
      continue;
    }
    // Every output is a multiple of the output step (clamped when clipped).
    const double step = (*sim)->output_step(static_cast<int>(i));
    const at::Tensor k = (y.to(at::kDouble) / step);
    EXPECT_LT((k - k.round()).abs().max().item<double>(), 1e-3) << linears[i].name;
    if (clips->linears[i].clip_output) {
      EXPECT_LE(k.abs().max().item<double>(), 128.001) << linears[i].name;
    }
  }
  EXPECT_FALSE(at::equal(plain->logits, out->logits));
  EXPECT_LT((plain->logits - out->logits).abs().max().item<double>(), 1.0);
}

TEST(EvalTest, W8A8EvaluationIsBatchInvariantAndRejectsBadVariants) {
  const auto calib = Samples(8, 30, 11);
  const auto eval = Samples(9, 35, 12);
  auto engine = Engine("llama-tiny", 4);
  stats::StatsSet stats;
  ASSERT_TRUE(engine->Accumulate(calib, &stats).ok());
  quant::EvalMetrics f;
  ASSERT_TRUE(engine->Evaluate(eval, EvalVariant::Float(), &f).ok());
  for (double t : {1.0, 8.0, 10000000.0}) {
    auto clips = quant::DecideClips(stats, t);
    ASSERT_TRUE(clips.ok());
    quant::EvalMetrics a, b;
    ASSERT_TRUE(engine->Evaluate(eval, EvalVariant::W8A8(clips->linears), &a).ok());
    ASSERT_TRUE(Engine("llama-tiny", 1)->Evaluate(eval, EvalVariant::W8A8(clips->linears), &b).ok());
    EXPECT_EQ(a.hits, b.hits);
    EXPECT_EQ(a.nll_sum, b.nll_sum) << t;  // bitwise
    EXPECT_NE(a.nll_sum, f.nll_sum) << t;  // the simulation changes the model
    std::printf("llama-tiny t=%g: ppl %.4f (float %.4f)\n", t, a.perplexity(), f.perplexity());
  }
  auto clips = quant::DecideClips(stats, 8);
  ASSERT_TRUE(clips.ok());
  quant::EvalMetrics m;
  std::vector<quant::LinearClip> missing(clips->linears.begin() + 1, clips->linears.end());
  absl::Status s = engine->Evaluate(eval, EvalVariant::W8A8(missing), &m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(clips->linears[0].name), std::string::npos) << s;
  std::vector<quant::LinearClip> unknown = clips->linears;
  unknown.push_back({"model.layers.9.mlp.up_proj", true, true, 1, 1});
  EXPECT_EQ(engine->Evaluate(eval, EvalVariant::W8A8(unknown), &m).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<quant::LinearClip> zero = clips->linears;
  zero[0].input_scale = 1e-5f;
  s = engine->Evaluate(eval, EvalVariant::W8A8(zero), &m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("zero quantization step"), std::string::npos) << s;
  EXPECT_EQ(engine->Evaluate({{1, 2}, {}}, EvalVariant::Float(), &m).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Evaluate(eval, EvalVariant::Float(), &m, [](int64_t) { return false; }).code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(m.total, 0);  // untouched by every failed call
  EXPECT_EQ(m.nll_sum, 0);
}

}  // namespace
}  // namespace qcal
