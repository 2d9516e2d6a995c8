// Coordinator: threshold evaluations as long-running operations.
#include <cinttypes>
#include "server/core/coordinator.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/stats/stats_proto.h"
#include "common/status_macros.h"
#include "server/core/evaluation_plan.h"
#include "server/core/records.h"
#include "server/core/sampling_checks.h"

namespace qcal::server {

absl::StatusOr<stats::StatsSet> Coordinator::ReadStats(const std::string& job_id, int64_t linears) {
  v1::StatsSetProto all;
  for (int64_t i = 0; i < linears; ++i) {
    QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kStats, StatsKey(job_id, i)));
    if (!value) return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " has no statistics for linear ", i));
    if (!all.add_linears()->ParseFromString(*value)) return Corrupt("stats of " + job_id);
  }
  return stats::StatsSetFromProto(all);
}

namespace {

// An evaluation's internal job record: its variants and its plan, the parent's
// spec with the evaluation's batch size, one unit per variant and shard.
v1::JobRecord EvaluationRecordOf(const v1::EvaluateRequest& req, const v1::Job& parent,
                                 EvaluationPlan plan, const std::string& corpus,
                                 const std::string& id) {
  v1::JobRecord r;
  const v1::SamplingOptions& s = req.eval_sampling();
  r.set_kind(v1::JOB_KIND_EVALUATE);
  r.set_parent_job(parent.id());
  *r.mutable_evaluate() = req;
  for (auto& v : plan.variants) {
    v.set_eval_corpus(corpus);
    *v.mutable_eval_sampling() = s;
    *r.add_variants() = v;
  }
  *r.mutable_evaluate_response() = plan.response;
  const int64_t per = (s.num_samples() + req.shard_size() - 1) / req.shard_size();
  r.set_units_per_variant(per);
  r.set_shard_size(req.shard_size());
  r.set_next_task_seq(1);
  v1::Job* job = r.mutable_job();
  job->set_id(id);
  job->set_state(v1::JOB_PENDING);
  *job->mutable_spec() = parent.spec();
  job->mutable_spec()->set_batch_size(req.batch_size());
  job->set_resolved_model(parent.resolved_model());
  job->set_resolved_corpus(corpus);
  job->set_architecture(parent.architecture());
  job->mutable_progress()->set_shards_total(per * r.variants_size());
  job->mutable_progress()->set_samples_total(s.num_samples() * r.variants_size());
  return r;
}

}  // namespace

absl::StatusOr<v1::Operation> Coordinator::Evaluate(const v1::EvaluateRequest& request) {
  QCAL_RETURN_IF_ERROR(CheckRoomFor("new evaluations"));
  v1::EvaluateRequest req = request;
  QCAL_RETURN_IF_ERROR(NormalizeEvaluateRequest(&req));
  v1::Job parent;
  int64_t linears = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(req.job_id());
    if (it == jobs_.end() || KindOf(it->second.record).is_operation()) {
      return absl::NotFoundError(absl::StrCat("no job \"", req.job_id(), "\""));
    }
    parent = it->second.record.job();
    linears = it->second.record.linear_names_size();
  }
  if (parent.state() != v1::JOB_CALIBRATED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", parent.id(), " is ",
                                                      v1::JobState_Name(parent.state()),
                                                      "; only a calibrated job can be evaluated"));
  }
  if (req.shard_size() == 0) req.set_shard_size(16);
  if (req.batch_size() == 0) req.set_batch_size(parent.spec().batch_size());
  if (req.shard_size() < 1 || req.shard_size() > 4096 || req.batch_size() < 1 || req.batch_size() > 1024) {
    return absl::InvalidArgumentError("shard_size must be in [1, 4096] and batch_size in [1, 1024]");
  }
  v1::SamplingOptions* s = req.mutable_eval_sampling();
  QCAL_RETURN_IF_ERROR(NormalizeSampling(
      "eval_sampling", SamplingDefaults{256, parent.spec().sampling().seq_len(), 2}, s));
  if (req.eval_corpus().empty()) return absl::InvalidArgumentError("eval_corpus is empty");
  QCAL_ASSIGN_OR_RETURN(std::string corpus, paths_.ResolveFile("eval_corpus", req.eval_corpus()));
  QCAL_RETURN_IF_ERROR(CheckCorpusFor("eval_corpus", corpus, "eval_sampling", *s));
  req.set_eval_corpus(corpus);
  QCAL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(parent.resolved_model()));
  QCAL_RETURN_IF_ERROR(CheckSeqLenFits("eval_sampling", *s, config));
  QCAL_ASSIGN_OR_RETURN(stats::StatsSet stats, ReadStats(parent.id(), linears));
  QCAL_ASSIGN_OR_RETURN(EvaluationPlan plan, PlanEvaluation(req, stats, config));

  const int64_t per = (s->num_samples() + req.shard_size() - 1) / req.shard_size();
  const int64_t units = per * static_cast<int64_t>(plan.variants.size());
  if (units > kMaxShardsPerJob) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the evaluation has ", plan.variants.size(), " variants x ", per, " shards = ", units,
        " units, above the limit of ", kMaxShardsPerJob,
        "; evaluate fewer thresholds or samples, or raise shard_size"));
  }
  v1::Operation op;
  {
    absl::MutexLock lock(&mu_);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "eval-%06" PRId64 "-", next_job_seq_);
    const std::string id = buf + NewId("").substr(12);
    JobView j;
    j.record = EvaluationRecordOf(req, parent, std::move(plan), corpus, id);
    *j.record.mutable_job()->mutable_create_time() = ToProto(options_.now());
    op.set_name("operations/" + id);
    EvaluateKind().DescribeOperation(j.record, &op);
    QCAL_RETURN_IF_ERROR(InsertNewJob(std::move(j), units));
  }
  return op;
}

}  // namespace qcal::server
