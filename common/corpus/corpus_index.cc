#include "common/corpus/corpus_index.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_error.h"
#include "common/status_macros.h"

namespace qcal::corpus {
namespace {

constexpr absl::string_view kMagic = "QCALCIX1";

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return CorpusError(errno == ENOENT ? absl::StatusCode::kNotFound
                                       : absl::StatusCode::kInternal,
                       path, 0, absl::StrCat("cannot stat: ", std::strerror(errno)));
  }
  return static_cast<uint64_t>(st.st_size);
}

// Little-endian fixed-width writer/reader for Serialize/Deserialize.
class Writer {
 public:
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  void Str(absl::string_view s) {
    U64(s.size());
    out_.append(s.data(), s.size());
  }
  void Raw(absl::string_view s) { out_.append(s.data(), s.size()); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  bool U64(uint64_t* v) {
    if (in_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(static_cast<unsigned char>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!U64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool Str(std::string* s) {
    uint64_t n;
    if (!U64(&n) || n > in_.size()) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool Count(uint64_t* n, size_t item_bytes) {
    return U64(n) && *n <= in_.size() / item_bytes;
  }
  bool Raw(absl::string_view expect) {
    if (in_.substr(0, expect.size()) != expect) return false;
    in_.remove_prefix(expect.size());
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

}  // namespace

absl::StatusOr<CorpusIndex> CorpusIndex::Build(const std::string& path,
                                               const CorpusReadOptions& options) {
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader,
                        CorpusReader::Open(path, options));
  CorpusIndex index;
  index.path_ = path;
  index.options_ = options;
  index.options_.format = reader->format();
  QCAL_ASSIGN_OR_RETURN(index.file_size_, FileSize(path));
  Document doc;
  for (;;) {
    QCAL_ASSIGN_OR_RETURN(bool more, reader->Next(&doc));
    if (!more) break;
    index.offsets_.push_back(doc.offset);
    index.lines_.push_back(doc.line);
  }
  index.stats_ = reader->stats();
  index.checkpoints_ = reader->Checkpoints();
  return index;
}

DocumentPosition CorpusIndex::position(int64_t ordinal) const {
  return DocumentPosition{offsets_[ordinal], lines_[ordinal], ordinal};
}

absl::Status CorpusIndex::CheckUnchanged() const {
  QCAL_ASSIGN_OR_RETURN(uint64_t size, FileSize(path_));
  if (size != file_size_) {
    return CorpusError(absl::StatusCode::kFailedPrecondition, path_, 0,
                       absl::StrCat("the file changed since it was indexed (", size,
                                    " bytes now, ", file_size_, " then)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> CorpusIndex::ReadDocuments(
    absl::Span<const int64_t> ordinals) const {
  std::vector<std::pair<int64_t, size_t>> order;  // (ordinal, slot in the result)
  order.reserve(ordinals.size());
  for (size_t i = 0; i < ordinals.size(); ++i) {
    if (ordinals[i] < 0 || ordinals[i] >= num_documents()) {
      return CorpusError(absl::StatusCode::kOutOfRange, path_, 0,
                         absl::StrCat("no document ", ordinals[i], " (the corpus has ",
                                      num_documents(), ")"));
    }
    order.emplace_back(ordinals[i], i);
  }
  std::vector<std::string> texts(ordinals.size());
  if (order.empty()) return texts;
  std::sort(order.begin(), order.end());
  QCAL_RETURN_IF_ERROR(CheckUnchanged());
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader,
                        CorpusReader::Open(path_, options_));
  reader->AddCheckpoints(checkpoints_);
  Document doc;
  int64_t next = -1;  // ordinal the reader returns next without seeking
  for (size_t k = 0; k < order.size(); ++k) {
    const int64_t want = order[k].first;
    if (k > 0 && want == order[k - 1].first) {
      texts[order[k].second] = texts[order[k - 1].second];
      continue;
    }
    if (want != next) QCAL_RETURN_IF_ERROR(reader->SeekTo(position(want)));
    QCAL_ASSIGN_OR_RETURN(bool got, reader->Next(&doc));
    if (!got || doc.ordinal != want || doc.offset != offsets_[want]) {
      return CorpusError(absl::StatusCode::kFailedPrecondition, path_, lines_[want],
                         "document not found where the index says: the file changed "
                         "since it was indexed");
    }
    texts[order[k].second] = std::move(doc.text);
    next = want + 1;
  }
  return texts;
}

std::string CorpusIndex::Serialize() const {
  Writer w;
  w.Raw(kMagic);
  w.U64(static_cast<uint64_t>(options_.format));
  w.U64(options_.skip_bad_records ? 1 : 0);
  w.U64(options_.buffer_bytes);
  w.U64(options_.max_record_bytes);
  w.U64(file_size_);
  w.U64(stats_.lines);
  w.U64(stats_.documents);
  w.U64(stats_.empty_records);
  w.U64(stats_.bad_records);
  w.U64(stats_.truncated ? 1 : 0);
  w.U64(stats_.bad_record_examples.size());
  for (const std::string& e : stats_.bad_record_examples) w.Str(e);
  w.U64(offsets_.size());
  for (size_t i = 0; i < offsets_.size(); ++i) {
    w.U64(offsets_[i]);
    w.U64(static_cast<uint64_t>(lines_[i]));
  }
  w.U64(checkpoints_.size());
  for (const ZstdCheckpoint& c : checkpoints_) {
    w.U64(c.compressed_offset);
    w.U64(c.offset);
  }
  return w.Take();
}

absl::StatusOr<CorpusIndex> CorpusIndex::Deserialize(absl::string_view bytes,
                                                     const std::string& path) {
  auto corrupt = [&](absl::string_view what) {
    return CorpusError(absl::StatusCode::kInvalidArgument, path, 0,
                       absl::StrCat("corrupt corpus index: ", what));
  };
  Reader r(bytes);
  CorpusIndex index;
  index.path_ = path;
  uint64_t format, skip, buffer, max_record, truncated, n;
  if (!r.Raw(kMagic)) return corrupt("bad magic");
  if (!r.U64(&format) || !r.U64(&skip) || !r.U64(&buffer) || !r.U64(&max_record) ||
      !r.U64(&index.file_size_) || !r.I64(&index.stats_.lines) ||
      !r.I64(&index.stats_.documents) || !r.I64(&index.stats_.empty_records) ||
      !r.I64(&index.stats_.bad_records) || !r.U64(&truncated) || !r.Count(&n, 8)) {
    return corrupt("short header");
  }
  if (format != static_cast<uint64_t>(CorpusFormat::kJsonl) &&
      format != static_cast<uint64_t>(CorpusFormat::kText)) {
    return corrupt("bad format");
  }
  index.options_.format = static_cast<CorpusFormat>(format);
  index.options_.skip_bad_records = skip != 0;
  index.options_.buffer_bytes = buffer;
  index.options_.max_record_bytes = max_record;
  index.stats_.truncated = truncated != 0;
  for (uint64_t i = 0; i < n; ++i) {
    std::string e;
    if (!r.Str(&e)) return corrupt("short examples");
    index.stats_.bad_record_examples.push_back(std::move(e));
  }
  if (!r.Count(&n, 16)) return corrupt("short document table");
  index.offsets_.resize(n);
  index.lines_.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    r.U64(&index.offsets_[i]);
    r.I64(&index.lines_[i]);
  }
  if (!r.Count(&n, 16)) return corrupt("short checkpoint table");
  index.checkpoints_.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    r.U64(&index.checkpoints_[i].compressed_offset);
    r.U64(&index.checkpoints_[i].offset);
  }
  if (!r.done()) return corrupt("trailing bytes");
  QCAL_RETURN_IF_ERROR(index.CheckUnchanged());
  return index;
}

absl::StatusOr<CorpusStats> ValidateCorpus(const std::string& path,
                                           const CorpusReadOptions& options) {
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<CorpusReader> reader,
                        CorpusReader::Open(path, options));
  Document doc;
  for (;;) {
    QCAL_ASSIGN_OR_RETURN(bool more, reader->Next(&doc));
    if (!more) break;
  }
  if (reader->stats().documents == 0) {
    return CorpusError(absl::StatusCode::kInvalidArgument, path, 0,
                       "corpus has no usable document");
  }
  return reader->stats();
}

}  // namespace qcal::corpus
