// Internal to qcal_text: the merge-rank BPE model of a byte-level tokenizer.json,
// working on raw bytes (each byte is one initial symbol, the vocabulary token of
// its byte-level character), with a bounded cache of encoded words.
//
// Same result as Hugging Face's BPE::merge_word: repeatedly merge the adjacent
// pair with the lowest merge rank, the leftmost one on ties.
//
// Thread-safe: EncodeWords may be called concurrently (the cache has a mutex).
#ifndef QCAL_WORKER_TEXT_BPE_MODEL_H_
#define QCAL_WORKER_TEXT_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/text/id_cache.h"

namespace qcal::text {

struct BpeModelOptions {
  bool ignore_merges = false;       // a word that is a vocabulary token is used whole
  std::optional<int32_t> unk_id;    // for bytes without a vocabulary token
  bool fuse_unk = false;            // consecutive unknowns give one unk
  size_t cache_capacity = 1 << 16;  // words cached (the cache is cleared when full)
  size_t max_cached_word_bytes = 256;
};

class BpeModel {
 public:
  // `vocab`: (byte-level token string, id). `merges`: in rank order, pairs of token
  // strings. Errors: INVALID_ARGUMENT naming a merge whose parts or result are not
  // in the vocabulary.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      const std::vector<std::pair<std::string, int32_t>>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges,
      const BpeModelOptions& options);

  // Appends the ids of each pre-token (raw bytes) of `words`, in order, to `ids`.
  void EncodeWords(absl::Span<const absl::string_view> words, std::vector<int32_t>* ids) const;

 private:
  explicit BpeModel(const BpeModelOptions& options)
      : options_(options), cache_(options.cache_capacity, options.max_cached_word_bytes) {}
  void Merge(absl::string_view word, std::vector<int32_t>* ids) const;

  struct MergeInfo {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  BpeModelOptions options_;
  int32_t byte_id_[256];
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;  // for ignore_merges
  IdCache cache_;
};

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_BPE_MODEL_H_
