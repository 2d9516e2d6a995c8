#include "common/model_config.h"

#include <fstream>
#include <random>
#include <sstream>

#include "gtest/gtest.h"

namespace qcal {
namespace {

const std::string kModels = std::string(QCAL_TEST_DATA_DIR) + "/models";

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(ModelConfigTest, ParsesBundledModels) {
  auto llama = LoadModelConfig(kModels + "/llama-small");
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ(llama->arch, Arch::kLlama);
  EXPECT_EQ(llama->hidden_size, 192);
  EXPECT_EQ(llama->num_layers, 6);
  EXPECT_EQ(llama->num_kv_heads, 2);
  EXPECT_EQ(llama->head_dim, 32);
  EXPECT_FALSE(llama->bos_token_id.has_value());
  EXPECT_EQ(llama->eos_token_id, 0);

  auto mistral = LoadModelConfig(kModels + "/mistral-tiny");
  ASSERT_TRUE(mistral.ok());
  EXPECT_EQ(mistral->sliding_window, 16);
  auto qwen = LoadModelConfig(kModels + "/qwen2-tiny");
  ASSERT_TRUE(qwen.ok());
  EXPECT_EQ(qwen->sliding_window, 0);  // use_sliding_window is false for qwen2
  EXPECT_TRUE(qwen->spec().qkv_bias);
  EXPECT_EQ(qwen->rope_theta, 1e6);
  auto tied = LoadModelConfig(kModels + "/llama-tiny-tied");
  ASSERT_TRUE(tied.ok());
  EXPECT_TRUE(tied->tie_word_embeddings);
}

TEST(ModelConfigTest, LinearModulesInForwardOrder) {
  auto c = LoadModelConfig(kModels + "/llama-tiny");
  ASSERT_TRUE(c.ok());
  auto mods = LinearModules(*c);
  ASSERT_EQ(mods.size(), 15u);
  EXPECT_EQ(mods[0].name, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(mods[2].name, "model.layers.0.self_attn.v_proj");
  EXPECT_EQ(mods[2].out_features, 32);
  EXPECT_EQ(mods[6].name, "model.layers.0.mlp.down_proj");
  EXPECT_EQ(mods[6].in_features, 160);
  EXPECT_EQ(mods[14].name, "lm_head");
  EXPECT_EQ(mods[14].out_features, 4096);
}

TEST(ModelConfigTest, ClearErrors) {
  auto unknown = ParseModelConfig(R"({"model_type": "bert", "vocab_size": 10})", "x/config.json");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(unknown.status().message().find("bert"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("x/config.json"), std::string::npos);

  auto missing = ParseModelConfig(R"({"model_type": "llama", "vocab_size": 10})", "c.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("hidden_size"), std::string::npos);

  auto garbage = ParseModelConfig("{not json", "c.json");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);

  std::string text = ReadAll(kModels + "/llama-tiny/config.json");
  auto pos = text.find("\"num_key_value_heads\": 2");
  ASSERT_NE(pos, std::string::npos);
  std::string bad_kv = text;
  bad_kv.replace(pos, 24, "\"num_key_value_heads\": 3");
  auto kv = ParseModelConfig(bad_kv, "c.json");
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(kv.status().message().find("num_key_value_heads"), std::string::npos);

  EXPECT_EQ(LoadModelConfig("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

// Randomized mutation of real config.json files: the parser never crashes or hangs.
TEST(ModelConfigTest, MutatedConfigsNeverCrash) {
  std::mt19937_64 rng(7);
  const char* models[] = {"llama-tiny", "mistral-tiny", "qwen2-tiny", "llama-small"};
  const char kTokens[] = "{}[]\",:0123456789-eE.truefalsenul ";
  int ok = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text = ReadAll(kModels + "/" + models[iter % 4] + "/config.json");
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % text.size();
      switch (rng() % 3) {
        case 0: text[pos] = kTokens[rng() % (sizeof(kTokens) - 1)]; break;
        case 1: text.erase(pos, 1 + rng() % 8); break;
        case 2: text.insert(pos, 1, static_cast<char>(rng())); break;
      }
      if (text.empty()) text = "{";
    }
    auto c = ParseModelConfig(text, "mutated");
    if (c.ok()) {
      ++ok;
      EXPECT_GT(c->hidden_size, 0);
      EXPECT_EQ(c->num_heads % c->num_kv_heads, 0);
    } else {
      EXPECT_FALSE(c.status().message().empty());
    }
  }
  std::cout << "mutated configs still accepted: " << ok << " of 2000\n";
}

}  // namespace
}  // namespace qcal
