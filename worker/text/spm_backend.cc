// No abseil header may be included here (see spm_backend.h).
#include "worker/text/spm_backend.h"

#include <cstdint>

#include "worker/text/spm_shim_loader.h"

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

namespace {

void AppendBytes(void* ctx, const char* data, size_t size) {
  static_cast<std::string*>(ctx)->append(data, size);
}

// Collects one call's outputs for the shim's sinks.
struct CallOutputs {
  std::vector<int>* ids = nullptr;
  std::string* text = nullptr;
  std::string* error = nullptr;
};

void SinkIds(void* ctx, const int* ids, size_t count) {
  static_cast<CallOutputs*>(ctx)->ids->assign(ids, ids + count);
}
void SinkText(void* ctx, const char* data, size_t size) {
  static_cast<CallOutputs*>(ctx)->text->assign(data, size);
}
void SinkError(void* ctx, const char* data, size_t size) {
  static_cast<CallOutputs*>(ctx)->error->assign(data, size);
}

}  // namespace

// Two processors of the shim: the model as stored, and with add_dummy_prefix off.
struct SpmBackend::Impl {
  const QcalSpmApi* api = nullptr;
  QcalSpmProcessor* with_prefix = nullptr;
  QcalSpmProcessor* without_prefix = nullptr;

  ~Impl() {
    if (with_prefix != nullptr) api->destroy(with_prefix);
    if (without_prefix != nullptr) api->destroy(without_prefix);
  }
  const QcalSpmProcessor* get(bool dummy_prefix) const {
    return dummy_prefix ? with_prefix : without_prefix;
  }
  QcalSpmProcessor* Load(const std::string& bytes, std::string* error) const {
    error->clear();
    QcalSpmProcessor* p = api->load(bytes.data(), bytes.size(), AppendBytes, error);
    if (p == nullptr && error->empty()) *error = "sentencepiece: model did not load";
    return p;
  }
};

SpmBackend::SpmBackend() : impl_(std::make_unique<Impl>()) {}
SpmBackend::~SpmBackend() = default;

std::unique_ptr<SpmBackend> SpmBackend::Load(const std::string& model_bytes, std::string* error) {
  std::unique_ptr<SpmBackend> b(new SpmBackend());
  b->impl_->api = SpmShimApi(error);
  if (b->impl_->api == nullptr) return nullptr;
  b->impl_->with_prefix = b->impl_->Load(model_bytes, error);
  if (b->impl_->with_prefix == nullptr) return nullptr;
  std::string no_prefix;
  if (!DisableDummyPrefix(model_bytes, &no_prefix, &b->add_dummy_prefix_,
                          &b->identity_normalizer_)) {
    *error = "not a well-formed ModelProto";
    return nullptr;
  }
  b->impl_->without_prefix = b->impl_->Load(no_prefix, error);
  if (b->impl_->without_prefix == nullptr) return nullptr;
  return b;
}

bool SpmBackend::Encode(std::string_view text, bool dummy_prefix, std::vector<int>* ids,
                        std::string* error) const {
  CallOutputs out{ids, nullptr, error};
  ids->clear();
  return impl_->api->encode(impl_->get(dummy_prefix), text.data(), text.size(), SinkIds,
                            SinkError, &out) != 0;
}

bool SpmBackend::Decode(const std::vector<int>& ids, bool dummy_prefix, std::string* text,
                        std::string* error) const {
  CallOutputs out{nullptr, text, error};
  text->clear();
  return impl_->api->decode(impl_->get(dummy_prefix), ids.data(), ids.size(), SinkText,
                            SinkError, &out) != 0;
}

int SpmBackend::piece_size() const { return impl_->api->piece_size(impl_->with_prefix); }
std::string SpmBackend::IdToPiece(int id) const {
  std::string piece;
  impl_->api->id_to_piece(impl_->with_prefix, id, AppendBytes, &piece);
  return piece;
}
int SpmBackend::PieceToId(std::string_view piece) const {
  return impl_->api->piece_to_id(impl_->with_prefix, piece.data(), piece.size());
}
bool SpmBackend::IsControl(int id) const {
  return impl_->api->is_control(impl_->with_prefix, id) != 0;
}
bool SpmBackend::IsUnknown(int id) const {
  return impl_->api->is_unknown(impl_->with_prefix, id) != 0;
}
int SpmBackend::unk_id() const { return impl_->api->special_id(impl_->with_prefix, QCAL_SPM_UNK); }
int SpmBackend::bos_id() const { return impl_->api->special_id(impl_->with_prefix, QCAL_SPM_BOS); }
int SpmBackend::eos_id() const { return impl_->api->special_id(impl_->with_prefix, QCAL_SPM_EOS); }
int SpmBackend::pad_id() const { return impl_->api->special_id(impl_->with_prefix, QCAL_SPM_PAD); }

}  // namespace qcal::text
