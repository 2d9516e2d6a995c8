// Fuzz target: safetensors files (common/safetensors.h), the bytes every model
// folder's weights start with and the first thing a coordinator reads of a model.
//
// The input is a whole .safetensors file (8-byte little-endian header length, JSON
// header, data). It goes through SafetensorsFile::Open (from a file: Open maps it),
// every tensor is read back, and the folder holding it is checked against a small
// llama config (ModelFiles / CheckModelFiles, headers only). The input is also
// parsed as a bare header by ParseSafetensorsHeader. Properties: no crash, every
// accepted tensor lies inside the data, and its float copy has numel values.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/model_config.h"
#include "common/model_files.h"
#include "common/safetensors.h"
#include "fuzz/fuzz_util.h"

namespace {

// The tensors of this config are what the seeds name (fuzz/corpus/safetensors).
constexpr char kConfig[] = R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8,
  "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
  "num_key_value_heads": 1, "max_position_embeddings": 64})";

void CheckFile(const qcal::SafetensorsFile& file, size_t file_size) {
  for (const std::string& name : file.names()) {
    auto view = file.Get(name);
    QCAL_FUZZ_CHECK(view.ok(), name);
    QCAL_FUZZ_CHECK(view->nbytes == static_cast<size_t>(view->numel()) *
                                        qcal::DTypeSize(view->dtype),
                    name);
    QCAL_FUZZ_CHECK(view->nbytes <= file_size, name);
    auto floats = file.ReadFloat32(name);
    if (floats.ok()) {
      QCAL_FUZZ_CHECK(floats->size() == static_cast<size_t>(view->numel()), name);
    }
    (void)file.ReadFloat32(name, {1, 2});  // a shape mismatch must be an error, not a read
  }
  for (const auto& [key, value] : file.metadata()) (void)key, (void)value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = qcal::fuzz::ScratchDir();
  static const std::string path = dir + "/model.safetensors";
  static const qcal::ModelConfig* config = [] {
    auto c = qcal::ParseModelConfig(kConfig, "fuzz config");
    if (!c.ok()) qcal::fuzz::HarnessError(std::string(c.status().message()));
    return new qcal::ModelConfig(*c);
  }();

  qcal::fuzz::WriteFile(path, data, size);
  auto file = qcal::SafetensorsFile::Open(path);
  if (file.ok()) CheckFile(**file, size);

  auto files = qcal::ModelFiles::Open(dir);
  if (files.ok()) {
    for (const std::string& name : (*files)->names()) {
      QCAL_FUZZ_CHECK((*files)->Find(name).ok(), name);
    }
    (void)qcal::CheckModelFiles(**files, *config);
  }

  // The header parser alone: the whole input as the JSON, its size as the data's.
  auto header = qcal::ParseSafetensorsHeader("fuzz input", reinterpret_cast<const char*>(data),
                                             size, size);
  if (header.ok()) {
    QCAL_FUZZ_CHECK(header->names.size() == header->tensors.size(), "names vs tensors");
    for (const auto& [name, t] : header->tensors) {
      const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data);
      QCAL_FUZZ_CHECK(begin <= size && t.nbytes <= size - begin, name);
    }
  }
  return 0;
}
