// How calibration samples are drawn from a corpus. Every command takes the same
// flags (AddSamplingOptions in tokenize_command.h):
//
//   --num-samples N   number of samples (sequences)                      [512]
//   --seq-len L       tokens per sample (document mode: at most L)       [512]
//   --mode document|packed                                               [document]
//       document: each document is tokenized (with the tokenizer's special
//         tokens, e.g. BOS) and truncated to L tokens, one sample per document,
//         as mllm and SmoothQuant do; shorter documents stay at their length
//         (batching pads and masks them, the data holds no padding).
//       packed: documents are tokenized, each followed by the end-of-text (eos)
//         token, joined into one stream and cut into consecutive windows of
//         exactly L tokens; sample k is tokens [k*L, (k+1)*L) of the stream.
//   --order sequential|shuffled                                          [shuffled]
//       the document order: file order, or a permutation seeded by --seed.
//   --seed S          seed of the shuffled order                         [42]
//   --skip-docs K     leave out the first K documents of the file        [0]
//       (before shuffling: the order is over documents K, K+1, ...).
//   --skip-bad-lines  skip malformed corpus records, counting them, instead of
//                     failing on the first one.
//   --no-special-tokens  tokenize without the tokenizer's BOS/EOS additions.
//
// The same options, corpus and tokenizer give the same token sequences on every
// machine (see permutation.h).
#ifndef QCAL_WORKER_TEXT_SAMPLING_OPTIONS_H_
#define QCAL_WORKER_TEXT_SAMPLING_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/corpus/corpus_reader.h"

namespace qcal::text {

enum class SamplingMode { kDocument, kPacked };
enum class SamplingOrder { kSequential, kShuffled };

struct SamplingOptions {
  int64_t num_samples = 512;                      // --num-samples, >= 1
  int64_t seq_len = 512;                          // --seq-len, >= 1
  SamplingMode mode = SamplingMode::kDocument;    // --mode
  SamplingOrder order = SamplingOrder::kShuffled;  // --order
  uint64_t seed = 42;                             // --seed (shuffled order only)
  int64_t skip_docs = 0;                          // --skip-docs, >= 0
  bool skip_bad_lines = false;                    // --skip-bad-lines
  bool add_special_tokens = true;                 // --no-special-tokens clears it
};

// Largest accepted --seq-len and --num-samples * --seq-len.
inline constexpr int64_t kMaxSeqLen = int64_t{1} << 24;
inline constexpr int64_t kMaxTotalTokens = int64_t{1} << 40;

// OK, or INVALID_ARGUMENT naming the offending option ("--seq-len must be ...").
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

absl::string_view SamplingModeName(SamplingMode mode);     // "document", "packed"
absl::string_view SamplingOrderName(SamplingOrder order);  // "sequential", "shuffled"
// INVALID_ARGUMENT naming the flag and the accepted values.
absl::StatusOr<SamplingMode> ParseSamplingMode(absl::string_view name);
absl::StatusOr<SamplingOrder> ParseSamplingOrder(absl::string_view name);

// The options as command-line flags, e.g. for logs and reports.
std::string SamplingOptionsToFlags(const SamplingOptions& options);

// How the corpus must be read for these options.
corpus::CorpusReadOptions CorpusReadOptionsFor(const SamplingOptions& options);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_SAMPLING_OPTIONS_H_
