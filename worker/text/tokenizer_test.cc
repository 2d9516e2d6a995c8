#include "worker/text/tokenizer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/text/byte_level.h"
#include "worker/text/regex_split.h"
#include "worker/text/spm_backend.h"

namespace qcal::text {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;
const std::string kBpe = kData + "/tokenizers/bpe4k";
const std::string kSpm = kData + "/tokenizers/spm4k";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh folder under the test temp dir holding `files` (name -> content).
std::string MakeDir(const std::map<std::string, std::string>& files) {
  static std::atomic<int> n{0};
  std::string dir = ::testing::TempDir() + "/qcal_tok_" + std::to_string(::getpid()) + "_" +
                    std::to_string(n++);
  EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0);
  for (const auto& [name, content] : files) {
    std::ofstream(dir + "/" + name, std::ios::binary) << content;
  }
  return dir;
}

std::unique_ptr<Tokenizer> Load(const std::string& dir) {
  auto tok = LoadTokenizer(dir);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

std::vector<int32_t> Enc(const Tokenizer& tok, const std::string& text, bool special = false) {
  auto ids = tok.Encode(text, special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::vector<int32_t> Cat(std::vector<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(LoadTokenizer, SpecialTokensAndKinds) {
  auto bpe = Load(kBpe);
  EXPECT_EQ(bpe->kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(bpe->vocab_size(), 4096);
  EXPECT_EQ(bpe->eos_id(), 0);
  EXPECT_EQ(bpe->pad_id(), 0);
  EXPECT_FALSE(bpe->bos_id().has_value());
  EXPECT_TRUE(bpe->prefix_tokens().empty());
  EXPECT_TRUE(bpe->suffix_tokens().empty());
  EXPECT_TRUE(absl::StrContains(bpe->Describe(), "byte-level BPE, 4096 ids")) << bpe->Describe();

  auto spm = Load(kSpm);
  EXPECT_EQ(spm->kind(), TokenizerKind::kSentencePiece);
  EXPECT_EQ(spm->vocab_size(), 4096);
  EXPECT_EQ(spm->bos_id(), 1);
  EXPECT_EQ(spm->eos_id(), 2);
  EXPECT_FALSE(spm->pad_id().has_value());
  EXPECT_EQ(spm->prefix_tokens(), std::vector<int32_t>{1});
  EXPECT_TRUE(spm->suffix_tokens().empty());

  // A model folder (config.json beside tokenizer.json).
  auto small = Load(kData + "/models/llama-small");
  EXPECT_EQ(small->kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(Enc(*small, "Hello world"), Enc(*bpe, "Hello world"));
}

TEST(LoadTokenizer, FolderChoice) {
  const std::string json = ReadFile(kBpe + "/tokenizer.json");
  const std::string model = ReadFile(kSpm + "/tokenizer.model");
  // Both files: tokenizer.json wins, as transformers' AutoTokenizer (fast) does.
  auto both = Load(MakeDir({{"tokenizer.json", json}, {"tokenizer.model", model}}));
  EXPECT_EQ(both->kind(), TokenizerKind::kByteLevelBpe);
  // Only tokenizer.model, no tokenizer_config.json: Llama defaults (BOS added).
  auto spm = Load(MakeDir({{"tokenizer.model", model}}));
  EXPECT_EQ(spm->kind(), TokenizerKind::kSentencePiece);
  EXPECT_EQ(spm->prefix_tokens(), std::vector<int32_t>{1});
  // A SentencePiece-converted tokenizer.json (Metaspace, byte_fallback) beside
  // tokenizer.model: the SentencePiece model is used.
  nlohmann::json metaspace = {
      {"model", {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", {{"a", 0}}}, {"merges", nlohmann::json::array()}}},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}}},
      {"decoder", {{"type", "Metaspace"}}}};
  auto converted = Load(MakeDir({{"tokenizer.json", metaspace.dump()}, {"tokenizer.model", model}}));
  EXPECT_EQ(converted->kind(), TokenizerKind::kSentencePiece);
  // ... and alone it is refused clearly.
  auto alone = LoadTokenizer(MakeDir({{"tokenizer.json", metaspace.dump()}}));
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(absl::StrContains(alone.status().message(), "byte_fallback")) << alone.status();

  auto none = LoadTokenizer(MakeDir({{"config.json", "{}"}}));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(none.status().message(), "neither tokenizer.json nor tokenizer.model"));
  auto broken = LoadTokenizer(MakeDir({{"tokenizer.json", "{\"model\": "}}));
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_model = LoadTokenizer(MakeDir({{"tokenizer.model", "not a protobuf"}}));
  EXPECT_EQ(bad_model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad_model.status().message(), "tokenizer.model"));
  auto bad_config = LoadTokenizer(MakeDir({{"tokenizer.json", json}, {"tokenizer_config.json", "[1"}}));
  EXPECT_EQ(bad_config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad_config.status().message(), "tokenizer_config.json"));
}

TEST(LoadTokenizer, UnsupportedComponentsAreNamed) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(kBpe + "/tokenizer.json"));
  j["normalizer"] = {{"type", "NFKC"}};
  auto s = LoadTokenizer(MakeDir({{"tokenizer.json", j.dump()}}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "normalizer NFKC")) << s.status();
  j = nlohmann::json::parse(ReadFile(kBpe + "/tokenizer.json"));
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  s = LoadTokenizer(MakeDir({{"tokenizer.json", j.dump()}}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnimplemented);
  j = nlohmann::json::parse(ReadFile(kBpe + "/tokenizer.json"));
  j["model"]["merges"][5] = {"no-such-token", "x"};
  s = LoadTokenizer(MakeDir({{"tokenizer.json", j.dump()}}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "merge 5")) << s.status();
}

TEST(BpeTokenizer, MergesInBothForms) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(kBpe + "/tokenizer.json"));
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  auto strings = Load(MakeDir({{"tokenizer.json", j.dump()}}));
  auto pairs = Load(kBpe);
  const std::string text = "The quick brown fox's 12 jumps\n\n  over\tthe lazy dog.";
  EXPECT_EQ(Enc(*strings, text), Enc(*pairs, text));
}

TEST(BpeTokenizer, SpecialTokenTextAndNfc) {
  auto tok = Load(kBpe);
  const auto hi = Enc(*tok, "Hi");
  EXPECT_EQ(Enc(*tok, "<|im_start|>Hi<|im_end|>"), Cat({{1}, hi, {2}}));
  EXPECT_EQ(Enc(*tok, "<|endoftext|>"), std::vector<int32_t>{0});
  // NFD input gives the ids of its NFC form.
  EXPECT_EQ(Enc(*tok, "cafe\xCC\x81"), Enc(*tok, "caf\xC3\xA9"));
  EXPECT_TRUE(Enc(*tok, "").empty());
  auto bad = tok->Encode("abc\xFF", false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tok->Decode({4096}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tok->Decode({-1}).status().code(), absl::StatusCode::kInvalidArgument);
  // A token cut in the middle of a UTF-8 sequence decodes to U+FFFD.
  auto ids = Enc(*tok, "\xE6\x97\xA5");  // three byte tokens
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(*tok->Decode({ids[0]}), "\xEF\xBF\xBD");
}

TEST(BpeTokenizer, PostProcessorTemplateAndByteLevelRegex) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(kBpe + "/tokenizer.json"));
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<|im_start|>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                  {{"SpecialToken", {{"id", "<|im_end|>"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<|im_start|>", {{"id", "<|im_start|>"}, {"ids", {1}}}},
                          {"<|im_end|>", {{"id", "<|im_end|>"}, {"ids", {2}}}}}}};
  auto tok = Load(MakeDir({{"tokenizer.json", j.dump()}}));
  auto plain = Load(kBpe);
  EXPECT_EQ(tok->prefix_tokens(), std::vector<int32_t>{1});
  EXPECT_EQ(tok->suffix_tokens(), std::vector<int32_t>{2});
  EXPECT_EQ(Enc(*tok, "some text", true), Cat({{1}, Enc(*plain, "some text"), {2}}));
  EXPECT_EQ(Enc(*tok, "some text", false), Enc(*plain, "some text"));

  // GPT-2 style: ByteLevel does the splitting and adds a prefix space.
  j = nlohmann::json::parse(ReadFile(kBpe + "/tokenizer.json"));
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  auto gpt2 = Load(MakeDir({{"tokenizer.json", j.dump()}}));
  EXPECT_EQ(Enc(*gpt2, "hello world"), Enc(*plain, " hello world"));
}

TEST(SpmTokenizer, SpecialTokenTextLegacyFalse) {
  auto tok = Load(kSpm);  // legacy=false
  const auto hello = Enc(*tok, "Hello");
  const auto world = Enc(*tok, "world");
  // After a special token the text gets no dummy prefix ("world", not "▁world").
  auto after = Enc(*tok, "Hello</s>world");
  ASSERT_GT(after.size(), hello.size() + 1);
  EXPECT_EQ(std::vector<int32_t>(after.begin(), after.begin() + hello.size()), hello);
  EXPECT_EQ(after[hello.size()], 2);
  std::vector<int32_t> rest(after.begin() + hello.size() + 1, after.end());
  EXPECT_NE(rest, world);
  EXPECT_EQ(*tok->Decode(rest), "world");
  EXPECT_EQ(*tok->Decode(after), "Hello</s>world");
  // ... but a space after the special token is kept as "▁".
  auto spaced = Enc(*tok, "<s> world");
  EXPECT_EQ(spaced, Cat({{1}, world}));
  EXPECT_EQ(Enc(*tok, "<s>", true), (std::vector<int32_t>{1, 1}));
}

TEST(SpmTokenizer, LegacyTrueAndAddEos) {
  const std::string model = ReadFile(kSpm + "/tokenizer.model");
  auto tok = Load(MakeDir({{"tokenizer.model", model},
                           {"tokenizer_config.json",
                            R"({"legacy": true, "add_bos_token": false, "add_eos_token": true})"}}));
  const auto hello = Enc(*tok, "Hello");
  EXPECT_EQ(Enc(*tok, "Hello</s>world"), Cat({hello, {2}, Enc(*tok, "world")}));
  EXPECT_TRUE(tok->prefix_tokens().empty());
  EXPECT_EQ(Enc(*tok, "Hello", true), Cat({hello, {2}}));
}

// SpmTokenizer encodes word by word (with a cache) when the model allows it; over
// the whole calib corpus that must equal libsentencepiece on the whole text.
TEST(SpmTokenizer, WordByWordEqualsWholeText) {
  std::string error;
  auto backend = SpmBackend::Load(ReadFile(kSpm + "/tokenizer.model"), &error);
  ASSERT_NE(backend, nullptr) << error;
  auto tok = Load(kSpm);
  std::ifstream in(kData + "/corpus/sample.jsonl");
  std::vector<std::string> texts = {"", " ", "  two leading", "trailing  ", "a\xE2\x96\x81" "b \xE2\x96\x81 c",
                                    "\t tab  \n\n new line", "x" + std::string(600, 'y') + " z"};
  std::string line;
  while (std::getline(in, line)) texts.push_back(nlohmann::json::parse(line)["text"]);
  for (const std::string& t : texts) {
    std::vector<int> whole;
    ASSERT_TRUE(backend->Encode(t, true, &whole, &error));
    EXPECT_EQ(Enc(*tok, t), std::vector<int32_t>(whole.begin(), whole.end())) << t.substr(0, 80);
  }
}

TEST(SpmBackend, DisableDummyPrefixRewritesTheProto) {
  std::string out;
  bool had = false, identity = false;
  ASSERT_TRUE(DisableDummyPrefix(ReadFile(kSpm + "/tokenizer.model"), &out, &had, &identity));
  EXPECT_TRUE(had);
  EXPECT_TRUE(identity);  // trained with --normalization_rule_name=identity
  EXPECT_FALSE(DisableDummyPrefix("\xFF\xFF\xFF", &out, &had, &identity));
}

TEST(RegexSplit, WhitespaceFollowsOniguruma) {
  // \s gains U+0085, as Oniguruma's Unicode \s (White_Space) has it.
  EXPECT_EQ(RegexSplitter::TranslatePattern(R"(\s+(?!\S)|[^\s\p{L}]|\\s)"),
            R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}]|\\s)");
  auto re = RegexSplitter::Create(R"(\s+|\S+)");
  ASSERT_TRUE(re.ok());
  std::vector<absl::string_view> pieces;
  ASSERT_TRUE((*re)->Split("a\xC2\x85\xC2\xA0" "b c", &pieces).ok());
  EXPECT_EQ(pieces, (std::vector<absl::string_view>{"a", "\xC2\x85\xC2\xA0", "b", " ", "c"}));
  EXPECT_FALSE(RegexSplitter::Create("(unclosed").ok());
}

TEST(ByteLevel, MapRoundTrips) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelToBytes(BytesToByteLevel(all)), all);
  EXPECT_EQ(BytesToByteLevel(" "), "\xC4\xA0");  // Ġ
  EXPECT_EQ(Utf8Lossy("a\xE6\x97" "b\xFF"), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
}

// Pathological inputs stay correct and fast: a long whitespace run (PCRE2 falls
// back from JIT to the interpreter if its stack runs out) and a long single word
// (the priority-queue merge path).
TEST(Tokenizer, LongRunsRoundTrip) {
  auto bpe = Load(kBpe);
  auto spm = Load(kSpm);
  for (const std::string& text : {std::string(300000, ' ') + "x", std::string(300000, 'a'),
                                  "ab" + std::string(100000, '\t') + "\n\n",
                                  std::string(50000, '=') + " " + std::string(50000, '7')}) {
    auto ids = Enc(*bpe, text);
    EXPECT_EQ(*bpe->Decode(ids), text);
    ids = Enc(*spm, text);
    EXPECT_EQ(*spm->Decode(ids), text);
  }
}

TEST(Tokenizer, ConcurrentEncodeIsConsistent) {
  for (const std::string& dir : {kBpe, kSpm}) {
    auto tok = Load(dir);
    const std::string text = ReadFile(kData + "/corpus/sample.jsonl").substr(0, 20000);
    const auto want = Enc(*tok, text);
    std::vector<std::thread> threads;
    std::atomic<int> mismatches{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 5; ++i) {
          if (*tok->Encode(text, false) != want) ++mismatches;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(mismatches.load(), 0);
  }
}

}  // namespace
}  // namespace qcal::text
