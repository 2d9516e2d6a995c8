#include "worker/text/added_tokens.h"

#include <algorithm>

namespace qcal::text {
namespace {

// Decodes the code point that starts at s[i] (valid UTF-8); sets *len.
char32_t CodePointAt(absl::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  const size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  char32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n && i + k < s.size(); ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  }
  *len = n;
  return cp;
}

// Start of the code point that ends just before s[end].
size_t PrevStart(absl::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

// Unicode White_Space (what Rust's char::is_whitespace tests).
bool IsWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Approximates Rust's char::is_alphanumeric for single_word: ASCII letters and
// digits, '_' is not one; non-ASCII characters other than whitespace count as word
// characters.
bool IsWordChar(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return !IsWhitespace(c);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) {
  for (const AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    int32_t node = 0;
    for (char ch : t.content) {
      const auto b = static_cast<unsigned char>(ch);
      int32_t child = Child(node, b);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& next = nodes_[node].next;
        next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1})),
                    {b, child});
      }
      node = child;
    }
    if (nodes_[node].token < 0) {  // the first of duplicate contents wins
      nodes_[node].token = static_cast<int32_t>(tokens_.size());
      tokens_.push_back(t);
    }
    first_byte_[static_cast<unsigned char>(t.content[0])] = true;
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char b) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1}));
  return it != next.end() && it->first == b ? it->second : -1;
}

void AddedTokenMatcher::Split(absl::string_view text, std::vector<Segment>* out) const {
  if (empty()) {
    if (!text.empty()) out->push_back({text, -1});
    return;
  }
  size_t emitted = 0;  // text before this is already in `out`
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    // Longest token starting at i.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = Child(node, static_cast<unsigned char>(text[j]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = j + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t start = i, stop = best_end;
    if (tok.single_word) {
      size_t len;
      const bool word_before = start > 0 && IsWordChar(CodePointAt(text, PrevStart(text, start), &len));
      const bool word_after = stop < text.size() && IsWordChar(CodePointAt(text, stop, &len));
      if (word_before || word_after) {
        i = stop;  // as Hugging Face: matching resumes after the discarded match
        continue;
      }
    }
    if (tok.lstrip) {
      while (start > emitted) {
        size_t p = PrevStart(text, start), len;
        if (!IsWhitespace(CodePointAt(text, p, &len))) break;
        start = p;
      }
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t len;
        if (!IsWhitespace(CodePointAt(text, stop, &len))) break;
        stop += len;
      }
    }
    if (start > emitted) out->push_back({text.substr(emitted, start - emitted), -1});
    out->push_back({text.substr(i, best_end - i), tok.id});
    emitted = i = stop;
  }
  if (emitted < text.size()) out->push_back({text.substr(emitted), -1});
}

}  // namespace qcal::text
