// The libtorch model runtime against Hugging Face transformers' reference activations
// (tests/data/reference/forward, see its README): logits, hidden states and every
// linear's input and output, single sequences and a right-padded batch.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <ATen/ATen.h>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/model/causal_lm.h"

namespace qcal {
namespace {

namespace fs = std::filesystem;
const std::string kData = QCAL_TEST_DATA_DIR;
constexpr double kAtol = 1e-4, kRtol = 1e-4;

at::Tensor RefTensor(const SafetensorsFile& f, const std::string& name) {
  auto v = f.Get(name);
  EXPECT_TRUE(v.ok()) << v.status();
  if (!v.ok()) return at::Tensor();
  at::ScalarType t = v->dtype == DType::kI64 ? at::kLong : at::kFloat;
  return at::from_blob(const_cast<uint8_t*>(v->data), v->shape, at::TensorOptions().dtype(t)).clone();
}

// Largest |a - b| and whether every element satisfies |a-b| <= atol + rtol |b|.
std::pair<double, bool> Compare(const at::Tensor& got, const at::Tensor& want) {
  if (got.sizes() != want.sizes()) return {INFINITY, false};
  at::Tensor diff = (got - want).abs();
  const bool ok = (diff <= kAtol + kRtol * want.abs()).all().item<bool>();
  return {diff.max().item<double>(), ok};
}

class Capture : public LinearObserver {
 public:
  absl::Status OnLinear(int index, const at::Tensor& in, const at::Tensor& out) override {
    inputs[index] = in.clone();
    outputs[index] = out.clone();
    return absl::OkStatus();
  }
  std::map<int, at::Tensor> inputs, outputs;
};

struct Case {
  const char* model;
  const char* reference;  // reference file (qwen2-tiny-sharded has exactly qwen2-tiny's weights)
};

class ReferenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceTest, MatchesHuggingFace) {
  const Case c = GetParam();
  auto model = CausalLM::Load(kData + "/models/" + c.model);
  ASSERT_TRUE(model.ok()) << model.status();
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/" + c.reference + ".safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const auto& lin = (*model)->linears();

  // Hook names are exactly HF's named_modules() names, in the same set.
  auto names = nlohmann::json::parse((*ref)->metadata().at("linear_modules"));
  std::vector<std::string> ours;
  for (const auto& l : lin) ours.push_back(l.name);
  std::vector<std::string> theirs = names.get<std::vector<std::string>>();
  std::sort(ours.begin(), ours.end());
  std::sort(theirs.begin(), theirs.end());
  EXPECT_EQ(ours, theirs);

  double worst = 0;
  int compared = 0;
  for (const std::string p : {"A", "B"}) {
    Capture cap;
    auto out = (*model)->Forward(RefTensor(**ref, p + ".input_ids"), at::Tensor(), &cap, true);
    ASSERT_TRUE(out.ok()) << out.status();
    auto check = [&](const at::Tensor& got, const std::string& name) {
      auto [d, ok] = Compare(got, RefTensor(**ref, name));
      EXPECT_TRUE(ok) << c.model << " " << name << " max |diff| " << d;
      worst = std::max(worst, d);
      ++compared;
    };
    check(out->logits, p + ".logits");
    for (size_t k = 0; k < out->hidden_states.size(); ++k) {
      check(out->hidden_states[k], p + ".hidden_states." + std::to_string(k));
    }
    EXPECT_FALSE((*ref)->Contains(p + ".hidden_states." + std::to_string(out->hidden_states.size())));
    for (size_t i = 0; i < lin.size(); ++i) {
      const std::string base = p + ".linear." + lin[i].name;
      ASSERT_EQ(cap.inputs.count(static_cast<int>(i)), 1u) << lin[i].name << " not observed";
      if ((*ref)->Contains(base + ".input")) check(cap.inputs[i], base + ".input");
      if ((*ref)->Contains(base + ".output")) check(cap.outputs[i], base + ".output");
    }
  }

  // Right-padded batch with attention mask: logits match at every valid position, in
  // both the batch-invariant mode and HF's single padded pass.
  at::Tensor ids = RefTensor(**ref, "AB.input_ids");
  at::Tensor mask = RefTensor(**ref, "AB.attention_mask");
  ComputeOptions padded_mode;
  padded_mode.batch_invariant = false;
  auto padded_model = CausalLM::Load(kData + "/models/" + c.model, padded_mode);
  ASSERT_TRUE(padded_model.ok());
  for (const CausalLM* m : {model->get(), padded_model->get()}) {
    auto out = m->Forward(ids, mask, nullptr, false);
    ASSERT_TRUE(out.ok()) << out.status();
    at::Tensor valid =
        out->logits.reshape({-1, out->logits.size(-1)}).index({mask.reshape({-1}).eq(1)});
    auto [d, ok] = Compare(valid, RefTensor(**ref, "AB.logits.valid"));
    EXPECT_TRUE(ok) << c.model << " padded batch max |diff| " << d;
    worst = std::max(worst, d);
  }
  std::printf("%-20s %4d tensors compared, max |diff| %.3g\n", c.model, compared + 1, worst);
}

INSTANTIATE_TEST_SUITE_P(
    Models, ReferenceTest,
    ::testing::Values(Case{"llama-tiny", "llama-tiny"}, Case{"llama-tiny-tied", "llama-tiny-tied"},
                      Case{"llama-tiny-bf16", "llama-tiny-bf16"},
                      Case{"mistral-tiny", "mistral-tiny"}, Case{"qwen2-tiny", "qwen2-tiny"},
                      Case{"qwen2-tiny-sharded", "qwen2-tiny"},
                      Case{"llama-small", "llama-small"}),
    [](const auto& info) {
      std::string n = info.param.model;
      for (char& ch : n) if (ch == '-') ch = '_';
      return n;
    });

// bf16 compute stays close to float32 (reported; the tolerance is loose by design).
TEST(ModelTest, Bf16ComputeIsClose) {
  ComputeOptions bf16;
  bf16.bf16 = true;
  auto f32 = CausalLM::Load(kData + "/models/llama-small");
  auto b16 = CausalLM::Load(kData + "/models/llama-small", bf16);
  ASSERT_TRUE(f32.ok() && b16.ok());
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/llama-small.safetensors");
  at::Tensor ids = RefTensor(**ref, "B.input_ids");
  auto a = (*f32)->Forward(ids, at::Tensor());
  auto b = (*b16)->Forward(ids, at::Tensor());
  ASSERT_TRUE(a.ok() && b.ok());
  const double d = (a->logits - b->logits).abs().max().item<double>();
  const double scale = a->logits.abs().max().item<double>();
  std::printf("bf16 vs f32 logits: max |diff| %.3g (logits absmax %.3g)\n", d, scale);
  EXPECT_LT(d, 0.1 * scale);
  EXPECT_GT(d, 0.0);  // it really ran in bf16
}

// llama-small-outliers (scripts/make-outlier-model.sh) computes exactly llama-small's
// function: the planted channels only move powers of two between up_proj and
// down_proj, so the logits are bit for bit the same, and as close to transformers'
// reference as llama-small's own.
TEST(ModelTest, PlantedOutliersKeepTheFunction) {
  auto plain = CausalLM::Load(kData + "/models/llama-small");
  auto planted = CausalLM::Load(kData + "/models/llama-small-outliers");
  ASSERT_TRUE(plain.ok() && planted.ok());
  auto ref = SafetensorsFile::Open(kData + "/reference/forward/llama-small.safetensors");
  ASSERT_TRUE(ref.ok());
  at::Tensor ids = RefTensor(**ref, "B.input_ids");
  auto a = (*plain)->Forward(ids, at::Tensor());
  auto b = (*planted)->Forward(ids, at::Tensor());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->logits.equal(b->logits));
  auto [d, ok] = Compare(b->logits, RefTensor(**ref, "B.logits"));
  EXPECT_TRUE(ok) << "max |diff| " << d;
}

// A copy of a model folder with one file changed, for error tests.
std::string CopyModel(const std::string& name, const std::string& tag) {
  const fs::path dst = fs::path(::testing::TempDir()) / (name + "-" + tag);
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(kData + "/models/" + name)) {
    fs::copy_file(e.path(), dst / e.path().filename());
    fs::permissions(dst / e.path().filename(), fs::perms::owner_write, fs::perm_options::add);
  }
  return dst.string();
}

std::string Slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void Spit(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

// Replaces `from` by `to` in the file at `path` (which must contain it).
void Edit(const std::string& path, const std::string& from, const std::string& to) {
  std::string s = Slurp(path);
  const size_t pos = s.find(from);
  ASSERT_NE(pos, std::string::npos) << from;
  s.replace(pos, from.size(), to);
  Spit(path, s);
}

TEST(ModelErrorsTest, ClearErrorsNamingFileAndTensor) {
  {  // unknown architecture
    std::string dir = CopyModel("llama-tiny", "arch");
    Edit(dir + "/config.json", "\"llama\"", "\"mamba\"");
    auto m = CausalLM::Load(dir);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(m.status().message().find("mamba"), std::string::npos) << m.status();
  }
  {  // misshaped tensor: config says a wider MLP than the weights hold
    std::string dir = CopyModel("llama-tiny", "shape");
    Edit(dir + "/config.json", "\"intermediate_size\": 160", "\"intermediate_size\": 128");
    auto m = CausalLM::Load(dir);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("model.layers.0.mlp.gate_proj.weight"), std::string::npos)
        << m.status();
    EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos);
  }
  {  // missing tensor: untied config on tied weights
    std::string dir = CopyModel("llama-tiny-tied", "missing");
    Edit(dir + "/config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    auto m = CausalLM::Load(dir);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(m.status().message().find("lm_head.weight"), std::string::npos) << m.status();
  }
  {  // truncated file
    std::string dir = CopyModel("llama-tiny", "trunc");
    std::string w = Slurp(dir + "/model.safetensors");
    Spit(dir + "/model.safetensors", w.substr(0, w.size() / 2));
    auto m = CausalLM::Load(dir);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find(dir + "/model.safetensors"), std::string::npos) << m.status();
  }
  {  // a shard missing from a sharded checkpoint
    std::string dir = CopyModel("qwen2-tiny-sharded", "shard");
    fs::remove(dir + "/model-00002-of-00002.safetensors");
    auto m = CausalLM::Load(dir);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(m.status().message().find("model-00002-of-00002.safetensors"), std::string::npos);
  }
  {  // no model at all, bad token ids, bad device
    EXPECT_EQ(CausalLM::Load("/nonexistent/model").status().code(), absl::StatusCode::kNotFound);
    auto m = CausalLM::Load(kData + "/models/llama-tiny");
    ASSERT_TRUE(m.ok());
    auto r = (*m)->Forward(at::full({1, 3}, 5000, at::kLong), at::Tensor());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("5000"), std::string::npos);
    at::Tensor left_padded = at::tensor({0, 1, 1}, at::kLong).reshape({1, 3});
    auto lp = (*m)->Forward(at::ones({1, 3}, at::kLong), left_padded);
    EXPECT_EQ(lp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(lp.status().message().find("right padding"), std::string::npos);
    ComputeOptions gpu;
    gpu.device = "cuda:0";
    auto g = CausalLM::Load(kData + "/models/llama-tiny", gpu);
    if (!at::hasCUDA()) {
      EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition);
    }
    gpu.device = "tpu";
    EXPECT_EQ(CausalLM::Load(kData + "/models/llama-tiny", gpu).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace qcal
