// Calibration samples from a corpus: token sequences drawn as SamplingOptions
// say, reproducible on any machine and addressable: samples [begin, end) can be
// produced alone (so each worker builds its own shards) and equal the same slice
// of all samples.
//
// How addressability works and what it costs:
//   - The document order (file order, or a seeded Fisher-Yates permutation of the
//     documents after --skip-docs) is computed, never stored: its first j entries
//     cost O(j) time and memory, no I/O.
//   - Documents are read through a corpus::CorpusIndex (one read-and-parse pass
//     over the corpus, 16 bytes per document, cacheable with Serialize()).
//   - Document mode: sample i is document order[i]; samples [i, j) read and
//     tokenize exactly those j - i documents.
//   - Packed mode: the window of sample k starts at token k * seq_len of the
//     stream, so finding it needs the token count of every document before it. A
//     PackingPlan holds, for the documents in order until the stream has
//     num_samples * seq_len tokens, their ordinals and stream offsets (16 bytes a
//     document). Building it tokenizes those documents once, i.e. the same work as
//     producing all samples once; after that, samples [i, j) read and tokenize only
//     the documents that overlap their windows. Build the plan once per job (a
//     worker can build it at its first shard and keep it, or the caller can store
//     Serialize() beside the job) and pass it to Sampler::Create.
//
// Thread-safety: a Sampler is immutable; Samples() may be called concurrently (the
// tokenizer and index are thread-safe for reading).
#ifndef QCAL_WORKER_TEXT_SAMPLER_H_
#define QCAL_WORKER_TEXT_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/corpus/corpus_index.h"
#include "worker/text/sampling_options.h"
#include "worker/text/tokenizer.h"

namespace qcal::text {

// The first `count` document ordinals in sampling order (--order, --seed,
// --skip-docs) for a corpus of `num_documents` documents.
// Errors: INVALID_ARGUMENT when --skip-docs leaves fewer than `count` documents.
absl::StatusOr<std::vector<int64_t>> DocumentOrder(const SamplingOptions& options,
                                                   int64_t num_documents, int64_t count);

// Packed mode's document prefix: documents in sampling order with the stream
// offset of each one's first token.
struct PackingPlan {
  std::vector<int64_t> ordinals;  // corpus document ordinals, in packing order
  std::vector<int64_t> starts;    // ordinals.size() + 1 offsets; starts.back() = tokens

  int64_t total_tokens() const { return starts.empty() ? 0 : starts.back(); }
  std::string Serialize() const;
  // INVALID_ARGUMENT for bytes that are not a serialized plan.
  static absl::StatusOr<PackingPlan> Deserialize(absl::string_view bytes);
};

// Tokenizes documents in sampling order until the stream holds num_samples *
// seq_len tokens. Errors: FAILED_PRECONDITION if the tokenizer has no eos token;
// INVALID_ARGUMENT if the corpus (after --skip-docs) has too few tokens; corpus
// errors.
absl::StatusOr<PackingPlan> BuildPackingPlan(const Tokenizer& tokenizer,
                                             const corpus::CorpusIndex& index,
                                             const SamplingOptions& options);

class Sampler {
 public:
  // `tokenizer` and `index` are not owned and must outlive the Sampler; `index`
  // must have been built with CorpusReadOptionsFor(options) (its skip_bad_records
  // must match --skip-bad-lines). Packed mode uses `plan` when given (after
  // checking it follows the options' document order) and builds one otherwise
  // (see BuildPackingPlan). Document mode reads nothing here.
  // Errors: INVALID_ARGUMENT for invalid options or a corpus too small for them,
  // FAILED_PRECONDITION for a plan or index that does not fit the options.
  static absl::StatusOr<std::unique_ptr<Sampler>> Create(
      const Tokenizer* tokenizer, const corpus::CorpusIndex* index,
      const SamplingOptions& options, std::optional<PackingPlan> plan = std::nullopt);

  int64_t num_samples() const { return options_.num_samples; }
  const SamplingOptions& options() const { return options_; }
  // The packing plan in packed mode, else null.
  const PackingPlan* packing_plan() const { return plan_ ? &*plan_ : nullptr; }

  // Samples [begin, end), 0 <= begin <= end <= num_samples(). Each has seq_len
  // tokens in packed mode and 1..seq_len tokens in document mode.
  // Errors: OUT_OF_RANGE for a bad range; corpus errors; FAILED_PRECONDITION if
  // the corpus or tokenizer no longer match the packing plan.
  absl::StatusOr<std::vector<std::vector<int32_t>>> Samples(int64_t begin, int64_t end) const;

 private:
  Sampler(const Tokenizer* tokenizer, const corpus::CorpusIndex* index,
          const SamplingOptions& options)
      : tokenizer_(tokenizer), index_(index), options_(options) {}

  absl::StatusOr<std::vector<std::vector<int32_t>>> DocumentSamples(int64_t begin,
                                                                    int64_t end) const;
  absl::StatusOr<std::vector<std::vector<int32_t>>> PackedSamples(int64_t begin,
                                                                  int64_t end) const;

  const Tokenizer* tokenizer_;
  const corpus::CorpusIndex* index_;
  SamplingOptions options_;
  std::optional<PackingPlan> plan_;
};

// Everything a command needs to draw samples from a corpus file for a model: the
// tokenizer of `model_dir`, the index of `corpus_path` (built with
// CorpusReadOptionsFor(options): one pass over the corpus) and the sampler over
// them (packed mode: with `plan` if given, else building it). Members are
// destroyed sampler first.
struct CorpusSampler {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<corpus::CorpusIndex> index;
  std::unique_ptr<Sampler> sampler;
};
// Errors: those of LoadTokenizer, CorpusIndex::Build and Sampler::Create.
absl::StatusOr<CorpusSampler> OpenCorpusSampler(const std::string& model_dir,
                                                const std::string& corpus_path,
                                                const SamplingOptions& options,
                                                std::optional<PackingPlan> plan = std::nullopt);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_SAMPLER_H_
