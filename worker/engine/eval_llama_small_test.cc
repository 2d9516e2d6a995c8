// End to end on a trained model (llama-small): calibrate on calib-corpus samples,
// decide clips at several thresholds, evaluate the float model and each W8A8 variant
// on eval-corpus samples, and print mllm's res and perplexity per threshold.
#include <cmath>
#include <cstdio>

#include "common/quant/clip.h"
#include "common/quant/report.h"
#include "gtest/gtest.h"
#include "worker/engine/engine.h"
#include "worker/text/sampler.h"

namespace qcal {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;
const std::string kModel = kData + "/models/llama-small";

std::vector<std::vector<int32_t>> Draw(const std::string& corpus, int64_t n, int64_t len) {
  text::SamplingOptions o;
  o.num_samples = n;
  o.seq_len = len;
  o.mode = text::SamplingMode::kDocument;
  o.order = text::SamplingOrder::kShuffled;
  o.seed = 42;
  auto s = text::OpenCorpusSampler(kModel, corpus, o);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return {};
  auto samples = s->sampler->Samples(0, n);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? *samples : std::vector<std::vector<int32_t>>{};
}

TEST(EvalLlamaSmallTest, ThresholdSweep) {
  EngineOptions o;
  o.batch_size = 8;
  auto engine = CalibrationEngine::Load(kModel, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const auto calib = Draw(kData + "/corpus/calib.jsonl.zst", 32, 256);
  const auto eval = Draw(kData + "/corpus/eval.jsonl.zst", 64, 256);
  ASSERT_EQ(calib.size(), 32u);
  ASSERT_EQ(eval.size(), 64u);
  stats::StatsSet stats;
  ASSERT_TRUE((*engine)->Accumulate(calib, &stats).ok());
  auto config = LoadModelConfig(kModel);
  ASSERT_TRUE(config.ok());

  quant::EvalMetrics f;
  ASSERT_TRUE((*engine)->Evaluate(eval, EvalVariant::Float(), &f).ok());
  std::printf("llama-small: calib %zu samples (%lld tokens), eval %zu samples, %lld predictions\n",
              calib.size(), static_cast<long long>(stats.tokens()), eval.size(),
              static_cast<long long>(f.predictions));
  std::printf("%-10s %-4s %8s %10s %9s  %-20s %s\n", "threshold", "mode", "res", "perplexity",
              "proxy dB", "shadow layers", "no_clip in/out");
  std::printf("%-10s %-4s %8.4f %10.3f\n", "float", "", f.accuracy(), f.perplexity());
  EXPECT_GT(f.perplexity(), 10);
  EXPECT_LT(f.perplexity(), 200);

  for (stats::Mode mode : {stats::Mode::kAbs, stats::Mode::kMllm}) {
    const std::vector<double> thresholds =
        mode == stats::Mode::kAbs ? std::vector<double>{1, 4, 8, 10000000}
                                  : std::vector<double>{1, 4, 10000000};
    auto report = quant::AnalyzeThresholds(stats, *config, "llama-small", mode, thresholds);
    ASSERT_TRUE(report.ok()) << report.status();
    report->float_metrics = f;
    for (quant::ThresholdReport& t : report->thresholds) {
      quant::EvalMetrics m;
      ASSERT_TRUE((*engine)->Evaluate(eval, EvalVariant::W8A8(t.clips.linears), &m).ok());
      t.metrics = m;
      std::printf("%-10s %-4s %8.4f %10.3f %9.2f  %-20s %lld/%lld\n",
                  quant::ThresholdKey(t.clips.threshold).c_str(), stats::ModeName(mode),
                  m.accuracy(), m.perplexity(), t.proxy.mean_sqnr_db,
                  quant::FormatLayerSet(t.shadow_layers).c_str(),
                  static_cast<long long>(t.clips.no_clip_input_num),
                  static_cast<long long>(t.clips.no_clip_output_num));
    }
    // Nothing clipped (t = 1: fine scales, outliers kept) stays close to float.
    const quant::EvalMetrics& none = *report->thresholds.front().metrics;
    EXPECT_LT(std::fabs(none.perplexity() / f.perplexity() - 1), 0.05);
    EXPECT_EQ(report->thresholds.front().clips.clip_input_num, 0);
    // Everything clipped is plain per-tensor W8A8; worse than nothing clipped.
    const quant::EvalMetrics& all = *report->thresholds.back().metrics;
    EXPECT_GE(all.perplexity(), none.perplexity() * 0.99);
    EXPECT_TRUE(report->thresholds.back().shadow_layers.empty());
    ASSERT_TRUE(quant::RecommendThreshold({quant::BudgetMetric::kPerplexity, 0.02}, &*report).ok());
    std::printf("recommendation (%s, perplexity +2 %%): %s\n", stats::ModeName(mode),
                report->recommendation->reason.c_str());
    auto mllm = quant::ModelResAccJson(*report);
    ASSERT_TRUE(mllm.ok());
  }
}

}  // namespace
}  // namespace qcal
