// Internal to qcal_text: a bounded cache from a word (bytes) to its token ids,
// shared by the tokenizers. Cleared when full, so memory stays bounded while it
// adapts to the text being encoded.
//
// Thread-safe (a reader/writer mutex taken once per batch of words, not per word:
// with Debian's abseil, deadlock detection makes each lock round cost ~100 ns).
#ifndef QCAL_WORKER_TEXT_ID_CACHE_H_
#define QCAL_WORKER_TEXT_ID_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace qcal::text {

class IdCache {
 public:
  IdCache(size_t capacity, size_t max_key_bytes)
      : capacity_(capacity), max_key_bytes_(max_key_bytes) {}

  // Appends the ids of every word of `words`, in order, to `ids`: from the cache,
  // or from `encode(word, ids)` (an absl::Status-returning callable that appends
  // the word's ids), whose results are then cached. `encode` runs under a reader
  // lock and must not use this cache. Returns the first error of `encode`.
  template <typename Encode>
  absl::Status EncodeAll(absl::Span<const absl::string_view> words, std::vector<int32_t>* ids,
                         Encode encode) const {
    std::vector<std::pair<absl::string_view, std::pair<size_t, size_t>>> fresh;
    {
      absl::ReaderMutexLock lock(&mu_);
      for (absl::string_view w : words) {
        const bool cacheable = w.size() <= max_key_bytes_;
        if (cacheable) {
          auto it = map_.find(w);
          if (it != map_.end()) {
            ids->insert(ids->end(), it->second.begin(), it->second.end());
            continue;
          }
        }
        const size_t before = ids->size();
        absl::Status s = encode(w, ids);
        if (!s.ok()) return s;
        if (cacheable) fresh.push_back({w, {before, ids->size()}});
      }
    }
    if (fresh.empty()) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    for (const auto& [w, range] : fresh) {
      if (map_.size() >= capacity_) map_.clear();
      map_.emplace(std::string(w),
                   std::vector<int32_t>(ids->begin() + range.first, ids->begin() + range.second));
    }
    return absl::OkStatus();
  }

 private:
  const size_t capacity_;
  const size_t max_key_bytes_;
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> map_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_ID_CACHE_H_
