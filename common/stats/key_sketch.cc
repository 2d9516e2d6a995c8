#include "common/stats/key_sketch.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qcal::stats {
namespace {

constexpr uint16_t kMagnitudeMask = 0x7FFF;

float FloatFromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Index of the first stored key with the sign bit set (== keys.size() when none).
size_t FirstNegative(const std::vector<uint16_t>& keys) {
  return static_cast<size_t>(
      std::lower_bound(keys.begin(), keys.end(), kSignKeyBit) - keys.begin());
}

}  // namespace

float KeyRepresentative(uint16_t key) {
  const uint32_t mag = key & kMagnitudeMask;
  if (mag == 0) return 0.0f;
  const double lo = FloatFromBits(mag << 16);
  // The bucket above the largest finite one starts at 2^128 (Inf as a float).
  const double hi = mag == 0x7F7F ? std::ldexp(1.0, 128)
                                  : static_cast<double>(FloatFromBits((mag + 1) << 16));
  const float rep = static_cast<float>(2.0 * lo * hi / (lo + hi));
  return (key & kSignKeyBit) ? -rep : rep;
}

absl::StatusOr<KeySketch> KeySketch::FromBuckets(std::vector<uint16_t> keys,
                                                 std::vector<uint64_t> counts) {
  if (keys.size() != counts.size()) {
    return absl::InvalidArgumentError(absl::StrCat("sketch has ", keys.size(),
                                                   " keys but ", counts.size(),
                                                   " counts"));
  }
  KeySketch sketch;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0 && keys[i] <= keys[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("sketch keys not strictly ascending at index ", i));
    }
    if (IsNonFiniteKey(keys[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("sketch key ", keys[i], " is the key of Inf/NaN"));
    }
    if (counts[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sketch bucket ", keys[i], " has count 0"));
    }
    if (sketch.total_ + counts[i] < sketch.total_) {
      return absl::InvalidArgumentError("sketch counts overflow uint64");
    }
    sketch.total_ += counts[i];
  }
  sketch.keys_ = std::move(keys);
  sketch.counts_ = std::move(counts);
  return sketch;
}

void KeySketch::Add(uint16_t key, uint64_t count) {
  if (count == 0) return;
  auto it = std::lower_bound(keys_.begin(), keys_.end(), key);
  const size_t i = static_cast<size_t>(it - keys_.begin());
  if (it != keys_.end() && *it == key) {
    counts_[i] += count;
  } else {
    keys_.insert(it, key);
    counts_.insert(counts_.begin() + static_cast<std::ptrdiff_t>(i), count);
  }
  total_ += count;
}

void KeySketch::AddAndClearTable(uint32_t* table, uint16_t lo_mag, uint16_t hi_mag) {
  if (lo_mag > hi_mag) return;
  // The table's candidate keys in ascending order: the positive range, then the
  // negative one (sign bit set sorts after every positive key).
  const uint32_t bases[2] = {0, kSignKeyBit};
  // Fast path (the common case once a tensor has seen some data): every touched key
  // is already stored, so counts are updated in place without allocating.
  bool all_present = true;
  for (uint32_t base : bases) {
    auto it = std::lower_bound(keys_.begin(), keys_.end(), base + lo_mag);
    for (uint32_t k = base + lo_mag; k <= base + hi_mag && all_present; ++k) {
      if (table[k] == 0) continue;
      while (it != keys_.end() && *it < k) ++it;
      all_present = it != keys_.end() && *it == k;
    }
  }
  if (all_present) {
    for (uint32_t base : bases) {
      size_t i = static_cast<size_t>(
          std::lower_bound(keys_.begin(), keys_.end(), base + lo_mag) - keys_.begin());
      for (; i < keys_.size() && keys_[i] <= base + hi_mag; ++i) {
        counts_[i] += table[keys_[i]];
        total_ += table[keys_[i]];
        table[keys_[i]] = 0;
      }
    }
    return;
  }
  std::vector<uint16_t> keys;
  std::vector<uint64_t> counts;
  const size_t range = static_cast<size_t>(hi_mag - lo_mag) + 1;
  keys.reserve(keys_.size() + std::min<size_t>(2 * range, 4096));
  counts.reserve(keys.capacity());
  size_t i = 0;  // next stored bucket
  for (uint32_t base : bases) {
    for (uint32_t k = base + lo_mag; k <= base + hi_mag; ++k) {
      const uint32_t c = table[k];
      if (c == 0) continue;
      table[k] = 0;
      while (i < keys_.size() && keys_[i] < k) {
        keys.push_back(keys_[i]);
        counts.push_back(counts_[i]);
        ++i;
      }
      uint64_t total = c;
      if (i < keys_.size() && keys_[i] == k) total += counts_[i++];
      keys.push_back(static_cast<uint16_t>(k));
      counts.push_back(total);
      total_ += c;
    }
  }
  keys.insert(keys.end(), keys_.begin() + static_cast<std::ptrdiff_t>(i), keys_.end());
  counts.insert(counts.end(), counts_.begin() + static_cast<std::ptrdiff_t>(i),
                counts_.end());
  keys_ = std::move(keys);
  counts_ = std::move(counts);
}

void KeySketch::Merge(const KeySketch& other) {
  if (other.keys_.empty()) return;
  std::vector<uint16_t> keys;
  std::vector<uint64_t> counts;
  keys.reserve(keys_.size() + other.keys_.size());
  counts.reserve(keys.capacity());
  size_t i = 0, j = 0;
  while (i < keys_.size() || j < other.keys_.size()) {
    if (j == other.keys_.size() || (i < keys_.size() && keys_[i] < other.keys_[j])) {
      keys.push_back(keys_[i]);
      counts.push_back(counts_[i++]);
    } else if (i == keys_.size() || other.keys_[j] < keys_[i]) {
      keys.push_back(other.keys_[j]);
      counts.push_back(other.counts_[j++]);
    } else {
      keys.push_back(keys_[i]);
      counts.push_back(counts_[i++] + other.counts_[j++]);
    }
  }
  total_ += other.total_;
  keys_ = std::move(keys);
  counts_ = std::move(counts);
}

uint16_t KeySketch::KeyAtSignedRank(uint64_t r) const {
  // Ascending signed order: negative keys from the largest magnitude (largest key)
  // down to -0, then positive keys from +0 upwards.
  const size_t neg = FirstNegative(keys_);
  for (size_t i = keys_.size(); i > neg; --i) {
    if (r < counts_[i - 1]) return keys_[i - 1];
    r -= counts_[i - 1];
  }
  for (size_t i = 0; i < neg; ++i) {
    if (r < counts_[i]) return keys_[i];
    r -= counts_[i];
  }
  return keys_.empty() ? 0 : keys_.back();  // unreachable when r < total()
}

uint16_t KeySketch::MagnitudeKeyAtAbsRank(uint64_t r) const {
  // Merge the positive buckets [0, neg) and the negative ones [neg, size), both
  // ascending in magnitude.
  const size_t neg = FirstNegative(keys_);
  size_t i = 0, j = neg;
  while (i < neg || j < keys_.size()) {
    const uint16_t mi = i < neg ? keys_[i] : kSignKeyBit;  // kSignKeyBit: exhausted
    const uint16_t mj = j < keys_.size() ? (keys_[j] & kMagnitudeMask) : kSignKeyBit;
    const uint16_t m = std::min(mi, mj);
    uint64_t c = 0;
    if (mi == m) c += counts_[i++];
    if (mj == m) c += counts_[j++];
    if (r < c) return m;
    r -= c;
  }
  return keys_.empty() ? 0 : (keys_.back() & kMagnitudeMask);  // unreachable
}

}  // namespace qcal::stats
