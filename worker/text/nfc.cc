#include "worker/text/nfc.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace qcal::text {
namespace {

bool IsAscii(absl::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

const icu::Normalizer2* Nfc() {
  static const icu::Normalizer2* nfc = [] {
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(err);
    return U_SUCCESS(err) ? n : nullptr;
  }();
  return nfc;
}

}  // namespace

bool IsNfc(absl::string_view text) {
  if (IsAscii(text)) return true;
  const icu::Normalizer2* nfc = Nfc();
  if (nfc == nullptr) return false;
  UErrorCode err = U_ZERO_ERROR;
  UBool ok = nfc->isNormalizedUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), err);
  return U_SUCCESS(err) && ok;
}

absl::StatusOr<std::string> NormalizeNfc(absl::string_view text) {
  if (IsNfc(text)) return std::string(text);
  const icu::Normalizer2* nfc = Nfc();
  if (nfc == nullptr) return absl::InternalError("ICU: no NFC normalizer");
  std::string out;
  out.reserve(text.size() + 8);
  icu::StringByteSink<std::string> sink(&out);
  UErrorCode err = U_ZERO_ERROR;
  nfc->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())),
                     sink, nullptr, err);
  if (U_FAILURE(err)) {
    return absl::InternalError(absl::StrCat("ICU NFC normalization failed: ", u_errorName(err)));
  }
  return out;
}

}  // namespace qcal::text
