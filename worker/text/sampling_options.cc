#include "worker/text/sampling_options.h"

#include "absl/strings/str_cat.h"

namespace qcal::text {

absl::Status ValidateSamplingOptions(const SamplingOptions& o) {
  if (o.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num-samples must be at least 1 (got ", o.num_samples, ")"));
  }
  if (o.seq_len < 1 || o.seq_len > kMaxSeqLen) {
    return absl::InvalidArgumentError(absl::StrCat("--seq-len must be between 1 and ",
                                                   kMaxSeqLen, " (got ", o.seq_len, ")"));
  }
  if (o.num_samples > kMaxTotalTokens / o.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--num-samples ", o.num_samples, " times --seq-len ", o.seq_len,
        " exceeds ", kMaxTotalTokens, " tokens"));
  }
  if (o.skip_docs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--skip-docs must not be negative (got ", o.skip_docs, ")"));
  }
  if (o.mode != SamplingMode::kDocument && o.mode != SamplingMode::kPacked) {
    return absl::InvalidArgumentError("--mode must be document or packed");
  }
  if (o.order != SamplingOrder::kSequential && o.order != SamplingOrder::kShuffled) {
    return absl::InvalidArgumentError("--order must be sequential or shuffled");
  }
  return absl::OkStatus();
}

absl::string_view SamplingModeName(SamplingMode mode) {
  return mode == SamplingMode::kPacked ? "packed" : "document";
}

absl::string_view SamplingOrderName(SamplingOrder order) {
  return order == SamplingOrder::kShuffled ? "shuffled" : "sequential";
}

absl::StatusOr<SamplingMode> ParseSamplingMode(absl::string_view name) {
  if (name == "document") return SamplingMode::kDocument;
  if (name == "packed") return SamplingMode::kPacked;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode must be document or packed (got \"", name, "\")"));
}

absl::StatusOr<SamplingOrder> ParseSamplingOrder(absl::string_view name) {
  if (name == "sequential") return SamplingOrder::kSequential;
  if (name == "shuffled") return SamplingOrder::kShuffled;
  return absl::InvalidArgumentError(
      absl::StrCat("--order must be sequential or shuffled (got \"", name, "\")"));
}

std::string SamplingOptionsToFlags(const SamplingOptions& o) {
  std::string flags = absl::StrCat("--num-samples ", o.num_samples, " --seq-len ", o.seq_len,
                                   " --mode ", SamplingModeName(o.mode), " --order ",
                                   SamplingOrderName(o.order), " --seed ", o.seed,
                                   " --skip-docs ", o.skip_docs);
  if (o.skip_bad_lines) absl::StrAppend(&flags, " --skip-bad-lines");
  if (!o.add_special_tokens) absl::StrAppend(&flags, " --no-special-tokens");
  return flags;
}

corpus::CorpusReadOptions CorpusReadOptionsFor(const SamplingOptions& options) {
  corpus::CorpusReadOptions read;
  read.skip_bad_records = options.skip_bad_lines;
  return read;
}

}  // namespace qcal::text
