// Seeded permutations that are the same on every machine and standard library:
// SplitMix64 for the random stream, an explicit unbiased bounded draw and
// Fisher-Yates (std::shuffle and std::uniform_int_distribution are
// implementation-defined, so they are not used).
//
// Thread-compatible: SplitMix64 and FisherYates are values; ShuffledPrefix is pure.
#ifndef QCAL_WORKER_TEXT_PERMUTATION_H_
#define QCAL_WORKER_TEXT_PERMUTATION_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace qcal::text {

// SplitMix64 (Steele, Lea and Flood, 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) for n >= 1, without modulo bias: draws below 2^64 mod n
  // are rejected.
  uint64_t Bounded(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // == 2^64 mod n
    for (;;) {
      const uint64_t x = Next();
      if (x >= threshold) return x % n;
    }
  }

 private:
  uint64_t state_;
};

// The Fisher-Yates shuffle of 0..n-1 driven by SplitMix64(seed), produced one
// entry at a time: entry i is a[i] after swap(a[i], a[i + Bounded(n - i)]) with
// a[k] = k initially. Memory O(entries produced), not O(n).
class FisherYates {
 public:
  FisherYates(int64_t n, uint64_t seed) : n_(n), rng_(seed) {}
  bool done() const { return i_ >= n_; }
  // The next entry; requires !done().
  int64_t Next();

 private:
  int64_t n_;
  int64_t i_ = 0;
  SplitMix64 rng_;
  absl::flat_hash_map<int64_t, int64_t> moved_;  // a[k] for the k that differ from k
};

// The first `count` entries of the Fisher-Yates shuffle of 0..n-1 driven by
// SplitMix64(seed): for i = 0, 1, ...: swap(a[i], a[i + Bounded(n - i)]).
// Entry i does not depend on `count`, so any prefix agrees with a longer one.
// O(count) time and memory whatever n. Requires 0 <= count <= n.
std::vector<int64_t> ShuffledPrefix(int64_t n, int64_t count, uint64_t seed);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_PERMUTATION_H_
