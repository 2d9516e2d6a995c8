// Internal to qcal_corpus: splits a ByteSource into '\n'-terminated lines in
// bounded memory (the buffer grows to at most max_line_bytes + 1).
//
// Not thread-safe.
#ifndef QCAL_COMMON_CORPUS_LINE_READER_H_
#define QCAL_COMMON_CORPUS_LINE_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "common/corpus/byte_source.h"

namespace qcal::corpus {

class LineReader {
 public:
  enum class Result {
    kLine,       // *line holds the next line (without '\n')
    kTooLong,    // the next line exceeds max_line_bytes; it is skipped
    kTruncated,  // the compressed data ends mid-frame; the partial line (if any) is
                 // dropped. Returned once, then kEnd.
    kEnd,
  };

  LineReader(std::unique_ptr<ByteSource> source, size_t buffer_bytes,
             size_t max_line_bytes);

  // The next line; `*line` stays valid until the next call. Errors come from the
  // source (DATA_LOSS, INTERNAL).
  absl::StatusOr<Result> Next(absl::string_view* line);

  // 1-based number and content offset of the line last returned (for kTruncated:
  // of the line that was cut, or of the line that would have followed).
  int64_t line_number() const { return line_number_; }
  uint64_t line_offset() const { return line_offset_; }

  // Makes the next line start at content offset `offset` and be numbered `line`.
  absl::Status Seek(uint64_t offset, int64_t line);

  ByteSource& source() { return *source_; }
  size_t buffer_capacity() const { return buf_.size(); }

 private:
  absl::Status Refill();

  std::unique_ptr<ByteSource> source_;
  size_t max_line_bytes_;
  std::vector<char> buf_;
  size_t begin_ = 0;       // first unconsumed byte
  size_t end_ = 0;         // end of valid data
  size_t scan_ = 0;        // bytes in [begin_, scan_) hold no '\n'
  uint64_t buf_base_ = 0;  // content offset of buf_[0]
  bool eof_ = false;
  bool discarding_ = false;  // skipping the rest of a too-long line
  bool truncation_reported_ = false;
  int64_t lines_ = 0;  // lines started so far
  int64_t line_number_ = 0;
  uint64_t line_offset_ = 0;
};

}  // namespace qcal::corpus

#endif  // QCAL_COMMON_CORPUS_LINE_READER_H_
