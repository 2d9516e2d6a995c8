// Statistics after smoothing, derived without a forward pass (export.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/export/export.h"
#include "common/status_macros.h"

namespace qcal::exporter {
namespace {

// x / s per channel. Min, max and sums are exact up to rounding (s > 0 keeps the
// order). The sketch cannot be derived (it pools all channels); it is replaced by a
// bound: per channel one value at min/s, one at max/s and the other count - 2 at
// whichever of the two has the larger magnitude. Every |x| quantile of that sketch is
// >= the true one (each channel's multiset of |x| is dominated), up to the bucket
// error, and its extreme buckets hold the exact min and max as TensorStats requires.
absl::StatusOr<stats::TensorStats> DivideChannels(const stats::TensorStats& t,
                                                  const std::vector<float>& s) {
  if (t.empty()) return t;
  const int64_t n = t.channels();
  std::vector<float> mn(n), mx(n);
  std::vector<double> sum(n), sumsq(n);
  std::map<uint16_t, uint64_t> buckets;
  const uint64_t count = static_cast<uint64_t>(t.count());
  for (int64_t c = 0; c < n; ++c) {
    mn[c] = t.min()[c] / s[c] + 0.0f;  // -0 -> +0, as TensorStats records it
    mx[c] = t.max()[c] / s[c] + 0.0f;
    sum[c] = t.sum()[c] / static_cast<double>(s[c]);
    sumsq[c] = t.sumsq()[c] / (static_cast<double>(s[c]) * static_cast<double>(s[c]));
    if (count == 1) {
      buckets[stats::KeyOf(mx[c])] += 1;
      continue;
    }
    const float big = std::fabs(mn[c]) > std::fabs(mx[c]) ? mn[c] : mx[c];
    buckets[stats::KeyOf(mn[c])] += 1;
    buckets[stats::KeyOf(mx[c])] += 1;
    buckets[stats::KeyOf(big)] += count - 2;
  }
  std::vector<uint16_t> keys;
  std::vector<uint64_t> counts;
  for (const auto& [k, v] : buckets) {
    if (v == 0) continue;
    keys.push_back(k);
    counts.push_back(v);
  }
  QCAL_ASSIGN_OR_RETURN(stats::KeySketch sketch,
                        stats::KeySketch::FromBuckets(std::move(keys), std::move(counts)));
  return stats::TensorStats::FromParts(n, t.count(), std::move(mn), std::move(mx),
                                       std::move(sum), std::move(sumsq), std::move(sketch));
}

absl::Status Derive(stats::TensorStats* t, const std::vector<float>& s,
                    const std::string& what) {
  if (t->channels() != static_cast<int64_t>(s.size())) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has ", t->channels(),
                                                   " channels; the smoothing scales ",
                                                   s.size()));
  }
  auto derived = DivideChannels(*t, s);
  if (!derived.ok()) {
    return absl::InternalError(absl::StrCat(what, ": ", derived.status().message()));
  }
  *t = std::move(derived).value();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<stats::StatsSet> DeriveSmoothedStats(const stats::StatsSet& set,
                                                    const SmoothingPlan& plan) {
  stats::StatsSet out = set;
  for (const GroupScales& g : plan.applied) {
    for (const std::string& l : g.group.linears) {
      stats::LinearStats* ls = out.FindMutable(l);
      if (ls == nullptr) return absl::NotFoundError(absl::StrCat("no statistics for ", l));
      QCAL_RETURN_IF_ERROR(Derive(&ls->input, g.scales, l + " input"));
    }
    if (!g.group.source_is_norm) {
      stats::LinearStats* ls = out.FindMutable(g.group.source);
      if (ls != nullptr) {
        QCAL_RETURN_IF_ERROR(Derive(&ls->output, g.scales, g.group.source + " output"));
      }
    }
  }
  return out;
}

}  // namespace qcal::exporter
