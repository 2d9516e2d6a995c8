#include "worker/text/sampler.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/status_macros.h"
#include "worker/text/permutation.h"

namespace qcal::text {
namespace {

// Documents are read in batches of about this much corpus text.
constexpr uint64_t kBatchBytes = 64 << 20;
// Size assumed for the last document of a corpus (its end is not indexed).
constexpr uint64_t kLastDocumentGuess = 1 << 20;

// The document order of SamplingOptions, produced one document at a time.
class OrderCursor {
 public:
  OrderCursor(const SamplingOptions& options, int64_t num_documents)
      : skip_(options.skip_docs),
        available_(std::max<int64_t>(0, num_documents - options.skip_docs)),
        shuffled_(options.order == SamplingOrder::kShuffled),
        shuffle_(available_, options.seed) {}

  int64_t available() const { return available_; }
  bool done() const { return produced_ >= available_; }
  int64_t Next() {
    const int64_t k = produced_++;
    return skip_ + (shuffled_ ? shuffle_.Next() : k);
  }

 private:
  int64_t skip_;
  int64_t available_;
  bool shuffled_;
  FisherYates shuffle_;
  int64_t produced_ = 0;
};

uint64_t EstimateBytes(const corpus::CorpusIndex& index, int64_t ordinal) {
  if (ordinal + 1 < index.num_documents()) {
    return index.position(ordinal + 1).offset - index.position(ordinal).offset;
  }
  return kLastDocumentGuess;
}

// Calls fn(i, text) for every i in order, reading the documents in batches.
absl::Status ForEachText(const corpus::CorpusIndex& index, absl::Span<const int64_t> ordinals,
                         const std::function<absl::Status(size_t, std::string&)>& fn) {
  size_t i = 0;
  while (i < ordinals.size()) {
    size_t j = i;
    uint64_t bytes = 0;
    while (j < ordinals.size()) {
      const uint64_t b = EstimateBytes(index, ordinals[j]);
      if (j > i && bytes + b > kBatchBytes) break;
      bytes += b;
      ++j;
    }
    QCAL_ASSIGN_OR_RETURN(std::vector<std::string> texts,
                          index.ReadDocuments(ordinals.subspan(i, j - i)));
    for (size_t k = 0; k < texts.size(); ++k) QCAL_RETURN_IF_ERROR(fn(i + k, texts[k]));
    i = j;
  }
  return absl::OkStatus();
}

// A document's tokens in the packed stream: its ids, then eos (unless the
// tokenizer already ended it with eos).
absl::StatusOr<std::vector<int32_t>> PackedTokens(const Tokenizer& tokenizer,
                                                  const std::string& text,
                                                  const SamplingOptions& options) {
  QCAL_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                        tokenizer.Encode(text, options.add_special_tokens));
  const int32_t eos = *tokenizer.eos_id();
  if (ids.empty() || ids.back() != eos) ids.push_back(eos);
  return ids;
}

// Document mode: the document's ids cut to seq_len as Hugging Face truncates
// (the content is shortened, the special tokens around it are kept).
absl::StatusOr<std::vector<int32_t>> DocumentTokens(const Tokenizer& tokenizer,
                                                    const std::string& text,
                                                    const SamplingOptions& options) {
  QCAL_ASSIGN_OR_RETURN(std::vector<int32_t> content, tokenizer.Encode(text, false));
  const auto& pre = tokenizer.prefix_tokens();
  const auto& suf = tokenizer.suffix_tokens();
  const int64_t L = options.seq_len;
  if (!options.add_special_tokens) {
    if (static_cast<int64_t>(content.size()) > L) content.resize(L);
    return content;
  }
  const int64_t specials = static_cast<int64_t>(pre.size() + suf.size());
  if (specials <= L && static_cast<int64_t>(content.size()) > L - specials) {
    content.resize(L - specials);
  }
  std::vector<int32_t> ids;
  ids.reserve(pre.size() + content.size() + suf.size());
  ids.insert(ids.end(), pre.begin(), pre.end());
  ids.insert(ids.end(), content.begin(), content.end());
  ids.insert(ids.end(), suf.begin(), suf.end());
  if (static_cast<int64_t>(ids.size()) > L) ids.resize(L);
  return ids;
}

absl::Status NeedEos(const Tokenizer& tokenizer) {
  if (tokenizer.eos_id().has_value()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "--mode packed joins documents with the end-of-text token, and the tokenizer (",
      tokenizer.Describe(), ") has none; use --mode document"));
}

absl::Status TooFewDocuments(const corpus::CorpusIndex& index, const SamplingOptions& options,
                             int64_t count) {
  return absl::InvalidArgumentError(absl::StrCat(
      "corpus ", index.path(), " has ", index.num_documents(), " documents; --skip-docs ",
      options.skip_docs, " leaves ", std::max<int64_t>(0, index.num_documents() - options.skip_docs),
      ", fewer than the ", count, " needed (--num-samples ", options.num_samples, ")"));
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> DocumentOrder(const SamplingOptions& options,
                                                   int64_t num_documents, int64_t count) {
  OrderCursor cursor(options, num_documents);
  if (count < 0 || count > cursor.available()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--skip-docs ", options.skip_docs, " leaves ", cursor.available(), " of ",
        num_documents, " documents, fewer than ", count));
  }
  std::vector<int64_t> order;
  order.reserve(count);
  for (int64_t i = 0; i < count; ++i) order.push_back(cursor.Next());
  return order;
}

std::string PackingPlan::Serialize() const {
  std::string out = "QCALPKP1";
  auto put = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  put(ordinals.size());
  for (int64_t o : ordinals) put(static_cast<uint64_t>(o));
  for (int64_t s : starts) put(static_cast<uint64_t>(s));
  return out;
}

absl::StatusOr<PackingPlan> PackingPlan::Deserialize(absl::string_view bytes) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("not a packing plan: ", what));
  };
  if (bytes.substr(0, 8) != "QCALPKP1") return bad("bad magic");
  bytes.remove_prefix(8);
  auto get = [&](int64_t* v) {
    if (bytes.size() < 8) return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    bytes.remove_prefix(8);
    *v = static_cast<int64_t>(u);
    return true;
  };
  int64_t n;
  if (!get(&n) || n < 0 || static_cast<uint64_t>(n) != (bytes.size() / 8 - 1) / 2 ||
      bytes.size() != static_cast<uint64_t>(2 * n + 1) * 8) {
    return bad("wrong size");
  }
  PackingPlan plan;
  plan.ordinals.resize(n);
  plan.starts.resize(n + 1);
  for (int64_t& o : plan.ordinals) get(&o);
  for (int64_t& s : plan.starts) get(&s);
  return plan;
}

absl::StatusOr<PackingPlan> BuildPackingPlan(const Tokenizer& tokenizer,
                                             const corpus::CorpusIndex& index,
                                             const SamplingOptions& options) {
  QCAL_RETURN_IF_ERROR(ValidateSamplingOptions(options));
  QCAL_RETURN_IF_ERROR(NeedEos(tokenizer));
  const int64_t needed = options.num_samples * options.seq_len;
  OrderCursor cursor(options, index.num_documents());
  if (cursor.available() == 0) return TooFewDocuments(index, options, 1);
  PackingPlan plan;
  plan.starts.push_back(0);
  int64_t total = 0;
  while (total < needed && !cursor.done()) {
    // Enough documents for the tokens still missing, at the average so far.
    const int64_t docs = static_cast<int64_t>(plan.ordinals.size());
    int64_t want = 16;
    if (docs > 0) {
      const double per_doc = static_cast<double>(total) / docs;
      want = static_cast<int64_t>((needed - total) / per_doc * 1.1) + 1;
    }
    want = std::clamp<int64_t>(want, 1, 1 << 20);
    std::vector<int64_t> batch;
    while (static_cast<int64_t>(batch.size()) < want && !cursor.done()) {
      batch.push_back(cursor.Next());
    }
    QCAL_RETURN_IF_ERROR(ForEachText(index, batch, [&](size_t k, std::string& text) {
      if (total >= needed) return absl::OkStatus();
      QCAL_ASSIGN_OR_RETURN(std::vector<int32_t> ids, PackedTokens(tokenizer, text, options));
      total += static_cast<int64_t>(ids.size());
      plan.ordinals.push_back(batch[k]);
      plan.starts.push_back(total);
      return absl::OkStatus();
    }));
  }
  if (total < needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "corpus ", index.path(), " gives only ", total, " tokens in packed mode (",
        cursor.available(), " documents after --skip-docs ", options.skip_docs,
        "); --num-samples ", options.num_samples, " x --seq-len ", options.seq_len, " needs ",
        needed));
  }
  return plan;
}

absl::StatusOr<std::unique_ptr<Sampler>> Sampler::Create(const Tokenizer* tokenizer,
                                                         const corpus::CorpusIndex* index,
                                                         const SamplingOptions& options,
                                                         std::optional<PackingPlan> plan) {
  QCAL_RETURN_IF_ERROR(ValidateSamplingOptions(options));
  if (index->options().skip_bad_records != options.skip_bad_lines) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the corpus index of ", index->path(), " was built ",
        index->options().skip_bad_records ? "skipping" : "not skipping",
        " bad records, the options say ", options.skip_bad_lines ? "" : "not ",
        "to (--skip-bad-lines)"));
  }
  std::unique_ptr<Sampler> sampler(new Sampler(tokenizer, index, options));
  if (options.mode == SamplingMode::kDocument) {
    if (index->num_documents() - options.skip_docs < options.num_samples) {
      return TooFewDocuments(*index, options, options.num_samples);
    }
    return sampler;
  }
  QCAL_RETURN_IF_ERROR(NeedEos(*tokenizer));
  if (!plan.has_value()) {
    QCAL_ASSIGN_OR_RETURN(plan, BuildPackingPlan(*tokenizer, *index, options));
  } else {
    const PackingPlan& p = *plan;
    bool ok = p.starts.size() == p.ordinals.size() + 1 && p.starts[0] == 0 &&
              p.total_tokens() >= options.num_samples * options.seq_len;
    for (size_t k = 0; ok && k + 1 < p.starts.size(); ++k) ok = p.starts[k] < p.starts[k + 1];
    if (ok) {
      auto order = DocumentOrder(options, index->num_documents(),
                                 static_cast<int64_t>(p.ordinals.size()));
      ok = order.ok() && *order == p.ordinals;
    }
    if (!ok) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the packing plan does not fit these options (", SamplingOptionsToFlags(options),
          ") and corpus ", index->path()));
    }
  }
  sampler->plan_ = std::move(plan);
  return sampler;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> Sampler::Samples(int64_t begin,
                                                                   int64_t end) const {
  if (begin < 0 || end < begin || end > options_.num_samples) {
    return absl::OutOfRangeError(absl::StrCat("samples [", begin, ", ", end,
                                              ") are not within [0, ", options_.num_samples,
                                              ")"));
  }
  if (begin == end) return std::vector<std::vector<int32_t>>();
  return options_.mode == SamplingMode::kDocument ? DocumentSamples(begin, end)
                                                  : PackedSamples(begin, end);
}

absl::StatusOr<std::vector<std::vector<int32_t>>> Sampler::DocumentSamples(int64_t begin,
                                                                           int64_t end) const {
  QCAL_ASSIGN_OR_RETURN(std::vector<int64_t> order,
                        DocumentOrder(options_, index_->num_documents(), end));
  absl::Span<const int64_t> ordinals = absl::MakeConstSpan(order).subspan(begin);
  std::vector<std::vector<int32_t>> samples(ordinals.size());
  QCAL_RETURN_IF_ERROR(ForEachText(*index_, ordinals, [&](size_t k, std::string& text) {
    QCAL_ASSIGN_OR_RETURN(samples[k], DocumentTokens(*tokenizer_, text, options_));
    return absl::OkStatus();
  }));
  return samples;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> Sampler::PackedSamples(int64_t begin,
                                                                         int64_t end) const {
  const PackingPlan& plan = *plan_;
  const int64_t L = options_.seq_len;
  const int64_t lo = begin * L, hi = end * L;
  // Documents a..b-1 overlap the stream range [lo, hi).
  const size_t a = static_cast<size_t>(
      std::upper_bound(plan.starts.begin(), plan.starts.end(), lo) - plan.starts.begin() - 1);
  const size_t b = static_cast<size_t>(
      std::lower_bound(plan.starts.begin(), plan.starts.end(), hi) - plan.starts.begin());
  absl::Span<const int64_t> ordinals = absl::MakeConstSpan(plan.ordinals).subspan(a, b - a);
  std::vector<int32_t> stream;  // tokens [starts[a], starts[b])
  stream.reserve(plan.starts[b] - plan.starts[a]);
  QCAL_RETURN_IF_ERROR(ForEachText(*index_, ordinals, [&](size_t k, std::string& text) {
    QCAL_ASSIGN_OR_RETURN(std::vector<int32_t> ids, PackedTokens(*tokenizer_, text, options_));
    const int64_t want = plan.starts[a + k + 1] - plan.starts[a + k];
    if (static_cast<int64_t>(ids.size()) != want) {
      return absl::FailedPreconditionError(absl::StrCat(
          "document ", ordinals[k], " of ", index_->path(), " (line ",
          index_->position(ordinals[k]).line, ") has ", ids.size(),
          " tokens and the packing plan says ", want,
          ": the corpus or tokenizer changed since the plan was built"));
    }
    stream.insert(stream.end(), ids.begin(), ids.end());
    return absl::OkStatus();
  }));
  std::vector<std::vector<int32_t>> samples;
  samples.reserve(end - begin);
  for (int64_t s = begin; s < end; ++s) {
    const int64_t from = s * L - plan.starts[a];
    samples.emplace_back(stream.begin() + from, stream.begin() + from + L);
  }
  return samples;
}

absl::StatusOr<CorpusSampler> OpenCorpusSampler(const std::string& model_dir,
                                                const std::string& corpus_path,
                                                const SamplingOptions& options,
                                                std::optional<PackingPlan> plan) {
  QCAL_RETURN_IF_ERROR(ValidateSamplingOptions(options));
  CorpusSampler out;
  QCAL_ASSIGN_OR_RETURN(out.tokenizer, LoadTokenizer(model_dir));
  QCAL_ASSIGN_OR_RETURN(corpus::CorpusIndex index,
                        corpus::CorpusIndex::Build(corpus_path, CorpusReadOptionsFor(options)));
  out.index = std::make_unique<corpus::CorpusIndex>(std::move(index));
  QCAL_ASSIGN_OR_RETURN(out.sampler, Sampler::Create(out.tokenizer.get(), out.index.get(),
                                                     options, std::move(plan)));
  return out;
}

}  // namespace qcal::text
