#include "worker/text/regex_split.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace qcal::text {
namespace {

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof(buf));
  if (n < 0) return absl::StrCat("PCRE2 error ", code);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// Frees PCRE2 match data on scope exit.
struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(md); }
};

}  // namespace

struct RegexSplitter::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(std::unique_ptr<Impl> impl, std::string translated)
    : impl_(std::move(impl)), translated_(std::move(translated)) {}
RegexSplitter::~RegexSplitter() = default;

std::string RegexSplitter::TranslatePattern(absl::string_view pattern) {
  // Oniguruma's \s is Unicode White_Space: PCRE2's UCP \s plus U+0085.
  constexpr absl::string_view kSpaceInClass = "\\s\\x{85}";
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false;
  size_t class_start = 0;  // index in `pattern` just after '[' (and '^')
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out.append(kSpaceInClass.data(), kSpaceInClass.size());
        } else {
          absl::StrAppend(&out, "[", kSpaceInClass, "]");
        }
        continue;
      }
      if (e == 'S' && !in_class) {
        absl::StrAppend(&out, "[^", kSpaceInClass, "]");
        continue;
      }
      out.push_back('\\');
      out.push_back(e);
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') {
        out.push_back('^');
        ++i;
      }
      class_start = i + 1;
      continue;
    }
    if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      // POSIX class such as [:alpha:]: copy through its closing ":]".
      size_t end = pattern.find(":]", i + 2);
      if (end != absl::string_view::npos) {
        out.append(pattern.data() + i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']' && i != class_start) in_class = false;
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(
    const std::string& pattern) {
  std::string translated = TranslatePattern(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  auto impl = std::make_unique<Impl>();
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()),
                             translated.size(), PCRE2_UTF | PCRE2_UCP, &err, &offset,
                             nullptr);
  if (impl->code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer regex \"", pattern,
                                                   "\" does not compile at offset ",
                                                   offset, ": ", Pcre2Message(err)));
  }
  impl->jit = pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<RegexSplitter>(new RegexSplitter(std::move(impl), std::move(translated)));
}

absl::Status RegexSplitter::Split(absl::string_view text,
                                  std::vector<absl::string_view>* pieces) const {
  MatchData data;
  if (data.md == nullptr) return absl::ResourceExhaustedError("PCRE2: out of memory");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t gap = 0;  // start of the text not yet in a piece
  size_t pos = 0;  // where the next search starts
  while (pos < n) {
    int rc = -1;
    if (impl_->jit) {
      rc = pcre2_jit_match(impl_->code, subject, n, pos, 0, data.md, nullptr);
    }
    if (!impl_->jit || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The interpreter keeps its backtracking frames on the heap: no stack limit.
      rc = pcre2_match(impl_->code, subject, n, pos, PCRE2_NO_UTF_CHECK, data.md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return absl::InternalError(absl::StrCat("PCRE2 match failed: ", Pcre2Message(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    const size_t s = ov[0], e = ov[1];
    if (e == s) {
      // An empty match (tokenizer regexes have none: every alternative consumes a
      // character) splits nothing; search again one character later.
      pos = s + 1;
      while (pos < n && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (s > gap) pieces->push_back(text.substr(gap, s - gap));
    pieces->push_back(text.substr(s, e - s));
    gap = pos = e;
  }
  if (gap < n) pieces->push_back(text.substr(gap));
  return absl::OkStatus();
}

}  // namespace qcal::text
