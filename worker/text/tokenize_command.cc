#include "worker/text/tokenize_command.h"

#include <iostream>
#include <iterator>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/text/tokenizer.h"

namespace qcal::text {
namespace {

// The text of a --jsonl line, or INVALID_ARGUMENT "stdin:LINE: why".
absl::StatusOr<std::string> JsonlText(const std::string& line, int64_t number) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("stdin:", number, ": ", why));
  };
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("invalid JSON");
  if (!j.is_object()) return bad("expected a JSON object with a \"text\" string");
  auto it = j.find("text");
  if (it == j.end()) return bad("no \"text\" field");
  if (!it->is_string()) return bad("\"text\" is not a string");
  return it->get<std::string>();
}

}  // namespace

absl::Status RunTokenize(const TokenizeArgs& args, std::istream& in, std::ostream& out) {
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(args.model_dir));
  if (!args.jsonl) {
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto ids = tokenizer->Encode(text, args.add_special_tokens);
    if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("stdin: ", ids.status().message()));
    out << absl::StrJoin(*ids, " ") << "\n";
  } else {
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      QCAL_ASSIGN_OR_RETURN(std::string text, JsonlText(line, number));
      auto ids = tokenizer->Encode(text, args.add_special_tokens);
      if (!ids.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("stdin:", number, ": ", ids.status().message()));
      }
      out << "[" << absl::StrJoin(*ids, ",") << "]\n";
    }
  }
  out.flush();
  if (!out) return absl::InternalError("cannot write to stdout");
  return absl::OkStatus();
}

void AddTokenizeCommand(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Print the token ids of text read from stdin (all of it as one text, or one JSON "
      "object with a \"text\" field per line with --jsonl)");
  cmd->add_option("--model", args->model_dir,
                  "Folder holding tokenizer.json or tokenizer.model (a model folder)")
      ->required();
  cmd->add_flag("--jsonl", args->jsonl,
                "Read one {\"text\": ...} object per line; write one JSON array of ids per line");
  cmd->add_flag_callback(
      "--no-special-tokens", [args] { args->add_special_tokens = false; },
      "Do not add the tokenizer's special tokens (e.g. BOS)");
  cmd->callback([args] {
    absl::Status status = RunTokenize(*args, std::cin, std::cout);
    if (!status.ok()) {
      std::cerr << "qcal-worker tokenize: "
                << absl::StrReplaceAll(status.message(), {{"\n", " "}}) << std::endl;
      throw CLI::RuntimeError(1);
    }
  });
}

void AddSamplingOptions(CLI::App* cmd, SamplingOptions* opts) {
  const std::map<std::string, SamplingMode> modes = {{"document", SamplingMode::kDocument},
                                                     {"packed", SamplingMode::kPacked}};
  const std::map<std::string, SamplingOrder> orders = {
      {"sequential", SamplingOrder::kSequential}, {"shuffled", SamplingOrder::kShuffled}};
  cmd->add_option("--num-samples", opts->num_samples, "Number of samples (sequences)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--seq-len", opts->seq_len,
                  "Tokens per sample (document mode: at most this many)")
      ->check(CLI::Range(int64_t{1}, kMaxSeqLen))
      ->capture_default_str();
  cmd->add_option("--mode", opts->mode,
                  "document: one sample per document, truncated to --seq-len; packed: "
                  "documents joined with the end-of-text token, cut into --seq-len windows")
      ->transform(CLI::CheckedTransformer(modes))
      ->default_str(std::string(SamplingModeName(opts->mode)));
  cmd->add_option("--order", opts->order,
                  "Document order: sequential (file order) or shuffled (seeded by --seed)")
      ->transform(CLI::CheckedTransformer(orders))
      ->default_str(std::string(SamplingOrderName(opts->order)));
  cmd->add_option("--seed", opts->seed, "Seed of the shuffled order")->capture_default_str();
  cmd->add_option("--skip-docs", opts->skip_docs, "Leave out the first N documents of the corpus")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--skip-bad-lines", opts->skip_bad_lines,
                "Skip malformed corpus records (counting them) instead of failing");
  cmd->add_flag_callback(
      "--no-special-tokens", [opts] { opts->add_special_tokens = false; },
      "Tokenize samples without the tokenizer's special tokens (e.g. BOS)");
  cmd->parse_complete_callback([opts] {
    absl::Status status = ValidateSamplingOptions(*opts);
    if (!status.ok()) throw CLI::ValidationError(std::string(status.message()));
  });
}

int CliExitCode(const CLI::App& app, const CLI::ParseError& e) {
  const int code = app.exit(e);
  if (e.get_name() == "RuntimeError") return code;
  return code == 0 ? 0 : 2;
}

}  // namespace qcal::text
