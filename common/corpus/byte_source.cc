#include "common/corpus/byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/corpus/corpus_error.h"
#include "common/regular_file.h"
#include "common/status_macros.h"

namespace qcal::corpus {
namespace {

// Checkpoints closer than this are not kept (bounds memory on files made of many
// tiny frames; restarting up to this much early costs little).
constexpr uint64_t kMinCheckpointSpacing = 1 << 20;

// Largest zstd window a corpus may use: 16 MiB covers every level without --long
// (level 19 uses 8 MiB); a --long or --ultra corpus is refused by name.
constexpr int kMaxZstdWindowLog = 24;

absl::Status ErrnoError(const std::string& path, absl::string_view what, int err) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (err == ENOENT) code = absl::StatusCode::kNotFound;
  if (err == EACCES || err == EPERM) code = absl::StatusCode::kPermissionDenied;
  return CorpusError(code, path, 0, absl::StrCat(what, ": ", std::strerror(err)));
}

// Owns a file descriptor; reads retry on EINTR.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  absl::StatusOr<size_t> Read(const std::string& path, char* buf, size_t n) {
    for (;;) {
      ssize_t got = ::read(fd_, buf, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno == EINTR) continue;
      return ErrnoError(path, "read failed", errno);
    }
  }
  absl::Status SeekTo(const std::string& path, uint64_t offset) {
    if (::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0) {
      return ErrnoError(path, "seek failed", errno);
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
};

class PlainSource : public ByteSource {
 public:
  PlainSource(std::string path, std::unique_ptr<Fd> fd)
      : path_(std::move(path)), fd_(std::move(fd)) {}

  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    QCAL_ASSIGN_OR_RETURN(size_t got, fd_->Read(path_, buf, n));
    offset_ += got;
    return got;
  }
  absl::Status Seek(uint64_t offset) override {
    QCAL_RETURN_IF_ERROR(fd_->SeekTo(path_, offset));
    offset_ = offset;
    return absl::OkStatus();
  }
  uint64_t offset() const override { return offset_; }
  bool compressed() const override { return false; }

 private:
  std::string path_;
  std::unique_ptr<Fd> fd_;
  uint64_t offset_ = 0;
};

class ZstdSource : public ByteSource {
 public:
  ZstdSource(std::string path, std::unique_ptr<Fd> fd, size_t buffer_bytes)
      : path_(std::move(path)),
        fd_(std::move(fd)),
        dctx_(ZSTD_createDCtx()),
        in_buf_(std::max<size_t>(buffer_bytes, 4096)) {
    checkpoints_.push_back({0, 0});
    // A frame's header chooses the decoder's window: without a cap a 24-byte file
    // declaring 128 MiB costs every reader 128 MiB.
    ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, kMaxZstdWindowLog);
  }
  ~ZstdSource() override { ZSTD_freeDCtx(dctx_); }

  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    size_t produced = 0;
    while (produced < n) {
      if (in_.pos == in_.size && !eof_) QCAL_RETURN_IF_ERROR(Fill());
      if (in_.pos == in_.size && !frame_in_progress_) break;  // clean end
      const size_t in_before = in_.pos;
      ZSTD_outBuffer out{buf + produced, n - produced, 0};
      const size_t ret = ZSTD_decompressStream(dctx_, &out, &in_);
      if (ZSTD_isError(ret) && ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge) {
        return CorpusError(absl::StatusCode::kInvalidArgument, path_, 0,
                           absl::StrCat("a zstd frame asks for a window above ",
                                        (1 << kMaxZstdWindowLog) >> 20,
                                        " MiB; recompress without --long (zstd -19 or lower)"));
      }
      if (ZSTD_isError(ret)) {
        return CorpusError(absl::StatusCode::kDataLoss, path_, 0,
                           absl::StrCat("corrupt zstd data near compressed byte ",
                                        in_base_ + in_.pos, ": ",
                                        ZSTD_getErrorName(ret)));
      }
      produced += out.pos;
      offset_ += out.pos;
      const bool progressed = in_.pos > in_before || out.pos > 0;
      if (progressed) frame_in_progress_ = ret != 0;
      if (ret == 0) NoteFrameEnd();
      if (!progressed) {
        if (eof_) {
          truncated_ = frame_in_progress_;
          break;
        }
        if (in_.pos < in_.size) {  // cannot happen with a sane decoder
          return CorpusError(absl::StatusCode::kDataLoss, path_, 0,
                             "zstd decoder made no progress");
        }
      }
    }
    return produced;
  }

  absl::Status Seek(uint64_t target) override {
    if (target == offset_) return absl::OkStatus();
    // The last checkpoint at or before the target.
    auto it = std::upper_bound(
        checkpoints_.begin(), checkpoints_.end(), target,
        [](uint64_t t, const ZstdCheckpoint& c) { return t < c.offset; });
    const ZstdCheckpoint& cp = *std::prev(it);  // checkpoints_[0] is {0, 0}
    if (target < offset_ || cp.offset > offset_) {
      QCAL_RETURN_IF_ERROR(fd_->SeekTo(path_, cp.compressed_offset));
      ZSTD_DCtx_reset(dctx_, ZSTD_reset_session_only);
      in_ = ZSTD_inBuffer{in_buf_.data(), 0, 0};
      in_base_ = cp.compressed_offset;
      next_file_offset_ = cp.compressed_offset;
      offset_ = cp.offset;
      eof_ = false;
      frame_in_progress_ = false;
      truncated_ = false;
    }
    std::vector<char> scratch(1 << 16);
    while (offset_ < target) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(scratch.size(), target - offset_));
      QCAL_ASSIGN_OR_RETURN(size_t got, Read(scratch.data(), want));
      if (got == 0) {
        return CorpusError(absl::StatusCode::kOutOfRange, path_, 0,
                           absl::StrCat("content ends at byte ", offset_,
                                        ", before byte ", target));
      }
    }
    return absl::OkStatus();
  }

  uint64_t offset() const override { return offset_; }
  bool compressed() const override { return true; }
  bool truncated() const override { return truncated_; }
  std::vector<ZstdCheckpoint> checkpoints() const override { return checkpoints_; }
  void AddCheckpoints(const std::vector<ZstdCheckpoint>& more) override {
    for (const ZstdCheckpoint& c : more) checkpoints_.push_back(c);
    std::sort(checkpoints_.begin(), checkpoints_.end(),
              [](const ZstdCheckpoint& a, const ZstdCheckpoint& b) {
                return a.offset < b.offset;
              });
    checkpoints_.erase(std::unique(checkpoints_.begin(), checkpoints_.end(),
                                   [](const ZstdCheckpoint& a, const ZstdCheckpoint& b) {
                                     return a.offset == b.offset;
                                   }),
                       checkpoints_.end());
  }

 private:
  absl::Status Fill() {
    QCAL_ASSIGN_OR_RETURN(size_t got, fd_->Read(path_, in_buf_.data(), in_buf_.size()));
    in_base_ = next_file_offset_;
    next_file_offset_ += got;
    in_ = ZSTD_inBuffer{in_buf_.data(), got, 0};
    if (got == 0) eof_ = true;
    return absl::OkStatus();
  }

  void NoteFrameEnd() {
    // A new frame (if any) starts at the next compressed byte.
    const ZstdCheckpoint cp{in_base_ + in_.pos, offset_};
    if (cp.offset >= checkpoints_.back().offset + kMinCheckpointSpacing) {
      checkpoints_.push_back(cp);
    }
  }

  std::string path_;
  std::unique_ptr<Fd> fd_;
  ZSTD_DCtx* dctx_;
  std::vector<char> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  uint64_t in_base_ = 0;           // file offset of in_buf_[0]
  uint64_t next_file_offset_ = 0;  // file offset of the next Fill
  uint64_t offset_ = 0;            // content offset
  bool eof_ = false;
  bool frame_in_progress_ = false;
  bool truncated_ = false;
  std::vector<ZstdCheckpoint> checkpoints_;  // sorted by offset
};

bool IsZstdMagic(const unsigned char* b) {
  const uint32_t magic = static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
                         static_cast<uint32_t>(b[2]) << 16 |
                         static_cast<uint32_t>(b[3]) << 24;
  return magic == ZSTD_MAGICNUMBER ||
         (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ByteSource>> OpenByteSource(const std::string& path,
                                                           size_t buffer_bytes) {
  absl::StatusOr<int> raw = OpenRegularFile(path);
  if (!raw.ok()) {
    // The corpus error adds "path: " itself.
    absl::string_view what = raw.status().message();
    absl::ConsumePrefix(&what, absl::StrCat(path, ": "));
    return CorpusError(raw.status().code(), path, 0, what);
  }
  auto fd = std::make_unique<Fd>(*raw);
  unsigned char head[4] = {0, 0, 0, 0};
  size_t have = 0;
  while (have < sizeof(head)) {
    QCAL_ASSIGN_OR_RETURN(size_t got,
                          fd->Read(path, reinterpret_cast<char*>(head) + have,
                                   sizeof(head) - have));
    if (got == 0) break;
    have += got;
  }
  QCAL_RETURN_IF_ERROR(fd->SeekTo(path, 0));
  if (have == sizeof(head) && IsZstdMagic(head)) {
    return std::unique_ptr<ByteSource>(
        std::make_unique<ZstdSource>(path, std::move(fd), buffer_bytes));
  }
  return std::unique_ptr<ByteSource>(std::make_unique<PlainSource>(path, std::move(fd)));
}

}  // namespace qcal::corpus
