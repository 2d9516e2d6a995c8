// Internal to qcal_text: added / special tokens, matched in the text before the
// model runs (Hugging Face's AddedVocabulary: leftmost-longest matching, with the
// lstrip / rstrip / single_word options).
//
// Thread-safe after construction.
#ifndef QCAL_WORKER_TEXT_ADDED_TOKENS_H_
#define QCAL_WORKER_TEXT_ADDED_TOKENS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace qcal::text {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;       // absorbs whitespace on its left
  bool rstrip = false;       // absorbs whitespace on its right
  bool single_word = false;  // only matches with no word character next to it
  bool normalized = false;   // matched in the normalized text (else the raw text)
};

// A piece of the input: text for the model, or an added token.
struct Segment {
  absl::string_view text;  // the text (when id < 0), else the matched token text
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  bool empty() const { return nodes_.size() <= 1; }

  // Appends the segments of `text` to `out`: leftmost-longest matches of the tokens
  // and the non-empty text between them. Segments view into `text`.
  void Split(absl::string_view text, std::vector<Segment>* out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t token = -1;                                   // index in tokens_
  };
  int32_t Child(int32_t node, unsigned char b) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_ADDED_TOKENS_H_
