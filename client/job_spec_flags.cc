#include "client/job_spec_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace qcal::client {

void AddSamplingFlags(CLI::App* cmd, SamplingFlags* f, const SamplingFlagNames& names) {
  cmd->add_option_function<int64_t>(
         "--num-samples", [f](const int64_t& v) { f->num_samples = v; },
         absl::StrCat("Number of samples (sequences) [", names.num_samples_default, "]"))
      ->check(CLI::Range(int64_t{1}, kMaxNumSamples));
  cmd->add_option_function<int64_t>(
         "--seq-len", [f](const int64_t& v) { f->seq_len = v; },
         absl::StrCat("Tokens per sample (at most the model's context) [",
                      names.seq_len_default, "]"))
      ->check(CLI::Range(int64_t{1}, kMaxSeqLen));
  std::string mode_help =
      "document: one sample per document, truncated; packed: documents joined and cut "
      "into windows [document]";
  if (names.mode_flag != "--mode") {
    absl::StrAppend(&mode_help, " (submit's --mode, named ", names.mode_flag,
                    " here because --mode is taken)");
  }
  cmd->add_option(names.mode_flag, f->mode, mode_help)
      ->check(CLI::IsMember({"document", "packed"}));
  cmd->add_option("--order", f->order,
                  "Document order: file order, or shuffled with --seed [shuffled]")
      ->check(CLI::IsMember({"sequential", "shuffled"}));
  cmd->add_option_function<uint64_t>(
         "--seed", [f](const uint64_t& v) { f->seed = v; },
         "Seed of the shuffled order [42]")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            // CLI11 would wrap "-1" around to 2^64 - 1 and store 2^64 as 2^64 - 1.
            if (!value.empty() && value[0] == '-') return "must not be negative";
            uint64_t parsed = 0;
            if (!absl::SimpleAtoi(value, &parsed)) {
              return "must be a whole number from 0 to 18446744073709551615";
            }
            return "";
          },
          "UINT64"));
  cmd->add_option("--skip-docs", f->skip_docs, "Leading documents to skip [0]")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--skip-bad-lines", f->skip_bad_lines,
                "Skip and count malformed corpus lines instead of failing the job");
}

v1::SamplingOptions ToSamplingOptions(const SamplingFlags& f) {
  v1::SamplingOptions s;
  // Only what was given: the optional fields are unset otherwise.
  if (f.num_samples) s.set_num_samples(*f.num_samples);
  if (f.seq_len) s.set_seq_len(*f.seq_len);
  s.set_mode(f.mode);
  s.set_order(f.order);
  if (f.seed) s.set_seed(*f.seed);
  s.set_skip_docs(f.skip_docs);
  s.set_skip_bad_lines(f.skip_bad_lines);
  return s;
}

void AddJobSpecFlags(CLI::App* cmd, JobSpecFlags* f) {
  cmd->add_option("--model", f->model,
                  "Hugging Face model folder (config.json + safetensors), as the "
                  "coordinator sees it")
      ->required();
  cmd->add_option("--corpus", f->corpus,
                  "Corpus: JSON lines with a \"text\" field (plain or .zst) or plain "
                  "text, as the coordinator sees it")
      ->required();
  AddSamplingFlags(cmd, &f->sampling);
  cmd->add_option("--shard-size", f->shard_size,
                  "Samples per shard, the unit of exactly-once accounting [16]")
      ->check(CLI::Range(int32_t{1}, kMaxShardSize));
  cmd->add_option("--report-interval", f->report_interval_seconds,
                  "Target seconds between a worker's reports [30]")
      ->check(CLI::Range(int32_t{1}, kMaxReportIntervalSeconds));
  cmd->add_option("--batch-size", f->batch_size,
                  "Sequences per forward pass on the workers (speed only) [8]")
      ->check(CLI::Range(int32_t{1}, kMaxBatchSize));
  cmd->add_option("--name", f->name, "Label shown by `qcal list`");
}

v1::JobSpec ToJobSpec(const JobSpecFlags& f) {
  v1::JobSpec spec;
  spec.set_model(f.model);
  spec.set_corpus(f.corpus);
  *spec.mutable_sampling() = ToSamplingOptions(f.sampling);
  spec.set_shard_size(f.shard_size);
  spec.set_report_interval_seconds(f.report_interval_seconds);
  spec.set_batch_size(f.batch_size);
  spec.set_display_name(f.name);
  return spec;
}

}  // namespace qcal::client
