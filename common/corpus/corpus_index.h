// CorpusIndex: where every document of a corpus file starts, for random access.
//
// Built by one full pass over the file (read, decompress, parse and validate every
// record: the cost of reading the corpus once, no tokenization), it holds 16 bytes
// per document plus the zstd frame checkpoints. With it, any set of documents can
// be read without reading the others' text into memory: plain files seek to each
// document; zstd files decompress forward from the nearest frame start (for a
// single-frame file, from the beginning), so a batch of documents costs at most
// one decompression pass up to the furthest of them.
//
// The index depends on the read options (skip_bad_records changes which records
// are documents); ReadDocuments reads with the same options. Serialize() lets a
// caller cache it (e.g. beside the corpus, keyed by the file's size and mtime).
//
// Thread-safety: immutable after Build/Deserialize; all const methods may be called
// concurrently (each ReadDocuments call opens its own reader).
#ifndef QCAL_COMMON_CORPUS_CORPUS_INDEX_H_
#define QCAL_COMMON_CORPUS_CORPUS_INDEX_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/corpus/corpus_reader.h"

namespace qcal::corpus {

class CorpusIndex {
 public:
  // Reads all of `path`. Errors: those of CorpusReader (the first malformed record
  // unless options.skip_bad_records). An index with no document is not an error.
  static absl::StatusOr<CorpusIndex> Build(const std::string& path,
                                           const CorpusReadOptions& options = {});

  const std::string& path() const { return path_; }
  const CorpusReadOptions& options() const { return options_; }
  CorpusFormat format() const { return options_.format; }  // resolved, never kAuto
  uint64_t file_size() const { return file_size_; }
  const CorpusStats& stats() const { return stats_; }

  int64_t num_documents() const { return static_cast<int64_t>(offsets_.size()); }
  // Requires 0 <= ordinal < num_documents().
  DocumentPosition position(int64_t ordinal) const;

  // The texts of the documents `ordinals` (any order, repeats allowed), returned in
  // that order. Reads in increasing offset order in one pass.
  // Errors: OUT_OF_RANGE for an ordinal outside [0, num_documents()),
  // FAILED_PRECONDITION if the file changed since it was indexed, and the
  // reader's errors.
  absl::StatusOr<std::vector<std::string>> ReadDocuments(
      absl::Span<const int64_t> ordinals) const;

  // A compact binary form, and back. Deserialize takes the path the file has now
  // (it may differ from the one it was indexed under) and checks the size.
  std::string Serialize() const;
  static absl::StatusOr<CorpusIndex> Deserialize(absl::string_view bytes,
                                                 const std::string& path);

 private:
  CorpusIndex() = default;
  absl::Status CheckUnchanged() const;

  std::string path_;
  CorpusReadOptions options_;
  uint64_t file_size_ = 0;
  CorpusStats stats_;
  std::vector<uint64_t> offsets_;
  std::vector<int64_t> lines_;
  std::vector<ZstdCheckpoint> checkpoints_;
};

// Submit-time validation for callers without a tokenizer (the coordinator): reads
// all of `path` and returns its statistics, or the first error; INVALID_ARGUMENT
// "PATH: corpus has no usable document" when it holds no document.
absl::StatusOr<CorpusStats> ValidateCorpus(const std::string& path,
                                           const CorpusReadOptions& options = {});

}  // namespace qcal::corpus

#endif  // QCAL_COMMON_CORPUS_CORPUS_INDEX_H_
