// Test-only helpers for the store tests: LinearStatsProto values built from
// TensorStats over generated activations, their comparison, and temporary
// directories. Header-only; never linked into qcal_store.
#ifndef QCAL_SERVER_STORE_STORE_TEST_UTIL_H_
#define QCAL_SERVER_STORE_STORE_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/stats/stats_proto.h"
#include "common/stats/stats_test_util.h"
#include "common/stats/tensor_stats.h"
#include "gtest/gtest.h"
#include "proto/qcal/v1/stats.pb.h"

namespace qcal::server::testing {

// One partial report of a linear: the statistics of `rows` generated rows per side,
// the raw data (for reference sums) and its serialized LinearStatsProto.
struct Partial {
  stats::TensorStats input;
  stats::TensorStats output;
  std::vector<float> input_data;
  std::vector<float> output_data;
  std::string bytes;
};

inline std::string Serialize(const std::string& name, const stats::TensorStats& input,
                             const stats::TensorStats& output) {
  v1::LinearStatsProto proto;
  proto.set_name(name);
  stats::ToProto(input, proto.mutable_input());
  stats::ToProto(output, proto.mutable_output());
  return proto.SerializeAsString();
}

inline Partial MakePartial(const std::string& name, int64_t in_channels,
                           int64_t out_channels, int64_t rows, uint32_t seed,
                           stats::testing::Dist dist = stats::testing::Dist::kLlmLike) {
  Partial p{
      stats::TensorStats(in_channels), stats::TensorStats(out_channels), {}, {}, {}};
  p.input_data = stats::testing::Generate(dist, rows, in_channels, seed);
  p.output_data = stats::testing::Generate(dist, rows, out_channels, seed + 7919);
  EXPECT_TRUE(p.input.AddRows(p.input_data.data(), rows).ok());
  EXPECT_TRUE(p.output.AddRows(p.output_data.data(), rows).ok());
  p.bytes = Serialize(name, p.input, p.output);
  return p;
}

// Parsed stored value. Fails the test (and returns empty statistics) when invalid.
struct Parsed {
  std::string name;
  stats::TensorStats input{1};
  stats::TensorStats output{1};
};

inline Parsed ParseValue(const std::string& bytes) {
  Parsed out;
  v1::LinearStatsProto proto;
  if (!proto.ParseFromString(bytes)) {
    ADD_FAILURE() << "stored value does not parse";
    return out;
  }
  out.name = proto.name();
  auto input = stats::TensorStatsFromProto(proto.input(), "input");
  auto output = stats::TensorStatsFromProto(proto.output(), "output");
  if (!input.ok() || !output.ok()) {
    ADD_FAILURE() << "stored value invalid: " << input.status() << " " << output.status();
    return out;
  }
  out.input = *std::move(input);
  out.output = *std::move(output);
  return out;
}

// The reference: TensorStats::Merge of the partials in the given order, plus the
// per-channel sums of |x| over all their data (the scale for sum tolerances).
struct Reference {
  stats::TensorStats input;
  stats::TensorStats output;
  std::vector<double> input_abs_sum;
  std::vector<double> output_abs_sum;
};

inline Reference MergeDirectly(const std::vector<Partial>& parts,
                               const std::vector<size_t>& order) {
  Reference r{stats::TensorStats(parts[0].input.channels()),
              stats::TensorStats(parts[0].output.channels()),
              std::vector<double>(static_cast<size_t>(parts[0].input.channels()), 0.0),
              std::vector<double>(static_cast<size_t>(parts[0].output.channels()), 0.0)};
  for (size_t i : order) {
    EXPECT_TRUE(r.input.Merge(parts[i].input).ok());
    EXPECT_TRUE(r.output.Merge(parts[i].output).ok());
    const auto in =
        stats::testing::AbsSums(parts[i].input_data, parts[i].input.channels());
    const auto out =
        stats::testing::AbsSums(parts[i].output_data, parts[i].output.channels());
    for (size_t c = 0; c < in.size(); ++c) r.input_abs_sum[c] += in[c];
    for (size_t c = 0; c < out.size(); ++c) r.output_abs_sum[c] += out[c];
  }
  return r;
}

inline std::vector<size_t> Iota(size_t n) {
  std::vector<size_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Min, max, count and sketch bitwise equal; sums within 1e-12 relative (to the sum
// of |x|, since sums of cancelling terms can be near zero).
inline ::testing::AssertionResult MatchesReference(const std::string& bytes,
                                                   const std::string& name,
                                                   const Reference& ref) {
  const Parsed got = ParseValue(bytes);
  if (got.name != name) {
    return ::testing::AssertionFailure()
           << "name '" << got.name << "' != '" << name << "'";
  }
  for (int side = 0; side < 2; ++side) {
    const stats::TensorStats& g = side == 0 ? got.input : got.output;
    const stats::TensorStats& w = side == 0 ? ref.input : ref.output;
    const char* which = side == 0 ? "input: " : "output: ";
    auto same = stats::testing::Identical(g, w, /*sums=*/false);
    if (!same) return ::testing::AssertionFailure() << which << same.message();
    auto close = stats::testing::SumsClose(
        g, w, 1e-12, side == 0 ? ref.input_abs_sum : ref.output_abs_sum);
    if (!close) return ::testing::AssertionFailure() << which << close.message();
  }
  return ::testing::AssertionSuccess();
}

// A fresh directory under $TEST_TMPDIR (or the system temp dir), removed with the
// object.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string templ =
        (std::filesystem::path(base != nullptr && *base != '\0'
                                   ? base
                                   : std::filesystem::temp_directory_path().string()) /
         "qcal_store_test.XXXXXX")
            .string();
    if (mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << templ;
    path_ = templ;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside it.
  std::string Sub(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

}  // namespace qcal::server::testing

#endif  // QCAL_SERVER_STORE_STORE_TEST_UTIL_H_
