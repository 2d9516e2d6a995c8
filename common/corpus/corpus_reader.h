// Streaming corpus readers: JSON lines with a "text" field (the Pile's format) and
// plain text, each plain or zstd-compressed. Memory stays bounded by the read
// buffer, the longest record and (zstd) a decoder window of at most 16 MiB, whatever
// the file size; a frame asking for more is INVALID_ARGUMENT (zstd --long corpora).
//
// What a document is:
//   - JSONL: one line holding a JSON object whose "text" member is a string. Blank
//     lines (only whitespace) are ignored; records whose text is "" are counted in
//     CorpusStats::empty_records and are not documents.
//   - Plain text: a paragraph, i.e. a run of non-blank lines; paragraphs are
//     separated by one or more blank lines (lines of only spaces, tabs or '\r').
//     The document text is the paragraph's lines joined with '\n' (a '\r' ending a
//     line is dropped, so CRLF files read like LF files).
// Documents are numbered 0, 1, ... in file order (the "ordinal").
//
// Errors name the file and the line ("PATH:LINE: what"; see corpus_error.h):
//   - INVALID_ARGUMENT for a malformed record: invalid JSON, not an object, no
//     "text" string, invalid UTF-8, longer than max_record_bytes;
//   - DATA_LOSS for a truncated zstd frame (the file ends mid-frame) or corrupt
//     zstd data;
//   - NOT_FOUND / PERMISSION_DENIED / INTERNAL for I/O.
// With skip_bad_records, malformed records and a truncated final frame are skipped
// and counted (CorpusStats::bad_records, the first few messages kept) instead;
// corrupt zstd data and I/O errors always fail.
//
// Thread-safety: a CorpusReader is not thread-safe; use one per thread.
#ifndef QCAL_COMMON_CORPUS_CORPUS_READER_H_
#define QCAL_COMMON_CORPUS_CORPUS_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qcal::corpus {

enum class CorpusFormat {
  kAuto,   // from the file name, ignoring a trailing ".zst"/".zstd":
           // .jsonl .json .ndjson -> kJsonl; .txt .text -> kText
  kJsonl,
  kText,
};

struct CorpusReadOptions {
  CorpusFormat format = CorpusFormat::kAuto;
  // Skip malformed records (and a truncated final zstd frame), counting them,
  // instead of failing on the first one.
  bool skip_bad_records = false;
  // Bytes read from the file at a time; the line buffer starts at this size.
  size_t buffer_bytes = 1 << 20;
  // Longest accepted record (a JSONL line, or a text paragraph) in bytes: the bound
  // on the reader's memory. Longer records are malformed.
  size_t max_record_bytes = size_t{256} << 20;
};

struct CorpusStats {
  int64_t lines = 0;          // lines read
  int64_t documents = 0;      // documents returned
  int64_t empty_records = 0;  // JSONL records with "text": ""
  int64_t bad_records = 0;    // malformed records skipped (skip_bad_records)
  bool truncated = false;     // the zstd data ended mid-frame (skip_bad_records)
  std::vector<std::string> bad_record_examples;  // the first kMaxExamples messages
  static constexpr size_t kMaxExamples = 10;
};

struct Document {
  int64_t ordinal = 0;  // 0-based number among the file's documents
  int64_t line = 0;     // 1-based line where the record starts
  uint64_t offset = 0;  // content (decompressed) byte offset where it starts
  std::string text;     // valid UTF-8, never empty
};

// A zstd frame starts at `compressed_offset` in the file and at `offset` in the
// decompressed content: decompression can restart there (multi-frame files such
// as pzstd's). Single-frame files have only {0, 0}.
struct ZstdCheckpoint {
  uint64_t compressed_offset = 0;
  uint64_t offset = 0;
};

// Where a document starts; what CorpusReader::SeekTo needs.
struct DocumentPosition {
  uint64_t offset = 0;
  int64_t line = 0;
  int64_t ordinal = 0;
};

// The format `path` has under `format` (resolving kAuto from the name), or
// INVALID_ARGUMENT if kAuto cannot tell.
absl::StatusOr<CorpusFormat> ResolveCorpusFormat(const std::string& path,
                                                 CorpusFormat format);
absl::string_view CorpusFormatName(CorpusFormat format);  // "auto", "jsonl", "text"

class LineReader;

class CorpusReader {
 public:
  // Opens `path`; zstd compression is detected from the content.
  static absl::StatusOr<std::unique_ptr<CorpusReader>> Open(
      const std::string& path, const CorpusReadOptions& options = {});
  ~CorpusReader();

  // Reads the next document into `*doc`; false at the end of the file.
  absl::StatusOr<bool> Next(Document* doc);

  // Continues reading at a document start recorded earlier (by a CorpusIndex or a
  // previous Document). Plain files seek; zstd files decompress forward from the
  // nearest frame start (see AddCheckpoints), so visit positions in increasing
  // offset order where possible. Statistics keep counting from where they were.
  absl::Status SeekTo(const DocumentPosition& position);

  const CorpusStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }
  CorpusFormat format() const { return format_; }
  bool compressed() const;
  // Current capacity of the line buffer (<= max_record_bytes + 1).
  size_t buffer_capacity() const;

  // zstd frame starts learned while reading (spaced at least 1 MiB apart); empty
  // for plain files. A CorpusIndex keeps them so later readers seek faster.
  std::vector<ZstdCheckpoint> Checkpoints() const;
  void AddCheckpoints(const std::vector<ZstdCheckpoint>& checkpoints);

 private:
  CorpusReader(std::string path, CorpusFormat format, CorpusReadOptions options,
               std::unique_ptr<LineReader> lines);

  // Records a malformed record: an error, or (skip_bad_records) a count.
  absl::Status Bad(absl::StatusCode code, int64_t line, absl::string_view what);
  absl::StatusOr<bool> NextJsonl(Document* doc);
  absl::StatusOr<bool> NextText(Document* doc);

  std::string path_;
  CorpusFormat format_;
  CorpusReadOptions options_;
  std::unique_ptr<LineReader> lines_;
  CorpusStats stats_;
  int64_t next_ordinal_ = 0;
};

}  // namespace qcal::corpus

#endif  // QCAL_COMMON_CORPUS_CORPUS_READER_H_
