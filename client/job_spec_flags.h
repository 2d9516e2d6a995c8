// The flags that describe a calibration job, shared by `submit` and `run`:
//   --model DIR --corpus FILE
//   --num-samples N   1..10,000,000                [512]
//   --seq-len L       1..16,777,216 (and at most the model's context) [512]
//   --mode document|packed                         [document]
//   --order sequential|shuffled                    [shuffled]
//   --seed S          seed of the shuffled order   [42]
//   --skip-docs K     >= 0                         [0]
//   --skip-bad-lines
//   --shard-size N    1..4096                      [16]
//   --report-interval SECONDS 1..3600              [30]
//   --batch-size N    1..1024                      [8]
//   --name TEXT       label shown by `qcal list`
// A flag left out is left unset in the JobSpec (0 / empty / absent optional), which
// the coordinator replaces by its default (job.proto; the values above), so the
// defaults live in one place. Values out of range are
// usage errors (exit 2) found before any call.
//
// The sampling flags (--num-samples .. --skip-bad-lines) also describe the evaluation
// set of `evaluate` (AddSamplingFlags), where --mode is already taken and the
// sampling mode is --sampling-mode instead.
#ifndef QCAL_CLIENT_JOB_SPEC_FLAGS_H_
#define QCAL_CLIENT_JOB_SPEC_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {

inline constexpr int64_t kMaxNumSamples = 10'000'000;
inline constexpr int64_t kMaxSeqLen = int64_t{1} << 24;
inline constexpr int32_t kMaxShardSize = 4096;
inline constexpr int32_t kMaxReportIntervalSeconds = 3600;
inline constexpr int32_t kMaxBatchSize = 1024;

// How samples are drawn from a corpus (SamplingOptions).
struct SamplingFlags {
  // nullopt / empty / 0: not given, the coordinator's default.
  std::optional<int64_t> num_samples;
  std::optional<int64_t> seq_len;
  std::string mode;   // "", "document", "packed"
  std::string order;  // "", "sequential", "shuffled"
  std::optional<uint64_t> seed;
  int64_t skip_docs = 0;
  bool skip_bad_lines = false;
};

// What the help of the sampling flags says where commands differ.
struct SamplingFlagNames {
  // The flag that selects document / packed sampling.
  std::string mode_flag = "--mode";
  // The defaults shown in the help (the coordinator applies them).
  std::string num_samples_default = "512";
  std::string seq_len_default = "512";
};

// Declares --num-samples, --seq-len, the mode flag, --order, --seed, --skip-docs and
// --skip-bad-lines on `cmd`, writing into `*flags` (which must outlive parsing).
void AddSamplingFlags(CLI::App* cmd, SamplingFlags* flags,
                      const SamplingFlagNames& names = {});

// The options the flags describe; only what was given is set.
v1::SamplingOptions ToSamplingOptions(const SamplingFlags& flags);

struct JobSpecFlags {
  std::string model;
  std::string corpus;
  SamplingFlags sampling;
  // 0 / empty: not given, the coordinator's default.
  int32_t shard_size = 0;
  int32_t report_interval_seconds = 0;
  int32_t batch_size = 0;
  std::string name;
};

// Declares the flags above on `cmd`, writing into `*flags` (which must outlive
// parsing). --model and --corpus are required.
void AddJobSpecFlags(CLI::App* cmd, JobSpecFlags* flags);

// The spec the flags describe (paths as given).
v1::JobSpec ToJobSpec(const JobSpecFlags& flags);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_JOB_SPEC_FLAGS_H_
