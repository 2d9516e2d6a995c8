#include "common/stats/stats_set.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qcal::stats {

absl::StatusOr<LinearStats*> StatsSet::GetOrCreate(absl::string_view name,
                                                   int64_t in_channels,
                                                   int64_t out_channels) {
  if (name.empty()) return absl::InvalidArgumentError("empty linear module name");
  if (in_channels < 1 || out_channels < 1 || in_channels > kMaxChannels ||
      out_channels > kMaxChannels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "linear '", name, "': channels ", in_channels, " -> ", out_channels));
  }
  if (LinearStats* found = FindMutable(name)) {
    if (found->input.channels() != in_channels ||
        found->output.channels() != out_channels) {
      return absl::FailedPreconditionError(absl::StrCat(
          "linear '", name, "' has ", found->input.channels(), " -> ",
          found->output.channels(), " channels, not ", in_channels, " -> ",
          out_channels));
    }
    return found;
  }
  index_.emplace(std::string(name), linears_.size());
  linears_.emplace_back(std::string(name), in_channels, out_channels);
  return &linears_.back();
}

absl::Status StatsSet::Add(LinearStats linear) {
  if (linear.name.empty()) return absl::InvalidArgumentError("empty linear module name");
  if (index_.contains(linear.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("duplicate linear module '", linear.name, "'"));
  }
  index_.emplace(linear.name, linears_.size());
  linears_.push_back(std::move(linear));
  return absl::OkStatus();
}

const LinearStats* StatsSet::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &linears_[it->second];
}

LinearStats* StatsSet::FindMutable(absl::string_view name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &linears_[it->second];
}

absl::Status StatsSet::AddTokens(int64_t n) {
  if (n < 0 || n > std::numeric_limits<int64_t>::max() - tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot add ", n, " tokens"));
  }
  tokens_ += n;
  return absl::OkStatus();
}

absl::Status StatsSet::Merge(const StatsSet& other) {
  if (&other == this) {
    const StatsSet copy = other;
    return Merge(copy);
  }
  // Check everything first so that a failure changes nothing.
  if (other.tokens_ > std::numeric_limits<int64_t>::max() - tokens_) {
    return absl::FailedPreconditionError("merged token count overflows");
  }
  for (const LinearStats& theirs : other.linears_) {
    const LinearStats* ours = Find(theirs.name);
    if (ours == nullptr) continue;
    if (ours->input.channels() != theirs.input.channels() ||
        ours->output.channels() != theirs.output.channels()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "linear '", theirs.name, "': cannot merge ", theirs.input.channels(), " -> ",
          theirs.output.channels(), " channels into ", ours->input.channels(), " -> ",
          ours->output.channels()));
    }
    if (ours->input.count() > std::numeric_limits<int64_t>::max() - theirs.input.count() ||
        ours->output.count() >
            std::numeric_limits<int64_t>::max() - theirs.output.count()) {
      return absl::FailedPreconditionError(
          absl::StrCat("linear '", theirs.name, "': merged row count overflows"));
    }
  }
  for (const LinearStats& theirs : other.linears_) {
    LinearStats* ours = FindMutable(theirs.name);
    if (ours == nullptr) {
      index_.emplace(theirs.name, linears_.size());
      linears_.push_back(theirs);
      continue;
    }
    // Cannot fail: channels and overflow were checked above.
    absl::Status in = ours->input.Merge(theirs.input);
    absl::Status out = ours->output.Merge(theirs.output);
    if (!in.ok() || !out.ok()) {
      return absl::InternalError(absl::StrCat("linear '", theirs.name,
                                              "': merge failed after checks"));
    }
  }
  tokens_ += other.tokens_;
  return absl::OkStatus();
}

}  // namespace qcal::stats
