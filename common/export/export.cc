// WriteExport and WriteFusedFloatModel: validation, the crash-safe output folder and
// provenance.json around the format writers (export.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/quant/clip.h"
#include "common/stats/outputs.h"
#include "common/status_macros.h"

namespace qcal::exporter {
namespace {

namespace fs = std::filesystem;
using internal::WriterResult;

// Writes a folder through "<out>.partial-<pid>-<random>": `fill` writes into it, every
// file and directory is fsynced, then it is renamed to `out` (never replacing one)
// and the parent is fsynced. Stale partial siblings of `out` are removed first; on any
// error the partial folder is removed.
absl::Status WriteFolderAtomically(
    const std::string& out, const std::function<absl::Status(const std::string&)>& fill,
    const std::function<void(const std::string&)>& before_rename = {}) {
  std::error_code ec;
  fs::path target = fs::path(out).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  if (fs::exists(target, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("export folder ", out, " already exists"));
  }
  fs::path parent = target.parent_path();
  if (parent.empty()) parent = ".";
  fs::create_directories(parent, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", parent.string(), ": ", ec.message()));
  const std::string prefix = target.filename().string() + ".partial-";
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    if (absl::StartsWith(it->path().filename().string(), prefix)) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
      if (rm) {
        return absl::InternalError(absl::StrCat("removing stale ", it->path().string(), ": ",
                                                rm.message()));
      }
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", parent.string(), ": ", ec.message()));

  std::random_device rd;
  char tag[32];
  std::snprintf(tag, sizeof(tag), "%d-%08x", static_cast<int>(::getpid()), rd());
  const fs::path partial = parent / (prefix + tag);
  if (!fs::create_directory(partial, ec) || ec) {
    return absl::InternalError(absl::StrCat("creating ", partial.string(), ": ",
                                            ec ? ec.message() : "exists"));
  }
  absl::Status s = fill(partial.string());
  if (s.ok()) s = internal::SyncTree(partial.string());
  if (s.ok() && before_rename) before_rename(partial.string());
  if (s.ok() && ::renameat2(AT_FDCWD, partial.c_str(), AT_FDCWD, target.c_str(),
                            RENAME_NOREPLACE) != 0) {
    s = errno == EEXIST ? absl::AlreadyExistsError(absl::StrCat("export folder ", out,
                                                                " already exists"))
                        : absl::InternalError(absl::StrCat("rename ", partial.string(), " -> ",
                                                           target.string(), ": ",
                                                           std::strerror(errno)));
  }
  if (!s.ok()) {
    fs::remove_all(partial, ec);
    return s;
  }
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return absl::OkStatus();
}

nlohmann::json SmoothingJson(const SmoothingPlan& plan) {
  nlohmann::json applied = nlohmann::json::array();
  for (const GroupScales& g : plan.applied) {
    applied.push_back({{"source", g.group.source}, {"linears", g.group.linears}});
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& [source, why] : plan.skipped) {
    skipped.push_back({{"source", source}, {"reason", why}});
  }
  const SmoothingMethod m = plan.smoothing.method;
  return {{"name", SmoothingName(plan.smoothing)},
          {"alpha", m == SmoothingMethod::kSmoothQuant ? nlohmann::json(plan.smoothing.alpha)
                                                       : nlohmann::json(nullptr)},
          {"fused", plan.smoothing.fuse},
          {"formula", m == SmoothingMethod::kSmoothQuant
                          ? "SmoothQuant smooth.py: s_j = max(act_j^a / max(w_j, 1e-5)^(1-a), "
                            "1e-5), w_j over the group's concatenated weight rows"
                          : m == SmoothingMethod::kLogEq
                                ? "s_j = max(act_j / log2(2 + act_j), 1e-5)"
                                : ""},
          {"groups_applied", std::move(applied)},
          {"groups_skipped", std::move(skipped)}};
}

absl::Status Validate(const ExportInputs& in) {
  if ((in.format == Format::kMllm || in.format == Format::kStats) &&
      in.smoothing.method != SmoothingMethod::kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat("format ", FormatName(in.format), " takes no smoothing (got ",
                     SmoothingName(in.smoothing), ")"));
  }
  if (in.format == Format::kCompressedTensors && in.smoothing.method != SmoothingMethod::kNone &&
      !in.smoothing.fuse) {
    return absl::InvalidArgumentError(
        "compressed-tensors needs fused smoothing (vLLM has no migration_scale)");
  }
  if (in.per_channel_weights && in.format != Format::kSafetensors) {
    return absl::InvalidArgumentError(
        absl::StrCat("per-channel weights are for the safetensors format, not ",
                     FormatName(in.format)));
  }
  if (in.format != Format::kStats) {
    QCAL_RETURN_IF_ERROR(quant::ValidateThreshold(in.threshold));
    QCAL_RETURN_IF_ERROR(internal::CheckStatsMatchModel(in.stats, in.config));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExportSummary> WriteExport(const ExportInputs& in, const std::string& out_dir) {
  QCAL_RETURN_IF_ERROR(Validate(in));
  nlohmann::json provenance = nlohmann::json::parse(in.provenance_json, nullptr, false);
  if (provenance.is_discarded() || !provenance.is_object()) {
    return absl::InvalidArgumentError("provenance_json is not a JSON object");
  }
  QCAL_ASSIGN_OR_RETURN(SmoothingPlan plan,
                        PlanSmoothing(in.config, in.model_dir, in.stats, in.smoothing));
  ExportSummary summary;
  WriterResult written;
  std::optional<internal::Decisions> decisions;
  if (in.format != Format::kStats) {
    QCAL_ASSIGN_OR_RETURN(decisions,
                          internal::Decide(in.stats, in.config, in.mode, in.threshold, plan));
    summary.shadow_layers = decisions->shadow_layers;
  }
  auto fill = [&](const std::string& dir) -> absl::Status {
    if (in.format == Format::kStats) {
      QCAL_RETURN_IF_ERROR(stats::WriteCalibrationOutputs(in.stats, dir));
      if (in.model_res_acc_json) {
        QCAL_RETURN_IF_ERROR(internal::WriteFileSynced(
            (fs::path(dir) / "model_res_acc.json").string(), *in.model_res_acc_json));
      }
      written.formula_variants = {
          {"act_scales", "SmoothQuant act_scales: per input channel max(|min_c|, |max_c|)"},
          {"distribution", "mllm get_act_distribution.py: ori = exact max (signed) or "
                           "absmax (abs file); top_0_1 at rank int(0.999 N) - 1 from the "
                           "key sketch (relative error <= 0.39 %)"}};
    } else {
      absl::StatusOr<WriterResult> r =
          in.format == Format::kCompressedTensors
              ? internal::WriteCompressedTensors(in, plan, *decisions, dir)
              : internal::WriteInt8Model(in, plan, *decisions, dir);
      QCAL_RETURN_IF_ERROR(r.status());
      written = *std::move(r);
    }
    provenance["statistic_mode"] = stats::ModeName(in.mode);
    provenance["threshold"] = in.threshold;
    provenance["smoothing"] = SmoothingJson(plan);
    provenance["format"] = FormatName(in.format);
    provenance["formula_variants"] = written.formula_variants;
    return internal::WriteFileSynced((fs::path(dir) / internal::kProvenanceFile).string(),
                                     provenance.dump(2) + "\n");
  };
  QCAL_RETURN_IF_ERROR(WriteFolderAtomically(out_dir, fill, in.before_rename));
  summary.out_dir = out_dir;
  summary.quantized_linears = written.quantized_linears;
  summary.smoothed_groups = static_cast<int64_t>(plan.applied.size());
  QCAL_ASSIGN_OR_RETURN(summary.files, ListFiles(out_dir, &summary.bytes));
  return summary;
}

absl::Status WriteFusedFloatModel(const std::string& model_dir, const SmoothingPlan& plan,
                                  const std::string& out_dir) {
  SmoothingPlan fused = plan;
  fused.smoothing.fuse = true;
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<internal::WeightReader> reader,
                        internal::WeightReader::Open(model_dir, &fused));
  return WriteFolderAtomically(out_dir, [&](const std::string& dir) -> absl::Status {
    std::vector<TensorToWrite> out;
    for (const std::string& name : reader->names()) {
      std::vector<int64_t> shape;
      QCAL_ASSIGN_OR_RETURN(std::vector<float> w, reader->Read(name, &shape));
      out.push_back(Float32Tensor(name, shape, w.data()));
    }
    QCAL_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / "model.safetensors").string(), out,
                                          {{"format", "pt"}}));
    QCAL_RETURN_IF_ERROR(internal::CopyFileSynced((fs::path(model_dir) / "config.json").string(),
                                                  (fs::path(dir) / "config.json").string()));
    return internal::CopyTokenizerFiles(model_dir, dir);
  });
}

}  // namespace qcal::exporter
