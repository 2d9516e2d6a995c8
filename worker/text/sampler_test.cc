#include "worker/text/sampler.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "worker/text/permutation.h"

namespace qcal::text {
namespace {

using Samples = std::vector<std::vector<int32_t>>;

const std::string kData = QCAL_TEST_DATA_DIR;
const std::string kCalib = kData + "/corpus/calib.jsonl.zst";

std::string TempPath(const std::string& name) {
  static std::atomic<int> n{0};
  return ::testing::TempDir() + "/qcal_sampler_" + std::to_string(::getpid()) + "_" +
         std::to_string(n++) + "_" + name;
}

std::string WriteFile(const std::string& name, const std::string& content) {
  std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SamplerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bpe_ = LoadTokenizer(kData + "/tokenizers/bpe4k")->release();
    spm_ = LoadTokenizer(kData + "/tokenizers/spm4k")->release();
    calib_ = new corpus::CorpusIndex(*corpus::CorpusIndex::Build(kCalib));
  }
  static void TearDownTestSuite() {
    delete bpe_;
    delete spm_;
    delete calib_;
  }

  static std::vector<std::string> Texts(const corpus::CorpusIndex& index,
                                        const std::vector<int64_t>& ordinals) {
    return *index.ReadDocuments(ordinals);
  }

  static Tokenizer* bpe_;
  static Tokenizer* spm_;
  static corpus::CorpusIndex* calib_;
};
Tokenizer* SamplerTest::bpe_ = nullptr;
Tokenizer* SamplerTest::spm_ = nullptr;
corpus::CorpusIndex* SamplerTest::calib_ = nullptr;

SamplingOptions Options(SamplingMode mode, SamplingOrder order, int64_t n, int64_t len) {
  SamplingOptions o;
  o.mode = mode;
  o.order = order;
  o.num_samples = n;
  o.seq_len = len;
  return o;
}

TEST(Permutation, SplitMix64IsTheReferenceStream) {
  // First outputs of the reference splitmix64.c seeded with 0.
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(rng.Next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(rng.Next(), 0x06C45D188009454FULL);
}

TEST(Permutation, ShuffledPrefixIsAPermutationAndStable) {
  auto all = ShuffledPrefix(1000, 1000, 42);
  std::set<int64_t> seen(all.begin(), all.end());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 999);
  auto prefix = ShuffledPrefix(1000, 10, 42);
  EXPECT_EQ(prefix, std::vector<int64_t>(all.begin(), all.begin() + 10));
  EXPECT_NE(ShuffledPrefix(1000, 10, 43), prefix);
  // Pinned values: the same on every machine and standard library.
  EXPECT_EQ(ShuffledPrefix(10, 10, 42), ShuffledPrefix(10, 10, 42));
  EXPECT_EQ(ShuffledPrefix(1000000, 4, 7), (std::vector<int64_t>{374487, 638089, 567518, 35894}));
  // Huge n costs O(count).
  EXPECT_EQ(ShuffledPrefix(int64_t{1} << 40, 3, 1).size(), 3u);
}

TEST(Permutation, BoundedIsUniform) {
  SplitMix64 rng(123);
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 30000; ++i) ++counts[rng.Bounded(3)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 450);
  EXPECT_EQ(rng.Bounded(1), 0u);
}

TEST(SamplingOptions, ValidationNamesTheOption) {
  auto check = [](SamplingOptions o, const std::string& flag) {
    absl::Status s = ValidateSamplingOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_TRUE(absl::StrContains(s.message(), flag)) << s;
  };
  SamplingOptions o;
  EXPECT_TRUE(ValidateSamplingOptions(o).ok());
  o.num_samples = 0;
  check(o, "--num-samples");
  o = {};
  o.seq_len = 0;
  check(o, "--seq-len");
  o = {};
  o.skip_docs = -1;
  check(o, "--skip-docs");
  o = {};
  o.num_samples = int64_t{1} << 40;
  check(o, "--num-samples");
  EXPECT_EQ(*ParseSamplingMode("packed"), SamplingMode::kPacked);
  EXPECT_TRUE(absl::StrContains(ParseSamplingMode("pack").status().message(), "--mode"));
  EXPECT_EQ(*ParseSamplingOrder("sequential"), SamplingOrder::kSequential);
  EXPECT_TRUE(absl::StrContains(ParseSamplingOrder("random").status().message(), "--order"));
  EXPECT_EQ(SamplingOptionsToFlags(SamplingOptions{}),
            "--num-samples 512 --seq-len 512 --mode document --order shuffled --seed 42 "
            "--skip-docs 0");
}

TEST_F(SamplerTest, DocumentOrderSequentialShuffledAndSkip) {
  SamplingOptions o = Options(SamplingMode::kDocument, SamplingOrder::kSequential, 5, 8);
  o.skip_docs = 3;
  EXPECT_EQ(*DocumentOrder(o, 100, 5), (std::vector<int64_t>{3, 4, 5, 6, 7}));
  o.order = SamplingOrder::kShuffled;
  auto order = *DocumentOrder(o, 100, 97);
  std::set<int64_t> seen(order.begin(), order.end());
  EXPECT_EQ(seen.size(), 97u);
  EXPECT_EQ(*seen.begin(), 3);
  EXPECT_EQ(*seen.rbegin(), 99);
  EXPECT_EQ(DocumentOrder(o, 100, 98).status().code(), absl::StatusCode::kInvalidArgument);
}

// Document mode: one sample per document, truncated to seq_len the way Hugging Face
// truncates, short documents kept at their length.
TEST_F(SamplerTest, DocumentModeTruncatesAndKeepsShortDocuments) {
  std::string corpus = "{\"text\": \"Short one.\"}\n{\"text\": \"" + std::string(3000, 'x') +
                       " and a long tail of words\"}\n{\"text\": \"Two words\"}\n";
  auto index = *corpus::CorpusIndex::Build(WriteFile("short.jsonl", corpus));
  for (const Tokenizer* tok : {bpe_, spm_}) {
    SamplingOptions o = Options(SamplingMode::kDocument, SamplingOrder::kSequential, 3, 16);
    auto sampler = Sampler::Create(tok, &index, o);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    auto s = (*sampler)->Samples(0, 3);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ((*s)[0], *tok->Encode("Short one.", true));
    EXPECT_EQ((*s)[2], *tok->Encode("Two words", true));
    EXPECT_LT((*s)[0].size(), 16u);
    ASSERT_EQ((*s)[1].size(), 16u);
    auto full = *tok->Encode(std::string(3000, 'x') + " and a long tail of words", true);
    EXPECT_EQ((*s)[1], std::vector<int32_t>(full.begin(), full.begin() + 16));
    if (tok == spm_) {
      EXPECT_EQ((*s)[1][0], 1);  // BOS kept
    }
    // Without special tokens.
    o.add_special_tokens = false;
    auto plain = *(*Sampler::Create(tok, &index, o))->Samples(0, 1);
    EXPECT_EQ(plain[0], *tok->Encode("Short one.", false));
  }
}

TEST_F(SamplerTest, DocumentModeMatchesTheDocuments) {
  SamplingOptions o = Options(SamplingMode::kDocument, SamplingOrder::kShuffled, 40, 64);
  o.seed = 7;
  o.skip_docs = 100;
  auto sampler = *Sampler::Create(spm_, calib_, o);
  auto samples = *sampler->Samples(0, 40);
  auto order = *DocumentOrder(o, calib_->num_documents(), 40);
  auto texts = Texts(*calib_, order);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_GE(order[i], 100);
    auto ids = *spm_->Encode(texts[i], true);
    if (ids.size() > 64) ids.resize(64);
    EXPECT_EQ(samples[i], ids) << i;
  }
}

// Packed mode: the samples are consecutive windows of the stream of documents,
// each followed by the end-of-text token.
TEST_F(SamplerTest, PackedWindowsJoinDocumentsWithEos) {
  for (const Tokenizer* tok : {bpe_, spm_}) {
    SamplingOptions o = Options(SamplingMode::kPacked, SamplingOrder::kSequential, 30, 100);
    o.skip_docs = 2;
    auto sampler = Sampler::Create(tok, calib_, o);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    auto samples = *(*sampler)->Samples(0, 30);
    std::vector<int32_t> joined;
    for (const auto& s : samples) {
      ASSERT_EQ(s.size(), 100u);
      joined.insert(joined.end(), s.begin(), s.end());
    }
    std::vector<int32_t> stream;
    for (int64_t d = 2; stream.size() < joined.size(); ++d) {
      auto ids = *tok->Encode(Texts(*calib_, {d})[0], true);
      stream.insert(stream.end(), ids.begin(), ids.end());
      stream.push_back(*tok->eos_id());
    }
    stream.resize(joined.size());
    EXPECT_EQ(joined, stream);
    const PackingPlan* plan = (*sampler)->packing_plan();
    ASSERT_NE(plan, nullptr);
    EXPECT_EQ(plan->ordinals[0], 2);
    EXPECT_GE(plan->total_tokens(), 3000);
    EXPECT_LT(plan->starts[plan->starts.size() - 2], 3000);  // no document more than needed
  }
}

// Shard addressability: samples [i, j) produced alone, by a fresh sampler as a
// worker would, equal the same slice of all samples; and the same options give
// the same samples again.
TEST_F(SamplerTest, ShardsEqualSlicesOfAllSamplesInEveryModeAndOrder) {
  for (SamplingMode mode : {SamplingMode::kDocument, SamplingMode::kPacked}) {
    for (SamplingOrder order : {SamplingOrder::kSequential, SamplingOrder::kShuffled}) {
      SamplingOptions o = Options(mode, order, 48, 96);
      o.seed = 1234;
      o.skip_docs = 10;
      SCOPED_TRACE(SamplingOptionsToFlags(o));
      auto whole = *Sampler::Create(bpe_, calib_, o);
      Samples all = *whole->Samples(0, 48);
      ASSERT_EQ(all.size(), 48u);
      std::string plan_bytes;
      if (mode == SamplingMode::kPacked) plan_bytes = whole->packing_plan()->Serialize();
      for (auto [i, j] : {std::pair<int64_t, int64_t>{0, 8}, {8, 16}, {17, 40}, {40, 48},
                          {47, 48}, {5, 5}}) {
        std::optional<PackingPlan> plan;
        if (mode == SamplingMode::kPacked) plan = *PackingPlan::Deserialize(plan_bytes);
        auto worker = Sampler::Create(bpe_, calib_, o, plan);
        ASSERT_TRUE(worker.ok()) << worker.status();
        auto shard = (*worker)->Samples(i, j);
        ASSERT_TRUE(shard.ok()) << shard.status();
        EXPECT_EQ(*shard, Samples(all.begin() + i, all.begin() + j)) << i << ".." << j;
      }
      // Determinism: a second sampler (packed: building its own plan) agrees.
      EXPECT_EQ(*(*Sampler::Create(bpe_, calib_, o))->Samples(0, 48), all);
      // Another seed changes shuffled samples only.
      o.seed = 99;
      Samples other = *(*Sampler::Create(bpe_, calib_, o))->Samples(0, 48);
      if (order == SamplingOrder::kShuffled) {
        EXPECT_NE(other, all);
      } else {
        EXPECT_EQ(other, all);
      }
    }
  }
}

TEST_F(SamplerTest, SkipDocsShiftsTheDocuments) {
  SamplingOptions o = Options(SamplingMode::kDocument, SamplingOrder::kSequential, 5, 32);
  Samples base = *(*Sampler::Create(bpe_, calib_, o))->Samples(0, 5);
  o.skip_docs = 2;
  Samples skipped = *(*Sampler::Create(bpe_, calib_, o))->Samples(0, 3);
  EXPECT_EQ(skipped, Samples(base.begin() + 2, base.end()));
}

TEST_F(SamplerTest, ErrorsNameTheProblem) {
  SamplingOptions o = Options(SamplingMode::kDocument, SamplingOrder::kSequential, 2330, 16);
  auto s = Sampler::Create(bpe_, calib_, o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "--num-samples")) << s.status();
  o.num_samples = 2329;
  EXPECT_TRUE(Sampler::Create(bpe_, calib_, o).ok());
  o.skip_docs = 1;
  EXPECT_FALSE(Sampler::Create(bpe_, calib_, o).ok());

  auto small = *corpus::CorpusIndex::Build(WriteFile("small.jsonl", "{\"text\": \"a b c\"}\n"));
  o = Options(SamplingMode::kPacked, SamplingOrder::kShuffled, 10, 10);
  s = Sampler::Create(bpe_, &small, o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "needs 100")) << s.status();

  o.num_samples = 1;
  o.seq_len = 2;
  auto sampler = *Sampler::Create(bpe_, &small, o);
  EXPECT_EQ(sampler->Samples(0, 2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(sampler->Samples(-1, 0).status().code(), absl::StatusCode::kOutOfRange);

  // A plan made for other options is refused.
  o = Options(SamplingMode::kPacked, SamplingOrder::kShuffled, 4, 64);
  PackingPlan plan = *BuildPackingPlan(*bpe_, *calib_, o);
  o.seed = 43;
  s = Sampler::Create(bpe_, calib_, o, plan);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(PackingPlan::Deserialize("junk").ok());

  // An index built without --skip-bad-lines does not serve options with it.
  o.skip_bad_lines = true;
  s = Sampler::Create(bpe_, calib_, o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "--skip-bad-lines")) << s.status();
}

TEST_F(SamplerTest, PackedModeNeedsAnEosToken) {
  std::string dir = TempPath("noeos");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  std::ofstream(dir + "/tokenizer.json") << ReadFile(kData + "/tokenizers/bpe4k/tokenizer.json");
  std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": null})";
  auto tok = *LoadTokenizer(dir);
  ASSERT_FALSE(tok->eos_id().has_value());
  auto s = Sampler::Create(tok.get(), calib_,
                           Options(SamplingMode::kPacked, SamplingOrder::kSequential, 1, 8));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "end-of-text")) << s.status();
}

TEST_F(SamplerTest, SkipBadLinesCorpus) {
  std::string corpus = "{\"text\": \"one\"}\nbroken\n{\"text\": \"two\"}\n";
  std::string path = WriteFile("bad.jsonl", corpus);
  EXPECT_FALSE(corpus::CorpusIndex::Build(path).ok());
  SamplingOptions o = Options(SamplingMode::kDocument, SamplingOrder::kSequential, 2, 8);
  o.skip_bad_lines = true;
  auto index = *corpus::CorpusIndex::Build(path, CorpusReadOptionsFor(o));
  auto samples = *(*Sampler::Create(bpe_, &index, o))->Samples(0, 2);
  EXPECT_EQ(samples[1], *bpe_->Encode("two", true));
}

TEST_F(SamplerTest, OpenCorpusSamplerBundlesEverything) {
  SamplingOptions o = Options(SamplingMode::kPacked, SamplingOrder::kShuffled, 8, 128);
  auto bundle = OpenCorpusSampler(kData + "/models/llama-small", kCalib, o);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(bundle->index->num_documents(), 2329);
  EXPECT_EQ(*bundle->sampler->Samples(0, 8), *(*Sampler::Create(bpe_, calib_, o))->Samples(0, 8));
  auto missing = OpenCorpusSampler(kData + "/models/llama-small", "/nonexistent.jsonl", o);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  o.seq_len = 0;
  EXPECT_EQ(OpenCorpusSampler(kData + "/models/llama-small", kCalib, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qcal::text
