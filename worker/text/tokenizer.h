// Tokenizers: text -> token ids exactly as Hugging Face (tokenizers / transformers)
// and SentencePiece produce them, for the model folders calibration runs on.
//
// LoadTokenizer(dir) picks the implementation from what the folder holds, as
// transformers' AutoTokenizer (use_fast=True) does: tokenizer.json first, then
// tokenizer.model.
//   - tokenizer.json with a byte-level BPE model (GPT-2, Qwen2, Llama 3 style):
//     added/special tokens matched first, NFC normalizer, Split(regex) and
//     ByteLevel pre-tokenizers, merge-rank BPE, post-processor template
//     (ByteLevel, TemplateProcessing, RobertaProcessing).
//   - tokenizer.model (SentencePiece: Llama 2, Mistral, Gemma) through
//     libsentencepiece, with transformers' LlamaTokenizer semantics: special-token
//     text in the input is matched as that token, legacy=false (from
//     tokenizer_config.json) encodes text after a special token without the dummy
//     prefix, and add_bos_token / add_eos_token decide what add_special_tokens adds.
//   - A tokenizer.json that is not byte-level BPE (e.g. Llama 2's, converted from
//     SentencePiece) is used only through the tokenizer.model beside it, which
//     gives the same ids; without one it is UNIMPLEMENTED.
// Special tokens (bos/eos/pad) come from tokenizer_config.json, else from
// config.json / generation_config.json ids, else from the tokenizer itself.
//
// Thread-safety: a loaded Tokenizer is immutable apart from an internal,
// mutex-protected cache; all methods may be called concurrently.
#ifndef QCAL_WORKER_TEXT_TOKENIZER_H_
#define QCAL_WORKER_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace qcal::text {

enum class TokenizerKind {
  kByteLevelBpe,   // tokenizer.json
  kSentencePiece,  // tokenizer.model
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The token ids of `text`. Special-token text inside `text` (such as
  // "<|endoftext|>" or "<s>") is encoded as that token, as Hugging Face does by
  // default. With `add_special_tokens`, prefix_tokens() and suffix_tokens() are
  // put around the result (e.g. BOS for Llama; nothing for Qwen2).
  // Errors: INVALID_ARGUMENT if `text` is not valid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              bool add_special_tokens) const;

  // What Encode(text, true) adds before / after the content ids.
  const std::vector<int32_t>& prefix_tokens() const { return prefix_; }
  const std::vector<int32_t>& suffix_tokens() const { return suffix_; }

  // The text of `ids`, special tokens written as their text; bytes that do not form
  // valid UTF-8 become U+FFFD. Decode(Encode(t, false)) gives back t (for
  // byte-level BPE: its NFC form). Errors: INVALID_ARGUMENT for an id outside
  // [0, vocab_size()).
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const = 0;

  // Number of ids (one more than the largest id), added tokens included.
  virtual int32_t vocab_size() const = 0;
  virtual TokenizerKind kind() const = 0;
  // E.g. "tokenizer.json: byte-level BPE, 4096 ids".
  virtual std::string Describe() const = 0;

  std::optional<int32_t> bos_id() const { return bos_; }
  std::optional<int32_t> eos_id() const { return eos_; }
  std::optional<int32_t> pad_id() const { return pad_; }

 protected:
  // The ids of `text` (already checked to be valid UTF-8) without any
  // prefix/suffix tokens.
  virtual absl::StatusOr<std::vector<int32_t>> EncodeContent(absl::string_view text) const = 0;

  std::vector<int32_t> prefix_;
  std::vector<int32_t> suffix_;
  std::optional<int32_t> bos_;
  std::optional<int32_t> eos_;
  std::optional<int32_t> pad_;
};

// Loads the tokenizer of a model folder (or any folder holding tokenizer.json or
// tokenizer.model; config.json is optional).
// Errors: NOT_FOUND when the folder holds neither file; INVALID_ARGUMENT for a
// malformed file; UNIMPLEMENTED for a tokenizer.json feature outside the list
// above (the message names it).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_TOKENIZER_H_
