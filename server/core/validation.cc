// Coordinator: validation of job specs (SubmitJob).

#include "server/core/coordinator.h"

#include <sys/stat.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_index.h"
#include "common/model_config.h"
#include "common/model_files.h"
#include "common/status_macros.h"
#include "server/core/path_policy.h"
#include "server/core/records.h"
#include "server/core/sampling_checks.h"

namespace qcal::server {

namespace {

absl::Status CheckRange(const std::string& name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " = ", v, " is out of range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status NormalizeSampling(const std::string& field, const SamplingDefaults& d,
                               v1::SamplingOptions* s) {
  if (!s->has_num_samples()) s->set_num_samples(d.num_samples);
  if (!s->has_seq_len()) s->set_seq_len(d.seq_len);
  if (s->mode().empty()) s->set_mode("document");
  if (s->order().empty()) s->set_order("shuffled");
  if (!s->has_seed()) s->set_seed(42);
  QCAL_RETURN_IF_ERROR(CheckRange(field + ".num_samples", s->num_samples(), 1, kMaxSamples));
  QCAL_RETURN_IF_ERROR(CheckRange(field + ".seq_len", s->seq_len(), d.min_seq_len, 1 << 20));
  QCAL_RETURN_IF_ERROR(CheckRange(field + ".skip_docs", s->skip_docs(), 0, int64_t{1} << 40));
  if (s->mode() != "document" && s->mode() != "packed") {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".mode \"", s->mode(), "\" is not document or packed"));
  }
  if (s->order() != "sequential" && s->order() != "shuffled") {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".order \"", s->order(), "\" is not sequential or shuffled"));
  }
  return absl::OkStatus();
}

absl::Status CheckCorpusFor(const std::string& what, const std::string& path,
                            const std::string& field, const v1::SamplingOptions& s) {
  corpus::CorpusReadOptions read;
  read.skip_bad_records = s.skip_bad_lines();
  QCAL_ASSIGN_OR_RETURN(corpus::CorpusStats cs, corpus::ValidateCorpus(path, read));
  const int64_t usable = cs.documents - s.skip_docs();
  if (usable <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " has no usable document",
                                                   s.skip_docs() ? " after " + field + ".skip_docs" : ""));
  }
  if (s.mode() == "document" && usable < s.num_samples()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, " has ", usable, " usable documents, fewer than ", field, ".num_samples ",
        s.num_samples(), " (document mode takes one sample per document)"));
  }
  return absl::OkStatus();
}

namespace {

// A model folder inside a root can still hold links to files elsewhere: each file
// qcal reads in it must resolve inside a root as a regular file. This covers
// config.json and the tokenizer files; the weights (the index and every shard it
// names) are checked as ModelFiles::Open comes to them.
absl::Status CheckFolderFilesInside(const PathPolicy& paths, const std::string& field,
                                    const std::string& dir) {
  std::vector<std::string> names = {"config.json"};
  const std::vector<std::string>& tokenizer = TokenizerFiles();
  names.insert(names.end(), tokenizer.begin(), tokenizer.end());
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;  // absent: the readers say what is missing
    QCAL_RETURN_IF_ERROR(paths.ResolveFile(absl::StrCat(field, "'s ", name), path).status());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSeqLenFits(const std::string& field, const v1::SamplingOptions& s,
                             const ModelConfig& config) {
  if (s.seq_len() > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".seq_len ", s.seq_len(),
                                                   " exceeds the model's max_position_embeddings ",
                                                   config.max_position_embeddings));
  }
  return absl::OkStatus();
}

absl::Status Coordinator::ValidateSpec(v1::JobSpec& spec, v1::Job& job,
                                       std::vector<std::string>* names, std::vector<int64_t>* in,
                                       std::vector<int64_t>* out) const {
  v1::SamplingOptions* s = spec.mutable_sampling();
  QCAL_RETURN_IF_ERROR(NormalizeSampling("sampling", SamplingDefaults{}, s));
  if (spec.shard_size() == 0) spec.set_shard_size(16);
  if (spec.report_interval_seconds() == 0) spec.set_report_interval_seconds(30);
  if (spec.batch_size() == 0) spec.set_batch_size(8);
  QCAL_RETURN_IF_ERROR(CheckRange("shard_size", spec.shard_size(), 1, 4096));
  QCAL_RETURN_IF_ERROR(CheckRange("report_interval_seconds", spec.report_interval_seconds(), 1, 3600));
  QCAL_RETURN_IF_ERROR(CheckRange("batch_size", spec.batch_size(), 1, 1024));
  const int64_t shards = (s->num_samples() + spec.shard_size() - 1) / spec.shard_size();
  if (shards > kMaxShardsPerJob) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling.num_samples ", s->num_samples(), " / shard_size ", spec.shard_size(), " = ",
        shards, " shards, above the limit of ", kMaxShardsPerJob,
        " per job; raise shard_size to at least ",
        (s->num_samples() + kMaxShardsPerJob - 1) / kMaxShardsPerJob));
  }
  if (spec.display_name().size() > 256) {
    return absl::InvalidArgumentError("display_name is longer than 256 bytes");
  }

  QCAL_ASSIGN_OR_RETURN(std::string model, paths_.ResolveFolder("spec.model", spec.model()));
  QCAL_ASSIGN_OR_RETURN(std::string corpus, paths_.ResolveFile("spec.corpus", spec.corpus()));
  QCAL_RETURN_IF_ERROR(CheckFolderFilesInside(paths_, "spec.model", model));
  QCAL_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model));
  QCAL_RETURN_IF_ERROR(CheckSeqLenFits("sampling", *s, config));
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<ModelFiles> files,
                        ModelFiles::Open(model, [this](const std::string& path) {
                          return paths_.ResolveFile("spec.model's weights file", path).status();
                        }));
  QCAL_RETURN_IF_ERROR(CheckModelFiles(*files, config));
  QCAL_RETURN_IF_ERROR(CheckCorpusFor("spec.corpus", corpus, "sampling", *s));
  job.set_resolved_model(model);
  job.set_resolved_corpus(corpus);
  job.set_architecture(config.model_type);
  for (const LinearModule& l : LinearModules(config)) {
    names->push_back(l.name);
    in->push_back(l.in_features);
    out->push_back(l.out_features);
  }
  job.set_linear_modules(static_cast<int32_t>(names->size()));
  return absl::OkStatus();
}

}  // namespace qcal::server
