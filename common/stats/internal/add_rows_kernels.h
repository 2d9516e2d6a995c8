// Internal: the inner loops of TensorStats::AddRows. Not part of the public surface;
// only tensor_stats.cc and the benchmark include this.
//
// Each kernel is compiled for several x86-64 levels (baseline SSE2, AVX2, AVX-512)
// and picked at load time; all versions give bitwise identical results (min/max are
// exact, double(float) conversions and products of two such values are exact, and
// every sum is accumulated in the same order).
#ifndef QCAL_COMMON_STATS_INTERNAL_ADD_ROWS_KERNELS_H_
#define QCAL_COMMON_STATS_INTERNAL_ADD_ROWS_KERNELS_H_

#include <cstdint>

namespace qcal::stats::internal {

// Min and max over n values of (float bits & 0x7FFFFFFF), i.e. of the magnitude bit
// patterns. max >= 0x7F800000 means some value is Inf or NaN. n >= 1.
struct MagnitudeBitsRange {
  uint32_t lo;
  uint32_t hi;
};
MagnitudeBitsRange MagnitudeRange(const float* x, int64_t n);

// table[bits(x[i]) >> 16] += 1 for i < n. The caller keeps every counter below 2^32.
void CountKeys(const float* x, int64_t n, uint32_t* table);

// For each channel c < channels, over rows r < rows in order (x row-major with row
// stride `channels`): mn[c] = min(mn[c], v), mx[c] = max(mx[c], v) with v = x + 0.0f
// (so -0 is recorded as +0), s[c] += double(v), ss[c] += double(v) * double(v).
// Values must be finite.
void AccumulateRows(const float* x, int64_t rows, int64_t channels, float* mn,
                    float* mx, double* s, double* ss);

}  // namespace qcal::stats::internal

#endif  // QCAL_COMMON_STATS_INTERNAL_ADD_ROWS_KERNELS_H_
