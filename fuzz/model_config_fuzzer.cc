// Fuzz target: config.json (common/model_config.h ParseModelConfig) and what the
// coordinator derives from an accepted config before any weight is read: the
// linear modules (LinearModules) and the tensors the folder must hold
// (ExpectedTensors, common/model_files.h).
//
// Properties: no crash; an accepted config lies within ModelLimits, so the derived
// lists stay small (one entry per module or tensor, every width positive).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/model_config.h"
#include "common/model_files.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = qcal::ParseModelConfig(text, "config.json");
  if (!parsed.ok()) {
    QCAL_FUZZ_CHECK(!parsed.status().message().empty(), "an error says what is wrong");
    return 0;
  }
  const qcal::ModelConfig& c = *parsed;
  using L = qcal::ModelLimits;
  QCAL_FUZZ_CHECK(c.vocab_size >= 1 && c.vocab_size <= L::kVocab, "vocab_size");
  QCAL_FUZZ_CHECK(c.hidden_size >= 1 && c.hidden_size <= L::kHidden, "hidden_size");
  QCAL_FUZZ_CHECK(c.intermediate_size >= 1 && c.intermediate_size <= L::kIntermediate,
                  "intermediate_size");
  QCAL_FUZZ_CHECK(c.num_layers >= 1 && c.num_layers <= L::kLayers, "num_layers");
  QCAL_FUZZ_CHECK(c.num_heads >= 1 && c.num_heads <= L::kHeads, "num_heads");
  QCAL_FUZZ_CHECK(c.num_kv_heads >= 1 && c.num_kv_heads <= c.num_heads, "num_kv_heads");
  QCAL_FUZZ_CHECK(c.head_dim >= 1 && c.head_dim <= L::kHeadDim, "head_dim");
  QCAL_FUZZ_CHECK(c.max_position_embeddings >= 1 && c.max_position_embeddings <= L::kPositions,
                  "max_position_embeddings");

  const std::vector<qcal::LinearModule> linears = qcal::LinearModules(c);
  const int64_t per_layer = c.spec().gated_mlp ? 7 : 6;
  QCAL_FUZZ_CHECK(static_cast<int64_t>(linears.size()) == c.num_layers * per_layer + 1,
                  "one entry per linear module");
  for (const qcal::LinearModule& l : linears) {
    QCAL_FUZZ_CHECK(!l.name.empty() && l.in_features > 0 && l.out_features > 0, l.name);
  }
  const std::vector<qcal::ExpectedTensor> tensors = qcal::ExpectedTensors(c);
  QCAL_FUZZ_CHECK(static_cast<int64_t>(tensors.size()) >= 3 + c.num_layers * 8, "tensor count");
  for (const qcal::ExpectedTensor& t : tensors) {
    QCAL_FUZZ_CHECK(!t.name.empty() && !t.shape.empty(), t.name);
    for (int64_t d : t.shape) QCAL_FUZZ_CHECK(d > 0, t.name);
  }
  return 0;
}
