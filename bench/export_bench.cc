// Export speed and memory on a random model, measured side by side in one run:
//   - each format's wall time and MB/s of model weights, against copying the weights
//     file (the floor any export that reads and writes the model pays);
//   - peak anonymous RSS of a compressed-tensors export written as one file vs as
//     shards (--shard-mb), each in a fresh child process, against the model's size.
// Usage: export_bench [--preset 25m|100m] [--dtype F32|BF16] [--shard-mb N]
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bench/model_gen.h"
#include "common/export/export.h"
#include "common/model_config.h"
#include "common/stats/stats_set.h"

namespace qcal::bench {
namespace {

namespace fs = std::filesystem;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Anonymous resident memory (KiB): what the export allocates. Plain peak RSS would
// also count the memory-mapped model pages, which the kernel can drop at will.
long RssAnonKiB() {
  std::ifstream status("/proc/self/status");
  std::string key;
  long value = -1;
  while (status >> key) {
    if (key == "RssAnon:") {
      status >> value;
      return value;
    }
    status.ignore(1 << 20, '\n');
  }
  return value;
}

// Statistics shaped like a calibration of the model (a few random rows per linear;
// the export reads only per-channel extremes and the sketch).
stats::StatsSet SyntheticStats(const ModelConfig& config) {
  stats::StatsSet set;
  std::mt19937 rng(11);
  std::student_t_distribution<float> heavy(3.0f);
  for (const LinearModule& l : LinearModules(config)) {
    auto* s = *set.GetOrCreate(l.name, l.in_features, l.out_features);
    std::vector<float> in(16 * l.in_features), out(16 * l.out_features);
    for (float& x : in) x = heavy(rng);
    for (float& x : out) x = heavy(rng);
    (void)s->input.AddRows(in.data(), 16);
    (void)s->output.AddRows(out.data(), 16);
  }
  (void)set.AddTokens(16);
  return set;
}

int RunExport(const std::string& model, const std::string& out, exporter::Format format,
              int64_t max_shard_bytes, double* seconds) {
  auto config = LoadModelConfig(model);
  if (!config.ok()) return 1;
  exporter::ExportInputs in;
  in.model_dir = model;
  in.config = *config;
  in.stats = SyntheticStats(*config);
  in.threshold = 8;
  in.format = format;
  in.max_shard_bytes = max_shard_bytes;
  const auto start = std::chrono::steady_clock::now();
  auto r = exporter::WriteExport(in, out);
  *seconds = Seconds(start);
  if (!r.ok()) {
    std::fprintf(stderr, "export_bench: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  return 0;
}

// Child mode: one compressed-tensors export; prints the anonymous RSS (KiB) before it
// and its peak during it (sampled every 2 ms).
int RssChild(const std::string& model, const std::string& out, int64_t max_shard_bytes) {
  const long before = RssAnonKiB();
  std::atomic<bool> done{false};
  std::atomic<long> peak{before};
  std::thread sampler([&] {
    while (!done.load()) {
      peak = std::max(peak.load(), RssAnonKiB());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  double s = 0;
  const int rc = RunExport(model, out, exporter::Format::kCompressedTensors, max_shard_bytes, &s);
  done = true;
  sampler.join();
  if (rc != 0) return 1;
  std::printf("%ld %ld\n", before, peak.load());
  return 0;
}

std::pair<long, long> RssOfChild(const std::string& self, const std::string& model,
                                 const std::string& out, int64_t max_shard_bytes) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return {-1, -1};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    close(pipefd[0]);
    execl(self.c_str(), self.c_str(), "--rss-child", model.c_str(), out.c_str(),
          std::to_string(max_shard_bytes).c_str(), nullptr);
    _exit(127);
  }
  close(pipefd[1]);
  char buf[128] = {0};
  const ssize_t r = read(pipefd[0], buf, sizeof(buf) - 1);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  long a = -1, b = -1;
  if (r > 0) std::sscanf(buf, "%ld %ld", &a, &b);
  return {a, b};
}

int Main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--rss-child") {
    return RssChild(argv[2], argv[3], std::atoll(argv[4]));
  }
  std::string preset = "100m", dtype = "BF16";
  int64_t shard_mb = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--preset") preset = argv[i + 1];
    else if (flag == "--dtype") dtype = argv[i + 1];
    else if (flag == "--shard-mb") shard_mb = std::atoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: export_bench [--preset 25m|100m] [--dtype F32|BF16] [--shard-mb N]\n");
      return 2;
    }
  }
  const fs::path work = fs::temp_directory_path() / ("qcal-export-bench-" + std::to_string(getpid()));
  fs::create_directories(work);
  auto spec = PresetSpec(preset, "llama");
  if (!spec.ok()) {
    std::fprintf(stderr, "export_bench: %s\n", std::string(spec.status().message()).c_str());
    return 2;
  }
  spec->dtype = dtype;
  const std::string model = (work / "model").string();
  if (!WriteRandomModel(model, *spec).ok()) return 1;
  const double model_mb = fs::file_size(fs::path(model) / "model.safetensors") / 1e6;
  std::printf("model: llama %s, %.1f M parameters, %s, %.1f MB\n", preset.c_str(),
              ParameterCount(*spec) / 1e6, dtype.c_str(), model_mb);

  // The floor: copying the weights file (read + write, page cache warm).
  auto start = std::chrono::steady_clock::now();
  fs::copy_file(fs::path(model) / "model.safetensors", work / "copy.safetensors");
  const double copy_s = Seconds(start);
  std::printf("%-20s %8.3f s %9.1f MB/s\n", "file copy", copy_s, model_mb / copy_s);
  for (auto [format, name] : {std::pair{exporter::Format::kMllm, "mllm"},
                              std::pair{exporter::Format::kSafetensors, "safetensors"},
                              std::pair{exporter::Format::kCompressedTensors, "compressed-tensors"}}) {
    double s = 0;
    if (RunExport(model, (work / name).string(), format, 0, &s) != 0) return 1;
    std::printf("%-20s %8.3f s %9.1f MB/s  (%.2fx the file copy's time)\n", name, s,
                model_mb / s, s / copy_s);
  }

  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const auto one = RssOfChild(self, model, (work / "rss-one").string(), 0);
  const auto sharded = RssOfChild(self, model, (work / "rss-sharded").string(), shard_mb * 1000000);
  if (one.first < 0 || sharded.first < 0) return 1;
  const double one_mb = (one.second - one.first) / 1024.0;
  const double sharded_mb = (sharded.second - sharded.first) / 1024.0;
  std::printf("compressed-tensors peak anonymous RSS growth: one file %.1f MiB (%.2fx the model), "
              "%lld MB shards %.1f MiB (%.2fx the model); sharded / one file = %.2f\n",
              one_mb, one_mb * 1.048576 / model_mb, static_cast<long long>(shard_mb), sharded_mb,
              sharded_mb * 1.048576 / model_mb, sharded_mb / one_mb);
  fs::remove_all(work);
  return 0;
}

}  // namespace
}  // namespace qcal::bench

int main(int argc, char** argv) { return qcal::bench::Main(argc, argv); }
