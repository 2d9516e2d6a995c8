#include "worker/text/tokenizer_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal::text {
namespace {

using json = nlohmann::json;

absl::StatusOr<std::optional<json>> ReadJsonIfExists(const std::string& path) {
  if (!FileExists(path)) return std::optional<json>();
  QCAL_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  json j = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return std::optional<json>(std::move(j));
}

absl::Status WrongType(const std::string& path, const char* key, const char* want) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is not ", want));
}

absl::Status ReadSpecial(const json& j, const std::string& path, const char* key,
                         SpecialTokenSetting* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  out->present = true;
  if (it->is_null()) return absl::OkStatus();
  if (it->is_string()) {
    out->content = it->get<std::string>();
    return absl::OkStatus();
  }
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) {
      out->content = c->get<std::string>();
      return absl::OkStatus();
    }
  }
  return WrongType(path, key, "a string, null or an object with \"content\"");
}

absl::Status ReadBool(const json& j, const std::string& path, const char* key,
                      std::optional<bool>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return WrongType(path, key, "a boolean");
  *out = it->get<bool>();
  return absl::OkStatus();
}

// An id, or the first of a list of ids (config.json allows both for eos).
void ReadId(const json& j, const char* key, std::optional<int32_t>* out) {
  if (out->has_value()) return;
  auto it = j.find(key);
  if (it == j.end()) return;
  if (it->is_number_integer()) {
    *out = it->get<int32_t>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    *out = (*it)[0].get<int32_t>();
  }
}

bool GetBool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : dflt;
}

}  // namespace

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return errno == ENOENT ? absl::NotFoundError(absl::StrCat(path, ": no such file"))
                           : absl::InternalError(absl::StrCat(path, ": cannot open: ",
                                                              std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat(path, ": read failed"));
  return ss.str();
}

absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& dir) {
  TokenizerConfig config;
  const std::string path = dir + "/tokenizer_config.json";
  QCAL_ASSIGN_OR_RETURN(std::optional<json> tc, ReadJsonIfExists(path));
  if (tc.has_value()) {
    const json& j = *tc;
    config.found = true;
    if (auto it = j.find("tokenizer_class"); it != j.end() && it->is_string()) {
      config.tokenizer_class = it->get<std::string>();
    }
    QCAL_RETURN_IF_ERROR(ReadSpecial(j, path, "bos_token", &config.bos_token));
    QCAL_RETURN_IF_ERROR(ReadSpecial(j, path, "eos_token", &config.eos_token));
    QCAL_RETURN_IF_ERROR(ReadSpecial(j, path, "pad_token", &config.pad_token));
    QCAL_RETURN_IF_ERROR(ReadSpecial(j, path, "unk_token", &config.unk_token));
    QCAL_RETURN_IF_ERROR(ReadBool(j, path, "add_bos_token", &config.add_bos_token));
    QCAL_RETURN_IF_ERROR(ReadBool(j, path, "add_eos_token", &config.add_eos_token));
    QCAL_RETURN_IF_ERROR(ReadBool(j, path, "legacy", &config.legacy));
    if (auto it = j.find("added_tokens_decoder"); it != j.end()) {
      if (!it->is_object()) return WrongType(path, "added_tokens_decoder", "an object");
      for (const auto& [key, value] : it->items()) {
        AddedToken t;
        auto content = value.find("content");
        if (!absl::SimpleAtoi(key, &t.id) || t.id < 0 || !value.is_object() ||
            content == value.end() || !content->is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ": added_tokens_decoder entry \"", key, "\" is not {id: {content: ...}}"));
        }
        t.content = content->get<std::string>();
        t.special = GetBool(value, "special", false);
        t.lstrip = GetBool(value, "lstrip", false);
        t.rstrip = GetBool(value, "rstrip", false);
        t.single_word = GetBool(value, "single_word", false);
        t.normalized = GetBool(value, "normalized", !t.special);
        config.added_tokens.push_back(std::move(t));
      }
    }
  }
  for (const char* name : {"config.json", "generation_config.json"}) {
    QCAL_ASSIGN_OR_RETURN(std::optional<json> c, ReadJsonIfExists(dir + "/" + name));
    if (!c.has_value()) continue;
    ReadId(*c, "bos_token_id", &config.bos_token_id);
    ReadId(*c, "eos_token_id", &config.eos_token_id);
    ReadId(*c, "pad_token_id", &config.pad_token_id);
  }
  return config;
}

std::optional<int32_t> ResolveSpecialToken(
    const SpecialTokenSetting& setting,
    const std::function<std::optional<int32_t>(const std::string&)>& lookup,
    std::optional<int32_t> config_id, std::optional<int32_t> fallback) {
  if (setting.present) {
    if (!setting.content.has_value()) return std::nullopt;
    if (std::optional<int32_t> id = lookup(*setting.content)) return id;
  }
  if (config_id.has_value()) return config_id;
  return fallback;
}

}  // namespace qcal::text
