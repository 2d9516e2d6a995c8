// mllm's model_res_acc.json from a finished evaluation as the API returns it
// (v1::EvaluateResponse): shared by the client (`stats`, `run`) and the coordinator
// (the `stats` export), so both write the same bytes.
#ifndef QCAL_COMMON_QUANT_RESPONSE_JSON_H_
#define QCAL_COMMON_QUANT_RESPONSE_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "proto/qcal/v1/evaluation.pb.h"

namespace qcal::quant {

// quant::ModelResAccJson (report.h) of the response:
// {"<model>": {"<t>": {"t01m_thre", clip counts and names, "res"}, ...}}, thresholds
// in the response's order. `model` is the key (mllm writes its --model_name).
absl::StatusOr<std::string> ModelResAccJsonOf(const v1::EvaluateResponse& response,
                                              const std::string& model);

}  // namespace qcal::quant

#endif  // QCAL_COMMON_QUANT_RESPONSE_JSON_H_
