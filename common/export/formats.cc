// Format and smoothing names (export.h).
#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/export/export.h"

namespace qcal::exporter {

absl::StatusOr<Format> ParseFormat(const std::string& s) {
  for (Format f : {Format::kMllm, Format::kSafetensors, Format::kCompressedTensors,
                   Format::kStats}) {
    if (s == FormatName(f)) return f;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown export format \"", s, "\" (mllm, safetensors, compressed-tensors, stats)"));
}

const char* FormatName(Format f) {
  switch (f) {
    case Format::kMllm: return "mllm";
    case Format::kSafetensors: return "safetensors";
    case Format::kCompressedTensors: return "compressed-tensors";
    case Format::kStats: return "stats";
  }
  return "?";
}

absl::StatusOr<Smoothing> ParseSmoothing(const std::string& s) {
  Smoothing out;
  if (s == "none") return out;
  if (s == "logeq") {
    out.method = SmoothingMethod::kLogEq;
    return out;
  }
  if (s == "smoothquant") {
    out.method = SmoothingMethod::kSmoothQuant;
    return out;
  }
  constexpr char kPrefix[] = "smoothquant:";
  double alpha = 0;
  if (absl::StartsWith(s, kPrefix) && absl::SimpleAtod(s.substr(sizeof(kPrefix) - 1), &alpha) &&
      std::isfinite(alpha) && alpha >= 0 && alpha <= 1) {
    out.method = SmoothingMethod::kSmoothQuant;
    out.alpha = alpha;
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "bad smoothing \"", s,
      "\" (none, smoothquant, smoothquant:<alpha in [0, 1]>, logeq)"));
}

std::string SmoothingName(const Smoothing& s) {
  switch (s.method) {
    case SmoothingMethod::kNone: return "none";
    case SmoothingMethod::kLogEq: return "logeq";
    case SmoothingMethod::kSmoothQuant:
      return s.alpha == 0.5 ? "smoothquant" : absl::StrCat("smoothquant:", s.alpha);
  }
  return "?";
}

}  // namespace qcal::exporter
