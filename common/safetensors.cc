#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/regular_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace qcal {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float BF16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

absl::Status Corrupt(const std::string& origin, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file ", origin, ": ", what));
}

}  // namespace

absl::StatusOr<DType> ParseDType(const std::string& s) {
  for (const auto& d : kDTypes) {
    if (s == d.name) return d.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype \"", s, "\""));
}

const char* DTypeName(DType d) {
  for (const auto& i : kDTypes) {
    if (i.dtype == d) return i.name;
  }
  return "?";
}

size_t DTypeSize(DType d) {
  for (const auto& i : kDTypes) {
    if (i.dtype == d) return i.size;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<ParsedHeader> ParseSafetensorsHeader(const std::string& origin,
                                                     const char* json, size_t json_size,
                                                     size_t data_size) {
  // ordered_json keeps the header order, which names() promises.
  nlohmann::ordered_json header = nlohmann::ordered_json::parse(json, json + json_size, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded()) return Corrupt(origin, "header is not valid JSON");
  if (!header.is_object()) return Corrupt(origin, "header is not a JSON object");

  ParsedHeader out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::ordered_json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Corrupt(origin, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return Corrupt(origin, absl::StrCat("__metadata__ value of \"", m.key(),
                                              "\" is not a string"));
        }
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor \"", name, "\"");
    if (!v.is_object()) return Corrupt(origin, absl::StrCat(where, " is not an object"));
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) {
      return Corrupt(origin, absl::StrCat(where, " has no string dtype"));
    }
    if (sh == v.end() || !sh->is_array()) {
      return Corrupt(origin, absl::StrCat(where, " has no shape array"));
    }
    if (off == v.end() || !off->is_array() || off->size() != 2) {
      return Corrupt(origin, absl::StrCat(where, " has no [begin, end] data_offsets"));
    }
    auto dtype = ParseDType(dt->get<std::string>());
    if (!dtype.ok()) return Corrupt(origin, absl::StrCat(where, ": ", dtype.status().message()));
    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    if (sh->size() > 16) return Corrupt(origin, absl::StrCat(where, " has more than 16 dimensions"));
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) {
        return Corrupt(origin, absl::StrCat(where, " has a negative or non-integer dimension"));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 48) || (dim != 0 && numel > (uint64_t{1} << 48) / dim)) {
        return Corrupt(origin, absl::StrCat(where, " has an absurd shape"));
      }
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      return Corrupt(origin, absl::StrCat(where, " has non-integer data_offsets"));
    }
    const uint64_t begin = (*off)[0].get<uint64_t>();
    const uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return Corrupt(origin, absl::StrCat(where, " data_offsets [", begin, ", ", end,
                                          ") lie outside the ", data_size,
                                          "-byte data buffer (file truncated?)"));
    }
    const uint64_t expected = numel * DTypeSize(t.dtype);
    if (end - begin != expected) {
      return Corrupt(origin, absl::StrCat(where, " holds ", end - begin, " bytes but its shape [",
                                          absl::StrJoin(t.shape, ", "), "] of ",
                                          DTypeName(t.dtype), " needs ", expected));
    }
    t.data = reinterpret_cast<const uint8_t*>(static_cast<uintptr_t>(begin));
    t.nbytes = static_cast<size_t>(expected);
    if (expected > 0) ranges.emplace_back(begin, end);
    out.names.push_back(name);
    out.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return Corrupt(origin, "two tensors' data ranges overlap");
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  absl::StatusOr<int> opened = OpenRegularFile(path);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Corrupt(path, absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("mmap ", path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_size_ = size;

  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the 100 MB limit"));
  }
  if (header_len > size - 8) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " runs past the end of the ",
                                      size, "-byte file (truncated?)"));
  }
  const size_t data_start = 8 + static_cast<size_t>(header_len);
  QCAL_ASSIGN_OR_RETURN(ParsedHeader parsed,
                        ParseSafetensorsHeader(path, reinterpret_cast<const char*>(bytes + 8),
                                               header_len, size - data_start));
  for (auto& [name, t] : parsed.tensors) {
    t.data = bytes + data_start + reinterpret_cast<uintptr_t>(t.data);
  }
  file->names_ = std::move(parsed.names);
  file->tensors_ = std::move(parsed.tensors);
  file->metadata_ = std::move(parsed.metadata);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

absl::StatusOr<TensorView> SafetensorsFile::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor \"", name, "\" not found in ", path_));
  }
  return it->second;
}

absl::StatusOr<std::vector<float>> SafetensorsFile::ReadFloat32(
    const std::string& name, const std::vector<int64_t>& expected_shape) const {
  QCAL_ASSIGN_OR_RETURN(TensorView t, Get(name));
  if (!expected_shape.empty() && t.shape != expected_shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" in ", path_, " has shape [",
                     absl::StrJoin(t.shape, ", "), "], expected [",
                     absl::StrJoin(expected_shape, ", "), "]"));
  }
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  switch (t.dtype) {
    case DType::kF32:
      // An empty vector's data() may be null: memcpy with null is undefined even for 0.
      if (n > 0) std::memcpy(out.data(), t.data, n * 4);
      break;
    case DType::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, t.data + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = t.dtype == DType::kF16 ? HalfToFloat(h) : BF16ToFloat(h);
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" in ", path_,
                                                     " has dtype ", DTypeName(t.dtype),
                                                     ", expected a floating type"));
  }
  return out;
}

TensorToWrite Float32Tensor(std::string name, std::vector<int64_t> shape, const float* data) {
  TensorToWrite t;
  t.name = std::move(name);
  t.dtype = DType::kF32;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  t.shape = std::move(shape);
  t.bytes.assign(reinterpret_cast<const char*>(data), static_cast<size_t>(n) * 4);
  return t;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (t.bytes.size() != static_cast<size_t>(n) * DTypeSize(t.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" has ",
                                                     t.bytes.size(), " bytes for its shape"));
    }
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string h = header.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned (allowed by the format).
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  const std::string tmp = TemporaryPathFor(path);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    uint64_t len = h.size();
    char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    f.write(le, 8);
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& t : tensors) f.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
    f.flush();
    if (!f) {
      f.close();
      std::remove(tmp.c_str());
      return absl::DataLossError(absl::StrCat("short write to ", tmp));
    }
  }
  return RenameIntoPlace(tmp, path);
}

}  // namespace qcal
