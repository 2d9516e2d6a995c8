#include "common/safetensors.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "gtest/gtest.h"

namespace qcal {
namespace {

const std::string kData = QCAL_TEST_DATA_DIR;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name;
}

TEST(SafetensorsTest, OpensHuggingFaceCheckpoint) {
  auto f = SafetensorsFile::Open(kData + "/models/qwen2-tiny/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  // names() keeps the header's order (HF writes it sorted, so check a hand-made one).
  std::vector<float> v = {1, 2};
  const std::string path = TempPath("order.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {Float32Tensor("z", {1}, v.data()),
                                      Float32Tensor("a", {1}, v.data() + 1)}).ok());
  auto o = SafetensorsFile::Open(path);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ((*o)->names(), (std::vector<std::string>{"z", "a"}));
  auto t = (*f)->Get("model.layers.1.self_attn.k_proj.bias");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{32}));
  auto missing = (*f)->Get("model.layers.9.mlp.up_proj.weight");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("model.layers.9.mlp.up_proj.weight"), std::string::npos);
  auto wrong = (*f)->ReadFloat32("lm_head.weight", {64, 4096});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("lm_head.weight"), std::string::npos);
}

// llama-tiny-bf16 holds llama-tiny's float32 weights rounded (to nearest even) to bf16.
TEST(SafetensorsTest, Bf16WidensExactly) {
  auto f32 = SafetensorsFile::Open(kData + "/models/llama-tiny/model.safetensors");
  auto b16 = SafetensorsFile::Open(kData + "/models/llama-tiny-bf16/model.safetensors");
  ASSERT_TRUE(f32.ok() && b16.ok());
  for (const std::string& name : (*f32)->names()) {
    auto a = (*f32)->ReadFloat32(name);
    auto b = (*b16)->ReadFloat32(name);
    ASSERT_TRUE(a.ok() && b.ok()) << name;
    ASSERT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &(*a)[i], 4);
      const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
      float expect;
      std::memcpy(&expect, &rounded, 4);
      ASSERT_EQ((*b)[i], expect) << name << "[" << i << "]";
    }
  }
}

TEST(SafetensorsTest, WriteReadRoundTrip) {
  std::vector<float> v = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 7.0f};
  std::vector<TensorToWrite> ts = {Float32Tensor("a.b", {2, 3}, v.data())};
  TensorToWrite i8;
  i8.name = "q";
  i8.dtype = DType::kI8;
  i8.shape = {3};
  i8.bytes = std::string("\x01\xff\x7f", 3);
  ts.push_back(i8);
  const std::string path = TempPath("rt.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, ts, {{"k", "v"}}).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->names(), (std::vector<std::string>{"a.b", "q"}));
  EXPECT_EQ((*f)->metadata().at("k"), "v");
  auto back = (*f)->ReadFloat32("a.b", {2, 3});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(std::memcmp(back->data(), v.data(), 24), 0);
  auto q = (*f)->Get("q");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(std::memcmp(q->data, "\x01\xff\x7f", 3), 0);
}

TEST(SafetensorsTest, TruncatedFileNamesFileAndTensor) {
  std::string bytes = ReadAll(kData + "/models/llama-tiny/model.safetensors");
  const std::string path = TempPath("truncated.safetensors");
  WriteAll(path, bytes.substr(0, bytes.size() - 100));
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find(path), std::string::npos);
  EXPECT_NE(f.status().message().find("tensor \""), std::string::npos) << f.status();

  WriteAll(path, bytes.substr(0, 5));
  EXPECT_FALSE(SafetensorsFile::Open(path).ok());
  WriteAll(path, bytes.substr(0, 200));  // header cut in the middle
  EXPECT_FALSE(SafetensorsFile::Open(path).ok());
  EXPECT_EQ(SafetensorsFile::Open(TempPath("does-not-exist")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, RejectsLyingHeaders) {
  const char* bad[] = {
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})",        // size mismatch
      R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",       // negative dim
      R"({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})",        // dtype
      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})",        // reversed
      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}})",         // overlap
      R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 0]}})",
      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400000]}})",   // past end
      R"({"a": 3})",
      R"([1, 2])",
      R"({"__metadata__": {"x": 1}})",
      R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})",
  };
  for (const char* h : bad) {
    auto r = ParseSafetensorsHeader("t", h, std::strlen(h), 8);
    EXPECT_FALSE(r.ok()) << h;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << h;
  }
}

// Randomized mutation: no header or length field, however corrupted, crashes or hangs
// the reader; it either opens (and every view stays inside the file) or says why not.
TEST(SafetensorsTest, MutatedFilesNeverCrash) {
  const std::string orig = ReadAll(kData + "/models/llama-tiny-tied/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(orig[i]);
  std::mt19937_64 rng(42);
  const std::string path = TempPath("mutated.safetensors");
  int opened = 0;
  const char kTokens[] = "{}[]\",:0123456789-eE.FBIU \\";
  for (int iter = 0; iter < 400; ++iter) {
    std::string m = orig.substr(0, 8 + header_len + 4096);
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (8 + header_len);
      switch (rng() % 4) {
        case 0: m[pos] = kTokens[rng() % (sizeof(kTokens) - 1)]; break;
        case 1: m[pos] = static_cast<char>(rng()); break;
        case 2: m.erase(pos, 1 + rng() % 16); break;
        case 3: m.insert(pos, 1, kTokens[rng() % (sizeof(kTokens) - 1)]); break;
      }
    }
    WriteAll(path, m);
    auto f = SafetensorsFile::Open(path);
    if (!f.ok()) {
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    ++opened;
    const uint8_t* lo = nullptr;
    for (const auto& name : (*f)->names()) {
      auto t = (*f)->Get(name);
      ASSERT_TRUE(t.ok());
      if (lo == nullptr || t->data < lo) lo = t->data;
      // Reading every byte must stay inside the mapping (ASan/valgrind would catch it).
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t->nbytes; i += 97) sink = sink + t->data[i];
      (void)sink;
    }
  }
  std::cout << "mutated files that still opened: " << opened << " of 400\n";
}

}  // namespace
}  // namespace qcal
