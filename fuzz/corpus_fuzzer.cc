// Fuzz target: the corpus readers (common/corpus/corpus_reader.h and the line
// reader under it), what a coordinator runs over every corpus a job names and a
// worker reads its samples from.
//
// The input is a corpus file's content. It is read as JSON lines and as plain
// text, each strictly and with skip_bad_records, with 64 kB buffers and with
// tiny ones (so lines straddle refills and exceed max_record_bytes); then the same
// content zstd-compressed (one frame, then two frames) must give the same
// documents, and a CorpusIndex built over it must give back every document by
// ordinal (seeking) exactly as the sequential read did. Cut-off zstd data must be
// an error or a counted truncation, never a crash. The input is also offered to
// CorpusIndex::Deserialize (the cached index format).
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_index.h"
#include "common/corpus/corpus_reader.h"
#include "fuzz/fuzz_util.h"

namespace {

namespace corpus = qcal::corpus;

struct ReadResult {
  absl::StatusCode code = absl::StatusCode::kOk;
  std::vector<corpus::Document> docs;
  corpus::CorpusStats stats;
};

ReadResult ReadAll(const std::string& path, const corpus::CorpusReadOptions& options) {
  ReadResult r;
  auto reader = corpus::CorpusReader::Open(path, options);
  if (!reader.ok()) {
    r.code = reader.status().code();
    return r;
  }
  corpus::Document doc;
  while (true) {
    auto more = (*reader)->Next(&doc);
    if (!more.ok()) {
      r.code = more.status().code();
      break;
    }
    if (!*more) break;
    QCAL_FUZZ_CHECK(!doc.text.empty(), "documents are never empty");
    QCAL_FUZZ_CHECK(doc.ordinal == static_cast<int64_t>(r.docs.size()), "ordinals count up");
    QCAL_FUZZ_CHECK((*reader)->buffer_capacity() <= options.max_record_bytes + 1 ||
                        (*reader)->buffer_capacity() <= options.buffer_bytes,
                    "the line buffer stays bounded");
    r.docs.push_back(doc);
  }
  r.stats = (*reader)->stats();
  return r;
}

bool SameDocs(const ReadResult& a, const ReadResult& b) {
  if (a.docs.size() != b.docs.size()) return false;
  for (size_t i = 0; i < a.docs.size(); ++i) {
    if (a.docs[i].text != b.docs[i].text || a.docs[i].line != b.docs[i].line ||
        a.docs[i].offset != b.docs[i].offset) {
      return false;
    }
  }
  return true;
}

std::string Zstd(const char* data, size_t size) {
  static ZSTD_CCtx* const cctx = ZSTD_createCCtx();  // one for the process: fast
  std::string out(ZSTD_compressBound(size), '\0');
  const size_t n = ZSTD_compressCCtx(cctx, out.data(), out.size(), data, size, 1);
  if (ZSTD_isError(n)) qcal::fuzz::HarnessError(ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

bool LooksCompressed(const uint8_t* data, size_t size) {
  if (size < 4) return false;
  uint32_t magic;
  std::memcpy(&magic, data, 4);
  return magic == ZSTD_MAGICNUMBER ||
         (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

// The index of `path` must return every document the sequential read did.
void CheckIndex(const std::string& path, const corpus::CorpusReadOptions& options,
                const ReadResult& sequential) {
  auto index = corpus::CorpusIndex::Build(path, options);
  QCAL_FUZZ_CHECK(index.ok() == (sequential.code == absl::StatusCode::kOk),
                  absl::StrCat("Build: ", index.status().ToString(), "; reading: ",
                               absl::StatusCodeToString(sequential.code)));
  if (!index.ok()) return;
  QCAL_FUZZ_CHECK(index->num_documents() == static_cast<int64_t>(sequential.docs.size()),
                  absl::StrCat(index->num_documents(), " indexed, ", sequential.docs.size(), " read"));
  std::vector<int64_t> ordinals;  // backwards, every other one: the reader must seek
  for (int64_t i = index->num_documents() - 1; i >= 0; i -= 2) ordinals.push_back(i);
  auto texts = index->ReadDocuments(ordinals);
  QCAL_FUZZ_CHECK(texts.ok(), std::string(texts.status().message()));
  for (size_t k = 0; k < ordinals.size(); ++k) {
    QCAL_FUZZ_CHECK((*texts)[k] == sequential.docs[ordinals[k]].text,
                    absl::StrCat("document ", ordinals[k], " by index"));
  }
  auto again = corpus::CorpusIndex::Deserialize(index->Serialize(), path);
  QCAL_FUZZ_CHECK(again.ok() && again->num_documents() == index->num_documents(),
                  "Serialize round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = qcal::fuzz::ScratchDir();
  const char* bytes = reinterpret_cast<const char*>(data);
  const std::string jsonl = dir + "/corpus.jsonl", text = dir + "/corpus.txt";
  qcal::fuzz::WriteFile(jsonl, bytes, size);
  qcal::fuzz::WriteFile(text, bytes, size);

  // The default limits with a 64 kB buffer instead of 1 MiB (inputs are smaller
  // than either; 1 MiB per open would make runs slow), and tiny ones.
  corpus::CorpusReadOptions normal, small;
  normal.buffer_bytes = 64 << 10;
  small.buffer_bytes = 7;
  small.max_record_bytes = 64;
  // An input that is zstd itself may declare a window of up to 128 MB, which the
  // decoder allocates on every open: it is read once per option set, as JSONL only.
  const bool compressed = LooksCompressed(data, size);
  for (const std::string& path : {jsonl, text}) {
    if (compressed && path == text) break;
    ReadResult plain[2], tiny[2];  // by skip_bad_records
    for (bool skip : {false, true}) {
      normal.skip_bad_records = small.skip_bad_records = skip;
      plain[skip] = ReadAll(path, normal);
      tiny[skip] = ReadAll(path, small);
      QCAL_FUZZ_CHECK(tiny[skip].stats.bad_record_examples.size() <=
                          corpus::CorpusStats::kMaxExamples,
                      "examples bounded");
    }
    CheckIndex(path, small, tiny[true]);
    if (compressed) continue;  // the "plain" file is zstd already

    // The same content compressed reads the same: one frame (strict, default
    // limits), two frames (skipping, tiny limits; and through an index).
    const std::string zpath = path + ".zst";
    const std::string one = Zstd(bytes, size);
    qcal::fuzz::WriteFile(zpath, one);
    normal.skip_bad_records = false;
    const ReadResult z = ReadAll(zpath, normal);
    QCAL_FUZZ_CHECK(z.code == plain[false].code && SameDocs(z, plain[false]),
                    "zstd reads like plain");
    const std::string two = Zstd(bytes, size / 2) + Zstd(bytes + size / 2, size - size / 2);
    qcal::fuzz::WriteFile(zpath, two);
    small.skip_bad_records = true;
    const ReadResult z2 = ReadAll(zpath, small);
    QCAL_FUZZ_CHECK(z2.code == tiny[true].code && SameDocs(z2, tiny[true]),
                    "two frames read like plain");
    CheckIndex(zpath, small, z2);
    // Cut short: DATA_LOSS, or (skipping) a counted truncation.
    if (one.size() > 1) {
      qcal::fuzz::WriteFile(zpath, one.data(), one.size() - 1 - size % (one.size() - 1));
      normal.skip_bad_records = size % 2 == 0;
      (void)ReadAll(zpath, normal);
    }
  }
  (void)corpus::CorpusIndex::Deserialize(absl::string_view(bytes, size), jsonl);
  return 0;
}
