#include "worker/service/export_task.h"

#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/export/export.h"
#include "common/model_config.h"
#include "common/model_files.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal {
namespace fs = std::filesystem;

absl::StatusOr<std::string> Sha256OfFiles(const std::vector<std::string>& paths) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("cannot start a SHA-256 digest");
  }
  std::vector<char> buf(1 << 20);
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path, " to hash it"));
    std::error_code ec;
    const std::string head =
        absl::StrCat(fs::path(path).filename().string(), "\n", fs::file_size(path, ec), "\n");
    EVP_DigestUpdate(ctx.get(), head.data(), head.size());
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const std::streamsize n = in.gcount();
      if (n > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
    }
    if (in.bad()) return absl::DataLossError(absl::StrCat("read error in ", path));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) {
    return absl::InternalError("cannot finish a SHA-256 digest");
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

absl::StatusOr<std::vector<std::string>> ModelContentFiles(const std::string& model_dir) {
  QCAL_ASSIGN_OR_RETURN(std::unique_ptr<ModelFiles> files, ModelFiles::Open(model_dir));
  std::vector<std::string> paths = {(fs::path(model_dir) / "config.json").string()};
  for (std::string& p : files->paths()) paths.push_back(std::move(p));
  return paths;
}

namespace {

// The response for an export folder that already exists: only when its
// provenance.json names this operation (a retry after the rename).
absl::StatusOr<v1::ExportResponse> DescribeExisting(const v1::ExportTaskPayload& payload,
                                                    const std::string& operation) {
  const fs::path dir(payload.output_dir());
  std::ifstream in(dir / "provenance.json");
  const auto prov = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (prov.is_discarded() || !prov.is_object() || prov.value("operation", "") != operation) {
    return absl::AlreadyExistsError(absl::StrCat(
        "output ", payload.output_dir(), " already exists and is not this export's (",
        operation, ")"));
  }
  v1::ExportResponse r;
  int64_t bytes = 0;
  QCAL_ASSIGN_OR_RETURN(std::vector<std::string> files, exporter::ListFiles(dir.string(), &bytes));
  for (const auto& f : files) r.add_files(f);
  r.set_bytes(bytes);
  return r;
}

}  // namespace

absl::StatusOr<v1::ExportResponse> RunExportTask(const v1::Task& task,
                                                 const stats::StatsSet& stats,
                                                 const ExportTaskOptions& options) {
  v1::ExportTaskPayload payload;
  if (!task.payload().UnpackTo(&payload)) {
    return absl::InvalidArgumentError("export task without an ExportTaskPayload");
  }
  const v1::ExportRequest& req = payload.request();
  const std::string operation = "operations/" + task.job_id();

  exporter::ExportInputs in;
  in.model_dir = task.model();
  QCAL_ASSIGN_OR_RETURN(in.config, LoadModelConfig(task.model()));
  in.stats = stats;
  in.mode = req.mode() == "mllm" ? stats::Mode::kMllm : stats::Mode::kAbs;
  in.threshold = payload.threshold();
  QCAL_ASSIGN_OR_RETURN(in.format, exporter::ParseFormat(req.format()));
  QCAL_ASSIGN_OR_RETURN(in.smoothing, exporter::ParseSmoothing(req.smoothing()));
  in.smoothing.fuse = req.fuse();
  in.per_channel_weights = req.per_channel_weights();
  if (!payload.model_res_acc_json().empty()) in.model_res_acc_json = payload.model_res_acc_json();
  in.before_rename = options.before_rename;

  auto prov = nlohmann::ordered_json::parse(payload.provenance_json(), nullptr,
                                            /*allow_exceptions=*/false);
  if (prov.is_discarded() || !prov.is_object()) prov = nlohmann::ordered_json::object();
  QCAL_ASSIGN_OR_RETURN(std::vector<std::string> model_files, ModelContentFiles(task.model()));
  QCAL_ASSIGN_OR_RETURN(prov["model_sha256"], Sha256OfFiles(model_files));
  if (!task.corpus().empty()) {
    QCAL_ASSIGN_OR_RETURN(prov["corpus_sha256"], Sha256OfFiles({task.corpus()}));
  }
  in.provenance_json = prov.dump();

  v1::ExportResponse r;
  auto summary = exporter::WriteExport(in, payload.output_dir());
  if (summary.ok()) {
    for (const auto& f : summary->files) r.add_files(f);
    r.set_bytes(summary->bytes);
    for (int64_t l : summary->shadow_layers) r.add_shadow_layers(l);
    r.set_quantized_linears(summary->quantized_linears);
    r.set_smoothed_groups(summary->smoothed_groups);
  } else if (summary.status().code() == absl::StatusCode::kAlreadyExists) {
    QCAL_ASSIGN_OR_RETURN(r, DescribeExisting(payload, operation));
  } else {
    return summary.status();
  }
  r.set_job_id(req.job_id());
  r.set_output_dir(payload.output_dir());
  r.set_format(req.format());
  r.set_threshold(payload.threshold());
  r.set_smoothing(req.smoothing());
  return r;
}

}  // namespace qcal
