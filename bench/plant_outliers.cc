// qcal-plant-outliers: a copy of a llama-family model folder with activation
// outliers planted in the MLP of chosen layers, computing exactly the same function.
//
// For each chosen layer it calibrates the model on a corpus, takes the `--channels`
// spikiest channels of the MLP output projection's input (largest absmax / rms), and
// multiplies those rows of up_proj by 2^k and those columns of down_proj by 2^-k. The
// product act(gate) * up of a channel then grows by 2^k and down_proj reads it back
// with weights 2^k smaller: every product, partial sum and logit is bit for bit the
// same (powers of two only move the exponent; the tool refuses a scale that would
// overflow or leave the normal range). The calibration then sees outliers exactly in
// the planted layers' down_proj inputs (and up_proj outputs): those layers become
// shadow layers at thresholds below their outlier ratio.
//
//   qcal-plant-outliers --model tests/data/models/llama-small
//       --corpus tests/data/corpus/calib.jsonl.zst --layers 1,4 --out DIR
// (scripts/make-outlier-model.sh makes tests/data/models/llama-small-outliers.)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"
#include "worker/engine/engine.h"
#include "worker/text/sampler.h"

namespace {

namespace fs = std::filesystem;

struct Flags {
  std::string model;
  std::string corpus;
  std::string out;
  std::vector<int> layers = {1, 4};
  int channels = 2;
  int log2_scale = 6;
  int64_t num_samples = 64;
  int64_t seq_len = 256;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Scales a BF16/F32 element in place by 2^k; false when the result is not exact (it
// would overflow or become subnormal).
bool ScaleElement(uint8_t* p, qcal::DType dtype, int k) {
  float x;
  if (dtype == qcal::DType::kBF16) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    x = Bf16ToFloat(h);
  } else {
    std::memcpy(&x, p, 4);
  }
  if (x == 0) return true;
  const float y = std::ldexp(x, k);
  if (!std::isnormal(y) || std::ldexp(y, -k) != x) return false;
  if (dtype == qcal::DType::kBF16) {
    uint32_t bits;
    std::memcpy(&bits, &y, 4);
    if ((bits & 0xFFFF) != 0) return false;  // cannot happen for a power-of-two scale
    const uint16_t h = static_cast<uint16_t>(bits >> 16);
    std::memcpy(p, &h, 2);
  } else {
    std::memcpy(p, &y, 4);
  }
  return true;
}

int Fail(const std::string& message) {
  std::cerr << "qcal-plant-outliers: " << message << "\n";
  return 1;
}

int Run(const Flags& f) {
  // 1. The spikiest channels of each chosen layer's down_proj input.
  qcal::text::SamplingOptions so;
  so.num_samples = f.num_samples;
  so.seq_len = f.seq_len;
  auto sampler = qcal::text::OpenCorpusSampler(f.model, f.corpus, so);
  if (!sampler.ok()) return Fail(std::string(sampler.status().message()));
  auto samples = sampler->sampler->Samples(0, f.num_samples);
  if (!samples.ok()) return Fail(std::string(samples.status().message()));
  qcal::EngineOptions eo;
  auto engine = qcal::CalibrationEngine::Load(f.model, eo);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));
  qcal::stats::StatsSet stats;
  if (auto st = (*engine)->Accumulate(*samples, &stats); !st.ok()) return Fail(std::string(st.message()));
  std::map<int, std::vector<int64_t>> planted;
  for (int layer : f.layers) {
    const std::string name = absl::StrCat("model.layers.", layer, ".mlp.down_proj");
    const qcal::stats::LinearStats* linear = stats.Find(name);
    if (linear == nullptr) return Fail("the model has no " + name);
    const qcal::stats::TensorStats* in = &linear->input;
    const std::vector<float> absmax = in->AbsMaxPerChannel();
    std::vector<double> spiky(absmax.size());
    for (size_t c = 0; c < absmax.size(); ++c) {
      const double rms = std::sqrt(in->sumsq()[c] / std::max<int64_t>(1, in->count()));
      spiky[c] = rms > 0 ? absmax[c] / rms : 0;
    }
    std::vector<int64_t> order(absmax.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return spiky[a] > spiky[b]; });
    order.resize(std::min<size_t>(order.size(), f.channels));
    std::sort(order.begin(), order.end());
    planted[layer] = order;
  }

  // 2. The weights, shard by shard, with the planted rows and columns scaled.
  const std::string index_path = f.model + "/model.safetensors.index.json";
  std::map<std::string, std::string> file_of;  // tensor -> shard file
  std::vector<std::string> files;
  if (fs::exists(index_path)) {
    const auto index = nlohmann::json::parse(Slurp(index_path));
    for (const auto& [t, file] : index["weight_map"].items()) {
      file_of[t] = file;
      if (std::find(files.begin(), files.end(), file) == files.end()) files.push_back(file);
    }
  } else {
    files.push_back("model.safetensors");
  }
  fs::create_directories(f.out);
  for (const std::string& file : files) {
    auto st = qcal::SafetensorsFile::Open(f.model + "/" + file);
    if (!st.ok()) return Fail(std::string(st.status().message()));
    std::vector<qcal::TensorToWrite> out;
    for (const std::string& name : (*st)->names()) {
      auto view = (*st)->Get(name);
      if (!view.ok()) return Fail(std::string(view.status().message()));
      qcal::TensorToWrite t{name, view->dtype, view->shape,
                            std::string(reinterpret_cast<const char*>(view->data), view->nbytes)};
      for (const auto& [layer, chans] : planted) {
        const std::string mlp = absl::StrCat("model.layers.", layer, ".mlp.");
        const bool up = name == mlp + "up_proj.weight", down = name == mlp + "down_proj.weight";
        if (!up && !down) continue;
        if (view->dtype != qcal::DType::kBF16 && view->dtype != qcal::DType::kF32) {
          return Fail(name + ": only BF16 and F32 weights are supported");
        }
        const size_t es = qcal::DTypeSize(view->dtype);
        const int64_t rows = view->shape[0], cols = view->shape[1];
        auto* data = reinterpret_cast<uint8_t*>(t.bytes.data());
        for (int64_t c : chans) {
          // up_proj [intermediate, hidden]: row c; down_proj [hidden, intermediate]: column c.
          for (int64_t i = 0; i < (up ? cols : rows); ++i) {
            const int64_t e = up ? c * cols + i : i * cols + c;
            if (!ScaleElement(data + e * es, view->dtype, up ? f.log2_scale : -f.log2_scale)) {
              return Fail(absl::StrCat(name, ": scaling by 2^", f.log2_scale,
                                       " is not exact (overflow or subnormal); use a smaller --log2-scale"));
            }
          }
        }
      }
      out.push_back(std::move(t));
    }
    if (auto w = qcal::WriteSafetensors(f.out + "/" + file, out, (*st)->metadata()); !w.ok()) {
      return Fail(std::string(w.message()));
    }
  }
  // 3. Everything else as it is, and what was planted.
  for (const auto& e : fs::directory_iterator(f.model)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 12 && n.substr(n.size() - 12) == ".safetensors") continue;
    fs::copy_file(e.path(), f.out + "/" + n, fs::copy_options::overwrite_existing);
  }
  nlohmann::ordered_json j;
  j["source"] = fs::path(f.model).filename().string();
  j["log2_scale"] = f.log2_scale;
  j["layers"] = nlohmann::ordered_json::object();
  for (const auto& [layer, chans] : planted) j["layers"][std::to_string(layer)] = chans;
  std::ofstream(f.out + "/planted_outliers.json") << j.dump(2) << "\n";
  std::cout << "planted " << j["layers"].dump() << " (down_proj input channels, x2^" << f.log2_scale
            << ") into " << f.out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app("Plant activation outliers in chosen MLP layers, computing the same function");
  app.add_option("--model", f.model, "llama-family model folder")->required();
  app.add_option("--corpus", f.corpus, "Corpus to find the spikiest channels on")->required();
  app.add_option("--out", f.out, "Output model folder")->required();
  app.add_option("--layers", f.layers, "Decoder layers to plant outliers in")->delimiter(',')
      ->capture_default_str();
  app.add_option("--channels", f.channels, "Channels per layer")->capture_default_str();
  app.add_option("--log2-scale", f.log2_scale, "Scale the channels by 2^k")->capture_default_str();
  app.add_option("--num-samples", f.num_samples)->capture_default_str();
  app.add_option("--seq-len", f.seq_len)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return Run(f);
}
