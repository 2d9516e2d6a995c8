#include "common/stats/internal/add_rows_kernels.h"

#include <cstring>

// Function multi-versioning: one copy per x86-64 level, chosen once at load time by
// an ifunc resolver. Elsewhere the portable code is compiled once.
#if defined(__x86_64__) && defined(__ELF__) && \
    (defined(__clang__) ? __clang_major__ >= 14 : defined(__GNUC__))
#define QCAL_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QCAL_MULTIVERSION
#endif

namespace qcal::stats::internal {
namespace {

// Channels per block in AccumulateRows: the block's accumulators (24 bytes per
// channel, 12 KiB) stay in L1 while its rows stream past.
constexpr int64_t kBlockChannels = 512;

inline uint32_t Bits(const float* p) {
  uint32_t b;
  std::memcpy(&b, p, sizeof(b));
  return b;
}

}  // namespace

QCAL_MULTIVERSION
MagnitudeBitsRange MagnitudeRange(const float* x, int64_t n) {
  // Signed int32 compares are enough: magnitudes are < 2^31.
  int32_t lo = INT32_MAX, hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t m = static_cast<int32_t>(Bits(x + i) & 0x7FFFFFFFu);
    lo = m < lo ? m : lo;
    hi = m > hi ? m : hi;
  }
  return {static_cast<uint32_t>(lo), static_cast<uint32_t>(hi)};
}

void CountKeys(const float* x, int64_t n, uint32_t* table) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t k0 = Bits(x + i) >> 16, k1 = Bits(x + i + 1) >> 16;
    const uint32_t k2 = Bits(x + i + 2) >> 16, k3 = Bits(x + i + 3) >> 16;
    ++table[k0];
    ++table[k1];
    ++table[k2];
    ++table[k3];
  }
  for (; i < n; ++i) ++table[Bits(x + i) >> 16];
}

// One sweep over `width` channels adding four rows, in order, to each channel.
// Inlined into every AccumulateRows clone.
inline __attribute__((always_inline)) void AddFourRows(
    const float* __restrict x0, const float* __restrict x1, const float* __restrict x2,
    const float* __restrict x3, int64_t width, float* __restrict mn,
    float* __restrict mx, double* __restrict s, double* __restrict ss) {
  for (int64_t c = 0; c < width; ++c) {
    const float v0 = x0[c] + 0.0f, v1 = x1[c] + 0.0f;
    const float v2 = x2[c] + 0.0f, v3 = x3[c] + 0.0f;
    float lo = mn[c], hi = mx[c];
    lo = v0 < lo ? v0 : lo;
    hi = v0 > hi ? v0 : hi;
    lo = v1 < lo ? v1 : lo;
    hi = v1 > hi ? v1 : hi;
    lo = v2 < lo ? v2 : lo;
    hi = v2 > hi ? v2 : hi;
    lo = v3 < lo ? v3 : lo;
    hi = v3 > hi ? v3 : hi;
    mn[c] = lo;
    mx[c] = hi;
    const double d0 = v0, d1 = v1, d2 = v2, d3 = v3;
    s[c] = (((s[c] + d0) + d1) + d2) + d3;
    ss[c] = (((ss[c] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;
  }
}

inline __attribute__((always_inline)) void AddOneRow(
    const float* __restrict x0, int64_t width, float* __restrict mn,
    float* __restrict mx, double* __restrict s, double* __restrict ss) {
  for (int64_t c = 0; c < width; ++c) {
    const float v = x0[c] + 0.0f;
    mn[c] = v < mn[c] ? v : mn[c];
    mx[c] = v > mx[c] ? v : mx[c];
    const double d = v;
    s[c] += d;
    ss[c] += d * d;
  }
}

QCAL_MULTIVERSION
void AccumulateRows(const float* x, int64_t rows, int64_t channels, float* mn,
                    float* mx, double* s, double* ss) {
  for (int64_t cb = 0; cb < channels; cb += kBlockChannels) {
    const int64_t width = channels - cb < kBlockChannels ? channels - cb : kBlockChannels;
    int64_t r = 0;
    // Four rows per sweep: a quarter of the accumulator loads and stores. Each
    // channel still adds its rows strictly in order.
    for (; r + 4 <= rows; r += 4) {
      const float* x0 = x + r * channels + cb;
      AddFourRows(x0, x0 + channels, x0 + 2 * channels, x0 + 3 * channels, width, mn + cb,
                  mx + cb, s + cb, ss + cb);
    }
    for (; r < rows; ++r) {
      AddOneRow(x + r * channels + cb, width, mn + cb, mx + cb, s + cb, ss + cb);
    }
  }
}

}  // namespace qcal::stats::internal
