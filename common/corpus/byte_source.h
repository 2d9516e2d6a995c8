// Internal to qcal_corpus: a forward byte stream over a corpus file, plain or
// zstd-compressed, with repositioning. Callers use CorpusReader / CorpusIndex.
//
// Not thread-safe: one ByteSource per reading thread.
#ifndef QCAL_COMMON_CORPUS_BYTE_SOURCE_H_
#define QCAL_COMMON_CORPUS_BYTE_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/corpus/corpus_reader.h"  // ZstdCheckpoint

namespace qcal::corpus {

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // Reads up to `n` bytes of content into `buf`; 0 means the end of the content
  // (then truncated() tells whether it ended inside a zstd frame).
  // Errors: DATA_LOSS for corrupt compressed data, INTERNAL for I/O errors; the
  // message names the file.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;

  // Makes the next Read start at content offset `offset`. Plain files seek
  // directly; zstd files restart from the nearest known checkpoint at or before
  // `offset` and decompress forward. OUT_OF_RANGE if the content ends before.
  virtual absl::Status Seek(uint64_t offset) = 0;

  // Content offset of the next byte Read returns.
  virtual uint64_t offset() const = 0;
  virtual bool compressed() const = 0;
  // True once Read returned 0 because the compressed data ended mid-frame.
  virtual bool truncated() const { return false; }

  // Frame starts seen so far (always begins with {0, 0} for zstd; empty for plain
  // files), and a way to hand back ones learned by an earlier pass.
  virtual std::vector<ZstdCheckpoint> checkpoints() const { return {}; }
  virtual void AddCheckpoints(const std::vector<ZstdCheckpoint>& checkpoints) {}
};

// Opens `path`; zstd is recognised by its magic number (or a skippable frame's),
// whatever the file name. `buffer_bytes` sizes the compressed-input buffer.
// Errors: NOT_FOUND, PERMISSION_DENIED or INTERNAL naming the file.
absl::StatusOr<std::unique_ptr<ByteSource>> OpenByteSource(const std::string& path,
                                                           size_t buffer_bytes);

}  // namespace qcal::corpus

#endif  // QCAL_COMMON_CORPUS_BYTE_SOURCE_H_
