// The checks a calibration's `sampling` and an evaluation's `eval_sampling` share
// (validation.cc, evaluate_op.cc): one copy, with the field named in every message.
// Internal to server/core.
#ifndef QCAL_SERVER_CORE_SAMPLING_CHECKS_H_
#define QCAL_SERVER_CORE_SAMPLING_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::server {

struct SamplingDefaults {
  int64_t num_samples = 512;
  int64_t seq_len = 512;
  int64_t min_seq_len = 1;  // 2 for evaluations: the last token is the label
};

// Fills the unset fields of `s` (num_samples and seq_len from `d`, mode document,
// order shuffled, seed 42) and checks every one; INVALID_ARGUMENT messages start
// with `field` ("sampling", "eval_sampling").
absl::Status NormalizeSampling(const std::string& field, const SamplingDefaults& d,
                               v1::SamplingOptions* s);

// The corpus at `path` (named `what` in messages, e.g. "spec.corpus") has a usable
// document after skip_docs, and in document mode at least num_samples of them.
absl::Status CheckCorpusFor(const std::string& what, const std::string& path,
                            const std::string& field, const v1::SamplingOptions& s);

// seq_len fits the model's max_position_embeddings.
absl::Status CheckSeqLenFits(const std::string& field, const v1::SamplingOptions& s,
                             const ModelConfig& config);

}  // namespace qcal::server

#endif  // QCAL_SERVER_CORE_SAMPLING_CHECKS_H_
