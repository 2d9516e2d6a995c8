// Calibration engine benchmark, ratios measured side by side in one run:
//   1. forward with statistics vs plain forward (the statistics' cost; goal <= 10 %);
//   2. bf16 vs float32 compute: speed, and how far the statistics move;
//   3. peak resident memory of a run on 10x more tokens vs 1x (goal: within 5 %),
//      each in a fresh child process.
// Models are generated (bench/model_gen.h) at ~25 M and ~100 M parameters.
//
// usage: calibration_bench [--presets 25m,100m] [--samples N] [--seq-len T]
//                          [--threads N] [--arch llama]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/model_gen.h"
#include "common/stats/summary.h"
#include "worker/engine/engine.h"

namespace qcal::bench {
namespace {

std::vector<std::vector<int32_t>> RandomSamples(int n, int len, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> out(n, std::vector<int32_t>(len));
  for (auto& s : out) {
    for (auto& id : s) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  }
  return out;
}

double Seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<CalibrationEngine> Load(const std::string& dir, bool bf16, int threads) {
  EngineOptions o;
  o.bf16 = bf16;
  o.threads = threads;
  o.batch_size = 4;
  auto e = CalibrationEngine::Load(dir, o);
  if (!e.ok()) {
    std::fprintf(stderr, "load %s: %s\n", dir.c_str(), std::string(e.status().message()).c_str());
    std::exit(1);
  }
  return std::move(e).value();
}

// Child mode: calibrate `n` samples and print the peak RSS in KiB.
int RssChild(const std::string& dir, int n, int len, int threads) {
  auto engine = Load(dir, false, threads);
  auto samples = RandomSamples(n, len, engine->config().vocab_size, 7);
  stats::StatsSet s;
  // Feed in chunks, as a worker does with shards, so the token ids themselves do not
  // dominate the comparison.
  for (int i = 0; i < n; i += 8) {
    std::vector<std::vector<int32_t>> chunk(samples.begin() + i,
                                            samples.begin() + std::min(n, i + 8));
    if (!engine->Accumulate(chunk, &s).ok()) return 1;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("%ld\n", ru.ru_maxrss);
  return 0;
}

long PeakRssOfChild(const std::string& self, const std::string& dir, int n, int len, int threads) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    close(pipefd[0]);
    execl(self.c_str(), self.c_str(), "--rss-child", dir.c_str(), std::to_string(n).c_str(),
          std::to_string(len).c_str(), std::to_string(threads).c_str(), nullptr);
    _exit(127);
  }
  close(pipefd[1]);
  char buf[64] = {0};
  const ssize_t r = read(pipefd[0], buf, sizeof(buf) - 1);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return r > 0 ? std::atol(buf) : -1;
}

// Largest and median relative difference of per-tensor absmax and top_0_1.
void CompareStats(const stats::StatsSet& a, const stats::StatsSet& b, double* max_rel,
                  double* median_rel) {
  std::vector<double> rel;
  for (size_t i = 0; i < a.size(); ++i) {
    for (int side = 0; side < 2; ++side) {
      const auto& x = side ? a.at(i).output : a.at(i).input;
      const auto& y = side ? b.at(i).output : b.at(i).input;
      auto sx = stats::Summarize(x, stats::Mode::kAbs);
      auto sy = stats::Summarize(y, stats::Mode::kAbs);
      if (!sx.ok() || !sy.ok()) continue;
      rel.push_back(std::abs(sx->ori - sy->ori) / std::max(1e-12, std::abs(double(sx->ori))));
      rel.push_back(std::abs(sx->top_0_1 - sy->top_0_1) / std::max(1e-12, std::abs(double(sx->top_0_1))));
    }
  }
  std::sort(rel.begin(), rel.end());
  *max_rel = rel.empty() ? 0 : rel.back();
  *median_rel = rel.empty() ? 0 : rel[rel.size() / 2];
}

}  // namespace
}  // namespace qcal::bench

int main(int argc, char** argv) {
  using namespace qcal::bench;
  if (argc == 6 && std::strcmp(argv[1], "--rss-child") == 0) {
    return RssChild(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  }
  std::string presets = "25m,100m", arch = "llama";
  int samples = 8, seq_len = 256, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--presets") presets = v;
    else if (k == "--samples") samples = std::atoi(v.c_str());
    else if (k == "--seq-len") seq_len = std::atoi(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--arch") arch = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string root = std::filesystem::temp_directory_path() / ("qcal-bench-" + std::to_string(getpid()));
  std::printf("calibration_bench: %s, %d samples x %d tokens, %d threads\n", arch.c_str(), samples,
              seq_len, threads);
  for (const auto& preset : absl::StrSplit(presets, ',')) {
    auto spec = PresetSpec(std::string(preset), arch);
    if (!spec.ok()) { std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str()); return 2; }
    const std::string dir = root + "/" + std::string(preset);
    if (auto st = WriteRandomModel(dir, *spec); !st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 1;
    }
    const double params = static_cast<double>(ParameterCount(*spec));
    auto f32 = Load(dir, false, threads);
    auto data = RandomSamples(samples, seq_len, spec->vocab_size, 1);
    const double tokens = static_cast<double>(samples) * seq_len;
    (void)f32->ForwardOnly({data[0]});  // warm-up
    // Interleave the two measurements (3 rounds, best of each) against drift.
    double plain = 1e30, with_stats = 1e30;
    qcal::stats::StatsSet s32;
    for (int round = 0; round < 3; ++round) {
      plain = std::min(plain, Seconds([&] { (void)f32->ForwardOnly(data); }));
      qcal::stats::StatsSet s;
      with_stats = std::min(with_stats, Seconds([&] { (void)f32->Accumulate(data, &s); }));
      if (round == 0) s32 = s;
    }
    std::printf("\n[%s] %.1f M parameters, %s\n", std::string(preset).c_str(), params / 1e6, dir.c_str());
    std::printf("  plain forward       %8.1f tokens/s\n", tokens / plain);
    std::printf("  forward + stats     %8.1f tokens/s\n", tokens / with_stats);
    std::printf("  statistics overhead %+7.1f %%   (goal <= 10 %%)\n", 100.0 * (with_stats / plain - 1));

    auto b16 = Load(dir, true, threads);
    (void)b16->ForwardOnly({data[0]});
    qcal::stats::StatsSet sb;
    const double tb = Seconds([&] { (void)b16->Accumulate(data, &sb); });
    double max_rel = 0, med_rel = 0;
    CompareStats(s32, sb, &max_rel, &med_rel);
    std::printf("  bf16 + stats        %8.1f tokens/s  (%.2fx float32)\n", tokens / tb, with_stats / tb);
    std::printf("  bf16 moves per-tensor absmax/top_0_1 by: median %.2f %%, max %.2f %%\n",
                100 * med_rel, 100 * max_rel);
    f32.reset();
    b16.reset();

    const int n1 = std::max(8, samples);
    const long rss1 = PeakRssOfChild(self, dir, n1, seq_len, threads);
    const long rss10 = PeakRssOfChild(self, dir, 10 * n1, seq_len, threads);
    std::printf("  peak RSS: %d samples %.1f MiB, %d samples %.1f MiB: 10x tokens = %+.2f %%  (goal within 5 %%)\n",
                n1, rss1 / 1024.0, 10 * n1, rss10 / 1024.0, 100.0 * (double(rss10) / rss1 - 1));
  }
  std::filesystem::remove_all(root);
  return 0;
}
