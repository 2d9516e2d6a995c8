#include "client/evaluation.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/quant/report.h"
#include "common/status_macros.h"
#include "client/columns.h"
#include "client/json_output.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/operations.grpc.pb.h"

namespace qcal::client {

void AddBudgetFlags(CLI::App* cmd, BudgetFlags* flags) {
  cmd->add_option_function<double>(
         "--budget", [flags](const double& v) { flags->budget = v; },
         "Largest allowed drop of res below the float model (or, with "
         "--budget-metric ppl, relative perplexity increase) for the recommendation "
         "[0.01]")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--budget-metric", flags->metric,
                  "What --budget limits: res (last-token accuracy) or ppl [res]")
      ->check(CLI::IsMember({"res", "ppl"}));
}

void ApplyBudgetFlags(const BudgetFlags& flags, v1::EvaluateRequest* request) {
  if (flags.budget) request->set_budget(*flags.budget);
  request->set_budget_metric(flags.metric);
}
namespace {

constexpr int32_t kListPageSize = 100;

std::string Metric(double value, const char* format) {
  if (!std::isfinite(value)) return "-";
  return absl::StrFormat(format, value);
}

std::vector<int64_t> Layers(const v1::ThresholdResult& r) {
  return std::vector<int64_t>(r.shadow_layers().begin(), r.shadow_layers().end());
}

}  // namespace

absl::StatusOr<v1::EvaluateResponse> EvaluateResponseOf(const v1::Operation& op) {
  if (!op.done()) {
    return absl::FailedPreconditionError(
        absl::StrCat("operation ", op.name(), " is not done"));
  }
  if (op.has_error() && op.error().code() != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "operation ", op.name(), " ended with an error: ", op.error().message()));
  }
  v1::EvaluateResponse response;
  if (!op.has_response() || !op.response().UnpackTo(&response)) {
    return absl::InternalError(absl::StrCat("operation ", op.name(),
                                            " did not return a qcal.v1.EvaluateResponse (",
                                            op.response().type_url(), ")"));
  }
  return response;
}

absl::Status ForEachJobOperation(const Connection& connection, const std::string& job_id,
                                 const std::function<bool(const v1::Operation&)>& fn) {
  auto stub = v1::Operations::NewStub(connection.channel());
  v1::ListOperationsRequest request;
  request.set_filter(absl::StrCat("job=", job_id));
  request.set_page_size(kListPageSize);
  while (true) {
    v1::ListOperationsResponse page;
    auto context = connection.UnaryContext();
    if (grpc::Status s = stub->ListOperations(context.get(), request, &page); !s.ok()) {
      return connection.ToStatus(s);
    }
    for (const v1::Operation& op : page.operations()) {
      if (!fn(op)) return absl::OkStatus();
    }
    if (page.next_page_token().empty()) return absl::OkStatus();
    if (page.next_page_token() == request.page_token()) {
      return absl::InternalError("the server returned the same page token twice");
    }
    request.set_page_token(page.next_page_token());
  }
}

absl::StatusOr<std::optional<FoundEvaluation>> FindNewestEvaluation(
    const Connection& connection, const std::string& job_id) {
  std::optional<FoundEvaluation> found;
  absl::Status parse = absl::OkStatus();
  QCAL_RETURN_IF_ERROR(ForEachJobOperation(connection, job_id, [&](const v1::Operation& op) {
    if (!op.done() || (op.has_error() && op.error().code() != 0)) return true;
    if (!op.has_response() || !op.response().Is<v1::EvaluateResponse>()) return true;
    found.emplace();
    found->operation = op.name();
    if (!op.response().UnpackTo(&found->response)) {
      parse = absl::DataLossError(absl::StrCat("the response of ", op.name(), " cannot be parsed"));
    }
    return false;
  }));
  QCAL_RETURN_IF_ERROR(parse);
  return found;
}

std::string FormatThreshold(double threshold) { return quant::ThresholdKey(threshold); }

const v1::ThresholdResult* FindThresholdResult(const v1::EvaluateResponse& response,
                                               double threshold) {
  for (const v1::ThresholdResult& r : response.thresholds()) {
    if (r.threshold() == threshold) return &r;
  }
  return nullptr;
}

const v1::ThresholdResult* RecommendedResult(const v1::EvaluateResponse& response) {
  if (!response.has_recommended_threshold()) return nullptr;
  return FindThresholdResult(response, response.recommended_threshold());
}

std::string FormatEvaluationTable(const v1::EvaluateResponse& response) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"", "THRESHOLD", "RES", "PPL", "CLIP_IN", "NO_CLIP_IN", "CLIP_OUT",
                  "NO_CLIP_OUT", "SHADOW", "SHADOW_LAYERS"});
  rows.push_back({"", "float", Metric(response.float_res(), "%.4f"),
                  Metric(response.float_perplexity(), "%.3f"), "-", "-", "-", "-", "-",
                  "-"});
  const v1::ThresholdResult* recommended = RecommendedResult(response);
  for (const v1::ThresholdResult& r : response.thresholds()) {
    rows.push_back({&r == recommended ? "*" : "", FormatThreshold(r.threshold()),
                    Metric(r.res(), "%.4f"), Metric(r.perplexity(), "%.3f"),
                    absl::StrCat(r.clip_input_num()), absl::StrCat(r.no_clip_input_num()),
                    absl::StrCat(r.clip_output_num()),
                    absl::StrCat(r.no_clip_output_num()),
                    absl::StrCat(r.shadow_layers_size()),
                    quant::FormatLayerSet(Layers(r))});
  }
  std::string out = absl::StrCat("evaluation of ", response.job_id(), " (mode ",
                                 response.mode().empty() ? "abs" : response.mode(), ", ",
                                 response.samples(), " samples)\n", FormatColumns(rows));
  const std::string note = response.recommendation_note().empty()
                               ? ""
                               : absl::StrCat("; ", response.recommendation_note());
  if (recommended != nullptr) {
    const int n = recommended->shadow_layers_size();
    absl::StrAppend(&out, "recommended threshold: ", FormatThreshold(recommended->threshold()),
                    " (", n, " shadow layer", n == 1 ? "" : "s", ": ",
                    quant::FormatLayerSet(Layers(*recommended)), ")", note, "\n");
  } else if (response.has_recommended_threshold()) {
    absl::StrAppend(&out, "recommended threshold: ",
                    FormatThreshold(response.recommended_threshold()),
                    " (not among the results)", note, "\n");
  } else {
    absl::StrAppend(&out, "no recommended threshold",
                    response.recommendation_note().empty()
                        ? ""
                        : absl::StrCat(": ", response.recommendation_note()),
                    "\n");
  }
  return out;
}


absl::StatusOr<std::string> EvaluateResponseJson(const v1::EvaluateResponse& response) {
  auto line = MessageToJsonLine(response);
  if (!line.ok()) return line.status();
  // Re-indented: protobuf's own whitespace indents by one space.
  const auto parsed =
      nlohmann::ordered_json::parse(*line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InternalError("cannot re-read the evaluation's JSON");
  }
  return parsed.dump(2);
}

}  // namespace qcal::client
