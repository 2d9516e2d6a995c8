#include "worker/text/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "worker/text/byte_level.h"

namespace qcal::text {
namespace {

// Words up to this many symbols merge by scanning for the best pair; longer ones
// use a priority queue (same result, O(n log n)).
constexpr size_t kScanLimit = 48;
constexpr int32_t kNoMerge = INT32_MAX;

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t rank;     // rank of the merge (this, next), kNoMerge if none
  int32_t merged;   // its result
  bool alive;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const std::vector<std::pair<std::string, int32_t>>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges,
    const BpeModelOptions& options) {
  std::unique_ptr<BpeModel> model(new BpeModel(options));
  absl::flat_hash_map<std::string, int32_t> token_to_id;
  token_to_id.reserve(vocab.size());
  for (const auto& [token, id] : vocab) {
    token_to_id.emplace(token, id);
    if (std::optional<std::string> bytes = ByteLevelToBytes(token)) {
      model->bytes_to_id_.emplace(std::move(*bytes), id);
    }
  }
  for (int b = 0; b < 256; ++b) {
    std::string token = BytesToByteLevel(std::string(1, static_cast<char>(b)));
    auto it = token_to_id.find(token);
    model->byte_id_[b] = it == token_to_id.end() ? -1 : it->second;
  }
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = token_to_id.find(a);
    auto ib = token_to_id.find(b);
    if (ia == token_to_id.end() || ib == token_to_id.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " (\"", a, "\", \"", b, "\") uses a token not in the vocabulary"));
    }
    auto im = token_to_id.find(a + b);
    if (im == token_to_id.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " (\"", a, "\", \"", b, "\") makes a token not in the vocabulary"));
    }
    // The first occurrence of a pair defines its rank (Hugging Face keeps the last
    // insert of a duplicate, but duplicates do not occur in valid files).
    model->merges_.emplace(Key(ia->second, ib->second),
                           MergeInfo{static_cast<int32_t>(rank), im->second});
  }
  return model;
}

void BpeModel::EncodeWords(absl::Span<const absl::string_view> words,
                           std::vector<int32_t>* ids) const {
  cache_
      .EncodeAll(words, ids,
                 [this](absl::string_view word, std::vector<int32_t>* out) {
                   Merge(word, out);
                   return absl::OkStatus();
                 })
      .IgnoreError();  // Merge cannot fail
}

void BpeModel::Merge(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    auto it = bytes_to_id_.find(word);
    if (it != bytes_to_id_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  for (char c : word) {
    int32_t id = byte_id_[static_cast<unsigned char>(c)];
    if (id < 0) {
      if (!options_.unk_id.has_value()) continue;  // no unk: the byte is dropped
      id = *options_.unk_id;
      if (options_.fuse_unk && !sym.empty() && sym.back().id == id) continue;
    }
    sym.push_back(Symbol{id, static_cast<int32_t>(sym.size()) - 1,
                         static_cast<int32_t>(sym.size()) + 1, kNoMerge, -1, true});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  const int32_t n = static_cast<int32_t>(sym.size());
  auto rank_pair = [&](int32_t i) {
    Symbol& s = sym[i];
    s.rank = kNoMerge;
    if (s.next < 0) return;
    auto it = merges_.find(Key(s.id, sym[s.next].id));
    if (it != merges_.end()) {
      s.rank = it->second.rank;
      s.merged = it->second.merged_id;
    }
  };
  for (int32_t i = 0; i < n; ++i) rank_pair(i);
  // Merges symbol i with its next one.
  auto merge_at = [&](int32_t i) {
    Symbol& s = sym[i];
    Symbol& r = sym[s.next];
    s.id = s.merged;
    r.alive = false;
    s.next = r.next;
    if (s.next >= 0) sym[s.next].prev = i;
    rank_pair(i);
    if (s.prev >= 0) rank_pair(s.prev);
  };

  if (static_cast<size_t>(n) <= kScanLimit) {
    for (;;) {
      int32_t best = -1;
      int32_t best_rank = kNoMerge;
      for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].rank < best_rank) {
          best_rank = sym[i].rank;
          best = i;
        }
      }
      if (best < 0) break;
      merge_at(best);
    }
  } else {
    // (rank, position): the lowest rank first, then the leftmost.
    using Entry = std::pair<int32_t, int32_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
    for (int32_t i = 0; i < n; ++i) {
      if (sym[i].rank != kNoMerge) queue.push({sym[i].rank, i});
    }
    while (!queue.empty()) {
      auto [rank, i] = queue.top();
      queue.pop();
      // Stale entries: the symbol is gone or its pair changed since the push.
      if (!sym[i].alive || sym[i].rank != rank) continue;
      merge_at(i);
      if (sym[i].rank != kNoMerge) queue.push({sym[i].rank, i});
      const int32_t p = sym[i].prev;
      if (p >= 0 && sym[p].rank != kNoMerge) queue.push({sym[p].rank, p});
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids->push_back(sym[i].id);
}

}  // namespace qcal::text
