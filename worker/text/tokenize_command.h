// Command-line pieces that live with the text code:
//
//   qcal-worker tokenize --model DIR [--jsonl] [--no-special-tokens]
//
// turns text into token ids, for users checking their tokenizer. DIR is any folder
// holding tokenizer.json or tokenizer.model (config.json optional). By default all
// of stdin is one text and its ids are printed space-separated on one line. With
// --jsonl every input line is a JSON object with a "text" string and every output
// line is the JSON array of its ids (blank input lines are skipped). The ids
// include the tokenizer's special tokens (e.g. BOS) unless --no-special-tokens.
//
// Exit codes: 0 ok; 1 error, with one line "qcal-worker tokenize: <why>" on stderr;
// 2 usage error. The command signals errors by throwing CLI::RuntimeError(1) from
// its callback; the program's main maps CLI11 outcomes to these codes with
// CliExitCode:
//
//   try { app.parse(argc, argv); }
//   catch (const CLI::ParseError& e) { return qcal::text::CliExitCode(app, e); }
//
// AddSamplingOptions gives every command that samples a corpus the same flags (see
// sampling_options.h); their values are range-checked by CLI11 and cross-checked
// with ValidateSamplingOptions when the command's parse completes (a usage error).
#ifndef QCAL_WORKER_TEXT_TOKENIZE_COMMAND_H_
#define QCAL_WORKER_TEXT_TOKENIZE_COMMAND_H_

#include <istream>
#include <ostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "worker/text/sampling_options.h"

namespace qcal::text {

// Registers the `tokenize` subcommand on `app` (which must outlive parsing).
void AddTokenizeCommand(CLI::App& app);

// Declares --num-samples, --seq-len, --mode, --order, --seed, --skip-docs,
// --skip-bad-lines and --no-special-tokens on `cmd`, writing into `*opts` (which
// must outlive parsing; its current values are the defaults shown in --help).
void AddSamplingOptions(CLI::App* cmd, SamplingOptions* opts);

// Prints what CLI11 prints for `e` (help text, or the usage error and a hint) and
// returns the exit code: 0 for --help, a CLI::RuntimeError's own code (the command
// already reported its error), 2 for any other (usage) error.
int CliExitCode(const CLI::App& app, const CLI::ParseError& e);

// The work of `tokenize`, for tests and other front ends.
struct TokenizeArgs {
  std::string model_dir;
  bool jsonl = false;
  bool add_special_tokens = true;
};
// Errors: those of LoadTokenizer; INVALID_ARGUMENT "stdin:LINE: ..." for a bad
// --jsonl line, "stdin: ..." for input that is not UTF-8.
absl::Status RunTokenize(const TokenizeArgs& args, std::istream& in, std::ostream& out);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_TOKENIZE_COMMAND_H_
