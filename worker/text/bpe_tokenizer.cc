#include "worker/text/bpe_tokenizer.h"

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "worker/text/added_tokens.h"
#include "worker/text/bpe_model.h"
#include "worker/text/byte_level.h"
#include "worker/text/nfc.h"
#include "worker/text/regex_split.h"

namespace qcal::text {
namespace {

using json = nlohmann::json;

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex = true).
constexpr char kGpt2Regex[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string TypeOf(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string("?");
}

bool GetBool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : dflt;
}

// True if a null/"" string option.
bool EmptyString(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty());
}

// Calls `f` on each component of a possibly-Sequence node.
// A token id from tokenizer.json: an integer in [0, ModelLimits::kVocab). Anything
// else (negative, fractional, beyond int32, a table of billions) is refused: ids
// index tables sized by the largest id, and a worker's embedding.
absl::StatusOr<int32_t> TokenId(const json& v, const std::string& what) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() >= static_cast<uint64_t>(ModelLimits::kVocab)) ||
      v.get<int64_t>() < 0 || v.get<int64_t>() >= ModelLimits::kVocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": id ", v.dump(), " is not an integer in [0, ", ModelLimits::kVocab, ")"));
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

template <typename F>
absl::Status ForEachComponent(const json& node, const char* list_key, F f) {
  if (node.is_null()) return absl::OkStatus();
  if (TypeOf(node) == "Sequence") {
    auto it = node.find(list_key);
    if (it == node.end() || !it->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat("Sequence without \"", list_key, "\""));
    }
    for (const json& item : *it) {
      QCAL_RETURN_IF_ERROR(ForEachComponent(item, list_key, f));
    }
    return absl::OkStatus();
  }
  return f(node);
}

bool HasComponent(const json& root, const char* key, const char* list_key, const char* type) {
  auto it = root.find(key);
  if (it == root.end()) return false;
  bool found = false;
  ForEachComponent(*it, list_key, [&](const json& c) {
    if (TypeOf(c) == type) found = true;
    return absl::OkStatus();
  }).IgnoreError();
  return found;
}

class BpeTokenizer : public Tokenizer {
 public:
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  TokenizerKind kind() const override { return TokenizerKind::kByteLevelBpe; }
  std::string Describe() const override { return describe_; }

 protected:
  absl::StatusOr<std::vector<int32_t>> EncodeContent(absl::string_view text) const override;

 private:
  friend absl::StatusOr<std::unique_ptr<Tokenizer>> qcal::text::CreateBpeTokenizer(
      const json&, const TokenizerConfig&, const std::string&);

  struct PreStep {
    std::unique_ptr<RegexSplitter> regex;  // split with this (if set)
    bool add_prefix_space = false;          // ByteLevel's option
  };

  absl::Status ParsePreTokenizer(const json& node);
  absl::Status ParsePostProcessor(const json& node,
                                  const absl::flat_hash_map<std::string, int32_t>& lookup);

  bool nfc_ = false;
  AddedTokenMatcher raw_matcher_;
  AddedTokenMatcher normalized_matcher_;
  std::vector<PreStep> steps_;
  std::unique_ptr<BpeModel> model_;
  std::vector<std::string> id_to_token_;
  int32_t vocab_size_ = 0;
  std::string describe_;
};

absl::Status BpeTokenizer::ParsePreTokenizer(const json& node) {
  return ForEachComponent(node, "pretokenizers", [&](const json& c) -> absl::Status {
    const std::string type = TypeOf(c);
    if (type == "Split") {
      auto pattern = c.find("pattern");
      std::string regex;
      if (pattern != c.end() && pattern->is_object() && pattern->contains("Regex") &&
          (*pattern)["Regex"].is_string()) {
        regex = (*pattern)["Regex"].get<std::string>();
      } else if (pattern != c.end() && pattern->is_object() && pattern->contains("String") &&
                 (*pattern)["String"].is_string()) {
        regex = absl::StrCat("\\Q", (*pattern)["String"].get<std::string>(), "\\E");
      } else {
        return absl::InvalidArgumentError("Split pre-tokenizer without a Regex or String pattern");
      }
      auto behavior = c.find("behavior");
      if (behavior == c.end() || !behavior->is_string() ||
          behavior->get<std::string>() != "Isolated" || GetBool(c, "invert", false)) {
        return absl::UnimplementedError(absl::StrCat(
            "Split pre-tokenizer with behavior ", behavior == c.end() ? "?" : behavior->dump(),
            GetBool(c, "invert", false) ? " and invert" : "",
            " (only Isolated, not inverted, is supported)"));
      }
      PreStep step;
      QCAL_ASSIGN_OR_RETURN(step.regex, RegexSplitter::Create(regex));
      steps_.push_back(std::move(step));
      return absl::OkStatus();
    }
    if (type == "ByteLevel") {
      PreStep step;
      step.add_prefix_space = GetBool(c, "add_prefix_space", true);
      if (GetBool(c, "use_regex", true)) {
        QCAL_ASSIGN_OR_RETURN(step.regex, RegexSplitter::Create(kGpt2Regex));
      }
      steps_.push_back(std::move(step));
      return absl::OkStatus();
    }
    return absl::UnimplementedError(absl::StrCat("pre-tokenizer ", type, " is not supported"));
  });
}

absl::Status BpeTokenizer::ParsePostProcessor(
    const json& node, const absl::flat_hash_map<std::string, int32_t>& lookup) {
  return ForEachComponent(node, "processors", [&](const json& c) -> absl::Status {
    const std::string type = TypeOf(c);
    if (type == "ByteLevel") return absl::OkStatus();  // offsets only
    if (type == "TemplateProcessing") {
      auto single = c.find("single");
      auto specials = c.find("special_tokens");
      if (single == c.end() || !single->is_array()) {
        return absl::InvalidArgumentError("TemplateProcessing without a \"single\" template");
      }
      prefix_.clear();
      suffix_.clear();
      bool after = false;
      for (const json& item : *single) {
        if (item.contains("Sequence")) {
          after = true;
          continue;
        }
        auto st = item.find("SpecialToken");
        if (st == item.end() || !st->is_object() || !st->contains("id")) {
          return absl::InvalidArgumentError("TemplateProcessing item is neither Sequence nor SpecialToken");
        }
        const std::string name = (*st)["id"].get<std::string>();
        std::vector<int32_t> ids;
        if (specials != c.end() && specials->contains(name) &&
            (*specials)[name].contains("ids")) {
          const json& listed = (*specials)[name]["ids"];
          if (!listed.is_array()) {
            return absl::InvalidArgumentError(
                absl::StrCat("TemplateProcessing special token ", name, ": ids is not a list"));
          }
          for (const json& id : listed) {
            QCAL_ASSIGN_OR_RETURN(int32_t checked,
                                  TokenId(id, absl::StrCat("TemplateProcessing ", name)));
            ids.push_back(checked);
          }
        } else if (auto it = lookup.find(name); it != lookup.end()) {
          ids = {it->second};
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("TemplateProcessing special token ", name, " is unknown"));
        }
        auto& dst = after ? suffix_ : prefix_;
        dst.insert(dst.end(), ids.begin(), ids.end());
      }
      return absl::OkStatus();
    }
    if (type == "RobertaProcessing" || type == "BertProcessing") {
      auto cls = c.find("cls");
      auto sep = c.find("sep");
      if (cls == c.end() || sep == c.end() || !cls->is_array() || !sep->is_array() ||
          cls->size() != 2 || sep->size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(type, " without cls/sep pairs"));
      }
      QCAL_ASSIGN_OR_RETURN(int32_t cls_id, TokenId((*cls)[1], absl::StrCat(type, " cls")));
      QCAL_ASSIGN_OR_RETURN(int32_t sep_id, TokenId((*sep)[1], absl::StrCat(type, " sep")));
      prefix_ = {cls_id};
      suffix_ = {sep_id};
      return absl::OkStatus();
    }
    return absl::UnimplementedError(absl::StrCat("post-processor ", type, " is not supported"));
  });
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::EncodeContent(absl::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Segment> segments, sub;
  std::vector<absl::string_view> words;  // pre-tokens not yet given to the model
  std::vector<absl::string_view> pieces, next;
  std::deque<std::string> storage;  // normalized / prefixed text the pieces view into
  auto added_token = [&](int32_t id) {
    model_->EncodeWords(words, &ids);
    words.clear();
    ids.push_back(id);
  };
  raw_matcher_.Split(text, &segments);
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      added_token(seg.id);
      continue;
    }
    absl::string_view normalized = seg.text;
    if (nfc_ && !IsNfc(normalized)) {
      QCAL_ASSIGN_OR_RETURN(std::string n, NormalizeNfc(normalized));
      storage.push_back(std::move(n));
      normalized = storage.back();
    }
    sub.clear();
    normalized_matcher_.Split(normalized, &sub);
    for (const Segment& s : sub) {
      if (s.id >= 0) {
        added_token(s.id);
        continue;
      }
      pieces.assign(1, s.text);
      for (const PreStep& step : steps_) {
        next.clear();
        for (absl::string_view p : pieces) {
          if (step.add_prefix_space && (p.empty() || p[0] != ' ')) {
            storage.push_back(absl::StrCat(" ", p));
            p = storage.back();
          }
          if (step.regex != nullptr) {
            QCAL_RETURN_IF_ERROR(step.regex->Split(p, &next));
          } else {
            next.push_back(p);
          }
        }
        pieces.swap(next);
      }
      words.insert(words.end(), pieces.begin(), pieces.end());
    }
  }
  model_->EncodeWords(words, &ids);
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside [0, ", vocab_size_, ")"));
    }
    const std::string& token = id_to_token_[id];
    if (std::optional<std::string> raw = ByteLevelToBytes(token)) {
      bytes += *raw;
    } else {
      bytes += token;  // an added token outside the byte map: its text as is
    }
  }
  return Utf8Lossy(bytes);
}

}  // namespace

bool IsByteLevelBpe(const json& root) {
  auto model = root.find("model");
  if (model == root.end() || !model->is_object() || TypeOf(*model) != "BPE") return false;
  if (GetBool(*model, "byte_fallback", false)) return false;
  return HasComponent(root, "pre_tokenizer", "pretokenizers", "ByteLevel") ||
         HasComponent(root, "decoder", "decoders", "ByteLevel");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(const json& root,
                                                              const TokenizerConfig& config,
                                                              const std::string& path) {
  auto annotate = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  };
  try {
    auto tok = std::make_unique<BpeTokenizer>();
    auto model = root.find("model");
    if (model == root.end() || !model->is_object() || TypeOf(*model) != "BPE") {
      return annotate(absl::UnimplementedError(
          absl::StrCat("model type ", model == root.end() ? "?" : TypeOf(*model),
                       " is not supported (only byte-level BPE)")));
    }
    const json& m = *model;
    if (GetBool(m, "byte_fallback", false)) {
      return annotate(absl::UnimplementedError("BPE with byte_fallback is not supported"));
    }
    if (!EmptyString(m, "continuing_subword_prefix") || !EmptyString(m, "end_of_word_suffix")) {
      return annotate(absl::UnimplementedError(
          "BPE with continuing_subword_prefix or end_of_word_suffix is not supported"));
    }
    if (auto d = m.find("dropout"); d != m.end() && d->is_number() && d->get<double>() > 0) {
      return annotate(absl::UnimplementedError("BPE dropout is not supported"));
    }
    if (!HasComponent(root, "decoder", "decoders", "ByteLevel")) {
      return annotate(absl::UnimplementedError("a decoder other than ByteLevel is not supported"));
    }

    // Vocabulary and merges.
    auto vocab_it = m.find("vocab");
    auto merges_it = m.find("merges");
    if (vocab_it == m.end() || !vocab_it->is_object() || merges_it == m.end() ||
        !merges_it->is_array()) {
      return annotate(absl::InvalidArgumentError("BPE model without vocab object and merges array"));
    }
    std::vector<std::pair<std::string, int32_t>> vocab;
    vocab.reserve(vocab_it->size());
    absl::flat_hash_map<std::string, int32_t> lookup;  // token text -> id
    int32_t max_id = -1;
    for (const auto& [token, id] : vocab_it->items()) {
      absl::StatusOr<int32_t> checked = TokenId(id, absl::StrCat("vocab token ", token));
      if (!checked.ok()) return annotate(checked.status());
      vocab.emplace_back(token, *checked);
      lookup.emplace(token, *checked);
      max_id = std::max(max_id, *checked);
    }
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merges_it->size());
    for (const json& merge : *merges_it) {
      if (merge.is_string()) {
        const std::string s = merge.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          return annotate(absl::InvalidArgumentError(absl::StrCat("bad merge \"", s, "\"")));
        }
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                 merge[1].is_string()) {
        merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      } else {
        return annotate(absl::InvalidArgumentError(absl::StrCat("bad merge ", merge.dump())));
      }
    }
    BpeModelOptions options;
    options.ignore_merges = GetBool(m, "ignore_merges", false);
    options.fuse_unk = GetBool(m, "fuse_unk", false);
    if (auto unk = m.find("unk_token"); unk != m.end() && unk->is_string()) {
      auto it = lookup.find(unk->get<std::string>());
      if (it != lookup.end()) options.unk_id = it->second;
    }
    auto bpe = BpeModel::Create(vocab, merges, options);
    if (!bpe.ok()) return annotate(bpe.status());
    tok->model_ = std::move(*bpe);

    // Added tokens.
    std::vector<AddedToken> raw_tokens, normalized_tokens;
    if (auto at = root.find("added_tokens"); at != root.end() && at->is_array()) {
      for (const json& a : *at) {
        AddedToken t;
        if (!a.contains("id") || !a.contains("content") || !a["content"].is_string()) {
          return annotate(absl::InvalidArgumentError(absl::StrCat("bad added token ", a.dump())));
        }
        absl::StatusOr<int32_t> id = TokenId(a["id"], "added token");
        if (!id.ok()) return annotate(id.status());
        t.id = *id;
        t.content = a["content"].get<std::string>();
        t.special = GetBool(a, "special", false);
        t.lstrip = GetBool(a, "lstrip", false);
        t.rstrip = GetBool(a, "rstrip", false);
        t.single_word = GetBool(a, "single_word", false);
        t.normalized = GetBool(a, "normalized", !t.special);
        max_id = std::max(max_id, t.id);
        lookup[t.content] = t.id;
        (t.normalized ? normalized_tokens : raw_tokens).push_back(t);
      }
    }
    tok->raw_matcher_ = AddedTokenMatcher(raw_tokens);
    tok->normalized_matcher_ = AddedTokenMatcher(normalized_tokens);
    tok->vocab_size_ = max_id + 1;
    tok->id_to_token_.assign(tok->vocab_size_, std::string());
    for (const auto& [token, id] : vocab) tok->id_to_token_[id] = token;
    for (const auto* list : {&raw_tokens, &normalized_tokens}) {
      for (const AddedToken& t : *list) tok->id_to_token_[t.id] = t.content;
    }

    // Normalizer.
    if (auto n = root.find("normalizer"); n != root.end()) {
      absl::Status s = ForEachComponent(*n, "normalizers", [&](const json& c) {
        if (TypeOf(c) == "NFC") {
          tok->nfc_ = true;
          return absl::OkStatus();
        }
        return absl::UnimplementedError(absl::StrCat("normalizer ", TypeOf(c), " is not supported"));
      });
      if (!s.ok()) return annotate(s);
    }
    if (auto p = root.find("pre_tokenizer"); p != root.end()) {
      absl::Status s = tok->ParsePreTokenizer(*p);
      if (!s.ok()) return annotate(s);
    }
    if (auto p = root.find("post_processor"); p != root.end()) {
      absl::Status s = tok->ParsePostProcessor(*p, lookup);
      if (!s.ok()) return annotate(s);
    }

    // Special tokens.
    auto find = [&](const std::string& text) -> std::optional<int32_t> {
      auto it = lookup.find(text);
      if (it == lookup.end()) return std::nullopt;
      return it->second;
    };
    tok->bos_ = ResolveSpecialToken(config.bos_token, find, config.bos_token_id, std::nullopt);
    tok->eos_ = ResolveSpecialToken(config.eos_token, find, config.eos_token_id,
                                    find("<|endoftext|>"));
    tok->pad_ = ResolveSpecialToken(config.pad_token, find, config.pad_token_id, std::nullopt);
    // transformers' Llama/Gemma fast tokenizers rebuild the template from
    // add_bos_token / add_eos_token.
    const std::string& cls = config.tokenizer_class;
    if ((cls == "LlamaTokenizerFast" || cls == "GemmaTokenizerFast" ||
         cls == "CodeLlamaTokenizerFast") &&
        (config.add_bos_token.has_value() || config.add_eos_token.has_value())) {
      tok->prefix_.clear();
      tok->suffix_.clear();
      if (config.add_bos_token.value_or(true) && tok->bos_) tok->prefix_.push_back(*tok->bos_);
      if (config.add_eos_token.value_or(false) && tok->eos_) tok->suffix_.push_back(*tok->eos_);
    }
    // Every id the template adds around a text must name a token of the table.
    std::vector<int32_t> emitted(tok->prefix_);
    emitted.insert(emitted.end(), tok->suffix_.begin(), tok->suffix_.end());
    for (int32_t id : emitted) {
      if (id < 0 || id >= tok->vocab_size_) {
        return annotate(absl::InvalidArgumentError(absl::StrCat(
            "special token id ", id, " is outside the vocabulary (", tok->vocab_size_, " ids)")));
      }
    }
    tok->describe_ = absl::StrCat("tokenizer.json: byte-level BPE, ", tok->vocab_size_, " ids (",
                                  merges.size(), " merges, ",
                                  raw_tokens.size() + normalized_tokens.size(), " added tokens)");
    return std::unique_ptr<Tokenizer>(std::move(tok));
  } catch (const json::exception& e) {
    return annotate(absl::InvalidArgumentError(absl::StrCat("unexpected structure: ", e.what())));
  }
}

}  // namespace qcal::text
