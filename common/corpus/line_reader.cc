#include "common/corpus/line_reader.h"

#include <algorithm>
#include <cstring>

#include "common/status_macros.h"

namespace qcal::corpus {

LineReader::LineReader(std::unique_ptr<ByteSource> source, size_t buffer_bytes,
                       size_t max_line_bytes)
    : source_(std::move(source)),
      max_line_bytes_(std::max<size_t>(max_line_bytes, 1)),
      buf_(std::min(std::max<size_t>(buffer_bytes, 16), max_line_bytes_ + 1)) {
  buf_base_ = source_->offset();
}

absl::Status LineReader::Seek(uint64_t offset, int64_t line) {
  QCAL_RETURN_IF_ERROR(source_->Seek(offset));
  begin_ = end_ = scan_ = 0;
  buf_base_ = offset;
  eof_ = false;
  discarding_ = false;
  truncation_reported_ = false;
  lines_ = line - 1;
  return absl::OkStatus();
}

absl::Status LineReader::Refill() {
  if (begin_ > 0) {  // compact
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    buf_base_ += begin_;
    end_ -= begin_;
    scan_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buf_.size()) {
    buf_.resize(std::min(buf_.size() * 2, max_line_bytes_ + 1));
  }
  QCAL_ASSIGN_OR_RETURN(size_t got, source_->Read(buf_.data() + end_, buf_.size() - end_));
  end_ += got;
  if (got == 0) eof_ = true;
  return absl::OkStatus();
}

absl::StatusOr<LineReader::Result> LineReader::Next(absl::string_view* line) {
  for (;;) {
    const char* nl = static_cast<const char*>(
        std::memchr(buf_.data() + scan_, '\n', end_ - scan_));
    if (nl != nullptr) {
      const size_t at = static_cast<size_t>(nl - buf_.data());
      const size_t start = begin_;
      begin_ = scan_ = at + 1;
      if (discarding_) {  // the end of a too-long line
        discarding_ = false;
        continue;
      }
      line_number_ = ++lines_;
      line_offset_ = buf_base_ + start;
      *line = absl::string_view(buf_.data() + start, at - start);
      return Result::kLine;
    }
    scan_ = end_;
    if (eof_) {
      const bool partial = begin_ < end_ && !discarding_;
      const size_t start = begin_;
      begin_ = scan_ = end_;
      discarding_ = false;
      if (source_->truncated() && !truncation_reported_) {
        truncation_reported_ = true;
        line_number_ = lines_ + 1;
        line_offset_ = buf_base_ + start;
        if (partial) ++lines_;
        return Result::kTruncated;
      }
      if (partial) {
        line_number_ = ++lines_;
        line_offset_ = buf_base_ + start;
        *line = absl::string_view(buf_.data() + start, end_ - start);
        return Result::kLine;
      }
      return Result::kEnd;
    }
    if (discarding_) {  // drop what we have of the too-long line
      buf_base_ += end_;
      begin_ = end_ = scan_ = 0;
    } else if (begin_ == 0 && end_ == buf_.size() && buf_.size() > max_line_bytes_) {
      // No '\n' within max_line_bytes + 1 bytes: the line is too long.
      line_number_ = ++lines_;
      line_offset_ = buf_base_;
      discarding_ = true;
      buf_base_ += end_;
      begin_ = end_ = scan_ = 0;
      return Result::kTooLong;
    }
    QCAL_RETURN_IF_ERROR(Refill());
  }
}

}  // namespace qcal::corpus
