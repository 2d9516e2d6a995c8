#include "common/stats/tensor_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/stats/internal/add_rows_kernels.h"

namespace qcal::stats {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr uint32_t kExponentBits = 0x7F800000u;

// Values per chunk of AddRows: 256 KiB, so the chunk is still in L2 for the second
// and third pass over it. Chunks hold a multiple of 4 rows where possible (the
// per-channel kernel adds four rows per sweep).
constexpr int64_t kChunkValues = int64_t{1} << 16;

// The per-call key counters: all zero between calls.
uint32_t* ThreadKeyTable() {
  thread_local std::unique_ptr<uint32_t[]> table(new uint32_t[kNumKeys]());
  return table.get();
}

// Per-channel arrays saved by a multi-chunk AddRows, to undo on a non-finite value.
struct ChannelSnapshot {
  std::vector<float> min, max;
  std::vector<double> sum, sumsq;
};
ChannelSnapshot& ThreadSnapshot() {
  thread_local ChannelSnapshot snapshot;
  return snapshot;
}

uint32_t BitsOf(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

// The lowest and highest key in ascending signed order over dense counts.
struct KeyExtremes {
  bool any = false;
  uint16_t lowest = 0;
  uint16_t highest = 0;
};

// Signed-order position of a key: negative keys (largest magnitude first) come
// before positive ones.
int32_t SignedOrder(uint16_t key) {
  return (key & kSignKeyBit) ? -static_cast<int32_t>(key & 0x7FFF) - 1
                             : static_cast<int32_t>(key);
}

// True when `v` can be the extreme value of a tensor whose extreme bucket is `key`.
// Zeros match either zero bucket (+0/-0 compare equal and are stored as +0).
bool ValueInBucket(float v, uint16_t key) {
  if (v == 0.0f) return (key & 0x7FFF) == 0;
  return KeyOf(v) == key;
}

// True when the dense counts have a value in the bucket of `v` (either zero bucket
// for a zero).
bool KeyPresent(const int64_t* dense_key_counts, float v) {
  if (v == 0.0f) return dense_key_counts[0] + dense_key_counts[kSignKeyBit] > 0;
  return dense_key_counts[KeyOf(v)] > 0;
}

}  // namespace

TensorStats::TensorStats(int64_t channels)
    : channels_(channels >= 1 && channels <= kMaxChannels ? channels : 0) {}

void TensorStats::AllocateArrays() {
  if (!min_.empty()) return;
  const size_t n = static_cast<size_t>(channels_);
  min_.assign(n, kInf);
  max_.assign(n, -kInf);
  sum_.assign(n, 0.0);
  sumsq_.assign(n, 0.0);
}

void TensorStats::ReleaseArrays() {
  min_ = {};
  max_ = {};
  sum_ = {};
  sumsq_ = {};
}

absl::StatusOr<TensorStats> TensorStats::FromParts(
    int64_t channels, int64_t count, std::vector<float> min, std::vector<float> max,
    std::vector<double> sum, std::vector<double> sumsq, KeySketch sketch) {
  if (channels < 1 || channels > kMaxChannels) {
    return absl::InvalidArgumentError(
        absl::StrCat("channels ", channels, " not in [1, ", kMaxChannels, "]"));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative count ", count));
  }
  TensorStats stats(channels);
  if (count == 0) {
    if (!min.empty() || !max.empty() || !sum.empty() || !sumsq.empty() ||
        !sketch.empty()) {
      return absl::InvalidArgumentError(
          "count is 0 but per-channel arrays or sketch are not empty");
    }
    return stats;
  }
  const size_t n = static_cast<size_t>(channels);
  if (min.size() != n || max.size() != n || sum.size() != n || sumsq.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "per-channel arrays have lengths min ", min.size(), ", max ", max.size(),
        ", sum ", sum.size(), ", sumsq ", sumsq.size(), "; expected ", n));
  }
  if (count > std::numeric_limits<int64_t>::max() / channels) {
    return absl::InvalidArgumentError("count * channels overflows");
  }
  for (size_t c = 0; c < n; ++c) {
    if (!std::isfinite(min[c]) || !std::isfinite(max[c]) || !(min[c] <= max[c])) {
      return absl::InvalidArgumentError(absl::StrCat("channel ", c, ": bad min ",
                                                     min[c], " / max ", max[c]));
    }
    if (!std::isfinite(sum[c]) || !std::isfinite(sumsq[c]) || sumsq[c] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("channel ", c, ": bad sum ",
                                                     sum[c], " / sumsq ", sumsq[c]));
    }
    min[c] += 0.0f;  // -0 -> +0, as AddRows records it
    max[c] += 0.0f;
  }
  if (sketch.total() != static_cast<uint64_t>(count) * static_cast<uint64_t>(channels)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sketch holds ", sketch.total(), " values; expected count ",
                     count, " * channels ", channels));
  }
  stats.count_ = count;
  stats.min_ = std::move(min);
  stats.max_ = std::move(max);
  stats.sum_ = std::move(sum);
  stats.sumsq_ = std::move(sumsq);
  stats.sketch_ = std::move(sketch);
  const uint16_t lowest = stats.sketch_.KeyAtSignedRank(0);
  const uint16_t highest = stats.sketch_.KeyAtSignedRank(stats.sketch_.total() - 1);
  if (!ValueInBucket(stats.Min(), lowest) || !ValueInBucket(stats.Max(), highest)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min ", stats.Min(), " / max ", stats.Max(),
        " disagree with the sketch's extreme buckets ", lowest, " / ", highest));
  }
  return stats;
}

absl::Status TensorStats::AddRows(const float* data, int64_t rows) {
  if (channels_ < 1) {
    return absl::FailedPreconditionError(absl::StrCat("TensorStats has ", channels_,
                                                      " channels"));
  }
  if (rows < 0) return absl::InvalidArgumentError(absl::StrCat("rows ", rows, " < 0"));
  if (rows == 0) return absl::OkStatus();
  if (data == nullptr) return absl::InvalidArgumentError("null data");
  if (rows > std::numeric_limits<int64_t>::max() / channels_ ||
      rows > std::numeric_limits<int64_t>::max() - count_) {
    return absl::InvalidArgumentError("row count overflows");
  }
  const int64_t per_call = static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) /
                           channels_;
  if (rows <= per_call) return AddRowsBounded(data, rows, 0);
  if (per_call == 0) {
    return absl::InvalidArgumentError(absl::StrCat("too many channels: ", channels_));
  }
  // Over 2^32 values: check everything first so that the pieces, each of which
  // would leave the object unchanged on error only for itself, cannot fail.
  for (int64_t start = 0; start < rows; start += per_call) {
    const int64_t n = std::min(per_call, rows - start);
    if (internal::MagnitudeRange(data + start * channels_, n * channels_).hi >=
        kExponentBits) {
      return AddRowsBounded(data + start * channels_, n, start);  // reports it
    }
  }
  for (int64_t start = 0; start < rows; start += per_call) {
    const int64_t n = std::min(per_call, rows - start);
    absl::Status s = AddRowsBounded(data + start * channels_, n, start);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status TensorStats::AddRowsBounded(const float* data, int64_t rows,
                                         int64_t row_offset) {
  const int64_t c = channels_;
  int64_t chunk_rows = kChunkValues / c;
  chunk_rows = chunk_rows >= 4 ? chunk_rows & ~int64_t{3} : std::max<int64_t>(1, chunk_rows);
  uint32_t* table = ThreadKeyTable();
  uint32_t lo = std::numeric_limits<uint32_t>::max(), hi = 0;  // magnitude bits seen
  bool saved = false;
  for (int64_t start = 0; start < rows; start += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - start);
    const float* x = data + start * c;
    const internal::MagnitudeBitsRange range = internal::MagnitudeRange(x, n * c);
    if (range.hi >= kExponentBits) {
      // Undo: clear the key counters and restore the per-channel arrays.
      if (lo <= hi) {
        KeySketch discard;
        discard.AddAndClearTable(table, static_cast<uint16_t>(lo >> 16),
                                 static_cast<uint16_t>(hi >> 16));
      }
      if (count_ == 0) {
        ReleaseArrays();  // they were allocated by this call
      } else if (saved) {
        ChannelSnapshot& snap = ThreadSnapshot();
        min_.swap(snap.min);
        max_.swap(snap.max);
        sum_.swap(snap.sum);
        sumsq_.swap(snap.sumsq);
      }
      int64_t i = 0;
      while ((BitsOf(x[i]) & kExponentBits) != kExponentBits) ++i;
      return absl::InvalidArgumentError(
          absl::StrCat("non-finite activation in row ", row_offset + start + i / c,
                       ", channel ", i % c, ": ", x[i]));
    }
    lo = std::min(lo, range.lo);
    hi = std::max(hi, range.hi);
    internal::CountKeys(x, n * c, table);
    AllocateArrays();
    if (!saved && count_ > 0 && start + n < rows) {
      ChannelSnapshot& snap = ThreadSnapshot();
      snap.min.assign(min_.begin(), min_.end());
      snap.max.assign(max_.begin(), max_.end());
      snap.sum.assign(sum_.begin(), sum_.end());
      snap.sumsq.assign(sumsq_.begin(), sumsq_.end());
      saved = true;
    }
    internal::AccumulateRows(x, n, c, min_.data(), max_.data(), sum_.data(),
                             sumsq_.data());
  }
  sketch_.AddAndClearTable(table, static_cast<uint16_t>(lo >> 16),
                           static_cast<uint16_t>(hi >> 16));
  count_ += rows;
  return absl::OkStatus();
}

absl::Status TensorStats::AddPartial(int64_t rows, const float* min, const float* max,
                                     const double* sum, const double* sumsq,
                                     const int64_t* dense_key_counts) {
  if (channels_ < 1) {
    return absl::FailedPreconditionError(absl::StrCat("TensorStats has ", channels_,
                                                      " channels"));
  }
  if (rows < 0) return absl::InvalidArgumentError(absl::StrCat("rows ", rows, " < 0"));
  if (rows == 0) {
    if (dense_key_counts != nullptr) {
      for (int k = 0; k < kNumKeys; ++k) {
        if (dense_key_counts[k] != 0) {
          return absl::InvalidArgumentError("partial of 0 rows has non-zero key counts");
        }
      }
    }
    return absl::OkStatus();
  }
  if (min == nullptr || max == nullptr || sum == nullptr || sumsq == nullptr ||
      dense_key_counts == nullptr) {
    return absl::InvalidArgumentError("partial has a null array");
  }
  if (rows > std::numeric_limits<int64_t>::max() / channels_ ||
      rows > std::numeric_limits<int64_t>::max() - count_) {
    return absl::InvalidArgumentError("row count overflows");
  }
  // Validate everything before changing anything.
  const uint64_t expected = static_cast<uint64_t>(rows) * static_cast<uint64_t>(channels_);
  uint64_t total = 0;
  KeyExtremes ext;
  for (int k = 0; k < kNumKeys; ++k) {
    const int64_t n = dense_key_counts[k];
    if (n == 0) continue;
    const uint16_t key = static_cast<uint16_t>(k);
    if (n < 0 || IsNonFiniteKey(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("partial has count ", n, " for key ", k,
                       IsNonFiniteKey(key) ? " (non-finite activation)" : ""));
    }
    total += static_cast<uint64_t>(n);
    if (total > expected) break;
    if (!ext.any || SignedOrder(key) < SignedOrder(ext.lowest)) ext.lowest = key;
    if (!ext.any || SignedOrder(key) > SignedOrder(ext.highest)) ext.highest = key;
    ext.any = true;
  }
  if (total != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partial key counts sum to ", total > expected ? "more than " : "", total,
        "; expected rows ", rows, " * channels ", channels_));
  }
  float gmin = kInf, gmax = -kInf;
  for (int64_t c = 0; c < channels_; ++c) {
    if (!std::isfinite(min[c]) || !std::isfinite(max[c]) || !(min[c] <= max[c])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partial channel ", c, ": non-finite activation or min ", min[c], " > max ",
          max[c]));
    }
    if (!std::isfinite(sum[c]) || !std::isfinite(sumsq[c]) || sumsq[c] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partial channel ", c, ": bad sum ", sum[c], " / sumsq ", sumsq[c]));
    }
    if (!KeyPresent(dense_key_counts, min[c]) || !KeyPresent(dense_key_counts, max[c])) {
      return absl::InvalidArgumentError(
          absl::StrCat("partial channel ", c, ": min ", min[c], " / max ", max[c],
                       " fall in empty buckets of the key counts"));
    }
    gmin = std::min(gmin, min[c]);
    gmax = std::max(gmax, max[c]);
  }
  if (!ValueInBucket(gmin, ext.lowest) || !ValueInBucket(gmax, ext.highest)) {
    return absl::InvalidArgumentError(
        absl::StrCat("partial min ", gmin, " / max ", gmax,
                     " disagree with the lowest / highest non-empty key"));
  }
  KeySketch partial;
  for (int k = 0; k < kNumKeys; ++k) {
    if (dense_key_counts[k] != 0) {
      partial.Add(static_cast<uint16_t>(k), static_cast<uint64_t>(dense_key_counts[k]));
    }
  }
  AllocateArrays();
  for (int64_t c = 0; c < channels_; ++c) {
    const float lo = min[c] + 0.0f, hi = max[c] + 0.0f;
    min_[c] = lo < min_[c] ? lo : min_[c];
    max_[c] = hi > max_[c] ? hi : max_[c];
    sum_[c] += sum[c];
    sumsq_[c] += sumsq[c];
  }
  sketch_.Merge(partial);
  count_ += rows;
  return absl::OkStatus();
}

absl::Status TensorStats::Merge(const TensorStats& other) {
  if (channels_ < 1 || other.channels_ != channels_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot merge statistics of ", other.channels_, " channels into ", channels_));
  }
  if (other.count_ == 0) return absl::OkStatus();
  if (other.count_ > std::numeric_limits<int64_t>::max() - count_) {
    return absl::FailedPreconditionError("merged row count overflows");
  }
  AllocateArrays();
  for (int64_t c = 0; c < channels_; ++c) {
    min_[c] = std::min(min_[c], other.min_[c]);
    max_[c] = std::max(max_[c], other.max_[c]);
    sum_[c] += other.sum_[c];
    sumsq_[c] += other.sumsq_[c];
  }
  sketch_.Merge(other.sketch_);
  count_ += other.count_;
  return absl::OkStatus();
}

float TensorStats::absmax(int64_t c) const {
  if (count_ == 0) return 0.0f;
  return std::max(std::fabs(min_[c]), std::fabs(max_[c]));
}

std::vector<float> TensorStats::AbsMaxPerChannel() const {
  std::vector<float> out(static_cast<size_t>(channels_), 0.0f);
  if (count_ == 0) return out;
  for (size_t c = 0; c < out.size(); ++c) out[c] = absmax(static_cast<int64_t>(c));
  return out;
}

float TensorStats::Min() const {
  if (count_ == 0) return 0.0f;
  return *std::min_element(min_.begin(), min_.end());
}

float TensorStats::Max() const {
  if (count_ == 0) return 0.0f;
  return *std::max_element(max_.begin(), max_.end());
}

float TensorStats::AbsMax() const { return std::max(std::fabs(Min()), std::fabs(Max())); }

absl::StatusOr<float> TensorStats::ValueAtRank(uint64_t r) const {
  const uint64_t n = num_values();
  if (r >= n) {
    return absl::OutOfRangeError(absl::StrCat("rank ", r, " of ", n, " values"));
  }
  const float lo = Min(), hi = Max();
  if (r == 0) return lo;
  if (r == n - 1) return hi;
  return std::clamp(KeyRepresentative(sketch_.KeyAtSignedRank(r)), lo, hi);
}

absl::StatusOr<float> TensorStats::AbsValueAtRank(uint64_t r) const {
  const uint64_t n = num_values();
  if (r >= n) {
    return absl::OutOfRangeError(absl::StrCat("rank ", r, " of ", n, " values"));
  }
  const float lo = Min(), hi = Max();
  const float top = std::max(std::fabs(lo), std::fabs(hi));
  if (r == n - 1) return top;
  // The smallest |x| is known exactly only when all values have one sign.
  const bool one_sign = lo >= 0.0f || hi <= 0.0f;
  const float bottom = !one_sign ? 0.0f : (lo >= 0.0f ? lo : -hi);
  if (r == 0 && one_sign) return bottom;
  return std::clamp(KeyRepresentative(sketch_.MagnitudeKeyAtAbsRank(r)), bottom, top);
}

namespace {
absl::StatusOr<uint64_t> QuantileRank(double q, uint64_t n) {
  if (!(q >= 0.0 && q <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("quantile ", q, " not in [0, 1]"));
  }
  if (n == 0) return absl::OutOfRangeError("quantile of an empty tensor");
  const uint64_t r = static_cast<uint64_t>(q * static_cast<double>(n - 1));
  return std::min(r, n - 1);
}
}  // namespace

absl::StatusOr<float> TensorStats::Quantile(double q) const {
  absl::StatusOr<uint64_t> r = QuantileRank(q, num_values());
  if (!r.ok()) return r.status();
  return ValueAtRank(*r);
}

absl::StatusOr<float> TensorStats::AbsQuantile(double q) const {
  absl::StatusOr<uint64_t> r = QuantileRank(q, num_values());
  if (!r.ok()) return r.status();
  return AbsValueAtRank(*r);
}

}  // namespace qcal::stats
