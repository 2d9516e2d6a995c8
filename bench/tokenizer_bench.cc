// Tokenizer throughput on the calibration corpus, next to a plain byte copy.
//
//   tokenizer_bench [CORPUS [TOKENIZER_DIR...]]
//
// Defaults: tests/data/corpus/calib.jsonl.zst with tokenizers/bpe4k and
// tokenizers/spm4k. The corpus text is read into memory first (reading and
// decompression are not timed); each tokenizer then encodes every document once
// from a fresh load (cold BPE cache) and once more (warm cache). Single thread.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/corpus/corpus_reader.h"
#include "worker/text/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string data = QCAL_TEST_DATA_DIR;
  const std::string corpus = argc > 1 ? argv[1] : data + "/corpus/calib.jsonl.zst";
  std::vector<std::string> dirs;
  for (int i = 2; i < argc; ++i) dirs.push_back(argv[i]);
  if (dirs.empty()) dirs = {data + "/tokenizers/bpe4k", data + "/tokenizers/spm4k"};

  auto reader = qcal::corpus::CorpusReader::Open(corpus);
  if (!reader.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(reader.status().message()).c_str());
    return 1;
  }
  std::vector<std::string> texts;
  size_t bytes = 0;
  qcal::corpus::Document doc;
  for (;;) {
    auto more = (*reader)->Next(&doc);
    if (!more.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(more.status().message()).c_str());
      return 1;
    }
    if (!*more) break;
    bytes += doc.text.size();
    texts.push_back(std::move(doc.text));
  }
  const double mb = bytes / 1e6;
  std::printf("corpus: %s, %zu documents, %.2f MB of text\n\n", corpus.c_str(), texts.size(), mb);

  // Baseline: copy every document's bytes (best of 5 passes).
  std::vector<char> sink(1 << 20);
  double copy_s = 1e30;
  size_t checksum = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    for (const std::string& t : texts) {
      std::string copy(t);
      std::memcpy(sink.data(), copy.data(), std::min(copy.size(), sink.size()));
      checksum += static_cast<unsigned char>(sink[copy.size() / 2 % sink.size()]);
    }
    copy_s = std::min(copy_s, Seconds(t0, Clock::now()));
  }
  const double copy_mbs = mb / copy_s;
  std::printf("%-34s %10s %12s %12s %10s\n", "", "MB/s", "copy/this", "tokens", "bytes/tok");
  std::printf("%-34s %10.1f %12s %12s %10s\n", "byte copy (baseline)", copy_mbs, "1.0x", "-", "-");

  for (const std::string& dir : dirs) {
    auto tok = qcal::text::LoadTokenizer(dir);
    if (!tok.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(tok.status().message()).c_str());
      return 1;
    }
    const std::string name = dir.substr(dir.find_last_of('/') + 1);
    for (const char* pass : {"cold", "warm"}) {
      size_t tokens = 0;
      auto t0 = Clock::now();
      for (const std::string& t : texts) {
        auto ids = (*tok)->Encode(t, /*add_special_tokens=*/false);
        if (!ids.ok()) {
          std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(ids.status().message()).c_str());
          return 1;
        }
        tokens += ids->size();
      }
      const double s = Seconds(t0, Clock::now());
      const std::string label = name + " (" + ((*tok)->kind() == qcal::text::TokenizerKind::kByteLevelBpe
                                                   ? "byte-level BPE"
                                                   : "SentencePiece") + ", " + pass + ")";
      char ratio[32];
      std::snprintf(ratio, sizeof(ratio), "%.0fx", copy_mbs / (mb / s));
      std::printf("%-34s %10.2f %12s %12zu %10.2f\n", label.c_str(), mb / s, ratio, tokens,
                  static_cast<double>(bytes) / tokens);
    }
  }
  std::printf("\n(checksum %zu)\n", checksum % 10);
  return 0;
}
