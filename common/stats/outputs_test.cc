#include "common/stats/outputs.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "common/stats/stats_test_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::stats {
namespace {

using Json = nlohmann::ordered_json;
using testing::Dist;
using testing::ExactMoments;
using testing::ExactRank;
using testing::Generate;
using testing::RelErr;

// Raw data of one linear, kept to compute the expected values independently.
struct Raw {
  std::string name;
  int64_t in, out, rows;
  std::vector<float> x, y;
};

class OutputsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    raws_ = {{"model.layers.0.self_attn.q_proj", 48, 48, 300, {}, {}},
             {"model.layers.0.mlp.down_proj", 96, 48, 300, {}, {}},
             {"lm_head", 48, 200, 120, {}, {}}};
    uint32_t seed = 10;
    for (Raw& r : raws_) {
      r.x = Generate(Dist::kLlmLike, r.rows, r.in, seed++);
      r.y = Generate(Dist::kStudentT3, r.rows, r.out, seed++);
      LinearStats* l = *set_.GetOrCreate(r.name, r.in, r.out);
      ASSERT_TRUE(l->input.AddRows(r.x.data(), r.rows).ok());
      ASSERT_TRUE(l->output.AddRows(r.y.data(), r.rows).ok());
    }
    // Created but never run (an MoE expert without tokens): left out of every file.
    ASSERT_TRUE(set_.GetOrCreate("model.layers.0.block_sparse_moe.experts.7.w1", 48, 96).ok());
    dir_ = ::testing::TempDir() + "/outputs_test_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<Raw> raws_;
  StatsSet set_;
  std::string dir_;
};

std::vector<std::string> Keys(const Json& j) {
  std::vector<std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it) out.push_back(it.key());
  return out;
}

// np.partition(a, k)[k] with mllm's k, on signed or absolute values.
float MllmReference(const std::vector<float>& v, double threshold, bool abs) {
  const double n = static_cast<double>(v.size());
  int64_t k = static_cast<int64_t>(n * (1.0 - threshold)) - 1;
  if (k < 0) k += static_cast<int64_t>(v.size());
  return ExactRank(v, static_cast<uint64_t>(k), abs);
}

TEST_F(OutputsTest, MllmJsonHasMllmShapeOrderAndValues) {
  double worst = 0;
  for (Mode mode : {Mode::kMllm, Mode::kAbs}) {
    const bool abs = mode == Mode::kAbs;
    const std::string text = MllmDistributionJson(set_, mode);
    EXPECT_EQ(text.rfind("{\n    \"ori\": {\n        \"model.layers.0.self_attn.q_proj\": {\n"
                         "            \"input\": ",
                         0),
              0u)
        << text.substr(0, 200);
    const Json j = Json::parse(text);
    ASSERT_EQ(Keys(j), (std::vector<std::string>{"ori", "top_0_1", "all_stat"}));
    std::vector<std::string> names;
    for (const Raw& r : raws_) names.push_back(r.name);
    for (const char* section : {"ori", "top_0_1", "all_stat"}) {
      ASSERT_EQ(Keys(j[section]), names) << section;
    }
    for (const Raw& r : raws_) {
      for (const char* side : {"input", "output"}) {
        const std::vector<float>& v = std::string(side) == "input" ? r.x : r.y;
        const std::string where = r.name + " " + side + " " + ModeName(mode);
        ASSERT_EQ(Keys(j["ori"][r.name]), (std::vector<std::string>{"input", "output"}));
        ASSERT_TRUE(j["ori"][r.name][side].is_number_float()) << where;
        EXPECT_EQ(j["ori"][r.name][side].get<double>(),
                  static_cast<double>(MllmReference(v, 0.0, abs)))
            << where;
        const double top = j["top_0_1"][r.name][side].get<double>();
        const double err = RelErr(top, MllmReference(v, 0.001, abs));
        EXPECT_LE(err, 0.005) << where;
        worst = std::max(worst, err);
        const Json& st = j["all_stat"][r.name][side];
        ASSERT_EQ(Keys(st), (std::vector<std::string>{"mean", "std"}));
        const testing::Moments m = ExactMoments(v);  // mean/std are on signed values
        EXPECT_LE(RelErr(st["mean"].get<double>(), m.mean), 1e-6) << where;
        EXPECT_LE(RelErr(st["std"].get<double>(), m.std), 1e-6) << where;
      }
    }
  }
  std::cout << "largest top_0_1 relative error in the JSON: " << worst << "\n";
}

TEST_F(OutputsTest, EmptySetGivesEmptySections) {
  EXPECT_EQ(MllmDistributionJson(StatsSet(), Mode::kMllm),
            "{\n    \"ori\": {},\n    \"top_0_1\": {},\n    \"all_stat\": {}\n}");
}

TEST_F(OutputsTest, ActScalesHoldPerInputChannelAbsMax) {
  const std::string path = dir_ + ".act_scales.safetensors";
  ASSERT_TRUE(WriteSmoothQuantActScales(set_, path).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  std::vector<std::string> names;
  for (const Raw& r : raws_) names.push_back(r.name);
  std::vector<std::string> got_names = (*f)->names();
  std::sort(got_names.begin(), got_names.end());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(got_names, names);
  for (const Raw& r : raws_) {
    absl::StatusOr<TensorView> view = (*f)->Get(r.name);
    ASSERT_TRUE(view.ok());
    EXPECT_EQ(view->dtype, DType::kF32);
    absl::StatusOr<std::vector<float>> got = (*f)->ReadFloat32(r.name, {r.in});
    ASSERT_TRUE(got.ok()) << got.status();
    for (int64_t c = 0; c < r.in; ++c) {
      float want = 0;
      for (int64_t t = 0; t < r.rows; ++t) {
        want = std::max(want, std::fabs(r.x[static_cast<size_t>(t * r.in + c)]));
      }
      ASSERT_EQ((*got)[static_cast<size_t>(c)], want) << r.name << " channel " << c;
    }
  }
  std::filesystem::remove(path);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(OutputsTest, WriteCalibrationOutputsWritesThreeFilesAtomically) {
  const std::string dir = dir_ + "/nested/out";
  ASSERT_TRUE(WriteCalibrationOutputs(set_, dir).ok());
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"act_scales.safetensors",
                                             "act_scales_distribution.json",
                                             "act_scales_distribution_abs.json"}));
  EXPECT_EQ(ReadAll(dir + "/act_scales_distribution.json"),
            MllmDistributionJson(set_, Mode::kMllm));
  EXPECT_EQ(ReadAll(dir + "/act_scales_distribution_abs.json"),
            MllmDistributionJson(set_, Mode::kAbs));
  EXPECT_TRUE(SafetensorsFile::Open(dir + "/act_scales.safetensors").ok());
  // Overwriting works too.
  EXPECT_TRUE(WriteCalibrationOutputs(set_, dir).ok());

  // A path under a regular file cannot be a directory: an error, not a crash.
  const std::string file = dir + "/act_scales_distribution.json";
  EXPECT_FALSE(WriteCalibrationOutputs(set_, file + "/sub").ok());
}

}  // namespace
}  // namespace qcal::stats
