// Coordinator::Export and the worker-side statistics read of an export task. Kept
// apart from coordinator.cc so the core's translation units stay small; the export
// itself (weights, smoothing, files) runs on a worker (common/export).
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/export/export.h"
#include "common/version.h"
#include "common/quant/clip.h"
#include "common/quant/response_json.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"
#include "server/core/coordinator.h"
#include "server/core/records.h"

namespace qcal::server {
namespace {

using google::protobuf::util::TimeUtil;

// Normalizes and checks everything that needs no state. Fills defaults.
absl::Status NormalizeExportRequest(v1::ExportRequest* req) {
  if (req->job_id().empty()) return absl::InvalidArgumentError("job_id is empty");
  if (req->format().empty()) req->set_format("mllm");
  QCAL_ASSIGN_OR_RETURN(exporter::Format format, exporter::ParseFormat(req->format()));
  if (req->smoothing().empty()) req->set_smoothing("none");
  QCAL_ASSIGN_OR_RETURN(exporter::Smoothing smoothing, exporter::ParseSmoothing(req->smoothing()));
  req->set_smoothing(exporter::SmoothingName(smoothing));
  if (req->mode().empty()) req->set_mode("abs");
  if (req->mode() != "abs" && req->mode() != "mllm") {
    return absl::InvalidArgumentError(
        absl::StrCat("mode \"", req->mode(), "\" is not \"abs\" or \"mllm\""));
  }
  const bool smoothed = smoothing.method != exporter::SmoothingMethod::kNone;
  if (smoothed && (format == exporter::Format::kMllm || format == exporter::Format::kStats)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "smoothing \"", req->smoothing(), "\" applies to the safetensors and compressed-tensors ",
        "formats; format \"", req->format(), "\" is written from the unsmoothed model"));
  }
  // vLLM has no migration scales: a smoothed compressed-tensors checkpoint is fused.
  if (smoothed && format == exporter::Format::kCompressedTensors) req->set_fuse(true);
  if (req->fuse() && !smoothed) {
    return absl::InvalidArgumentError("fuse needs a smoothing (smoothquant[:alpha] or logeq)");
  }
  if (req->per_channel_weights() && format != exporter::Format::kSafetensors) {
    return absl::InvalidArgumentError(
        "per_channel_weights applies to format \"safetensors\" only (compressed-tensors is "
        "always per channel, mllm per tensor)");
  }
  switch (req->threshold_choice_case()) {
    case v1::ExportRequest::kThreshold:
      QCAL_RETURN_IF_ERROR(quant::ValidateThreshold(req->threshold()));
      break;
    case v1::ExportRequest::kRecommended:
      if (!req->recommended()) {
        return absl::InvalidArgumentError("recommended must be true when set");
      }
      break;
    default:
      return absl::InvalidArgumentError("give a threshold (> 0) or recommended");
  }
  if (req->output().empty()) return absl::InvalidArgumentError("output is empty");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<const Coordinator::JobView*> Coordinator::ExportSourcesLocked(
    const v1::Job& parent, const std::string& out) const {
  // The newest finished evaluation (ids sort by creation).
  const JobView* evaluation = nullptr;
  for (const auto& [id, j] : jobs_) {
    if (j.record.kind() == v1::JOB_KIND_EVALUATE && j.record.parent_job() == parent.id() &&
        j.record.job().state() == v1::JOB_SUCCEEDED) {
      evaluation = &j;
    }
    // Two exports must not write the same folder.
    if (j.record.kind() == v1::JOB_KIND_EXPORT && !IsFinal(j.record.job().state()) &&
        j.record.export_payload().output_dir() == out) {
      return absl::AlreadyExistsError(absl::StrCat("export ", id, " is already writing ", out));
    }
  }
  return evaluation;
}

absl::StatusOr<double> Coordinator::ExportThreshold(const v1::ExportRequest& req,
                                                    const v1::Job& parent,
                                                    const JobView* evaluation) {
  if (req.threshold_choice_case() != v1::ExportRequest::kRecommended) return req.threshold();
  if (evaluation == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", parent.id(), " has no finished evaluation to take a recommended threshold ",
        "from; run an evaluation first or give a threshold"));
  }
  const v1::EvaluateResponse& er = evaluation->record.evaluate_response();
  if (!er.has_recommended_threshold()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "evaluation ", evaluation->record.job().id(), " of job ", parent.id(),
        " recommends no threshold (", er.recommendation_note(), "); give a threshold"));
  }
  return er.recommended_threshold();
}

absl::StatusOr<v1::Operation> Coordinator::Export(const v1::ExportRequest& request) {
  QCAL_RETURN_IF_ERROR(CheckRoomFor("new exports"));
  v1::ExportRequest req = request;
  QCAL_RETURN_IF_ERROR(NormalizeExportRequest(&req));
  if (!output_paths_) {
    return absl::FailedPreconditionError(
        "this coordinator has no output root (--output-root); it cannot export");
  }
  QCAL_ASSIGN_OR_RETURN(std::string out, output_paths_->ResolveForWrite("output", req.output()));
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  std::error_code ec;
  if (std::filesystem::exists(out, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("output ", out, " already exists"));
  }
  v1::Operation op;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(req.job_id());
    if (it == jobs_.end() || KindOf(it->second.record).is_operation()) {
      return absl::NotFoundError(absl::StrCat("no job \"", req.job_id(), "\""));
    }
    const v1::Job& parent = it->second.record.job();
    if (parent.state() != v1::JOB_CALIBRATED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", parent.id(), " is ", v1::JobState_Name(parent.state()),
          "; only a calibrated job can be exported"));
    }
    QCAL_ASSIGN_OR_RETURN(const JobView* evaluation, ExportSourcesLocked(parent, out));
    QCAL_ASSIGN_OR_RETURN(double threshold, ExportThreshold(req, parent, evaluation));
    QCAL_ASSIGN_OR_RETURN(JobView j, PlanExportLocked(req, threshold, out));
    if (evaluation != nullptr) {
      // The `stats` format carries mllm's model_res_acc.json of that evaluation, keyed
      // by the model as submitted (what `qcal stats --format model-res-acc` writes).
      QCAL_ASSIGN_OR_RETURN(*j.record.mutable_export_payload()->mutable_model_res_acc_json(),
                            quant::ModelResAccJsonOf(evaluation->record.evaluate_response(),
                                                     parent.spec().model()));
    }
    const std::string id = j.record.job().id();
    op.set_name("operations/" + id);
    ExportKind().DescribeOperation(j.record, &op);
    QCAL_RETURN_IF_ERROR(InsertNewJob(std::move(j), 1));
  }
  return op;
}

absl::StatusOr<Coordinator::JobView> Coordinator::PlanExportLocked(const v1::ExportRequest& req,
                                                                   double threshold,
                                                                   const std::string& output_dir) {
  const v1::Job& parent = jobs_.at(req.job_id()).record.job();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "export-%06" PRId64 "-", next_job_seq_);
  const std::string id = buf + NewId("").substr(12);

  // What provenance.json starts from; the worker adds hashes and the export's fields.
  nlohmann::ordered_json prov;
  prov["qcal_version"] = kQcalVersion;
  prov["operation"] = "operations/" + id;
  prov["created"] = TimeUtil::ToString(ToProto(options_.now()));
  auto as_json = [](const google::protobuf::Message& m) -> absl::StatusOr<nlohmann::ordered_json> {
    google::protobuf::util::JsonPrintOptions po;
    po.preserve_proto_field_names = true;
    po.always_print_primitive_fields = true;
    std::string text;
    if (!google::protobuf::util::MessageToJsonString(m, &text, po).ok()) {
      return absl::InternalError(absl::StrCat("cannot print ", m.GetTypeName(), " as JSON"));
    }
    auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InternalError(absl::StrCat("cannot re-read ", m.GetTypeName()));
    return j;
  };
  QCAL_ASSIGN_OR_RETURN(prov["job"], as_json(parent));
  QCAL_ASSIGN_OR_RETURN(prov["request"], as_json(req));

  JobView j;
  v1::JobRecord& r = j.record;
  r.set_kind(v1::JOB_KIND_EXPORT);
  r.set_parent_job(parent.id());
  v1::ExportTaskPayload* payload = r.mutable_export_payload();
  *payload->mutable_request() = req;
  payload->set_threshold(threshold);
  payload->set_output_dir(output_dir);
  payload->set_provenance_json(prov.dump());
  r.set_shard_size(1);
  r.set_next_task_seq(1);
  v1::Job* job = r.mutable_job();
  job->set_id(id);
  job->set_state(v1::JOB_PENDING);
  *job->mutable_spec() = parent.spec();
  job->set_resolved_model(parent.resolved_model());
  job->set_resolved_corpus(parent.resolved_corpus());
  job->set_architecture(parent.architecture());
  job->mutable_progress()->set_shards_total(1);
  job->mutable_progress()->set_samples_total(0);
  *job->mutable_create_time() = ToProto(options_.now());
  return j;
}

absl::StatusOr<StatsReader> Coordinator::OpenTaskStats(const v1::GetTaskStatsRequest& r,
                                                       int64_t max_chunk_bytes) {
  std::string parent;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(r.task_id());
    if (it == tasks_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("task ", r.task_id(), " is not leased (unknown, expired or done)"));
    }
    const v1::TaskRecord& t = it->second;
    if (t.lease_id() != r.lease_id() || t.worker_id() != r.worker_id()) {
      return absl::FailedPreconditionError(
          absl::StrCat("lease ", r.lease_id(), " of task ", r.task_id(), " is not current"));
    }
    const JobView& j = jobs_.at(t.job_id());
    if (!KindOf(j.record).reads_parent_stats()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", r.task_id(), " is a ", KindOf(j.record).noun(), " task; only export tasks read statistics"));
    }
    parent = j.record.parent_job();
  }
  return OpenStats(parent, /*allow_partial=*/false, max_chunk_bytes);
}

absl::Status Coordinator::StreamTaskStats(const v1::GetTaskStatsRequest& r,
                                          int64_t max_chunk_bytes,
                                          const std::function<bool(const v1::JobStatsChunk&)>& fn) {
  QCAL_ASSIGN_OR_RETURN(StatsReader reader, OpenTaskStats(r, max_chunk_bytes));
  while (true) {
    QCAL_ASSIGN_OR_RETURN(std::optional<v1::JobStatsChunk> chunk, reader.Next());
    if (!chunk || !fn(*chunk)) return absl::OkStatus();
  }
}

}  // namespace qcal::server
