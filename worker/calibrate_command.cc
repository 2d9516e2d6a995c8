#include "worker/calibrate_command.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/stats/outputs.h"
#include "worker/engine/engine.h"
#include "worker/engine/token_file.h"
#include "worker/text/sampler.h"
#include "worker/text/tokenize_command.h"

namespace qcal {
namespace {

struct CalibrateFlags {
  std::string model;
  std::string tokens;
  std::string corpus;
  std::string token_format = "auto";
  text::SamplingOptions sampling;
  std::string out;
  EngineOptions engine;
};

int RunCalibrate(const CalibrateFlags& f) {
  const auto start = std::chrono::steady_clock::now();
  auto fail = [](const absl::Status& s) {
    std::cerr << "qcal-worker calibrate: " << s.message() << "\n";
    return 1;
  };
  absl::StatusOr<std::vector<std::vector<int32_t>>> samples;
  if (!f.corpus.empty()) {
    auto sampler = text::OpenCorpusSampler(f.model, f.corpus, f.sampling);
    if (!sampler.ok()) return fail(sampler.status());
    samples = sampler->sampler->Samples(0, f.sampling.num_samples);
  } else {
    samples = ReadTokenFile(f.tokens, f.token_format, f.sampling.seq_len);
  }
  if (!samples.ok()) return fail(samples.status());
  if (samples->empty()) return fail(absl::InvalidArgumentError(absl::StrCat(f.tokens, " holds no samples")));
  auto engine = CalibrationEngine::Load(f.model, f.engine);
  if (!engine.ok()) return fail(engine.status());
  stats::StatsSet stats;
  const int64_t total = static_cast<int64_t>(samples->size());
  auto progress = [&](int64_t done) {
    if (done == total || done % 64 == 0) {
      std::cerr << "\rcalibrate: " << done << "/" << total << " samples" << std::flush;
    }
    return true;
  };
  absl::Status st = (*engine)->Accumulate(*samples, &stats, progress);
  std::cerr << "\n";
  if (!st.ok()) return fail(st);
  std::error_code ec;
  std::filesystem::create_directories(f.out, ec);
  if (ec) return fail(absl::PermissionDeniedError(absl::StrCat("cannot create ", f.out, ": ", ec.message())));
  st = stats::WriteCalibrationOutputs(stats, f.out);
  if (!st.ok()) return fail(st);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "calibrated " << total << " samples (" << stats.tokens() << " tokens) of "
            << f.model << " in " << secs << " s\n"
            << "wrote " << f.out << "/act_scales_distribution.json, " << f.out
            << "/act_scales_distribution_abs.json, " << f.out << "/act_scales.safetensors\n";
  return 0;
}

}  // namespace

void AddCalibrateCommand(CLI::App& app) {
  auto flags = std::make_shared<CalibrateFlags>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate", "Run the model over token samples and write activation statistics");
  cmd->add_option("--model", flags->model, "Hugging Face model folder (config.json + safetensors)")
      ->required();
  auto* tokens = cmd->add_option(
      "--tokens", flags->tokens,
      "Token file: JSON lines of id arrays (.jsonl), or raw uint16/uint32 (.u16/.u32) cut into "
      "--seq-len windows");
  auto* corpus = cmd->add_option("--corpus", flags->corpus,
                                 "Text corpus (JSON lines with \"text\", plain or .zst, or plain "
                                 "text), sampled with the options below");
  tokens->excludes(corpus);
  corpus->excludes(tokens);
  cmd->add_option("--token-format", flags->token_format, "auto, jsonl, u16 or u32")
      ->capture_default_str();
  text::AddSamplingOptions(cmd, &flags->sampling);
  cmd->add_option("--out", flags->out, "Output folder")->required();
  cmd->add_option("--batch-size", flags->engine.batch_size,
                  "Sequences per forward pass (speed only; never changes a figure)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->engine.threads, "Compute threads (0 = one per core)")
      ->capture_default_str();
  cmd->add_option("--device", flags->engine.device, "cpu or cuda:N")->capture_default_str();
  cmd->add_flag("--bf16", flags->engine.bf16, "Run linear layers in bfloat16 (faster, less exact)");
  cmd->callback([flags, tokens, corpus]() {
    if (tokens->count() + corpus->count() != 1) {
      throw CLI::ValidationError("calibrate", "give exactly one of --tokens FILE or --corpus FILE");
    }
    throw CLI::RuntimeError(RunCalibrate(*flags));
  });
}

}  // namespace qcal
