// The calibration engine: statistics of real forward passes against statistics
// computed directly from Hugging Face's reference activations, batch-size and padding
// invariance, and the tensor-op (GPU) statistics path against the fused CPU kernel.
#include "worker/engine/engine.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/token_file.h"

namespace qcal {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;

std::vector<int32_t> RefIds(const SafetensorsFile& ref, const std::string& name) {
  auto v = ref.Get(name);
  EXPECT_TRUE(v.ok());
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < v->numel(); ++i) {
    int64_t x;
    std::memcpy(&x, v->data + 8 * i, 8);
    ids.push_back(static_cast<int32_t>(x));
  }
  return ids;
}

std::unique_ptr<CalibrationEngine> Engine(const std::string& model, int batch,
                                          bool tensor_ops = false, bool invariant = true) {
  EngineOptions o;
  o.batch_invariant = invariant;
  o.batch_size = batch;
  o.threads = 1;
  o.tensor_op_stats = tensor_ops;
  auto e = CalibrationEngine::Load(kData + "/models/" + model, o);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(e).value();
}

// Statistics of sequences A and B equal statistics computed in double from HF's own
// activations of the same sequences.
TEST(EngineTest, StatisticsMatchReferenceActivations) {
  for (const char* model : {"llama-tiny", "qwen2-tiny", "mistral-tiny"}) {
    auto ref = SafetensorsFile::Open(kData + "/reference/forward/" + std::string(model) + ".safetensors");
    ASSERT_TRUE(ref.ok());
    auto engine = Engine(model, 2);
    stats::StatsSet s;
    ASSERT_TRUE(engine->Accumulate({RefIds(**ref, "A.input_ids"), RefIds(**ref, "B.input_ids")}, &s).ok());
    EXPECT_EQ(s.tokens(), 40);
    EXPECT_EQ(s.size(), engine->linears().size());
    double worst = 0;
    for (const auto& lin : s) {
      for (const char* side : {"input", "output"}) {
        const stats::TensorStats& t = std::string(side) == "input" ? lin.input : lin.output;
        ASSERT_EQ(t.count(), 40) << lin.name;
        auto a = (*ref)->ReadFloat32("A.linear." + lin.name + "." + side);
        auto b = (*ref)->ReadFloat32("B.linear." + lin.name + "." + side);
        if (!a.ok() || !b.ok()) continue;  // lm_head output is the logits (trimmed)
        const int64_t C = t.channels();
        std::vector<double> mn(C, INFINITY), mx(C, -INFINITY), sum(C, 0.0);
        for (const auto* v : {&*a, &*b}) {
          for (size_t i = 0; i < v->size(); ++i) {
            const int64_t c = static_cast<int64_t>(i) % C;
            mn[c] = std::min<double>(mn[c], (*v)[i]);
            mx[c] = std::max<double>(mx[c], (*v)[i]);
            sum[c] += (*v)[i];
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          const double tol = 1e-4 + 1e-4 * std::abs(mx[c]);
          ASSERT_NEAR(t.max()[c], mx[c], tol) << model << " " << lin.name << " " << side << " c" << c;
          ASSERT_NEAR(t.min()[c], mn[c], 1e-4 + 1e-4 * std::abs(mn[c]));
          ASSERT_NEAR(t.sum()[c], sum[c], 40 * 1e-4 + 1e-4 * std::abs(sum[c]));
          worst = std::max({worst, std::abs(t.max()[c] - mx[c]), std::abs(t.min()[c] - mn[c])});
        }
      }
    }
    std::printf("%s: per-channel min/max vs reference activations, max |diff| %.3g\n", model, worst);
  }
}

// Random samples of uneven lengths.
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

struct Diff {
  bool counts_equal = true, sketch_totals_equal = true, bitwise = true;
  double max_rel = 0;
};

Diff Compare(const stats::StatsSet& x, const stats::StatsSet& y) {
  Diff d;
  for (size_t i = 0; i < x.size(); ++i) {
    for (int side = 0; side < 2; ++side) {
      const auto& a = side ? x.at(i).output : x.at(i).input;
      const auto& b = side ? y.at(i).output : y.at(i).input;
      d.counts_equal &= a.count() == b.count();
      d.sketch_totals_equal &= a.sketch().total() == b.sketch().total();
      d.bitwise &= a.min() == b.min() && a.max() == b.max() && a.sketch() == b.sketch() &&
                   a.sum() == b.sum();
      for (int64_t c = 0; c < a.channels(); ++c) {
        const double scale = std::max(1e-3f, std::max(std::abs(a.max()[c]), std::abs(a.min()[c])));
        d.max_rel = std::max(d.max_rel, std::abs(a.max()[c] - b.max()[c]) / scale);
        d.max_rel = std::max(d.max_rel, std::abs(a.min()[c] - b.min()[c]) / scale);
      }
    }
  }
  return d;
}

// Padding never enters and the batch size changes no figure: bitwise identical
// min, max, counts, sketch buckets and sums for any batch size. The padded-batch mode
// (one GEMM over the batch) is equal only to float rounding.
TEST(EngineTest, BatchSizeChangesNoFigure) {
  const auto samples = Samples(13, 40, 1);
  int64_t tokens = 0;
  for (const auto& s : samples) tokens += static_cast<int64_t>(s.size());
  stats::StatsSet base;
  ASSERT_TRUE(Engine("llama-tiny", 1)->Accumulate(samples, &base).ok());
  EXPECT_EQ(base.tokens(), tokens);
  EXPECT_EQ(base.at(0).input.count(), tokens);
  for (int batch : {2, 5, 13, 64}) {
    stats::StatsSet s;
    ASSERT_TRUE(Engine("llama-tiny", batch)->Accumulate(samples, &s).ok());
    Diff d = Compare(base, s);
    EXPECT_TRUE(d.counts_equal) << batch;
    EXPECT_TRUE(d.bitwise) << batch;
    stats::StatsSet padded;
    ASSERT_TRUE(Engine("llama-tiny", batch, false, false)->Accumulate(samples, &padded).ok());
    Diff p = Compare(base, padded);
    EXPECT_TRUE(p.counts_equal && p.sketch_totals_equal) << batch;
    EXPECT_LT(p.max_rel, 1e-5) << batch;
    std::printf("batch %2d vs 1: bitwise identical: %s; padded-batch mode: max relative extreme "
                "diff %.3g\n", batch, d.bitwise ? "yes" : "no", p.max_rel);
  }
}

// The tensor-op statistics path (what a GPU runs) gives the fused kernel's figures.
TEST(EngineTest, TensorOpPathEqualsFusedKernel) {
  const auto samples = Samples(6, 30, 2);
  stats::StatsSet fused, ops;
  ASSERT_TRUE(Engine("qwen2-tiny", 4, false)->Accumulate(samples, &fused).ok());
  ASSERT_TRUE(Engine("qwen2-tiny", 4, true)->Accumulate(samples, &ops).ok());
  for (size_t i = 0; i < fused.size(); ++i) {
    for (int side = 0; side < 2; ++side) {
      const auto& a = side ? fused.at(i).output : fused.at(i).input;
      const auto& b = side ? ops.at(i).output : ops.at(i).input;
      ASSERT_EQ(a.count(), b.count());
      ASSERT_EQ(a.min(), b.min()) << fused.at(i).name;
      ASSERT_EQ(a.max(), b.max()) << fused.at(i).name;
      ASSERT_TRUE(a.sketch() == b.sketch()) << fused.at(i).name;
      for (int64_t c = 0; c < a.channels(); ++c) {
        ASSERT_NEAR(a.sum()[c], b.sum()[c], 1e-9 * (1 + std::abs(a.sum()[c])));
        ASSERT_NEAR(a.sumsq()[c], b.sumsq()[c], 1e-9 * (1 + std::abs(a.sumsq()[c])));
      }
    }
  }
}

TEST(EngineTest, BadInputIsRejectedAndLosesNothing) {
  auto engine = Engine("llama-tiny", 4);
  stats::StatsSet s;
  ASSERT_TRUE(engine->Accumulate({{1, 2, 3}}, &s).ok());
  const int64_t before = s.tokens();
  auto empty = engine->Accumulate({{1, 2}, {}}, &s);
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("sample 1"), std::string::npos);
  auto oov = engine->Accumulate({{1, 4096}}, &s);
  EXPECT_EQ(oov.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(oov.message().find("4096"), std::string::npos);
  auto cancelled = engine->Accumulate(Samples(8, 5, 3), &s, [](int64_t) { return false; });
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(s.tokens(), before);  // nothing merged by the failed calls
  EngineOptions bad;
  bad.batch_size = 0;
  EXPECT_EQ(CalibrationEngine::Load(kData + "/models/llama-tiny", bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenFileTest, FormatsAndErrors) {
  const std::string dir = ::testing::TempDir();
  {
    std::ofstream f(dir + "/t.jsonl");
    f << "[1, 2, 3]\n\n[4]\n";
  }
  auto j = ReadTokenFile(dir + "/t.jsonl", "auto", 0);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(*j, (std::vector<std::vector<int32_t>>{{1, 2, 3}, {4}}));
  {
    std::ofstream f(dir + "/t.u16", std::ios::binary);
    const unsigned char b[] = {1, 0, 2, 0, 0, 1, 5, 0, 7, 0};
    f.write(reinterpret_cast<const char*>(b), sizeof(b));
  }
  auto u = ReadTokenFile(dir + "/t.u16", "auto", 2);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(*u, (std::vector<std::vector<int32_t>>{{1, 2}, {256, 5}, {7}}));
  {
    std::ofstream f(dir + "/bad.jsonl");
    f << "[1, 2]\n[1, \"x\"]\n";
  }
  auto bad = ReadTokenFile(dir + "/bad.jsonl", "auto", 0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bad.jsonl:2"), std::string::npos);
  EXPECT_EQ(ReadTokenFile(dir + "/none.jsonl", "auto", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadTokenFile(dir + "/t.txt", "auto", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qcal
