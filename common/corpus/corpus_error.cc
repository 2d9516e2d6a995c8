#include "common/corpus/corpus_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace qcal::corpus {
namespace {
constexpr absl::string_view kLocationUrl = "type.qcal.dev/qcal.corpus.Location";
}  // namespace

absl::Status CorpusError(absl::StatusCode code, absl::string_view path, int64_t line,
                         absl::string_view what) {
  std::string message = line > 0 ? absl::StrCat(path, ":", line, ": ", what)
                                 : absl::StrCat(path, ": ", what);
  absl::Status status(code, message);
  // Payload: "<line>\n<path>".
  status.SetPayload(kLocationUrl, absl::Cord(absl::StrCat(line, "\n", path)));
  return status;
}

std::optional<CorpusLocation> GetCorpusLocation(const absl::Status& status) {
  auto payload = status.GetPayload(kLocationUrl);
  if (!payload.has_value()) return std::nullopt;
  std::string flat(*payload);
  size_t nl = flat.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  CorpusLocation loc;
  if (!absl::SimpleAtoi(absl::string_view(flat).substr(0, nl), &loc.line)) {
    return std::nullopt;
  }
  loc.path = flat.substr(nl + 1);
  return loc;
}

}  // namespace qcal::corpus
