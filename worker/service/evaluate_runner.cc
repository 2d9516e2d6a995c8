// TASK_EVALUATE: runs the task's evaluation samples through the model variant in
// its payload (float, or simulated W8A8 with the variant's clip decisions) and
// reports one EvaluatePartial per evaluation shard, in order, so the
// coordinator's sums do not depend on how shards were grouped into tasks.
#include <algorithm>

#include "proto/qcal/v1/evaluation.pb.h"
#include "worker/service/runners.h"

namespace qcal {
namespace {

EvalVariant VariantOf(const v1::EvaluateTaskPayload& payload) {
  if (payload.float_baseline()) return EvalVariant::Float();
  std::vector<quant::LinearClip> clips;
  for (const auto& l : payload.linears()) {
    clips.push_back({l.name(), l.clip_input(), l.clip_output(),
                     static_cast<float>(l.input_scale()), static_cast<float>(l.output_scale())});
  }
  return EvalVariant::W8A8(std::move(clips));
}

class EvaluateRunner final : public TaskRunner {
 public:
  explicit EvaluateRunner(ModelCache* models) : models_(models) {}

  absl::StatusOr<TaskOutcome> Run(const TaskContext& ctx) override {
    v1::EvaluateTaskPayload payload;
    if (!ctx.task.payload().UnpackTo(&payload)) {
      return absl::InvalidArgumentError("evaluation task without an EvaluateTaskPayload");
    }
    auto engine = models_->Engine(ctx.task);
    if (!engine.ok()) return engine.status();
    auto samples = models_->Samples(ctx.task);
    if (!samples.ok()) return samples.status();
    const EvalVariant variant = VariantOf(payload);
    auto result = std::make_unique<v1::EvaluateResult>();
    const int64_t size = std::max(1, ctx.task.shard_size());
    const int64_t n = static_cast<int64_t>(samples->size());
    for (int64_t start = 0; start < n; start += size) {
      const int64_t end = std::min(n, start + size);
      std::vector<std::vector<int32_t>> unit(samples->begin() + start, samples->begin() + end);
      quant::EvalMetrics m;
      absl::Status st = (*engine)->Evaluate(unit, variant, &m, [&](int64_t d) {
        return ctx.keep_going(start + d);
      });
      if (!st.ok()) return st;
      v1::EvaluatePartial* p = result->add_shards();
      p->set_hits(m.hits);
      p->set_total(m.total);
      p->set_nll_sum(m.nll_sum);
      p->set_predictions(m.predictions);
    }
    TaskOutcome out;
    out.samples = n;
    out.result = std::move(result);
    return out;
  }
  std::string loaded_model() const override { return models_->loaded_model(); }

 private:
  ModelCache* const models_;
};

}  // namespace

std::unique_ptr<TaskRunner> MakeEvaluateRunner(ModelCache* models) {
  return std::make_unique<EvaluateRunner>(models);
}

}  // namespace qcal
