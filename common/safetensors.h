// Safetensors reading and writing (https://github.com/huggingface/safetensors format).
//
// Format: 8-byte little-endian header length N, then N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the data buffer; offsets are relative to it.
//
// The reader never trusts the header: it memory-maps the file and validates the
// header size, JSON, every dtype, shape (non-negative, no overflow), that
// end - begin == numel * itemsize, that every range lies inside the file and that
// ranges do not overlap. Errors name the file and the tensor.
//
// Thread-safety: a SafetensorsFile is immutable after Open and may be read from many
// threads. The mapping lives as long as the object; TensorView data pointers are valid
// only while it lives.
#ifndef QCAL_COMMON_SAFETENSORS_H_
#define QCAL_COMMON_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qcal {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32 etc.; error for anything else.
absl::StatusOr<DType> ParseDType(const std::string& s);
const char* DTypeName(DType d);
size_t DTypeSize(DType d);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; not necessarily aligned
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Headers larger than 100 MB are refused.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names in header order.
  const std::vector<std::string>& names() const { return names_; }
  bool Contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // NOT_FOUND naming the file and tensor when absent.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies a floating tensor (F32, F16, BF16, F64) into float32, with the shape checked
  // against `expected_shape` when it is non-empty. Errors name the file and tensor.
  absl::StatusOr<std::vector<float>> ReadFloat32(
      const std::string& name, const std::vector<int64_t>& expected_shape = {}) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<std::string> names_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Parses a header (the JSON bytes only) against a data buffer of `data_size` bytes.
// Exposed for fuzzing; Open uses it.
struct ParsedHeader {
  std::vector<std::string> names;
  std::map<std::string, TensorView> tensors;  // data pointers relative to nullptr base
  std::map<std::string, std::string> metadata;
};
absl::StatusOr<ParsedHeader> ParseSafetensorsHeader(const std::string& origin,
                                                     const char* json, size_t json_size,
                                                     size_t data_size);

// A tensor to write: raw little-endian bytes of `dtype` with `shape`.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;  // numel * DTypeSize(dtype) bytes
};

// Convenience for float32 data.
TensorToWrite Float32Tensor(std::string name, std::vector<int64_t> shape,
                            const float* data);

// Writes tensors (in the given order, data 8-byte aligned) and metadata to `path`
// through a temporary file renamed into place, so a crash never leaves a partial file
// under the final name.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace qcal

#endif  // QCAL_COMMON_SAFETENSORS_H_
