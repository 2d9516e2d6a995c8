#include "client/report.h"

#include <cctype>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "client/job_stats.h"
#include "common/quant/shadow.h"
#include "common/stats/summary.h"
#include "google/protobuf/util/time_util.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"

namespace qcal::client {
namespace {

using google::protobuf::util::TimeUtil;
using Json = nlohmann::ordered_json;

// A finite number, or null (JSON has no NaN or infinity).
Json Number(double v) { return std::isfinite(v) ? Json(v) : Json(); }

// "model.layers.3.self_attn.q_proj" -> (3, "self_attn.q_proj"); the first dotted
// number is the decoder layer whatever the architecture's prefix ("transformer.h.3.",
// "gpt_neox.layers.3."); a linear outside the layers (lm_head) has layer -1.
std::pair<int64_t, std::string> LayerAndModule(const std::string& name) {
  size_t start = 0;
  while (start < name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    const std::string part = name.substr(start, end - start);
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(c); })) {
      return {std::stoll(part), end < name.size() ? name.substr(end + 1) : ""};
    }
    start = end + 1;
  }
  return {-1, name};
}

Json SideJson(const stats::TensorStats& t) {
  if (t.empty()) return Json();
  Json out = Json::object();
  for (stats::Mode mode : {stats::Mode::kAbs, stats::Mode::kMllm}) {
    auto s = stats::Summarize(t, mode);
    if (!s.ok()) continue;
    out[stats::ModeName(mode)] = {{"ori", Number(s->ori)},
                                  {"top_0_1", Number(s->top_0_1)},
                                  {"ratio", Number(s->top_0_1 != 0 ? s->ori / s->top_0_1 : NAN)}};
  }
  out["rows"] = t.count();
  out["channels"] = t.channels();
  return out;
}

Json JobJson(const v1::Job& job) {
  const int64_t created = TimeUtil::TimestampToMilliseconds(job.create_time());
  const int64_t updated = TimeUtil::TimestampToMilliseconds(job.update_time());
  const double seconds = std::max<int64_t>(0, updated - created) / 1e3;
  Json workers = Json::array();
  for (const v1::WorkerShare& w : job.progress().workers()) {
    workers.push_back({{"name", w.name().empty() ? w.worker_id() : w.name()},
                       {"samples", w.samples_done()},
                       {"tasks", w.tasks_done()},
                       {"samples_per_second", Number(w.samples_per_second())}});
  }
  const auto& s = job.spec().sampling();
  return {{"id", job.id()},
          {"state", v1::JobState_Name(job.state())},
          {"model", job.spec().model()},
          {"resolved_model", job.resolved_model()},
          {"architecture", job.architecture()},
          {"linear_modules", job.linear_modules()},
          {"corpus", job.spec().corpus()},
          {"sampling", {{"num_samples", s.num_samples()}, {"seq_len", s.seq_len()},
                        {"mode", s.mode()}, {"order", s.order()}, {"seed", s.seed()}}},
          {"samples", job.progress().samples_done()},
          {"tokens", job.progress().tokens_done()},
          {"created", TimeUtil::ToString(job.create_time())},
          {"finished", TimeUtil::ToString(job.update_time())},
          {"seconds", seconds},
          {"tokens_per_second", Number(seconds > 0 ? job.progress().tokens_done() / seconds : NAN)},
          {"workers", workers},
          {"backup_tasks", job.progress().backup_tasks()}};
}

Json EvaluationJsonOf(const FoundEvaluation& found) {
  const v1::EvaluateResponse& r = found.response;
  Json thresholds = Json::array();
  for (const v1::ThresholdResult& t : r.thresholds()) {
    std::vector<int64_t> layers(t.shadow_layers().begin(), t.shadow_layers().end());
    thresholds.push_back({{"threshold", t.threshold()},
                          {"res", Number(t.res())},
                          {"perplexity", Number(t.perplexity())},
                          {"shadow_layers", layers},
                          {"shadow_layers_set", quant::FormatLayerSet(layers)},
                          {"clip_input_num", t.clip_input_num()},
                          {"no_clip_input_num", t.no_clip_input_num()},
                          {"clip_output_num", t.clip_output_num()},
                          {"no_clip_output_num", t.no_clip_output_num()}});
  }
  Json out = {{"operation", found.operation},
              {"mode", r.mode()},
              {"samples", r.samples()},
              {"float_res", Number(r.float_res())},
              {"float_perplexity", Number(r.float_perplexity())},
              {"budget", Number(r.budget())},
              {"budget_metric", r.budget_metric()},
              {"thresholds", thresholds},
              {"recommended_threshold",
               r.has_recommended_threshold() ? Json(r.recommended_threshold()) : Json()},
              {"recommendation_note", r.recommendation_note()}};
  return out;
}

// The threshold the per-tensor sections show: the recommended one, else the largest
// evaluated.
const v1::ThresholdResult* ShownThreshold(const v1::EvaluateResponse& r) {
  if (r.has_recommended_threshold()) {
    if (const auto* t = FindThresholdResult(r, r.recommended_threshold())) return t;
  }
  return r.thresholds().empty() ? nullptr : &r.thresholds(r.thresholds_size() - 1);
}

// Per tensor at `t`: clipped or not, proxy SQNR, and for a not-clipped one its
// per-channel absmax with the outlier channels a shadow runtime extracts.
Json TensorsJson(const v1::ThresholdResult& t, const stats::StatsSet& set) {
  Json out = Json::array();
  for (const v1::LinearClip& l : t.linears()) {
    const stats::LinearStats* stats = set.Find(l.name());
    for (int side = 0; side < 2; ++side) {
      const bool clipped = side == 0 ? l.clip_input() : l.clip_output();
      Json e = {{"linear", l.name()},
                {"side", side == 0 ? "input" : "output"},
                {"clipped", clipped},
                {"scale", Number(side == 0 ? l.input_scale() : l.output_scale())},
                {"sqnr_db", Number(side == 0 ? l.input_sqnr_db() : l.output_sqnr_db())}};
      if (!clipped) {
        const auto& channels = side == 0 ? l.input_outlier_channels() : l.output_outlier_channels();
        e["outlier_channels"] = std::vector<int32_t>(channels.begin(), channels.end());
        if (stats != nullptr) {
          const stats::TensorStats& ts = side == 0 ? stats->input : stats->output;
          std::vector<double> absmax;
          for (float v : ts.AbsMaxPerChannel()) absmax.push_back(v);
          e["absmax_per_channel"] = absmax;
        }
      }
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ReportInputs> GatherReport(const Connection& connection, const std::string& job_id) {
  ReportInputs in;
  {
    auto stub = v1::CalibrationService::NewStub(connection.channel());
    v1::GetJobRequest r;
    r.set_job_id(job_id);
    auto context = connection.UnaryContext();
    if (grpc::Status s = stub->GetJob(context.get(), r, &in.job); !s.ok()) {
      return connection.ToStatus(s);
    }
  }
  if (in.job.state() != v1::JOB_CALIBRATED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is ", v1::JobState_Name(in.job.state()),
        "; a report needs a CALIBRATED job"));
  }
  auto stats = FetchJobStats(connection, job_id, /*allow_partial=*/false);
  if (!stats.ok()) return stats.status();
  in.stats = std::move(stats->set);
  auto evaluation = FindNewestEvaluation(connection, job_id);
  if (!evaluation.ok()) return evaluation.status();
  in.evaluation = *std::move(evaluation);
  absl::Status parse = absl::OkStatus();
  absl::Status listed = ForEachJobOperation(connection, job_id, [&](const v1::Operation& op) {
    if (!op.done() || (op.has_error() && op.error().code() != 0)) return true;
    if (!op.has_response() || !op.response().Is<v1::ExportResponse>()) return true;
    v1::ExportResponse e;
    if (!op.response().UnpackTo(&e)) {
      parse = absl::DataLossError(absl::StrCat("the response of ", op.name(), " cannot be parsed"));
      return false;
    }
    in.exports.push_back(std::move(e));
    return true;
  });
  if (!listed.ok()) return listed;
  if (!parse.ok()) return parse;
  return in;
}

Json ReportJson(const v1::Job& job, const stats::StatsSet& set, const FoundEvaluation* evaluation,
                const std::vector<v1::ExportResponse>& exports_done) {
  Json report = {{"format", "qcal-report/1"}, {"job", JobJson(job)}};
  Json linears = Json::array();
  for (size_t i = 0; i < set.size(); ++i) {
    const stats::LinearStats& l = set.at(i);
    auto [layer, module] = LayerAndModule(l.name);
    linears.push_back({{"name", l.name},
                       {"layer", layer},
                       {"module", module},
                       {"input", SideJson(l.input)},
                       {"output", SideJson(l.output)}});
  }
  report["linears"] = linears;
  report["evaluation"] = Json();
  report["recommended"] = Json();
  report["shown_threshold"] = Json();
  report["tensors"] = Json::array();
  if (evaluation != nullptr) {
    const v1::EvaluateResponse& r = evaluation->response;
    report["evaluation"] = EvaluationJsonOf(*evaluation);
    if (r.has_recommended_threshold()) {
      if (const auto* t = FindThresholdResult(r, r.recommended_threshold())) {
        std::vector<int64_t> layers(t->shadow_layers().begin(), t->shadow_layers().end());
        report["recommended"] = {{"threshold", t->threshold()},
                                 {"shadow_layers", layers},
                                 {"shadow_layers_set", quant::FormatLayerSet(layers)},
                                 {"res", Number(t->res())},
                                 {"perplexity", Number(t->perplexity())}};
      }
    }
    if (const v1::ThresholdResult* shown = ShownThreshold(r)) {
      report["shown_threshold"] = shown->threshold();
      report["tensors"] = TensorsJson(*shown, set);
    }
  }
  // Token counts per expert exist once MoE models do (the architecture table issue);
  // a dense model has none.
  report["experts"] = Json();
  Json exports = Json::array();
  for (const v1::ExportResponse& e : exports_done) {
    std::vector<int64_t> layers(e.shadow_layers().begin(), e.shadow_layers().end());
    exports.push_back({{"format", e.format()},
                       {"output_dir", e.output_dir()},
                       {"threshold", e.threshold()},
                       {"smoothing", e.smoothing().empty() ? "none" : e.smoothing()},
                       {"files", std::vector<std::string>(e.files().begin(), e.files().end())},
                       {"bytes", e.bytes()},
                       {"shadow_layers_set", quant::FormatLayerSet(layers)},
                       {"quantized_linears", e.quantized_linears()},
                       {"smoothed_groups", e.smoothed_groups()}});
  }
  report["exports"] = exports;
  return report;
}

}  // namespace qcal::client
