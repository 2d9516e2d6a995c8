#include "common/corpus/corpus_index.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_error.h"
#include "common/corpus/corpus_test_util.h"
#include "gtest/gtest.h"

namespace qcal::corpus {
namespace {

using testing_util::WriteFile;
using testing_util::Zstd;

const std::string kData = QCAL_TEST_DATA_DIR;

std::vector<std::string> ReadAllTexts(const std::string& path, CorpusReadOptions options = {}) {
  auto reader = CorpusReader::Open(path, options);
  EXPECT_TRUE(reader.ok());
  std::vector<std::string> texts;
  Document doc;
  while (true) {
    auto more = (*reader)->Next(&doc);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    texts.push_back(doc.text);
  }
  return texts;
}

void ExpectRandomAccessMatches(const CorpusIndex& index, const std::vector<std::string>& all) {
  ASSERT_EQ(index.num_documents(), static_cast<int64_t>(all.size()));
  const int64_t n = index.num_documents();
  std::vector<int64_t> ordinals = {n - 1, 0, n / 2, n / 2, 1, n - 2, n / 3};
  auto texts = index.ReadDocuments(ordinals);
  ASSERT_TRUE(texts.ok()) << texts.status();
  ASSERT_EQ(texts->size(), ordinals.size());
  for (size_t i = 0; i < ordinals.size(); ++i) EXPECT_EQ((*texts)[i], all[ordinals[i]]) << i;
}

TEST(CorpusIndex, CalibZstdRandomAccess) {
  const std::string path = kData + "/corpus/calib.jsonl.zst";
  auto index = CorpusIndex::Build(path);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->num_documents(), 2329);
  EXPECT_EQ(index->format(), CorpusFormat::kJsonl);
  ExpectRandomAccessMatches(*index, ReadAllTexts(path));
  auto none = index->ReadDocuments({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto bad = index->ReadDocuments({2329});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kOutOfRange);
}

TEST(CorpusIndex, PlainJsonlAndText) {
  ExpectRandomAccessMatches(*CorpusIndex::Build(kData + "/corpus/sample.jsonl"),
                            ReadAllTexts(kData + "/corpus/sample.jsonl"));
  std::string text;
  for (int i = 0; i < 300; ++i) text += absl::StrCat("paragraph ", i, "\nline two\n\n\n");
  std::string path = WriteFile("paras.txt", text);
  auto index = CorpusIndex::Build(path);
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->format(), CorpusFormat::kText);
  ExpectRandomAccessMatches(*index, ReadAllTexts(path));
}

TEST(CorpusIndex, MultiFrameZstdUsesCheckpoints) {
  // Four frames of ~1.5 MiB each (as pzstd writes): the index records the frame
  // starts and random access restarts decompression there.
  std::string z;
  std::vector<std::string> all;
  for (int f = 0; f < 4; ++f) {
    std::string frame;
    for (int i = 0; i < 6000; ++i) {
      std::string t = absl::StrCat("frame ", f, " doc ", i, " ", std::string(200 + i % 97, 'q'));
      all.push_back(t);
      frame += absl::StrCat("{\"text\": \"", t, "\"}\n");
    }
    z += Zstd(frame, 1);
  }
  std::string path = WriteFile("frames.jsonl.zst", z);
  auto index = CorpusIndex::Build(path);
  ASSERT_TRUE(index.ok()) << index.status();
  auto reader = CorpusReader::Open(path);
  ASSERT_TRUE(reader.ok());
  Document doc;
  while (*(*reader)->Next(&doc)) {
  }
  // {0,0}, the three later frame starts (and the end of the last frame).
  EXPECT_GE((*reader)->Checkpoints().size(), 4u);
  ExpectRandomAccessMatches(*index, all);
  // Serialized and loaded back, it still reads the same.
  auto loaded = CorpusIndex::Deserialize(index->Serialize(), path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectRandomAccessMatches(*loaded, all);
}

TEST(CorpusIndex, SkipBadRecordsIsPartOfTheIndex) {
  std::string content = "{\"text\": \"a\"}\nbroken\n{\"text\": \"b\"}\n{\"text\": 1}\n{\"text\": \"c\"}\n";
  std::string path = WriteFile("bad.jsonl", content);
  auto strict = CorpusIndex::Build(path);
  ASSERT_FALSE(strict.ok());
  EXPECT_TRUE(absl::StartsWith(strict.status().message(), path + ":2: invalid JSON"));
  CorpusReadOptions skip;
  skip.skip_bad_records = true;
  auto index = CorpusIndex::Build(path, skip);
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->num_documents(), 3);
  EXPECT_EQ(index->stats().bad_records, 2);
  EXPECT_EQ(index->position(2).line, 5);
  auto texts = index->ReadDocuments({2, 1, 0});
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_EQ(*texts, (std::vector<std::string>{"c", "b", "a"}));
}

TEST(CorpusIndex, SerializeRoundTripAndChangedFile) {
  std::string path = WriteFile("rt.jsonl", "{\"text\": \"x\"}\n{\"text\": \"y\"}\n");
  auto index = CorpusIndex::Build(path);
  ASSERT_TRUE(index.ok());
  std::string bytes = index->Serialize();
  auto loaded = CorpusIndex::Deserialize(bytes, path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->num_documents(), 2);
  EXPECT_EQ(loaded->position(1).offset, index->position(1).offset);
  EXPECT_EQ(loaded->Serialize(), bytes);
  EXPECT_FALSE(CorpusIndex::Deserialize(bytes.substr(0, bytes.size() - 1), path).ok());
  EXPECT_FALSE(CorpusIndex::Deserialize("garbage", path).ok());

  // The file changes: loading or reading says so.
  WriteFile("unused", "");
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << "{\"text\": \"z\"}\n";
  }
  auto stale = CorpusIndex::Deserialize(bytes, path);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  auto texts = index->ReadDocuments({0});
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(texts.status().message(), "changed since it was indexed"));
}

TEST(ValidateCorpus, ReportsStatsOrNoUsableDocument) {
  auto stats = ValidateCorpus(kData + "/corpus/eval.jsonl.zst");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->documents, 305);
  std::string empty = WriteFile("empty.jsonl", "\n{\"text\": \"\"}\n");
  auto bad = ValidateCorpus(empty);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), empty + ": corpus has no usable document");
}

}  // namespace
}  // namespace qcal::corpus
