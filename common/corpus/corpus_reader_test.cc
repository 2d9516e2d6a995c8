#include "common/corpus/corpus_reader.h"

#include <zstd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_error.h"
#include "common/corpus/corpus_test_util.h"
#include "common/corpus/utf8.h"
#include "gtest/gtest.h"

namespace qcal::corpus {
namespace {

using testing_util::WriteFile;
using testing_util::Zstd;

const std::string kData = QCAL_TEST_DATA_DIR;

// Reads every document of `path`.
absl::StatusOr<std::vector<Document>> ReadAll(const std::string& path,
                                              const CorpusReadOptions& options = {},
                                              CorpusStats* stats = nullptr) {
  auto reader = CorpusReader::Open(path, options);
  if (!reader.ok()) return reader.status();
  std::vector<Document> docs;
  Document doc;
  for (;;) {
    auto more = (*reader)->Next(&doc);
    if (!more.ok()) return more.status();
    if (!*more) break;
    docs.push_back(doc);
  }
  if (stats != nullptr) *stats = (*reader)->stats();
  return docs;
}

// Peak resident memory of this process in KiB.
int64_t PeakRssKib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmHWM:")) return std::stoll(line.substr(6));
  }
  return -1;
}

TEST(Utf8, Validation) {
  EXPECT_TRUE(IsValidUtf8("plain ascii text, long enough for the fast path"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_EQ(FindInvalidUtf8("ab\xC3"), 2u);                 // cut sequence
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);               // overlong
  EXPECT_EQ(FindInvalidUtf8("x\xED\xA0\x80"), 1u);          // surrogate
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);       // > U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("12345678\xFF"), 8u);
}

TEST(CorpusReader, SampleJsonlIsTheFirstDocumentsOfCalib) {
  auto sample = ReadAll(kData + "/corpus/sample.jsonl");
  ASSERT_TRUE(sample.ok()) << sample.status();
  ASSERT_EQ(sample->size(), 20u);
  CorpusStats stats;
  auto calib = ReadAll(kData + "/corpus/calib.jsonl.zst", {}, &stats);
  ASSERT_TRUE(calib.ok()) << calib.status();
  // Documented in tests/data/README.md: 2329 documents, 8367310 text bytes.
  ASSERT_EQ(calib->size(), 2329u);
  size_t bytes = 0;
  for (const Document& d : *calib) bytes += d.text.size();
  EXPECT_EQ(bytes, 8367310u);
  EXPECT_EQ(stats.documents, 2329);
  EXPECT_EQ(stats.lines, 2329);
  EXPECT_EQ(stats.bad_records, 0);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ((*sample)[i].text, (*calib)[i].text) << i;
    EXPECT_EQ((*sample)[i].ordinal, static_cast<int64_t>(i));
    EXPECT_EQ((*sample)[i].line, static_cast<int64_t>(i) + 1);
    EXPECT_EQ((*sample)[i].offset, (*calib)[i].offset);
  }
  EXPECT_EQ((*sample)[0].offset, 0u);
}

TEST(CorpusReader, JsonlDetails) {
  // Blank lines are ignored, "" texts counted, CRLF accepted, escapes decoded,
  // the last line needs no '\n', other members and their order do not matter.
  std::string content =
      "{\"text\": \"one\"}\r\n"
      "\n"
      "   \n"
      "{\"meta\": {\"text\": 5}, \"text\": \"two\\n\\u00e9\\ud83d\\ude00\"}\n"
      "{\"text\": \"\"}\n"
      "{\"text\": \"three\"}";
  std::string path = WriteFile("details.jsonl", content);
  CorpusStats stats;
  auto docs = ReadAll(path, {}, &stats);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 3u);
  EXPECT_EQ((*docs)[0].text, "one");
  EXPECT_EQ((*docs)[1].text, "two\n\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ((*docs)[1].line, 4);
  EXPECT_EQ((*docs)[1].offset, content.find("{\"meta\""));
  EXPECT_EQ((*docs)[2].text, "three");
  EXPECT_EQ((*docs)[2].line, 6);
  EXPECT_EQ((*docs)[2].ordinal, 2);
  EXPECT_EQ(stats.lines, 6);
  EXPECT_EQ(stats.empty_records, 1);
}

struct BadCase {
  std::string line;
  std::string expect;  // in the message
};

TEST(CorpusReader, EveryMalformedRecordNamesFileAndLine) {
  const std::vector<BadCase> cases = {
      {"{\"text\": \"unterminated}", "invalid JSON"},
      {"not json at all", "invalid JSON"},
      {"{\"text\": \"a\"} trailing", "invalid JSON"},
      {"{\"text\": \"\\ud800 lone surrogate\"}", "invalid JSON"},
      {"[\"text\", \"an array\"]", "expected a JSON object"},
      {"\"just a string\"", "expected a JSON object"},
      {"{\"title\": \"no text\"}", "no \"text\" field"},
      {"{\"text\": 42}", "\"text\" is a number, not a string"},
      {"{\"text\": null}", "\"text\" is null, not a string"},
      {"{\"text\": [\"a\"]}", "\"text\" is an array, not a string"},
      {"{\"text\": \"bad \xFF byte\"}", "invalid UTF-8 at byte 15 of the line"},
      {"{\"text\": \"cut \xE2\x82\"}", "invalid UTF-8"},
  };
  for (const BadCase& c : cases) {
    std::string content = "{\"text\": \"good one\"}\n\n{\"text\": \"good two\"}\n" + c.line +
                          "\n{\"text\": \"good three\"}\n";
    std::string path = WriteFile("bad.jsonl", content);
    auto docs = ReadAll(path);
    ASSERT_FALSE(docs.ok()) << c.line;
    EXPECT_EQ(docs.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_TRUE(absl::StartsWith(docs.status().message(), path + ":4: "))
        << docs.status();
    EXPECT_TRUE(absl::StrContains(docs.status().message(), c.expect)) << docs.status();
    auto loc = GetCorpusLocation(docs.status());
    ASSERT_TRUE(loc.has_value());
    EXPECT_EQ(loc->path, path);
    EXPECT_EQ(loc->line, 4);

    // Skipping: the bad line is counted, the good documents are all read.
    CorpusReadOptions skip;
    skip.skip_bad_records = true;
    CorpusStats stats;
    auto kept = ReadAll(path, skip, &stats);
    ASSERT_TRUE(kept.ok()) << kept.status();
    ASSERT_EQ(kept->size(), 3u);
    EXPECT_EQ((*kept)[2].text, "good three");
    EXPECT_EQ((*kept)[2].ordinal, 2);
    EXPECT_EQ((*kept)[2].line, 5);
    EXPECT_EQ(stats.bad_records, 1);
    ASSERT_EQ(stats.bad_record_examples.size(), 1u);
    EXPECT_EQ(stats.bad_record_examples[0], std::string(docs.status().message()));
  }
}

TEST(CorpusReader, SkipCountsManyBadLinesAndKeepsFewExamples) {
  std::string content;
  for (int i = 0; i < 25; ++i) content += "{\"text\": \"ok\"}\n{broken\n";
  std::string path = WriteFile("many_bad.jsonl", content);
  CorpusReadOptions skip;
  skip.skip_bad_records = true;
  CorpusStats stats;
  auto docs = ReadAll(path, skip, &stats);
  ASSERT_TRUE(docs.ok());
  EXPECT_EQ(docs->size(), 25u);
  EXPECT_EQ(stats.bad_records, 25);
  EXPECT_EQ(stats.bad_record_examples.size(), CorpusStats::kMaxExamples);
  EXPECT_TRUE(absl::StartsWith(stats.bad_record_examples[1], path + ":4: "));
}

TEST(CorpusReader, TooLongLine) {
  std::string content = "{\"text\": \"short\"}\n{\"text\": \"" + std::string(5000, 'x') +
                        "\"}\n{\"text\": \"after\"}\n";
  std::string path = WriteFile("long.jsonl", content);
  CorpusReadOptions options;
  options.buffer_bytes = 64;
  options.max_record_bytes = 1000;
  auto docs = ReadAll(path, options);
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::StartsWith(docs.status().message(), path + ":2: line longer than 1000"))
      << docs.status();
  options.skip_bad_records = true;
  CorpusStats stats;
  docs = ReadAll(path, options, &stats);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[1].text, "after");
  EXPECT_EQ((*docs)[1].line, 3);
  EXPECT_EQ(stats.bad_records, 1);
}

TEST(CorpusReader, ZstdIsDetectedByContentAndMatchesPlain) {
  std::string plain = testing_util::ReadFile(kData + "/corpus/sample.jsonl");
  std::string path = WriteFile("sample.jsonl.zst", Zstd(plain, 5));
  auto a = ReadAll(path);
  auto b = ReadAll(kData + "/corpus/sample.jsonl");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].text, (*b)[i].text);
    EXPECT_EQ((*a)[i].offset, (*b)[i].offset);
  }
  auto reader = CorpusReader::Open(path);
  ASSERT_TRUE(reader.ok());
  EXPECT_TRUE((*reader)->compressed());
}

TEST(CorpusReader, TruncatedZstdFrame) {
  std::string content;
  // ~1 MiB: several zstd blocks, so a cut leaves some decodable lines.
  for (int i = 0; i < 20000; ++i) {
    content += absl::StrCat("{\"text\": \"document number ", i, " with some words\"}\n");
  }
  std::string z = Zstd(content, 1);
  std::string path = WriteFile("cut.jsonl.zst", z.substr(0, z.size() * 2 / 3));
  CorpusReadOptions options;
  options.buffer_bytes = 512;
  auto docs = ReadAll(path, options);
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(docs.status().message(), "truncated zstd frame"))
      << docs.status();
  auto loc = GetCorpusLocation(docs.status());
  ASSERT_TRUE(loc.has_value());
  EXPECT_EQ(loc->path, path);
  EXPECT_GT(loc->line, 1);
  EXPECT_TRUE(absl::StartsWith(docs.status().message(), absl::StrCat(path, ":", loc->line, ": ")));

  // Skipping: every complete line before the cut is a document, the cut is counted.
  options.skip_bad_records = true;
  CorpusStats stats;
  docs = ReadAll(path, options, &stats);
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_TRUE(stats.truncated);
  EXPECT_EQ(stats.bad_records, 1);
  EXPECT_EQ(static_cast<int64_t>(docs->size()), loc->line - 1);
  for (size_t i = 0; i < docs->size(); ++i) {
    EXPECT_EQ((*docs)[i].text, absl::StrCat("document number ", i, " with some words"));
  }

  // Cut exactly after a line ending in the middle of the frame: no partial line,
  // still a truncation, named at the line that would have followed.
  std::string frame_of_two = Zstd("{\"text\": \"a\"}\n{\"text\": \"b\"}\n", 1);
  std::string cut = frame_of_two.substr(0, frame_of_two.size() - 3);  // drops the checksum/end
  std::string path2 = WriteFile("cut2.jsonl.zst", cut);
  docs = ReadAll(path2);
  // Depending on where the cut falls the decoder may give all lines; it must
  // never succeed silently.
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(GetCorpusLocation(docs.status()).has_value());
}

TEST(CorpusReader, CorruptZstdData) {
  std::string content;
  for (int i = 0; i < 500; ++i) content += absl::StrCat("{\"text\": \"doc ", i, "\"}\n");
  std::string z = Zstd(content, 3);
  for (size_t i = z.size() / 3; i < z.size() / 3 + 16; ++i) z[i] = static_cast<char>(z[i] ^ 0x5A);
  std::string path = WriteFile("corrupt.jsonl.zst", z);
  CorpusReadOptions options;
  options.skip_bad_records = true;  // corruption is never skipped
  auto docs = ReadAll(path, options);
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StartsWith(docs.status().message(), path + ": ")) << docs.status();
}

TEST(CorpusReader, MissingFileAndUnknownFormat) {
  auto docs = ReadAll("/nonexistent/dir/corpus.jsonl");
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(docs.status().message(), "/nonexistent/dir/corpus.jsonl"));

  docs = ReadAll(::testing::TempDir() + "/", {CorpusFormat::kJsonl});
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(docs.status().message(), "is a directory")) << docs.status();

  std::string path = WriteFile("corpus.csv", "a,b\n");
  docs = ReadAll(path);
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(docs.status().message(), "cannot tell the corpus format"));
  CorpusReadOptions as_text;
  as_text.format = CorpusFormat::kText;
  docs = ReadAll(path, as_text);
  ASSERT_TRUE(docs.ok());
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ((*docs)[0].text, "a,b");
}

TEST(CorpusReader, PlainTextParagraphs) {
  std::string content =
      "\n\nFirst paragraph\nwith two lines\r\n"
      "\n"
      "Second\n"
      "  \t \r\n"
      "\n"
      "  Third, indented\n"
      "\tand tabbed";
  for (bool compressed : {false, true}) {
    std::string path = compressed ? WriteFile("para.txt.zst", Zstd(content))
                                  : WriteFile("para.txt", content);
    auto docs = ReadAll(path);
    ASSERT_TRUE(docs.ok()) << docs.status();
    ASSERT_EQ(docs->size(), 3u);
    EXPECT_EQ((*docs)[0].text, "First paragraph\nwith two lines");
    EXPECT_EQ((*docs)[0].line, 3);
    EXPECT_EQ((*docs)[0].offset, 2u);
    EXPECT_EQ((*docs)[1].text, "Second");
    EXPECT_EQ((*docs)[1].line, 6);
    EXPECT_EQ((*docs)[2].text, "  Third, indented\n\tand tabbed");
    EXPECT_EQ((*docs)[2].line, 9);
    EXPECT_EQ((*docs)[2].ordinal, 2);
  }
}

TEST(CorpusReader, PlainTextInvalidUtf8) {
  std::string content = "good\n\nbad \xC3( here\nsame paragraph\n\nlast\n";
  std::string path = WriteFile("bad.txt", content);
  auto docs = ReadAll(path);
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::StartsWith(docs.status().message(), path + ":3: invalid UTF-8 at byte 5"))
      << docs.status();
  CorpusReadOptions skip;
  skip.skip_bad_records = true;
  CorpusStats stats;
  docs = ReadAll(path, skip, &stats);
  ASSERT_TRUE(docs.ok());
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[1].text, "last");
  EXPECT_EQ((*docs)[1].ordinal, 1);
  EXPECT_EQ(stats.bad_records, 1);
}

TEST(CorpusReader, SeekToContinuesAtADocument) {
  auto all = ReadAll(kData + "/corpus/calib.jsonl.zst");
  ASSERT_TRUE(all.ok());
  auto reader = CorpusReader::Open(kData + "/corpus/calib.jsonl.zst");
  ASSERT_TRUE(reader.ok());
  Document doc;
  for (int64_t k : {1000, 5, 2328, 0}) {
    const Document& want = (*all)[k];
    ASSERT_TRUE((*reader)->SeekTo({want.offset, want.line, want.ordinal}).ok());
    auto got = (*reader)->Next(&doc);
    ASSERT_TRUE(got.ok() && *got);
    EXPECT_EQ(doc.text, want.text);
    EXPECT_EQ(doc.ordinal, k);
    EXPECT_EQ(doc.line, want.line);
  }
}

// A generated zstd JSONL file ~2000x larger than the read buffer is streamed with
// bounded memory: the line buffer never grows past its initial size and the peak
// RSS grows by far less than the file's size.
TEST(CorpusReader, StreamsLargeZstdFileInConstantMemory) {
  const std::string path = testing_util::TempPath("large.jsonl.zst");
  const size_t kBuffer = 64 << 10;
  int64_t lines = 0;
  uint64_t text_bytes = 0;
  uint64_t content_bytes = 0;
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
    std::string chunk;
    std::vector<char> out(ZSTD_CStreamOutSize());
    uint64_t state = 88172645463325252ULL;
    auto flush = [&](ZSTD_EndDirective mode) {
      ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
      for (;;) {
        ZSTD_outBuffer o{out.data(), out.size(), 0};
        size_t left = ZSTD_compressStream2(cctx, &o, &in, mode);
        ASSERT_FALSE(ZSTD_isError(left));
        std::fwrite(out.data(), 1, o.pos, f);
        if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
      }
      chunk.clear();
    };
    while (content_bytes < (size_t{128} << 20)) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      std::string text = absl::StrCat("document ", lines, " value ", state % 1000003,
                                      " ", std::string(200 + state % 1500, 'a' + lines % 26));
      std::string line = absl::StrCat("{\"text\": \"", text, "\", \"meta\": {\"n\": ", lines,
                                      "}}\n");
      text_bytes += text.size();
      content_bytes += line.size();
      ++lines;
      chunk += line;
      if (chunk.size() >= (1 << 20)) flush(ZSTD_e_continue);
    }
    flush(ZSTD_e_end);
    ZSTD_freeCCtx(cctx);
    std::fclose(f);
  }
  const int64_t rss_before = PeakRssKib();
  CorpusReadOptions options;
  options.buffer_bytes = kBuffer;
  options.max_record_bytes = 1 << 20;
  auto reader = CorpusReader::Open(path, options);
  ASSERT_TRUE(reader.ok());
  Document doc;
  int64_t docs = 0;
  uint64_t seen_bytes = 0;
  for (;;) {
    auto more = (*reader)->Next(&doc);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    seen_bytes += doc.text.size();
    ++docs;
  }
  const int64_t rss_after = PeakRssKib();
  EXPECT_EQ(docs, lines);
  EXPECT_EQ(seen_bytes, text_bytes);
  EXPECT_GT(content_bytes, 2000 * kBuffer);
  EXPECT_EQ((*reader)->buffer_capacity(), kBuffer);
  // zstd's window for level 1 is small; 16 MiB is far below the 128 MiB of content.
  EXPECT_LT(rss_after - rss_before, 16 * 1024) << "peak RSS grew by " << rss_after - rss_before
                                               << " KiB";
  std::remove(path.c_str());
}

}  // namespace
}  // namespace qcal::corpus
