#include "worker/service/model_cache.h"

#include "absl/strings/str_cat.h"

namespace qcal {
namespace {

absl::StatusOr<text::SamplingOptions> SamplingFromProto(const v1::SamplingOptions& p) {
  text::SamplingOptions o;
  o.num_samples = p.num_samples();
  o.seq_len = p.seq_len();
  auto mode = text::ParseSamplingMode(p.mode());
  if (!mode.ok()) return mode.status();
  o.mode = *mode;
  auto order = text::ParseSamplingOrder(p.order());
  if (!order.ok()) return order.status();
  o.order = *order;
  o.seed = p.seed();
  o.skip_docs = p.skip_docs();
  o.skip_bad_lines = p.skip_bad_lines();
  o.add_special_tokens = !p.no_special_tokens();
  absl::Status st = text::ValidateSamplingOptions(o);
  if (!st.ok()) return st;
  return o;
}

}  // namespace

absl::StatusOr<CalibrationEngine*> ModelCache::Engine(const v1::Task& task) {
  if (engine_ && model_ == task.model() && batch_ == task.batch_size()) return engine_.get();
  EngineOptions eo = options_;
  eo.batch_size = task.batch_size();
  engine_.reset();
  model_.clear();
  auto e = CalibrationEngine::Load(task.model(), eo);
  if (!e.ok()) return e.status();
  engine_ = std::move(e).value();
  model_ = task.model();
  batch_ = task.batch_size();
  return engine_.get();
}

absl::StatusOr<std::vector<std::vector<int32_t>>> ModelCache::Samples(const v1::Task& task) {
  const std::string key = absl::StrCat(task.model(), "\n", task.corpus(), "\n",
                                       task.sampling().SerializeAsString());
  if (!sampler_ || sampler_key_ != key) {
    sampler_.reset();
    auto opts = SamplingFromProto(task.sampling());
    if (!opts.ok()) return opts.status();
    auto s = text::OpenCorpusSampler(task.model(), task.corpus(), *opts);
    if (!s.ok()) return s.status();
    sampler_ = std::make_unique<text::CorpusSampler>(std::move(s).value());
    sampler_key_ = key;
  }
  return sampler_->sampler->Samples(task.sample_begin(), task.sample_end());
}

}  // namespace qcal
