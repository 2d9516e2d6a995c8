// Every reference tokenization in tests/data/reference/ (made by Hugging Face
// `tokenizers` and by SentencePiece itself; see tests/data/README.md) must come out
// id for id.
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/text/nfc.h"
#include "worker/text/tokenizer.h"

namespace qcal::text {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> ReadCases(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line);
    cases.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>()});
  }
  return cases;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

// Runs every case; returns how many match.
int CheckAll(const Tokenizer& tok, const std::vector<Case>& cases) {
  int pass = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto ids = tok.Encode(cases[i].text, /*add_special_tokens=*/false);
    EXPECT_TRUE(ids.ok()) << ids.status();
    if (!ids.ok()) continue;
    EXPECT_EQ(*ids, cases[i].ids) << "case " << i + 1 << ": " << nlohmann::json(cases[i].text).dump()
                                  << "\n got:  " << Show(*ids) << "\n want: " << Show(cases[i].ids);
    if (*ids == cases[i].ids) ++pass;
  }
  return pass;
}

TEST(TokenizerReference, Bpe4kEveryCase) {
  auto tok = LoadTokenizer(kData + "/tokenizers/bpe4k");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->kind(), TokenizerKind::kByteLevelBpe);
  std::vector<Case> cases = ReadCases(kData + "/reference/tokenize_bpe4k.jsonl");
  ASSERT_EQ(cases.size(), 100u);
  const int pass = CheckAll(**tok, cases);
  std::printf("bpe4k: %d/%zu reference cases match\n", pass, cases.size());
  EXPECT_EQ(pass, 100);
  // The post-processor adds nothing: with special tokens the ids are the same.
  for (const Case& c : cases) {
    EXPECT_EQ(*(*tok)->Encode(c.text, true), c.ids);
  }
}

TEST(TokenizerReference, Bpe4kDecodeGivesBackNfcText) {
  auto tok = LoadTokenizer(kData + "/tokenizers/bpe4k");
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const Case& c : ReadCases(kData + "/reference/tokenize_bpe4k.jsonl")) {
    auto text = (*tok)->Decode(c.ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, *NormalizeNfc(c.text)) << nlohmann::json(c.text).dump();
  }
}

TEST(TokenizerReference, Spm4kEveryCase) {
  auto tok = LoadTokenizer(kData + "/tokenizers/spm4k");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->kind(), TokenizerKind::kSentencePiece);
  std::vector<Case> cases = ReadCases(kData + "/reference/tokenize_spm4k.jsonl");
  ASSERT_EQ(cases.size(), 100u);
  const int pass = CheckAll(**tok, cases);
  std::printf("spm4k: %d/%zu reference cases match\n", pass, cases.size());
  EXPECT_EQ(pass, 100);
  // add_bos_token is true in tokenizer_config.json: <s> (id 1) first.
  for (const Case& c : cases) {
    std::vector<int32_t> want = {1};
    want.insert(want.end(), c.ids.begin(), c.ids.end());
    EXPECT_EQ(*(*tok)->Encode(c.text, true), want);
  }
}

TEST(TokenizerReference, Spm4kDecodeGivesBackText) {
  auto tok = LoadTokenizer(kData + "/tokenizers/spm4k");
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const Case& c : ReadCases(kData + "/reference/tokenize_spm4k.jsonl")) {
    auto text = (*tok)->Decode(c.ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c.text) << nlohmann::json(c.text).dump();
  }
}

}  // namespace
}  // namespace qcal::text
