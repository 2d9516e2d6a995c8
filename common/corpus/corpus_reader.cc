#include "common/corpus/corpus_reader.h"

#include <exception>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/byte_source.h"
#include "common/corpus/corpus_error.h"
#include "common/corpus/line_reader.h"
#include "common/corpus/utf8.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal::corpus {
namespace {

constexpr size_t kMaxDetailChars = 160;

bool IsBlank(absl::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return false;
  }
  return true;
}

std::string Shorten(std::string s) {
  if (s.size() > kMaxDetailChars) {
    s.resize(kMaxDetailChars);
    // Do not leave a partial UTF-8 sequence at the end.
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
    if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
    s += "...";
  }
  return s;
}

// Turns nlohmann's "[json.exception.parse_error.101] parse error at line 1, column
// 5: ..." into "column 5: ...".
std::string JsonErrorDetail(const char* what) {
  absl::string_view s(what);
  if (size_t p = s.find("] "); p != absl::string_view::npos) s.remove_prefix(p + 2);
  if (absl::StartsWith(s, "parse error at line 1, ")) {
    s.remove_prefix(sizeof("parse error at line 1, ") - 1);
  } else if (absl::StartsWith(s, "parse error ")) {
    s.remove_prefix(sizeof("parse error ") - 1);
  }
  return Shorten(std::string(s));
}

// SAX handler that validates a whole JSON value and keeps only the top-level
// object's "text" member (the last one, if repeated).
class TextFieldSax {
 public:
  using json = nlohmann::json;
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  bool null() { return Value("null"); }
  bool boolean(bool) { return Value("a boolean"); }
  bool number_integer(number_integer_t) { return Value("a number"); }
  bool number_unsigned(number_unsigned_t) { return Value("a number"); }
  bool number_float(number_float_t, const string_t&) { return Value("a number"); }
  bool string(string_t& s) {
    if (depth_ == 0) top_kind_ = "a string";
    if (depth_ == 1 && at_text_key_) {
      text_ = std::move(s);
      has_text_ = true;
      text_kind_.clear();
    }
    at_text_key_ = false;
    return true;
  }
  bool binary(binary_t&) { return Value("binary"); }
  bool start_object(std::size_t) { return Open("an object"); }
  bool end_object() { return Close(); }
  bool start_array(std::size_t) { return Open("an array"); }
  bool end_array() { return Close(); }
  bool key(string_t& k) {
    at_text_key_ = depth_ == 1 && k == "text";
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    error_ = JsonErrorDetail(ex.what());
    return false;
  }

  const std::string& error() const { return error_; }
  absl::string_view top_kind() const { return top_kind_; }
  bool has_text() const { return has_text_; }
  std::string& text() { return text_; }
  // Kind of a non-string "text" value ("" when it was a string or absent).
  const std::string& text_kind() const { return text_kind_; }

 private:
  bool Value(const char* kind) {
    if (depth_ == 0) top_kind_ = kind;
    if (depth_ == 1 && at_text_key_) {
      has_text_ = false;
      text_kind_ = kind;
    }
    at_text_key_ = false;
    return true;
  }
  bool Open(const char* kind) {
    Value(kind);
    ++depth_;
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  bool at_text_key_ = false;
  bool has_text_ = false;
  std::string text_;
  std::string text_kind_;
  absl::string_view top_kind_ = "nothing";
  std::string error_;
};

}  // namespace

absl::string_view CorpusFormatName(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::kAuto:
      return "auto";
    case CorpusFormat::kJsonl:
      return "jsonl";
    case CorpusFormat::kText:
      return "text";
  }
  return "?";
}

absl::StatusOr<CorpusFormat> ResolveCorpusFormat(const std::string& path,
                                                 CorpusFormat format) {
  if (format != CorpusFormat::kAuto) return format;
  std::string name = absl::AsciiStrToLower(path);
  for (absl::string_view z : {".zst", ".zstd"}) {
    if (absl::EndsWith(name, z)) name.resize(name.size() - z.size());
  }
  for (absl::string_view ext : {".jsonl", ".json", ".ndjson"}) {
    if (absl::EndsWith(name, ext)) return CorpusFormat::kJsonl;
  }
  for (absl::string_view ext : {".txt", ".text"}) {
    if (absl::EndsWith(name, ext)) return CorpusFormat::kText;
  }
  return CorpusError(absl::StatusCode::kInvalidArgument, path, 0,
                     "cannot tell the corpus format from the file name: name it "
                     ".jsonl or .txt (optionally followed by .zst), or give the "
                     "format explicitly");
}

CorpusReader::CorpusReader(std::string path, CorpusFormat format,
                           CorpusReadOptions options, std::unique_ptr<LineReader> lines)
    : path_(std::move(path)),
      format_(format),
      options_(options),
      lines_(std::move(lines)) {}

CorpusReader::~CorpusReader() = default;

absl::StatusOr<std::unique_ptr<CorpusReader>> CorpusReader::Open(
    const std::string& path, const CorpusReadOptions& options) {
  QCAL_ASSIGN_OR_RETURN(CorpusFormat format, ResolveCorpusFormat(path, options.format));
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source,
                        OpenByteSource(path, options.buffer_bytes));
  auto lines = std::make_unique<LineReader>(std::move(source), options.buffer_bytes,
                                            options.max_record_bytes);
  return std::unique_ptr<CorpusReader>(
      new CorpusReader(path, format, options, std::move(lines)));
}

bool CorpusReader::compressed() const { return lines_->source().compressed(); }
size_t CorpusReader::buffer_capacity() const { return lines_->buffer_capacity(); }

std::vector<ZstdCheckpoint> CorpusReader::Checkpoints() const {
  return lines_->source().checkpoints();
}
void CorpusReader::AddCheckpoints(const std::vector<ZstdCheckpoint>& checkpoints) {
  lines_->source().AddCheckpoints(checkpoints);
}

absl::Status CorpusReader::SeekTo(const DocumentPosition& position) {
  QCAL_RETURN_IF_ERROR(lines_->Seek(position.offset, position.line));
  next_ordinal_ = position.ordinal;
  return absl::OkStatus();
}

absl::Status CorpusReader::Bad(absl::StatusCode code, int64_t line, absl::string_view what) {
  absl::Status error = CorpusError(code, path_, line, what);
  if (!options_.skip_bad_records) return error;
  ++stats_.bad_records;
  if (stats_.bad_record_examples.size() < CorpusStats::kMaxExamples) {
    stats_.bad_record_examples.emplace_back(error.message());
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> CorpusReader::Next(Document* doc) {
  return format_ == CorpusFormat::kText ? NextText(doc) : NextJsonl(doc);
}

namespace {
// The one wording for a record over the size limit, in both formats.
std::string TooLongMessage(size_t max_record_bytes) {
  return absl::StrCat("line longer than ", max_record_bytes, " bytes (max_record_bytes)");
}
constexpr absl::string_view kTruncatedMessage =
    "truncated zstd frame: the compressed data ends in the middle of a frame";
}  // namespace

absl::StatusOr<bool> CorpusReader::NextJsonl(Document* doc) {
  for (;;) {
    absl::string_view line;
    QCAL_ASSIGN_OR_RETURN(LineReader::Result r, lines_->Next(&line));
    const int64_t number = lines_->line_number();
    switch (r) {
      case LineReader::Result::kEnd:
        return false;
      case LineReader::Result::kTruncated:
        stats_.truncated = true;
        QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kDataLoss, number, kTruncatedMessage));
        continue;
      case LineReader::Result::kTooLong:
        ++stats_.lines;
        QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                                 TooLongMessage(options_.max_record_bytes)));
        continue;
      case LineReader::Result::kLine:
        break;
    }
    ++stats_.lines;
    if (IsBlank(line)) continue;
    if (size_t bad = FindInvalidUtf8(line); bad != absl::string_view::npos) {
      QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                               absl::StrCat("invalid UTF-8 at byte ", bad + 1,
                                            " of the line")));
      continue;
    }
    TextFieldSax sax;
    bool parsed = false;
    try {
      parsed = nlohmann::json::sax_parse(line.begin(), line.end(), &sax);
    } catch (const std::exception& e) {
      QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                               absl::StrCat("invalid JSON: ", JsonErrorDetail(e.what()))));
      continue;
    }
    if (!parsed) {
      QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                               absl::StrCat("invalid JSON: ", sax.error())));
      continue;
    }
    if (sax.top_kind() != "an object") {
      QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                               absl::StrCat("expected a JSON object with a \"text\" "
                                            "string, got ",
                                            sax.top_kind())));
      continue;
    }
    if (!sax.has_text()) {
      QCAL_RETURN_IF_ERROR(Bad(
          absl::StatusCode::kInvalidArgument, number,
          sax.text_kind().empty()
              ? std::string("no \"text\" field")
              : absl::StrCat("\"text\" is ", sax.text_kind(), ", not a string")));
      continue;
    }
    if (sax.text().empty()) {
      ++stats_.empty_records;
      continue;
    }
    doc->ordinal = next_ordinal_++;
    doc->line = number;
    doc->offset = lines_->line_offset();
    doc->text = std::move(sax.text());
    ++stats_.documents;
    return true;
  }
}

absl::StatusOr<bool> CorpusReader::NextText(Document* doc) {
  std::string text;
  int64_t first_line = 0;
  uint64_t first_offset = 0;
  bool in_bad = false;  // skipping the rest of a malformed paragraph
  auto emit = [&]() {
    doc->ordinal = next_ordinal_++;
    doc->line = first_line;
    doc->offset = first_offset;
    doc->text = std::move(text);
    ++stats_.documents;
    return true;
  };
  for (;;) {
    absl::string_view line;
    QCAL_ASSIGN_OR_RETURN(LineReader::Result r, lines_->Next(&line));
    const int64_t number = lines_->line_number();
    switch (r) {
      case LineReader::Result::kEnd:
        if (!text.empty()) return emit();
        return false;
      case LineReader::Result::kTruncated:
        // The paragraph in progress may be cut: it is dropped with the frame.
        stats_.truncated = true;
        QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kDataLoss,
                                 text.empty() ? number : first_line, kTruncatedMessage));
        text.clear();
        in_bad = false;
        continue;
      case LineReader::Result::kTooLong:
        ++stats_.lines;
        QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                                 TooLongMessage(options_.max_record_bytes)));
        text.clear();
        in_bad = true;
        continue;
      case LineReader::Result::kLine:
        break;
    }
    ++stats_.lines;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (IsBlank(line)) {
      in_bad = false;
      if (!text.empty()) return emit();
      continue;
    }
    if (in_bad) continue;
    if (size_t bad = FindInvalidUtf8(line); bad != absl::string_view::npos) {
      QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                               absl::StrCat("invalid UTF-8 at byte ", bad + 1,
                                            " of the line")));
      text.clear();
      in_bad = true;
      continue;
    }
    const size_t added = line.size() + (text.empty() ? 0 : 1);
    if (text.size() + added > options_.max_record_bytes) {
      QCAL_RETURN_IF_ERROR(Bad(absl::StatusCode::kInvalidArgument, number,
                               absl::StrCat("paragraph longer than ",
                                            options_.max_record_bytes,
                                            " bytes (max_record_bytes)")));
      text.clear();
      in_bad = true;
      continue;
    }
    if (text.empty()) {
      first_line = number;
      first_offset = lines_->line_offset();
    } else {
      text.push_back('\n');
    }
    text.append(line.data(), line.size());
  }
}

}  // namespace qcal::corpus
