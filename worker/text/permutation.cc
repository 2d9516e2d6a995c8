#include "worker/text/permutation.h"

namespace qcal::text {

int64_t FisherYates::Next() {
  auto at = [&](int64_t k) {
    auto it = moved_.find(k);
    return it == moved_.end() ? k : it->second;
  };
  const int64_t i = i_++;
  const int64_t j = i + static_cast<int64_t>(rng_.Bounded(static_cast<uint64_t>(n_ - i)));
  const int64_t ai = at(i);
  const int64_t aj = at(j);
  moved_[j] = ai;  // swap; a[i] is final and never read again
  moved_.erase(i);
  return aj;
}

std::vector<int64_t> ShuffledPrefix(int64_t n, int64_t count, uint64_t seed) {
  FisherYates fy(n, seed);
  std::vector<int64_t> out;
  out.reserve(count);
  for (int64_t i = 0; i < count; ++i) out.push_back(fy.Next());
  return out;
}

}  // namespace qcal::text
