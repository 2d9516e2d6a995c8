// Test-only: real activations of the reference forward files (Hugging Face
// transformers' own, tests/data/reference/forward) as raw values and as a StatsSet,
// plus independent exact computations from the raw values. Header-only.
#ifndef QCAL_COMMON_QUANT_QUANT_TEST_UTIL_H_
#define QCAL_COMMON_QUANT_QUANT_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "common/stats/stats_set.h"
#include "common/stats/summary.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::quant::testing {

struct RawTensor {
  int64_t rows = 0, channels = 0;
  std::vector<float> values;
};

struct RawLinear {
  std::string name;
  RawTensor input, output;
};

struct ReferenceActivations {
  std::vector<RawLinear> linears;  // forward order (metadata linear_modules)
  stats::StatsSet set;             // the same, as statistics
};

// Sequence B's linear inputs and outputs of `model`'s reference file. lm_head's output
// (trimmed from the file) is B.logits, which equals it; a linear with a side missing
// otherwise is left out. Rows are added one at a time, as a worker adds tokens.
inline void LoadReference(const std::string& model, ReferenceActivations* out) {
  const std::string path =
      std::string(QCAL_TEST_DATA_DIR) + "/reference/forward/" + model + ".safetensors";
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto it = (*f)->metadata().find("linear_modules");
  ASSERT_NE(it, (*f)->metadata().end());
  for (const auto& m : nlohmann::json::parse(it->second)) {
    RawLinear l;
    l.name = m.get<std::string>();
    bool complete = true;
    for (RawTensor* t : {&l.input, &l.output}) {
      std::string name = "B.linear." + l.name + (t == &l.input ? ".input" : ".output");
      if (!(*f)->Contains(name) && l.name == "lm_head" && t == &l.output) name = "B.logits";
      if (!(*f)->Contains(name)) {
        complete = false;
        break;
      }
      absl::StatusOr<TensorView> view = (*f)->Get(name);
      ASSERT_TRUE(view.ok()) << view.status();
      t->channels = view->shape.back();
      absl::StatusOr<std::vector<float>> v = (*f)->ReadFloat32(name);
      ASSERT_TRUE(v.ok()) << v.status();
      t->values = *std::move(v);
      t->rows = static_cast<int64_t>(t->values.size()) / t->channels;
    }
    if (!complete) continue;
    absl::StatusOr<stats::LinearStats*> s =
        out->set.GetOrCreate(l.name, l.input.channels, l.output.channels);
    ASSERT_TRUE(s.ok()) << s.status();
    for (int64_t r = 0; r < l.input.rows; ++r) {
      ASSERT_TRUE((*s)->input.AddRows(l.input.values.data() + r * l.input.channels, 1).ok());
    }
    for (int64_t r = 0; r < l.output.rows; ++r) {
      ASSERT_TRUE((*s)->output.AddRows(l.output.values.data() + r * l.output.channels, 1).ok());
    }
    out->linears.push_back(std::move(l));
  }
  ASSERT_GE(out->linears.size(), 10u) << path;
}

// ori and top_0_1 from the raw values, as numpy would: sort (|x| for kAbs) and take
// rank int(N * (1 - 0.001)) - 1 and N - 1.
struct ExactScales {
  float ori, top_0_1;
};
inline ExactScales ExactOriTop(const std::vector<float>& values, stats::Mode mode) {
  std::vector<float> v = values;
  if (mode == stats::Mode::kAbs) {
    for (float& x : v) x = std::fabs(x);
  }
  std::sort(v.begin(), v.end());
  const int64_t n = static_cast<int64_t>(v.size());
  int64_t k = static_cast<int64_t>(static_cast<double>(n) * (1.0 - 0.001)) - 1;
  if (k < 0) k += n;
  return {v[n - 1], v[k]};
}

}  // namespace qcal::quant::testing

#endif  // QCAL_COMMON_QUANT_QUANT_TEST_UTIL_H_
