// KeySketch: a mergeable quantile sketch of float32 values over a fixed key space.
//
// The key of a finite float v is its top 16 bits,
//   key = bit_cast<uint32_t>(v) >> 16     (sign bit, 8 exponent bits, 7 mantissa bits),
// so there are 65536 possible keys and each bucket holds the floats whose bits lie in
// [key << 16, (key + 1) << 16). Keys 0x0000 and 0x8000 hold +0 / -0 (and the
// denormals below 2^-133 in magnitude). Keys whose exponent bits are all ones (Inf,
// NaN) never occur: callers reject non-finite values before they reach a sketch.
//
// Counts are exact uint64. Merging adds the counts of equal keys, so it is exact,
// associative and commutative: any merge order gives the identical sketch.
//
// Accuracy: KeyRepresentative(key) is the signed harmonic mean 2*lo*hi/(lo+hi) of the
// bucket's magnitude bounds lo, hi. For a normal float (exponent bits 1..254), every
// value in the bucket is within relative error (hi-lo)/(hi+lo) <= 2^-7/(2+2^-7)
// (~0.39 %) of the representative (plus float32 rounding of the representative,
// 2^-24). For denormals (exponent bits 0) the error is absolute instead: below the
// bucket width 2^-133 (~9.2e-41), far below the smallest normal float 1.2e-38.
//
// Storage: the non-empty buckets only, as a sorted vector of keys (ascending as
// unsigned integers) and a parallel vector of counts.
//
// Thread-safety: const methods may run concurrently; mutation needs external locking.
#ifndef QCAL_COMMON_STATS_KEY_SKETCH_H_
#define QCAL_COMMON_STATS_KEY_SKETCH_H_

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qcal::stats {

inline constexpr int kNumKeys = 65536;
inline constexpr uint16_t kSignKeyBit = 0x8000;
// Exponent bits of a key; all ones means Inf or NaN.
inline constexpr uint16_t kKeyExponentMask = 0x7F80;

// The key of a float (any float; non-finite ones give non-finite keys).
inline uint16_t KeyOf(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}

// True when `key` is the key of Inf or NaN.
inline bool IsNonFiniteKey(uint16_t key) {
  return (key & kKeyExponentMask) == kKeyExponentMask;
}

// The signed representative value of a bucket (see the accuracy note above). Zero
// buckets give +0. Precondition: !IsNonFiniteKey(key).
float KeyRepresentative(uint16_t key);

class KeySketch {
 public:
  KeySketch() = default;

  // Builds a sketch from its non-empty buckets. INVALID_ARGUMENT unless the sizes
  // match, keys are strictly ascending, no key is non-finite and every count is > 0.
  static absl::StatusOr<KeySketch> FromBuckets(std::vector<uint16_t> keys,
                                               std::vector<uint64_t> counts);

  // Number of values in the sketch.
  uint64_t total() const { return total_; }
  bool empty() const { return total_ == 0; }
  // Non-empty buckets, keys ascending as unsigned integers.
  const std::vector<uint16_t>& keys() const { return keys_; }
  const std::vector<uint64_t>& counts() const { return counts_; }

  // Adds `count` values of bucket `key`. Precondition: !IsNonFiniteKey(key).
  void Add(uint16_t key, uint64_t count);

  // Adds the counts of a dense table of kNumKeys uint32 counters restricted to keys of
  // magnitude (key & 0x7FFF) in [lo_mag, hi_mag] (both signs), and sets those table
  // entries back to zero. Entries outside that range must already be zero; the table
  // is then all zero on return. No-op when lo_mag > hi_mag.
  void AddAndClearTable(uint32_t* table, uint16_t lo_mag, uint16_t hi_mag);

  // Exact merge: counts of equal keys add.
  void Merge(const KeySketch& other);

  // The key of the value at rank r (0-based) in ascending signed order.
  // Precondition: r < total().
  uint16_t KeyAtSignedRank(uint64_t r) const;
  // The magnitude key (key & 0x7FFF) of the value at rank r in ascending order of |x|
  // (negative buckets folded onto positive ones). Precondition: r < total().
  uint16_t MagnitudeKeyAtAbsRank(uint64_t r) const;

  friend bool operator==(const KeySketch& a, const KeySketch& b) {
    return a.keys_ == b.keys_ && a.counts_ == b.counts_;
  }
  friend bool operator!=(const KeySketch& a, const KeySketch& b) { return !(a == b); }

 private:
  std::vector<uint16_t> keys_;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

}  // namespace qcal::stats

#endif  // QCAL_COMMON_STATS_KEY_SKETCH_H_
