// A job's calibration report: everything that answers "which layers, which threshold,
// what does it cost", as JSON (`qcal report JOB --json`) and as one self-contained
// HTML page (`qcal report JOB --out report.html`, and report.html of `qcal run`).
//
// The page is the JSON plus inline CSS and a small inline script that draws every
// chart as SVG: no network access, no CDN, no library on the reader's machine, so it
// opens from disk in any browser. Sections, each with a stable id that tests and
// readers can address: #summary (model, corpus, samples, tokens, time, throughput,
// the recommended threshold and shadow layers with a copy button), #heatmap (outlier
// ratio ori / top_0_1 per decoder layer x module and side, abs and mllm switchable,
// cells at or above the threshold outlined), #curves (accuracy and perplexity against
// the threshold on a log axis, float baseline, budget band, recommended point, shadow
// layer counts), #strip (shadow layers per threshold), #tensors (proxy SQNR of every
// tensor at the threshold, and the per-channel absmax profile of each not-clipped one
// with its outlier channels), #experts (MoE token counts; the model has none yet), and
// #exports.
#ifndef QCAL_CLIENT_REPORT_H_
#define QCAL_CLIENT_REPORT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/connection.h"
#include "client/evaluation.h"
#include "common/stats/stats_set.h"
#include "nlohmann/json.hpp"
#include "proto/qcal/v1/export.pb.h"
#include "proto/qcal/v1/job.pb.h"

namespace qcal::client {

struct ReportInputs {
  v1::Job job;
  stats::StatsSet stats;
  std::optional<FoundEvaluation> evaluation;  // the newest finished one
  std::vector<v1::ExportResponse> exports;    // finished ones, newest first
};

// Reads the job, its statistics (CALIBRATED jobs only: FAILED_PRECONDITION
// otherwise), its newest finished evaluation and its finished exports.
absl::StatusOr<ReportInputs> GatherReport(const Connection& connection, const std::string& job_id);

// The report's data (format "qcal-report/1", documented in docs/report.md) from a
// CALIBRATED job, its statistics, its newest finished evaluation (may be null) and
// its finished exports; the second form takes what GatherReport read.
nlohmann::ordered_json ReportJson(const v1::Job& job, const stats::StatsSet& stats,
                                  const FoundEvaluation* evaluation,
                                  const std::vector<v1::ExportResponse>& exports);
inline nlohmann::ordered_json ReportJson(const ReportInputs& in) {
  return ReportJson(in.job, in.stats, in.evaluation ? &*in.evaluation : nullptr, in.exports);
}

// The self-contained HTML page of `report` (ReportJson's output).
std::string ReportHtml(const nlohmann::ordered_json& report);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_REPORT_H_
