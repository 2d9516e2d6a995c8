// TensorStats: streaming statistics of one side (input or output) of one linear module.
//
// A tensor side is seen as rows (tokens) of `channels` float32 values (the last
// dimension). Over all rows added it keeps:
//   - count: the number of rows (every channel sees every row, so this is also each
//     channel's count; an MoE expert has its own TensorStats and count);
//   - per channel: min and max (float32, exact), sum and sum of squares (double);
//   - a KeySketch of all count * channels values (all channels pooled).
// Memory is O(channels + non-empty sketch buckets), independent of the row count.
//
// Determinism: sums accumulate rows in the order given, one row at a time, so the
// same rows in the same order give bitwise identical sums however they are split
// into AddRows calls. Min, max, count and the sketch are bitwise identical for any
// split and any Merge order; merged sums agree within rounding (~1e-15 relative).
//
// Errors leave the object unchanged. Thread-safety: const methods may run
// concurrently; mutation needs external locking. No threads are used inside.
#ifndef QCAL_COMMON_STATS_TENSOR_STATS_H_
#define QCAL_COMMON_STATS_TENSOR_STATS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/stats/key_sketch.h"

namespace qcal::stats {

// Largest channel count accepted (far above any model's widest dimension); guards
// allocations against corrupt inputs.
inline constexpr int64_t kMaxChannels = int64_t{1} << 26;

class TensorStats {
 public:
  // Empty statistics for rows of `channels` values. Precondition:
  // 1 <= channels <= kMaxChannels; an object made with any other value holds no
  // arrays and rejects every Add* and Merge with FAILED_PRECONDITION.
  explicit TensorStats(int64_t channels);

  // Validating constructor from raw parts (used by the proto conversion). With
  // count == 0 the four arrays must be empty and the sketch empty; otherwise each
  // array has `channels` entries, min/max are finite with min <= max, sums are finite,
  // sumsq >= 0, the sketch holds exactly count * channels values, and its lowest and
  // highest buckets hold the overall min and max. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<TensorStats> FromParts(int64_t channels, int64_t count,
                                               std::vector<float> min,
                                               std::vector<float> max,
                                               std::vector<double> sum,
                                               std::vector<double> sumsq,
                                               KeySketch sketch);

  // Adds `rows` rows of `channels` float32 values, row-major (row r, channel c at
  // data[r * channels + c]). The hot path: the data is read from memory once, in
  // L2-sized chunks that three passes then walk (finite check and key range, key
  // counting into a 256 KiB per-thread uint32 table, per-channel accumulators);
  // about 0.5 ns per value on one core for 512 x 4096. No threads. INVALID_ARGUMENT
  // "non-finite activation in row R, channel C: V" when any value is Inf or NaN (the
  // caller prefixes the module name); the object is then unchanged.
  absl::Status AddRows(const float* data, int64_t rows);

  // Adds a partial computed elsewhere over `rows` rows (e.g. on a GPU with tensor
  // operations): per channel min, max (float32), sum, sumsq (over rows, in double),
  // each `channels` entries, and `dense_key_counts`, kNumKeys counts indexed by key
  // (a bincount of KeyOf over all rows * channels values). Gives the state AddRows
  // gives for the same data: min, max, count and sketch bitwise, sums within
  // rounding. INVALID_ARGUMENT (object unchanged) when the partial is inconsistent:
  // negative counts, counts not summing to rows * channels, counts on Inf/NaN keys,
  // non-finite min/max/sums, min > max, or min/max outside the sketch's extreme
  // buckets. With rows == 0 the pointers may be null.
  absl::Status AddPartial(int64_t rows, const float* min, const float* max,
                          const double* sum, const double* sumsq,
                          const int64_t* dense_key_counts);

  // Merges `other` into this (same data as if all rows were added here).
  // FAILED_PRECONDITION when the channel counts differ.
  absl::Status Merge(const TensorStats& other);

  int64_t channels() const { return channels_; }
  // Rows added.
  int64_t count() const { return count_; }
  // Values added: count() * channels().
  uint64_t num_values() const {
    return static_cast<uint64_t>(count_) * static_cast<uint64_t>(channels_);
  }
  bool empty() const { return count_ == 0; }

  // Per-channel arrays: `channels` entries once count() > 0, empty while
  // count() == 0 (allocated by the first rows, so never-used statistics, e.g. an MoE
  // expert that got no token, cost no per-channel memory).
  const std::vector<float>& min() const { return min_; }
  const std::vector<float>& max() const { return max_; }
  const std::vector<double>& sum() const { return sum_; }
  const std::vector<double>& sumsq() const { return sumsq_; }
  // Per-channel max(|min|, |max|) (0 when empty). Precondition: 0 <= c < channels().
  float absmax(int64_t c) const;
  // All of them: `channels` entries (zeros when empty).
  std::vector<float> AbsMaxPerChannel() const;

  // Over the whole tensor (exact; 0 when empty).
  float Min() const;
  float Max() const;
  float AbsMax() const;

  const KeySketch& sketch() const { return sketch_; }

  // Value at rank r (0-based) of all num_values() values sorted ascending (signed).
  // Rank 0 is exactly Min(), rank num_values()-1 exactly Max(); other ranks give the
  // bucket representative clamped to [Min(), Max()] (relative error <= 0.39 % for
  // normal floats; see key_sketch.h). OUT_OF_RANGE when r >= num_values().
  absl::StatusOr<float> ValueAtRank(uint64_t r) const;
  // Same on |x| sorted ascending. The last rank is exactly AbsMax(); rank 0 is exact
  // when all values have one sign (then it is min(|Min()|, |Max()|)), else the bucket
  // representative. OUT_OF_RANGE when r >= num_values().
  absl::StatusOr<float> AbsValueAtRank(uint64_t r) const;
  // Quantile q in [0, 1] by the lower nearest rank (numpy method='lower'):
  // ValueAtRank(floor(q * (num_values() - 1))). INVALID_ARGUMENT unless 0 <= q <= 1;
  // OUT_OF_RANGE when empty.
  absl::StatusOr<float> Quantile(double q) const;
  absl::StatusOr<float> AbsQuantile(double q) const;

 private:
  // Adds rows with fewer than 2^32 values (the per-call key counters are uint32).
  // `row_offset` only numbers rows in error messages.
  absl::Status AddRowsBounded(const float* data, int64_t rows, int64_t row_offset);

  // Allocates the per-channel arrays at their empty values if not yet allocated.
  void AllocateArrays();
  // Back to the unallocated state (only while count_ == 0).
  void ReleaseArrays();

  int64_t channels_;  // 0 when constructed with an out-of-range value
  int64_t count_ = 0;
  std::vector<float> min_;
  std::vector<float> max_;
  std::vector<double> sum_;
  std::vector<double> sumsq_;
  KeySketch sketch_;
};

}  // namespace qcal::stats

#endif  // QCAL_COMMON_STATS_TENSOR_STATS_H_
