// qcal-make-model: writes a random Hugging Face model folder for benchmarks.
//   qcal-make-model --out DIR [--arch llama|mistral|qwen2] [--preset tiny|25m|100m]
//                   [--hidden N --layers N --heads N --kv-heads N --intermediate N --vocab N]
//                   [--dtype F32|F16|BF16] [--seed N] [--tied]
#include <iostream>

#include "CLI/CLI.hpp"
#include "bench/model_gen.h"

int main(int argc, char** argv) {
  CLI::App app{"Write a random Hugging Face model folder (benchmarks)"};
  std::string out, arch = "llama", preset = "25m", dtype = "F32";
  int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, intermediate = 0, vocab = 0;
  uint64_t seed = 0;
  bool tied = false;
  app.add_option("--out", out, "Output folder")->required();
  app.add_option("--arch", arch, "model_type")->capture_default_str();
  app.add_option("--preset", preset, "tiny, 25m or 100m")->capture_default_str();
  app.add_option("--hidden", hidden);
  app.add_option("--layers", layers);
  app.add_option("--heads", heads);
  app.add_option("--kv-heads", kv_heads);
  app.add_option("--intermediate", intermediate);
  app.add_option("--vocab", vocab);
  app.add_option("--dtype", dtype)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_flag("--tied", tied);
  CLI11_PARSE(app, argc, argv);
  auto spec = qcal::bench::PresetSpec(preset, arch);
  if (!spec.ok()) {
    std::cerr << "qcal-make-model: " << spec.status().message() << "\n";
    return 2;
  }
  if (hidden) spec->hidden_size = hidden;
  if (layers) spec->num_layers = layers;
  if (heads) spec->num_heads = heads;
  if (kv_heads) spec->num_kv_heads = kv_heads;
  if (intermediate) spec->intermediate_size = intermediate;
  if (vocab) spec->vocab_size = vocab;
  spec->dtype = dtype;
  spec->seed = seed;
  spec->tie_word_embeddings = tied;
  if (auto st = qcal::bench::WriteRandomModel(out, *spec); !st.ok()) {
    std::cerr << "qcal-make-model: " << st.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << out << " (" << qcal::bench::ParameterCount(*spec) << " parameters)\n";
  return 0;
}
