// Evaluation: the work of an Evaluate operation. Its units are (variant, evaluation
// shard) pairs, variant-major; a task stays within one variant (its units share one
// payload) and reports one EvaluatePartial per unit, kept in the unit's shard
// record. When every unit is done the partials are summed per variant, in unit
// order, so the result does not depend on how units were grouped into tasks.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/core/evaluation_plan.h"
#include "server/core/records.h"
#include "server/core/work_kind.h"

namespace qcal::server {
namespace {

int64_t UnitsPerVariant(const v1::JobRecord& r) {
  return std::max<int64_t>(1, r.units_per_variant());
}

class Evaluate final : public WorkKind {
 public:
  v1::JobKind kind() const override { return v1::JOB_KIND_EVALUATE; }
  const char* noun() const override { return "evaluation"; }
  bool is_operation() const override { return true; }

  bool SameTask(const v1::JobRecord& r, int64_t first, int64_t next) const override {
    return first / UnitsPerVariant(r) == next / UnitsPerVariant(r);
  }

  int64_t TokensPerSample(const v1::JobRecord& r) const override {
    return r.evaluate().eval_sampling().seq_len();
  }

  int64_t SamplesOfShards(const v1::JobRecord& r, int64_t begin, int64_t end) const override {
    const int64_t per = UnitsPerVariant(r), size = r.shard_size();
    const int64_t total = r.evaluate().eval_sampling().num_samples();
    return std::min(total, ((end - 1) % per + 1) * size) - std::min(total, (begin % per) * size);
  }

  void FillTask(const v1::JobRecord& r, int64_t begin, int64_t end,
                v1::Task* task) const override {
    const int64_t per = UnitsPerVariant(r), size = r.shard_size();
    const int64_t total = r.evaluate().eval_sampling().num_samples();
    task->set_kind(v1::TASK_EVALUATE);
    *task->mutable_sampling() = r.evaluate().eval_sampling();
    task->set_sample_begin(std::min(total, (begin % per) * size));
    task->set_sample_end(std::min(total, ((end - 1) % per + 1) * size));
    task->mutable_payload()->PackFrom(r.variants(static_cast<int>(begin / per)));
  }

  absl::StatusOr<CheckedReport> CheckReport(const ReportLayout& layout,
                                            const v1::CompleteTaskHeader&,
                                            const std::vector<v1::LinearStatsProto>& linears,
                                            const google::protobuf::Any* result) const override {
    v1::EvaluateResult er;
    if (!linears.empty() || result == nullptr || !result->UnpackTo(&er)) {
      return absl::InvalidArgumentError("an evaluation report carries one EvaluateResult and no statistics");
    }
    if (er.shards_size() != layout.units) {
      return absl::InvalidArgumentError(absl::StrCat("evaluation report has ", er.shards_size(),
                                                     " shard results; the task has ", layout.units));
    }
    CheckedReport checked;
    // No unit predicts more tokens than the task's samples hold: the sums of a
    // variant's units cannot overflow.
    const int64_t most = layout.samples * layout.tokens_per_sample;
    for (const auto& p : er.shards()) {
      if (p.hits() < 0 || p.total() < p.hits() || p.predictions() < 0 || !std::isfinite(p.nll_sum()) ||
          p.nll_sum() < 0 || p.total() > most || p.predictions() > most) {
        return absl::InvalidArgumentError("evaluation report has inconsistent counts");
      }
      checked.unit_results.push_back(p.SerializeAsString());
    }
    return checked;
  }

  absl::Status Finish(v1::JobRecord& r, const std::vector<v1::ShardRecord>& shards,
                      const CheckedReport&) const override {
    const int64_t per = UnitsPerVariant(r);
    std::vector<v1::EvaluatePartial> sums(r.variants_size());
    for (int64_t u = 0; u < static_cast<int64_t>(shards.size()); ++u) {
      v1::EvaluatePartial p;
      if (!p.ParseFromString(shards[u].result())) return Corrupt("evaluation unit result");
      v1::EvaluatePartial& sum = sums[u / per];
      sum.set_hits(sum.hits() + p.hits());
      sum.set_total(sum.total() + p.total());
      sum.set_nll_sum(sum.nll_sum() + p.nll_sum());
      sum.set_predictions(sum.predictions() + p.predictions());
    }
    return FinishEvaluation(r.evaluate(), sums, r.mutable_evaluate_response());
  }

  void DescribeOperation(const v1::JobRecord& r, v1::Operation* op) const override {
    v1::EvaluateMetadata meta;
    meta.set_job_id(r.parent_job());
    meta.set_units_total(r.job().progress().shards_total());
    meta.set_units_done(r.job().progress().shards_done());
    op->mutable_metadata()->PackFrom(meta);
    if (r.job().state() == v1::JOB_SUCCEEDED) op->mutable_response()->PackFrom(r.evaluate_response());
  }
};

}  // namespace

const WorkKind& EvaluateKind() {
  static const Evaluate kind;
  return kind;
}

}  // namespace qcal::server
