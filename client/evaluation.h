// Reading threshold evaluations (EvaluateResponse, evaluation.proto) on the client:
// finding a job's newest one, the results table of `evaluate` and `run`, and mllm's
// model_res_acc.json. Used by evaluate, shadow-layers, stats and run.
#ifndef QCAL_CLIENT_EVALUATION_H_
#define QCAL_CLIENT_EVALUATION_H_

#include <functional>
#include <optional>
#include <string>

#include "common/quant/response_json.h"
#include "absl/status/statusor.h"
#include "client/connection.h"
#include "proto/qcal/v1/evaluation.pb.h"
#include "proto/qcal/v1/operations.pb.h"

namespace CLI {
class App;
}

namespace qcal::client {

// --budget and --budget-metric of the recommendation, shared by evaluate and run.
struct BudgetFlags {
  std::optional<double> budget;  // unset: the coordinator's default (0.01)
  std::string metric;            // "", "res", "ppl"
};
void AddBudgetFlags(CLI::App* cmd, BudgetFlags* flags);
void ApplyBudgetFlags(const BudgetFlags& flags, v1::EvaluateRequest* request);

// A finished, successful evaluation.
struct FoundEvaluation {
  std::string operation;  // "operations/<id>"
  v1::EvaluateResponse response;
};

// The response of a done operation; FAILED_PRECONDITION when it is not done or ended
// with an error, INTERNAL when its response is not an EvaluateResponse.
absl::StatusOr<v1::EvaluateResponse> EvaluateResponseOf(const v1::Operation& op);

// Calls `fn` with each of the job's operations (evaluations and exports; ListOperations
// with filter "job=<id>", newest first, every page) until it returns false. Errors are
// the calls' statuses.
absl::Status ForEachJobOperation(const Connection& connection, const std::string& job_id,
                                 const std::function<bool(const v1::Operation&)>& fn);

// The job's newest operation that is done, without error, with an EvaluateResponse
// (ListOperations with filter "job=<id>", newest first, every page); nullopt when
// there is none. Errors are the calls' statuses.
absl::StatusOr<std::optional<FoundEvaluation>> FindNewestEvaluation(
    const Connection& connection, const std::string& job_id);

// The threshold as mllm's JSON keys write it: "8", "10000000", "1.5".
std::string FormatThreshold(double threshold);

// The result for `threshold` (exact match), or null.
const v1::ThresholdResult* FindThresholdResult(const v1::EvaluateResponse& response,
                                               double threshold);

// The result of the recommended threshold, or null when there is none.
const v1::ThresholdResult* RecommendedResult(const v1::EvaluateResponse& response);

// The results of an evaluation for a person, ending with a newline:
//   evaluation of job-1 (mode abs, 128 samples)
//     THRESHOLD  RES     PPL     CLIP_IN  NO_CLIP_IN  CLIP_OUT  NO_CLIP_OUT  SHADOW  SHADOW_LAYERS
//     float      0.6328  12.345  -        -           -         -            -       -
//     1          0.0312  913.2   0        43          0         43           6       {0, 1, 2, 3, 4, 5}
//   * 8          0.6250  12.512  40       3           42        1            1       {1}
//   recommended threshold: 8 (1 shadow layer: {1}); <recommendation note>
// ('*' marks the recommended row; "no recommended threshold: <note>" when none; "-"
// for a metric that is not a number.)
std::string FormatEvaluationTable(const v1::EvaluateResponse& response);

// mllm's model_res_acc.json for the response (common/quant/response_json.h).
using quant::ModelResAccJsonOf;

// The response as JSON indented by 2 (the mapping of MessageToJsonLine: .proto field
// names, defaults printed, int64 as strings), for evaluation.json.
absl::StatusOr<std::string> EvaluateResponseJson(const v1::EvaluateResponse& response);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_EVALUATION_H_
