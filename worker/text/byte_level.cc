#include "worker/text/byte_level.h"

#include <array>

#include "common/corpus/utf8.h"

namespace qcal::text {
namespace {

struct Tables {
  std::array<char32_t, 256> byte_to_cp;
  std::array<int16_t, 512> cp_to_byte;  // every mapped code point is < 512
  Tables() {
    cp_to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                             (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

// Decodes one code point of valid UTF-8 at s[*i], advancing *i.
char32_t NextCodePoint(absl::string_view s, size_t* i) {
  const auto c = static_cast<unsigned char>(s[*i]);
  if (c < 0x80) {
    ++*i;
    return c;
  }
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  char32_t cp = c & (0x7F >> len);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[*i + k]) & 0x3F);
  *i += len;
  return cp;
}

}  // namespace

char32_t ByteToCodePoint(uint8_t b) { return GetTables().byte_to_cp[b]; }

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string BytesToByteLevel(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToCodePoint(static_cast<uint8_t>(c)), &out);
  return out;
}

std::optional<std::string> ByteLevelToBytes(absl::string_view token) {
  if (!corpus::IsValidUtf8(token)) return std::nullopt;
  const Tables& t = GetTables();
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    char32_t cp = NextCodePoint(token, &i);
    if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(t.cp_to_byte[cp]));
  }
  return out;
}

std::string Utf8Lossy(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  while (!bytes.empty()) {
    size_t bad = corpus::FindInvalidUtf8(bytes);
    if (bad == absl::string_view::npos) {
      out.append(bytes.data(), bytes.size());
      break;
    }
    out.append(bytes.data(), bad);
    // Length of the maximal prefix of a valid sequence starting at `bad` (at least
    // one byte), per the Unicode "substitution of maximal subparts" practice.
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + bad;
    const size_t left = bytes.size() - bad;
    size_t skip = 1;
    const unsigned char c = p[0];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (len > 0) {
      size_t k = 1;
      while (k < len && k < left) {
        const unsigned char d = p[k];
        const bool ok = k == 1 ? (d >= lo && d <= hi) : (d & 0xC0) == 0x80;
        if (!ok) break;
        ++k;
      }
      skip = k;
    }
    out.append("\xEF\xBF\xBD");
    bytes.remove_prefix(bad + skip);
  }
  return out;
}

}  // namespace qcal::text
