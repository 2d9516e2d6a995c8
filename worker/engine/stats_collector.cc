#include "worker/engine/stats_collector.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace qcal {

StatsCollector::StatsCollector(const std::vector<LinearModule>& linears, bool tensor_ops)
    : linears_(linears), tensor_ops_(tensor_ops) {
  stats_.reserve(linears.size());
  for (const auto& l : linears) {
    stats_.emplace_back(stats::TensorStats(l.in_features), stats::TensorStats(l.out_features));
  }
}

absl::Status StatsCollector::OnLinear(int index, const at::Tensor& input,
                                      const at::Tensor& output) {
  if (index < 0 || index >= static_cast<int>(stats_.size())) {
    return absl::InternalError(absl::StrCat("linear index ", index, " out of range"));
  }
  const std::string& name = linears_[index].name;
  absl::Status s = Add(name + " input", input, &stats_[index].first);
  if (!s.ok()) return s;
  return Add(name + " output", output, &stats_[index].second);
}

absl::Status StatsCollector::Add(const std::string& what, const at::Tensor& x,
                                 stats::TensorStats* s) {
  const int64_t channels = x.size(-1);
  if (channels != s->channels()) {
    return absl::InternalError(absl::StrCat(what, " has ", channels, " channels, expected ",
                                            s->channels()));
  }
  at::Tensor rows = x.reshape({-1, channels});
  if (valid_rows_.defined()) rows = rows.index_select(0, valid_rows_);
  if (rows.size(0) == 0) return absl::OkStatus();
  if (rows.scalar_type() != at::kFloat) rows = rows.to(at::kFloat);
  absl::Status st;
  if (!tensor_ops_ && rows.is_cpu()) {
    rows = rows.contiguous();
    st = s->AddRows(rows.data_ptr<float>(), rows.size(0));
  } else {
    // Device path: reduce on the device, move O(channels + keys) to the host.
    const int64_t n = rows.size(0);
    at::Tensor mn = rows.amin(0).cpu().contiguous();
    at::Tensor mx = rows.amax(0).cpu().contiguous();
    at::Tensor d = rows.to(at::kDouble);
    at::Tensor sum = d.sum(0).cpu().contiguous();
    at::Tensor sumsq = (d * d).sum(0).cpu().contiguous();
    // Sketch key = top 16 bits of the float's bit pattern (see key_sketch.h).
    at::Tensor keys = at::bitwise_and(at::bitwise_right_shift(rows.contiguous().view(at::kInt), 16),
                                      0xFFFF)
                          .reshape({-1})
                          .to(at::kLong);
    at::Tensor counts = at::bincount(keys, {}, stats::kNumKeys).cpu().contiguous();
    st = s->AddPartial(n, mn.data_ptr<float>(), mx.data_ptr<float>(), sum.data_ptr<double>(),
                       sumsq.data_ptr<double>(), counts.data_ptr<int64_t>());
  }
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(what, ": ", st.message()));
  return absl::OkStatus();
}

}  // namespace qcal
