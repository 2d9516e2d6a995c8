#include "worker/engine/token_file.h"

#include <fstream>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace qcal {
namespace {

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadJsonl(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::vector<std::vector<int32_t>> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", n, ": expected a JSON array of token ids"));
    }
    std::vector<int32_t> ids;
    ids.reserve(j.size());
    for (const auto& v : j) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
          v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", n, ": token ids must be non-negative integers, got ", v.dump()));
      }
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    if (ids.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": empty sample"));
    }
    out.push_back(std::move(ids));
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadRaw(const std::string& path, int width,
                                                          int64_t seq_len) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::vector<std::vector<int32_t>> out;
  std::vector<int32_t> cur;
  unsigned char buf[4];
  int64_t index = 0;
  while (f.read(reinterpret_cast<char*>(buf), width)) {
    uint32_t v = 0;
    for (int i = width - 1; i >= 0; --i) v = (v << 8) | buf[i];
    if (v > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": token ", index, " = ", v,
                                                     " is not a valid id"));
    }
    cur.push_back(static_cast<int32_t>(v));
    ++index;
    if (static_cast<int64_t>(cur.size()) == seq_len) out.push_back(std::move(cur)), cur.clear();
  }
  if (f.gcount() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": size is not a multiple of ", width,
                                                   " bytes (truncated?)"));
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadTokenFile(const std::string& path,
                                                                const std::string& format,
                                                                int64_t seq_len) {
  std::string fmt = format;
  if (fmt == "auto") {
    if (absl::EndsWith(path, ".jsonl") || absl::EndsWith(path, ".json")) {
      fmt = "jsonl";
    } else if (absl::EndsWith(path, ".u16")) {
      fmt = "u16";
    } else if (absl::EndsWith(path, ".u32") || absl::EndsWith(path, ".bin")) {
      fmt = "u32";
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot tell the format of ", path, " from its extension; pass --token-format"));
    }
  }
  if (fmt != "jsonl" && seq_len < 1) {
    return absl::InvalidArgumentError("--seq-len must be >= 1 for raw token files");
  }
  if (fmt == "jsonl") return ReadJsonl(path);
  if (fmt == "u16") return ReadRaw(path, 2, seq_len);
  if (fmt == "u32") return ReadRaw(path, 4, seq_len);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown token format \"", format, "\" (auto, jsonl, u16, u32)"));
}

}  // namespace qcal
