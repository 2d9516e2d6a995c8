// Statistics of a real model's activations (llama-tiny, sequence B of the reference
// forward file) against exact computations from the raw values.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "common/stats/outputs.h"
#include "common/stats/stats_set.h"
#include "common/stats/stats_test_util.h"
#include "common/stats/summary.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::stats {
namespace {

using testing::ExactMoments;
using testing::RelErr;

const char kFile[] = QCAL_TEST_DATA_DIR "/reference/forward/llama-tiny.safetensors";

struct Activation {
  std::string name;  // "<module> input" / "<module> output"
  int64_t rows, channels;
  std::vector<float> values;
};

class RealDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(kFile);
    ASSERT_TRUE(f.ok()) << "reference activations missing: " << f.status();
    auto it = (*f)->metadata().find("linear_modules");
    ASSERT_NE(it, (*f)->metadata().end());
    for (const auto& m : nlohmann::json::parse(it->second)) {
      modules_.push_back(m.get<std::string>());
    }
    ASSERT_FALSE(modules_.empty());
    // Only B.linear.<module>.input / .output are used; a trimmed file may lack some
    // (lm_head.output is dropped as it equals the logits). Modules with both sides go
    // into the StatsSet; every present tensor is checked on its own.
    for (const std::string& m : modules_) {
      std::vector<Activation> sides;
      for (const char* side : {"input", "output"}) {
        const std::string tensor = "B.linear." + m + "." + side;
        if (!(*f)->Contains(tensor)) continue;
        absl::StatusOr<TensorView> view = (*f)->Get(tensor);
        ASSERT_TRUE(view.ok()) << view.status();
        ASSERT_GE(view->shape.size(), 2u);
        const int64_t channels = view->shape.back();
        absl::StatusOr<std::vector<float>> v = (*f)->ReadFloat32(tensor);
        ASSERT_TRUE(v.ok()) << v.status();
        const int64_t rows = static_cast<int64_t>(v->size()) / channels;
        sides.push_back({m + " " + side, rows, channels, *std::move(v)});
        TensorStats stats(channels);
        // Row by row, as a worker fed one token at a time would.
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_TRUE(stats.AddRows(sides.back().values.data() + r * channels, 1).ok());
        }
        stats_.push_back(std::move(stats));
      }
      if (sides.size() == 2) {
        complete_.push_back(m);
        LinearStats* l = *set_.GetOrCreate(m, sides[0].channels, sides[1].channels);
        ASSERT_TRUE(l->input.AddRows(sides[0].values.data(), sides[0].rows).ok());
        ASSERT_TRUE(l->output.AddRows(sides[1].values.data(), sides[1].rows).ok());
      }
      for (Activation& a : sides) acts_.push_back(std::move(a));
    }
    ASSERT_GE(acts_.size(), 20u) << "too few B.linear tensors in " << kFile;
  }

  std::vector<std::string> modules_;   // metadata linear_modules
  std::vector<std::string> complete_;  // modules with both sides in the file
  std::vector<Activation> acts_;
  std::vector<TensorStats> stats_;     // one per acts_ entry
  StatsSet set_;                       // the complete modules
};

TEST_F(RealDataTest, EveryRankMatchesExactSort) {
  double worst = 0;
  std::string worst_where;
  for (size_t i = 0; i < acts_.size(); ++i) {
    const Activation& a = acts_[i];
    const TensorStats& stats = stats_[i];
    ASSERT_EQ(stats.num_values(), a.values.size());
    const bool one_sign = *std::min_element(a.values.begin(), a.values.end()) >= 0 ||
                          *std::max_element(a.values.begin(), a.values.end()) <= 0;
    for (Mode mode : {Mode::kMllm, Mode::kAbs}) {
      const bool abs = mode == Mode::kAbs;
      std::vector<float> sorted = a.values;
      if (abs) {
        for (float& v : sorted) v = std::fabs(v);
      }
      std::sort(sorted.begin(), sorted.end());
      const uint64_t n = sorted.size();
      for (uint64_t r = 0; r < n; ++r) {
        const float got = *ValueAtRank(stats, mode, r);
        const bool exact = r == n - 1 || (r == 0 && (!abs || one_sign));
        if (exact) {
          ASSERT_EQ(got, sorted[r]) << a.name << " rank " << r;
        } else if (std::fabs(sorted[r]) < FLT_MIN) {
          ASSERT_LE(std::fabs(got - sorted[r]), 0x1p-133) << a.name;
        } else {
          const double err = RelErr(got, sorted[r]);
          ASSERT_LE(err, 0.005) << a.name << " " << ModeName(mode) << " rank " << r;
          if (err > worst) {
            worst = err;
            worst_where = a.name + " " + ModeName(mode) + " rank " + std::to_string(r);
          }
        }
      }
      absl::StatusOr<Summary> s = Summarize(stats, mode);
      ASSERT_TRUE(s.ok());
      EXPECT_EQ(s->ori, sorted.back()) << a.name;
      const uint64_t k = static_cast<uint64_t>(static_cast<double>(n) * (1.0 - 0.001)) - 1;
      EXPECT_LE(RelErr(s->top_0_1, sorted[k]), 0.005) << a.name;
      const testing::Moments m = ExactMoments(a.values);
      EXPECT_LE(RelErr(s->mean, m.mean), 1e-9) << a.name;
      EXPECT_LE(RelErr(s->std, m.std), 1e-9) << a.name;
    }
  }
  std::cout << "llama-tiny: " << acts_.size() << " tensors, largest quantile relative error "
            << worst << " at " << worst_where << "\n";
  ::testing::Test::RecordProperty("max_quantile_rel_err", std::to_string(worst));
}

TEST_F(RealDataTest, MllmJsonOriIsExactAndOrderFollowsTheModel) {
  const nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(MllmDistributionJson(set_, Mode::kMllm));
  std::vector<std::string> names;
  for (auto it = j["ori"].begin(); it != j["ori"].end(); ++it) names.push_back(it.key());
  EXPECT_EQ(names, complete_);
  ASSERT_GE(complete_.size(), 10u);
  for (size_t i = 0; i < acts_.size(); ++i) {
    const Activation& a = acts_[i];
    const size_t space = a.name.rfind(' ');
    const std::string module = a.name.substr(0, space), side = a.name.substr(space + 1);
    if (!j["ori"].contains(module)) continue;
    const float want = *std::max_element(a.values.begin(), a.values.end());
    EXPECT_EQ(j["ori"][module][side].get<double>(), static_cast<double>(want)) << a.name;
    const testing::Moments m = ExactMoments(a.values);
    EXPECT_LE(RelErr(j["all_stat"][module][side]["mean"].get<double>(), m.mean), 1e-6);
    EXPECT_LE(RelErr(j["all_stat"][module][side]["std"].get<double>(), m.std), 1e-6);
  }
}

TEST_F(RealDataTest, PerChannelAbsMaxMatchesRawValues) {
  for (size_t i = 0; i < acts_.size(); ++i) {
    const Activation& a = acts_[i];
    const std::vector<float> got = stats_[i].AbsMaxPerChannel();
    for (int64_t c = 0; c < a.channels; ++c) {
      float want = 0;
      for (int64_t r = 0; r < a.rows; ++r) {
        want = std::max(want, std::fabs(a.values[static_cast<size_t>(r * a.channels + c)]));
      }
      ASSERT_EQ(got[static_cast<size_t>(c)], want) << a.name << " channel " << c;
    }
  }
}

}  // namespace
}  // namespace qcal::stats
