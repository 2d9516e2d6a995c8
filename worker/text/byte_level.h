// Internal to qcal_text: GPT-2's byte <-> unicode map used by byte-level BPE
// vocabularies (printable Latin-1 bytes map to themselves, the other bytes to
// U+0100.. in byte order).
#ifndef QCAL_WORKER_TEXT_BYTE_LEVEL_H_
#define QCAL_WORKER_TEXT_BYTE_LEVEL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace qcal::text {

// Code point that stands for byte `b`.
char32_t ByteToCodePoint(uint8_t b);

// The UTF-8 form of the byte-level string for `bytes` (each byte -> its code point).
std::string BytesToByteLevel(absl::string_view bytes);

// The raw bytes a byte-level token string stands for, or nullopt if `token` is not
// valid UTF-8 or holds a code point outside the map (as added tokens may).
std::optional<std::string> ByteLevelToBytes(absl::string_view token);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// `bytes` as UTF-8, each maximal invalid subsequence replaced by U+FFFD (as Rust's
// String::from_utf8_lossy, which Hugging Face's ByteLevel decoder uses).
std::string Utf8Lossy(absl::string_view bytes);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_BYTE_LEVEL_H_
