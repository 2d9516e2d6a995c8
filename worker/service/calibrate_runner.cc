// TASK_CALIBRATE: runs the task's samples through the model and reports every
// linear's statistics.
#include "common/stats/stats_proto.h"
#include "worker/service/runners.h"

namespace qcal {
namespace {

class CalibrateRunner final : public TaskRunner {
 public:
  explicit CalibrateRunner(ModelCache* models) : models_(models) {}

  absl::StatusOr<TaskOutcome> Run(const TaskContext& ctx) override {
    auto engine = models_->Engine(ctx.task);
    if (!engine.ok()) return engine.status();
    auto samples = models_->Samples(ctx.task);
    if (!samples.ok()) return samples.status();
    stats::StatsSet stats;
    absl::Status st = (*engine)->Accumulate(*samples, &stats, ctx.keep_going);
    if (!st.ok()) return st;
    TaskOutcome out;
    out.samples = static_cast<int64_t>(samples->size());
    out.tokens = stats.tokens();
    stats::ToProto(stats, &out.stats);
    return out;
  }
  std::string loaded_model() const override { return models_->loaded_model(); }

 private:
  ModelCache* const models_;
};

}  // namespace

std::unique_ptr<TaskRunner> MakeCalibrateRunner(ModelCache* models) {
  return std::make_unique<CalibrateRunner>(models);
}

}  // namespace qcal
