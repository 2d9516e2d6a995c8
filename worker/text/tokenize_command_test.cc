#include "worker/text/tokenize_command.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qcal::text {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status RunOn(const TokenizeArgs& args, const std::string& input, std::string* output) {
  std::istringstream in(input);
  std::ostringstream out;
  absl::Status s = RunTokenize(args, in, out);
  *output = out.str();
  return s;
}

// --jsonl over the reference files (which have a "text" field per line) prints
// exactly the reference ids, line by line, for both tokenizers.
TEST(Tokenize, JsonlReproducesTheReferenceFiles) {
  for (const char* name : {"bpe4k", "spm4k"}) {
    const std::string ref = ReadFile(kData + "/reference/tokenize_" + name + ".jsonl");
    std::string out;
    TokenizeArgs args{kData + "/tokenizers/" + name, /*jsonl=*/true, /*add_special_tokens=*/false};
    ASSERT_TRUE(RunOn(args, ref, &out).ok());
    std::istringstream want(ref), got(out);
    std::string w, g;
    int lines = 0;
    while (std::getline(want, w)) {
      ASSERT_TRUE(std::getline(got, g));
      EXPECT_EQ(g, nlohmann::json::parse(w)["ids"].dump()) << name << " line " << lines + 1;
      ++lines;
    }
    EXPECT_EQ(lines, 100);
    EXPECT_FALSE(std::getline(got, g));
  }
}

TEST(Tokenize, WholeStdinIsOneText) {
  std::string out;
  TokenizeArgs args{kData + "/tokenizers/spm4k", false, true};
  ASSERT_TRUE(RunOn(args, "Hello world\nsecond line\n", &out).ok());
  EXPECT_TRUE(absl::StartsWith(out, "1 ")) << out;  // BOS added by default
  EXPECT_TRUE(absl::EndsWith(out, " 13\n")) << out;  // the final "\n" is byte <0x0A>
  args.add_special_tokens = false;
  std::string plain;
  ASSERT_TRUE(RunOn(args, "Hello world\nsecond line\n", &plain).ok());
  EXPECT_EQ(out, "1 " + plain);
  ASSERT_TRUE(RunOn(args, "", &out).ok());
  EXPECT_EQ(out, "\n");
  // Any folder with tokenizer.json works, e.g. a model folder.
  ASSERT_TRUE(RunOn({kData + "/models/llama-small", false, true}, "<|endoftext|>", &out).ok());
  EXPECT_EQ(out, "0\n");
}

TEST(Tokenize, ErrorsNameTheLine) {
  TokenizeArgs args{kData + "/tokenizers/bpe4k", true, true};
  std::string out;
  auto check = [&](const std::string& input, const std::string& want) {
    absl::Status s = RunOn(args, input, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << input;
    EXPECT_TRUE(absl::StrContains(s.message(), want)) << s;
  };
  check("{\"text\": \"ok\"}\n\n{\"text\": 1}\n", "stdin:3: \"text\" is not a string");
  check("{\"text\": \"ok\"}\n{oops\n", "stdin:2: invalid JSON");
  check("[1]\n", "stdin:1: expected a JSON object");
  check("{\"txt\": \"x\"}\n", "stdin:1: no \"text\" field");
  args.jsonl = false;
  check("bad \xFF byte", "stdin: text is not valid UTF-8");
  absl::Status s = RunOn({"/nonexistent", false, true}, "x", &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
}

// Parses `argv` into an app holding the tokenize command and sampling options;
// returns the exit code main would return.
int Parse(std::vector<std::string> argv, SamplingOptions* opts = nullptr) {
  CLI::App app("qcal-worker");
  AddTokenizeCommand(app);
  SamplingOptions local;
  CLI::App* calibrate = app.add_subcommand("calibrate", "test stand-in");
  AddSamplingOptions(calibrate, opts != nullptr ? opts : &local);
  std::vector<const char*> args = {"qcal-worker"};
  for (const std::string& a : argv) args.push_back(a.c_str());
  std::ostringstream out, err;
  try {
    app.parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
  } catch (const CLI::ParseError& e) {
    // Silence CLI11's printing in the test: same mapping as CliExitCode.
    if (e.get_name() == "RuntimeError") return e.get_exit_code();
    return app.exit(e, out, err) == 0 ? 0 : 2;
  }
  return 0;
}

TEST(Cli, ExitCodes) {
  EXPECT_EQ(Parse({"tokenize"}), 2);                           // --model is required
  EXPECT_EQ(Parse({"tokenize", "--model", "x", "--bogus"}), 2);  // unknown flag
  EXPECT_EQ(Parse({"tokenize", "--help"}), 0);
  // A failing run: one error line, exit code 1 (stdin is not read: the load fails).
  testing::internal::CaptureStderr();
  EXPECT_EQ(Parse({"tokenize", "--model", "/nonexistent"}), 1);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(absl::StartsWith(err, "qcal-worker tokenize: /nonexistent: holds neither")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
  // CliExitCode itself.
  CLI::App app;
  std::ostringstream sink;
  auto* old = std::cerr.rdbuf(sink.rdbuf());
  EXPECT_EQ(CliExitCode(app, CLI::ExtrasError({"--x"})), 2);
  EXPECT_EQ(CliExitCode(app, CLI::RuntimeError(1)), 1);
  std::cerr.rdbuf(old);
}

TEST(Cli, SamplingOptionsFlags) {
  SamplingOptions o;
  EXPECT_EQ(Parse({"calibrate", "--num-samples", "64", "--seq-len", "2048", "--mode", "packed",
                   "--order", "sequential", "--seed", "7", "--skip-docs", "100",
                   "--skip-bad-lines", "--no-special-tokens"},
                  &o),
            0);
  EXPECT_EQ(o.num_samples, 64);
  EXPECT_EQ(o.seq_len, 2048);
  EXPECT_EQ(o.mode, SamplingMode::kPacked);
  EXPECT_EQ(o.order, SamplingOrder::kSequential);
  EXPECT_EQ(o.seed, 7u);
  EXPECT_EQ(o.skip_docs, 100);
  EXPECT_TRUE(o.skip_bad_lines);
  EXPECT_FALSE(o.add_special_tokens);
  SamplingOptions d;
  EXPECT_EQ(Parse({"calibrate"}, &d), 0);
  EXPECT_EQ(SamplingOptionsToFlags(d), SamplingOptionsToFlags(SamplingOptions{}));
  EXPECT_EQ(Parse({"calibrate", "--mode", "random"}), 2);
  EXPECT_EQ(Parse({"calibrate", "--order", "reverse"}), 2);
  EXPECT_EQ(Parse({"calibrate", "--num-samples", "0"}), 2);
  EXPECT_EQ(Parse({"calibrate", "--seq-len", "-3"}), 2);
  EXPECT_EQ(Parse({"calibrate", "--skip-docs", "-1"}), 2);
  EXPECT_EQ(Parse({"calibrate", "--num-samples", "1000000000", "--seq-len", "1000000"}), 2);
}

}  // namespace
}  // namespace qcal::text
