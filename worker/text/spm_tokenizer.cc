#include "worker/text/spm_tokenizer.h"

#include <algorithm>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/text/added_tokens.h"
#include "worker/text/id_cache.h"
#include "worker/text/spm_backend.h"
#include "worker/text/spm_shim_loader.h"

namespace qcal::text {
namespace {

std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

constexpr absl::string_view kMetaSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// True if no piece holds a non-space character followed by U+2581: then no piece
// spans a word start, and every word can be encoded on its own (see EncodeChunk).
bool PiecesStayInsideWords(const SpmBackend& sp) {
  for (int id = 0; id < sp.piece_size(); ++id) {
    const std::string piece = sp.IdToPiece(id);
    for (size_t k = piece.find(Std(kMetaSpace)); k != std::string::npos;
         k = piece.find(Std(kMetaSpace), k + 1)) {
      if (k > 0 && (k < 3 || piece.compare(k - 3, 3, Std(kMetaSpace)) != 0)) return false;
    }
  }
  return true;
}

class SpmTokenizer : public Tokenizer {
 public:
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  TokenizerKind kind() const override { return TokenizerKind::kSentencePiece; }
  std::string Describe() const override { return describe_; }

 protected:
  absl::StatusOr<std::vector<int32_t>> EncodeContent(absl::string_view text) const override;

 private:
  friend absl::StatusOr<std::unique_ptr<Tokenizer>> qcal::text::CreateSpmTokenizer(
      const std::string&, const TokenizerConfig&);

  absl::Status EncodeChunk(absl::string_view text, bool dummy_prefix,
                           std::vector<int32_t>* ids) const;
  absl::Status EncodeWhole(absl::string_view text, bool dummy_prefix,
                           std::vector<int32_t>* ids) const;

  std::unique_ptr<SpmBackend> spm_;
  bool word_split_ = false;  // EncodeChunk may encode word by word (and cache)
  IdCache cache_{1 << 18, 256};
  AddedTokenMatcher matcher_;
  absl::flat_hash_map<int32_t, std::string> special_text_;  // id -> text for Decode
  bool legacy_ = true;
  int32_t vocab_size_ = 0;
  std::string describe_;
};

absl::StatusOr<std::vector<int32_t>> SpmTokenizer::EncodeContent(absl::string_view text) const {
  std::vector<int32_t> ids;
  if (text.empty()) return ids;
  std::vector<Segment> segments;
  matcher_.Split(text, &segments);
  std::vector<int> piece_ids;
  std::string error;
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& seg = segments[i];
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    // transformers' LlamaTokenizer: the text's first chunk gets the dummy prefix;
    // with legacy=false, chunks after a special token do not.
    QCAL_RETURN_IF_ERROR(EncodeChunk(seg.text, /*dummy_prefix=*/i == 0 || legacy_, &ids));
  }
  return ids;
}

absl::Status SpmTokenizer::EncodeWhole(absl::string_view text, bool dummy_prefix,
                                       std::vector<int32_t>* ids) const {
  std::vector<int> piece_ids;
  std::string error;
  if (!spm_->Encode(Std(text), dummy_prefix, &piece_ids, &error)) {
    return absl::InternalError(absl::StrCat("sentencepiece: ", error));
  }
  ids->insert(ids->end(), piece_ids.begin(), piece_ids.end());
  return absl::OkStatus();
}

// With an identity normalizer and no piece spanning a word start, SentencePiece's
// BPE never merges across the point where a space (or U+2581) follows another
// character: a merged symbol is always a piece. Each word (the text from one such
// point to the next) then encodes to the same ids alone as inside the text, so
// words are encoded separately and cached; the first word alone carries the dummy
// prefix. libsentencepiece is slow (about 3 MB/s), and this makes the common words
// of a corpus free.
absl::Status SpmTokenizer::EncodeChunk(absl::string_view text, bool dummy_prefix,
                                       std::vector<int32_t>* ids) const {
  if (!word_split_) return EncodeWhole(text, dummy_prefix, ids);
  std::vector<absl::string_view> words;
  size_t start = 0;
  bool prev_space = false;
  for (size_t i = 0; i < text.size();) {
    // Bytes of multi-byte characters are never ' ' nor 0xE2, so stepping bytewise
    // over other characters is safe.
    const bool meta = text.substr(i, 3) == kMetaSpace;
    const bool space = text[i] == ' ' || meta;
    if (space && i > 0 && !prev_space) {
      words.push_back(text.substr(start, i - start));
      start = i;
    }
    prev_space = space;
    i += meta ? 3 : 1;
  }
  if (start < text.size()) words.push_back(text.substr(start));
  if (words.empty()) return absl::OkStatus();
  absl::Span<const absl::string_view> rest(words);
  if (dummy_prefix) {  // the first word alone carries the dummy prefix: not cached
    QCAL_RETURN_IF_ERROR(EncodeWhole(words[0], true, ids));
    rest.remove_prefix(1);
  }
  return cache_.EncodeAll(rest, ids, [this](absl::string_view w, std::vector<int32_t>* out) {
    return EncodeWhole(w, false, out);
  });
}

absl::StatusOr<std::string> SpmTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out, part, error;
  std::vector<int> run;
  bool first_run = true;
  auto flush = [&]() -> absl::Status {
    if (run.empty()) return absl::OkStatus();
    if (!spm_->Decode(run, first_run || legacy_, &part, &error)) {
      return absl::InternalError(absl::StrCat("sentencepiece: ", error));
    }
    out += part;
    run.clear();
    first_run = false;
    return absl::OkStatus();
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside [0, ", vocab_size_, ")"));
    }
    auto it = special_text_.find(id);
    if (it != special_text_.end()) {
      QCAL_RETURN_IF_ERROR(flush());
      out += it->second;
      first_run = false;
    } else if (id < spm_->piece_size()) {
      run.push_back(id);
    }
  }
  QCAL_RETURN_IF_ERROR(flush());
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSpmTokenizer(const std::string& model_path,
                                                              const TokenizerConfig& config) {
  QCAL_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(model_path));
  std::string error;
  // A shim that does not load is this machine's fault, not the model's: retryable
  // elsewhere, unlike a file that is not a SentencePiece model.
  if (SpmShimApi(&error) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(model_path, ": ", error));
  }
  std::unique_ptr<SpmBackend> spm = SpmBackend::Load(bytes, &error);
  if (spm == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": not a SentencePiece model: ", error));
  }
  auto tok = std::make_unique<SpmTokenizer>();
  const SpmBackend& sp = *spm;
  tok->legacy_ = config.legacy.value_or(true);  // transformers' default, with a warning

  // Tokens matched in the text: the folder's added tokens, plus unk/bos/eos/pad.
  std::vector<AddedToken> added = config.added_tokens;
  int32_t max_id = sp.piece_size() - 1;
  for (const AddedToken& t : added) max_id = std::max(max_id, t.id);
  auto lookup = [&](const std::string& text) -> std::optional<int32_t> {
    for (const AddedToken& t : added) {
      if (t.content == text) return t.id;
    }
    const int id = sp.PieceToId(text);
    if (id == sp.unk_id() && sp.IdToPiece(id) != text) return std::nullopt;
    return id;
  };
  auto spm_id = [](int id) { return id >= 0 ? std::optional<int32_t>(id) : std::nullopt; };
  tok->bos_ = ResolveSpecialToken(config.bos_token, lookup, config.bos_token_id, spm_id(sp.bos_id()));
  tok->eos_ = ResolveSpecialToken(config.eos_token, lookup, config.eos_token_id, spm_id(sp.eos_id()));
  tok->pad_ = ResolveSpecialToken(config.pad_token, lookup, config.pad_token_id, spm_id(sp.pad_id()));
  std::optional<int32_t> unk =
      ResolveSpecialToken(config.unk_token, lookup, std::nullopt, spm_id(sp.unk_id()));
  for (std::optional<int32_t> id : {unk, tok->bos_, tok->eos_, tok->pad_}) {
    if (!id.has_value() || *id >= sp.piece_size()) continue;
    const bool known = std::any_of(added.begin(), added.end(),
                                   [&](const AddedToken& t) { return t.id == *id; });
    if (known) continue;
    AddedToken t;
    t.id = *id;
    t.content = sp.IdToPiece(*id);
    t.special = true;
    added.push_back(std::move(t));
  }
  tok->matcher_ = AddedTokenMatcher(added);
  for (const AddedToken& t : added) tok->special_text_.emplace(t.id, t.content);
  tok->vocab_size_ = max_id + 1;

  if (config.add_bos_token.value_or(true) && tok->bos_) tok->prefix_.push_back(*tok->bos_);
  if (config.add_eos_token.value_or(false) && tok->eos_) tok->suffix_.push_back(*tok->eos_);
  tok->word_split_ = sp.identity_normalizer() && PiecesStayInsideWords(sp);
  tok->spm_ = std::move(spm);
  tok->describe_ = absl::StrCat("tokenizer.model: SentencePiece, ", tok->vocab_size_,
                                " ids, legacy=", tok->legacy_ ? "true" : "false",
                                ", add_bos_token=", tok->prefix_.empty() ? "false" : "true",
                                ", add_eos_token=", tok->suffix_.empty() ? "false" : "true");
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace qcal::text
