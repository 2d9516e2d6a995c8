// qcal_spm_shim: libsentencepiece behind the C interface of spm_shim_api.h.
//
// Built as its own shared object and linked against nothing of qcal, so that
// loaded with RTLD_DEEPBIND it resolves libsentencepiece's embedded protobuf-lite
// 3.14 symbols to libsentencepiece itself rather than to the process's libprotobuf
// 3.21 (which fails the 3.14 version check and aborts). No abseil here (see
// spm_backend.h) and no exception may leave an entry point.
#include <sentencepiece_processor.h>

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "worker/text/spm_shim_api.h"

struct QcalSpmProcessor {
  sentencepiece::SentencePieceProcessor sp;
};

namespace {

void Report(QcalSpmBytesSink sink, void* ctx, const std::string& message) {
  if (sink != nullptr) sink(ctx, message.data(), message.size());
}

// Runs `body`, turning an exception into an error report and `failed`.
template <typename F, typename R>
R Guard(QcalSpmBytesSink error, void* ctx, R failed, F body) {
  try {
    return body();
  } catch (const std::exception& e) {
    Report(error, ctx, std::string("sentencepiece: ") + e.what());
  } catch (...) {
    Report(error, ctx, "sentencepiece: unknown exception");
  }
  return failed;
}

QcalSpmProcessor* Load(const char* model, size_t size, QcalSpmBytesSink error, void* ctx) {
  return Guard(error, ctx, static_cast<QcalSpmProcessor*>(nullptr), [&] {
    auto* p = new QcalSpmProcessor();
    const auto status = p->sp.LoadFromSerializedProto(std::string_view(model, size));
    if (!status.ok()) {
      Report(error, ctx, status.ToString());
      delete p;
      return static_cast<QcalSpmProcessor*>(nullptr);
    }
    return p;
  });
}

void Destroy(QcalSpmProcessor* p) { delete p; }

int Encode(const QcalSpmProcessor* p, const char* text, size_t size, QcalSpmIdsSink ids,
           QcalSpmBytesSink error, void* ctx) {
  return Guard(error, ctx, 0, [&] {
    std::vector<int> out;
    const auto status = p->sp.Encode(std::string_view(text, size), &out);
    if (!status.ok()) {
      Report(error, ctx, status.ToString());
      return 0;
    }
    ids(ctx, out.data(), out.size());
    return 1;
  });
}

int Decode(const QcalSpmProcessor* p, const int* ids, size_t count, QcalSpmBytesSink text,
           QcalSpmBytesSink error, void* ctx) {
  return Guard(error, ctx, 0, [&] {
    std::string out;
    const auto status = p->sp.Decode(std::vector<int>(ids, ids + count), &out);
    if (!status.ok()) {
      Report(error, ctx, status.ToString());
      return 0;
    }
    text(ctx, out.data(), out.size());
    return 1;
  });
}

int PieceSize(const QcalSpmProcessor* p) { return p->sp.GetPieceSize(); }

void IdToPiece(const QcalSpmProcessor* p, int id, QcalSpmBytesSink piece, void* ctx) {
  Guard(nullptr, nullptr, 0, [&] {
    const std::string& s = p->sp.IdToPiece(id);
    piece(ctx, s.data(), s.size());
    return 0;
  });
}

int PieceToId(const QcalSpmProcessor* p, const char* piece, size_t size) {
  return Guard(nullptr, nullptr, p->sp.unk_id(),
               [&] { return p->sp.PieceToId(std::string_view(piece, size)); });
}

int IsControl(const QcalSpmProcessor* p, int id) { return p->sp.IsControl(id) ? 1 : 0; }
int IsUnknown(const QcalSpmProcessor* p, int id) { return p->sp.IsUnknown(id) ? 1 : 0; }

int SpecialId(const QcalSpmProcessor* p, QcalSpmSpecialId which) {
  switch (which) {
    case QCAL_SPM_UNK:
      return p->sp.unk_id();
    case QCAL_SPM_BOS:
      return p->sp.bos_id();
    case QCAL_SPM_EOS:
      return p->sp.eos_id();
    case QCAL_SPM_PAD:
      return p->sp.pad_id();
  }
  return -1;
}

constexpr QcalSpmApi kApi = {
    QCAL_SPM_API_VERSION, sizeof(QcalSpmApi), Load,      Destroy,   Encode,   Decode,
    PieceSize,            IdToPiece,          PieceToId, IsControl, IsUnknown, SpecialId,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const QcalSpmApi* qcal_spm_api_v1() {
  return &kApi;
}
