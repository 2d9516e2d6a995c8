// No abseil header may be included here (see spm_backend.h).
#include "worker/text/spm_backend.h"

#include <sentencepiece_processor.h>

#include <cstdint>

namespace qcal::text {
namespace {

bool ReadVarint(const std::string& s, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= s.size()) return false;
    const auto b = static_cast<unsigned char>(s[(*pos)++]);
    *v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// Reads the field at *pos: its number, and where its value starts and ends.
bool ReadField(const std::string& s, size_t* pos, uint64_t* field, size_t* value_start,
               size_t* end) {
  uint64_t tag;
  if (!ReadVarint(s, pos, &tag)) return false;
  *field = tag >> 3;
  *value_start = *pos;
  uint64_t v;
  switch (tag & 7) {
    case 0:
      if (!ReadVarint(s, pos, &v)) return false;
      break;
    case 1:
      *pos += 8;
      break;
    case 2:
      if (!ReadVarint(s, pos, &v) || v > s.size() - *pos) return false;
      *value_start = *pos;
      *pos += v;
      break;
    case 5:
      *pos += 4;
      break;
    default:
      return false;
  }
  *end = *pos;
  return *pos <= s.size();
}

// sentencepiece_model.proto field numbers.
constexpr uint64_t kModelNormalizerSpec = 3;
constexpr uint64_t kModelSelfTestData = 4;
constexpr uint64_t kNormalizerCharsmap = 2;
constexpr uint64_t kNormalizerAddDummyPrefix = 3;
constexpr uint64_t kNormalizerRemoveExtraWhitespaces = 4;
constexpr uint64_t kNormalizerEscapeWhitespaces = 5;

std::string ToString(const sentencepiece::util::Status& s) { return s.ToString(); }

}  // namespace

bool DisableDummyPrefix(const std::string& model_bytes, std::string* out,
                        bool* had_dummy_prefix, bool* identity_normalizer) {
  out->clear();
  // Proto defaults.
  *had_dummy_prefix = true;
  bool has_charsmap = false, remove_extra_whitespaces = true, escape_whitespaces = true;
  size_t pos = 0;
  while (pos < model_bytes.size()) {
    const size_t field_start = pos;
    uint64_t field;
    size_t value_start, end;
    if (!ReadField(model_bytes, &pos, &field, &value_start, &end)) return false;
    if (field == kModelSelfTestData) continue;
    if (field == kModelNormalizerSpec) {
      const std::string spec = model_bytes.substr(value_start, end - value_start);
      size_t p = 0;
      while (p < spec.size()) {
        uint64_t f;
        size_t vs, e;
        if (!ReadField(spec, &p, &f, &vs, &e)) return false;
        if (f == kNormalizerCharsmap) has_charsmap = e > vs;
        if (f == kNormalizerAddDummyPrefix || f == kNormalizerRemoveExtraWhitespaces ||
            f == kNormalizerEscapeWhitespaces) {
          size_t q = vs;
          uint64_t v;
          if (!ReadVarint(spec, &q, &v)) return false;
          if (f == kNormalizerAddDummyPrefix) *had_dummy_prefix = v != 0;
          if (f == kNormalizerRemoveExtraWhitespaces) remove_extra_whitespaces = v != 0;
          if (f == kNormalizerEscapeWhitespaces) escape_whitespaces = v != 0;
        }
      }
    }
    out->append(model_bytes, field_start, end - field_start);
  }
  *identity_normalizer = !has_charsmap && !remove_extra_whitespaces && escape_whitespaces;
  // A second normalizer_spec is merged into the first: only add_dummy_prefix = false.
  out->append("\x1A\x02\x18\x00", 4);
  return true;
}

struct SpmBackend::Impl {
  sentencepiece::SentencePieceProcessor with_prefix;
  sentencepiece::SentencePieceProcessor without_prefix;
};

SpmBackend::SpmBackend() : impl_(std::make_unique<Impl>()) {}
SpmBackend::~SpmBackend() = default;

std::unique_ptr<SpmBackend> SpmBackend::Load(const std::string& model_bytes, std::string* error) {
  std::unique_ptr<SpmBackend> b(new SpmBackend());
  auto status = b->impl_->with_prefix.LoadFromSerializedProto(model_bytes);
  if (!status.ok()) {
    *error = ToString(status);
    return nullptr;
  }
  std::string no_prefix;
  if (!DisableDummyPrefix(model_bytes, &no_prefix, &b->add_dummy_prefix_,
                          &b->identity_normalizer_)) {
    *error = "not a well-formed ModelProto";
    return nullptr;
  }
  status = b->impl_->without_prefix.LoadFromSerializedProto(no_prefix);
  if (!status.ok()) {
    *error = ToString(status);
    return nullptr;
  }
  return b;
}

bool SpmBackend::Encode(std::string_view text, bool dummy_prefix, std::vector<int>* ids,
                        std::string* error) const {
  const auto& sp = dummy_prefix ? impl_->with_prefix : impl_->without_prefix;
  auto status = sp.Encode(text, ids);
  if (!status.ok()) {
    *error = ToString(status);
    return false;
  }
  return true;
}

bool SpmBackend::Decode(const std::vector<int>& ids, bool dummy_prefix, std::string* text,
                        std::string* error) const {
  const auto& sp = dummy_prefix ? impl_->with_prefix : impl_->without_prefix;
  auto status = sp.Decode(ids, text);
  if (!status.ok()) {
    *error = ToString(status);
    return false;
  }
  return true;
}

int SpmBackend::piece_size() const { return impl_->with_prefix.GetPieceSize(); }
std::string SpmBackend::IdToPiece(int id) const { return impl_->with_prefix.IdToPiece(id); }
int SpmBackend::PieceToId(std::string_view piece) const {
  return impl_->with_prefix.PieceToId(piece);
}
bool SpmBackend::IsControl(int id) const { return impl_->with_prefix.IsControl(id); }
bool SpmBackend::IsUnknown(int id) const { return impl_->with_prefix.IsUnknown(id); }
int SpmBackend::unk_id() const { return impl_->with_prefix.unk_id(); }
int SpmBackend::bos_id() const { return impl_->with_prefix.bos_id(); }
int SpmBackend::eos_id() const { return impl_->with_prefix.eos_id(); }
int SpmBackend::pad_id() const { return impl_->with_prefix.pad_id(); }

}  // namespace qcal::text
