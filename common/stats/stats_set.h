// StatsSet: the statistics of every linear module of a model, in first-insertion
// order (the forward execution order, which is the order of mllm's JSON: for llama
// q, k, v, o, gate, up, down per layer, then lm_head).
//
// Thread-safety: const methods may run concurrently; mutation needs external locking.
// Pointers returned by GetOrCreate / FindMutable stay valid until the set is
// destroyed or moved from (elements live in a deque and are never erased).
#ifndef QCAL_COMMON_STATS_STATS_SET_H_
#define QCAL_COMMON_STATS_STATS_SET_H_

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/stats/tensor_stats.h"

namespace qcal::stats {

// Both sides of one linear module.
struct LinearStats {
  LinearStats(std::string name, int64_t in_channels, int64_t out_channels)
      : name(std::move(name)), input(in_channels), output(out_channels) {}
  LinearStats(std::string name, TensorStats input, TensorStats output)
      : name(std::move(name)), input(std::move(input)), output(std::move(output)) {}

  std::string name;    // e.g. "model.layers.0.self_attn.q_proj"
  TensorStats input;   // channels = in_features
  TensorStats output;  // channels = out_features
};

class StatsSet {
 public:
  // Copyable and movable (moving invalidates pointers into the moved-from set).
  StatsSet() = default;

  // The entry for `name`, appended empty when new. INVALID_ARGUMENT for an empty
  // name or channels outside [1, kMaxChannels]; FAILED_PRECONDITION when it exists with other channels.
  absl::StatusOr<LinearStats*> GetOrCreate(absl::string_view name, int64_t in_channels,
                                           int64_t out_channels);
  // Appends a complete entry. INVALID_ARGUMENT for an empty or duplicate name.
  absl::Status Add(LinearStats linear);

  // nullptr when absent.
  const LinearStats* Find(absl::string_view name) const;
  LinearStats* FindMutable(absl::string_view name);

  size_t size() const { return linears_.size(); }
  bool empty() const { return linears_.empty(); }
  // In insertion order.
  const LinearStats& at(size_t i) const { return linears_[i]; }
  std::deque<LinearStats>::const_iterator begin() const { return linears_.begin(); }
  std::deque<LinearStats>::const_iterator end() const { return linears_.end(); }

  // Tokens run through the model (counted by the caller, e.g. non-padding tokens of
  // a batch); merged by addition. Independent of the per-tensor row counts (an MoE
  // expert or a last-token-only lm_head sees fewer rows).
  int64_t tokens() const { return tokens_; }
  // INVALID_ARGUMENT when negative or overflowing.
  absl::Status AddTokens(int64_t n);

  // Merges `other` into this: entries with the same name merge, new names are
  // appended in other's order, tokens add. On a channel mismatch
  // (FAILED_PRECONDITION, naming the module) nothing is changed.
  absl::Status Merge(const StatsSet& other);

 private:
  std::deque<LinearStats> linears_;
  absl::flat_hash_map<std::string, size_t> index_;
  int64_t tokens_ = 0;
};

}  // namespace qcal::stats

#endif  // QCAL_COMMON_STATS_STATS_SET_H_
