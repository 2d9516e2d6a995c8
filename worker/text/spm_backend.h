// Internal to qcal_text: SentencePiece models through qcal_spm_shim, the shared
// object that alone includes and links libsentencepiece (spm_shim.cc), loaded into
// its own symbol scope by spm_shim_loader.h. Only C types cross into the shim, so
// this class works in every program, gRPC's libprotobuf loaded or not
// (docs/sentencepiece.md).
//
// Debian's sentencepiece header declares `namespace absl { using std::string_view; }`,
// which clashes with Debian's abseil, so the shim's files use no abseil;
// spm_tokenizer.cc wraps this class for the rest of qcal_text.
//
// Thread-safe after Load: the shim's encode/decode are const.
#ifndef QCAL_WORKER_TEXT_SPM_BACKEND_H_
#define QCAL_WORKER_TEXT_SPM_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qcal::text {

class SpmBackend {
 public:
  // Loads a serialized ModelProto (the bytes of tokenizer.model). Also prepares a
  // second processor with add_dummy_prefix off, for text that follows a special
  // token under transformers' legacy=false. Returns null and sets *error on failure,
  // also when the shim cannot be loaded (libsentencepiece0 missing); never aborts.
  static std::unique_ptr<SpmBackend> Load(const std::string& model_bytes, std::string* error);
  ~SpmBackend();

  // Ids of `text`; with dummy_prefix=false as if the model had add_dummy_prefix off.
  bool Encode(std::string_view text, bool dummy_prefix, std::vector<int>* ids,
              std::string* error) const;
  // Text of `ids`; dummy_prefix=false keeps a leading space.
  bool Decode(const std::vector<int>& ids, bool dummy_prefix, std::string* text,
              std::string* error) const;

  int piece_size() const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;  // unk_id() when absent
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int unk_id() const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  int pad_id() const;
  bool add_dummy_prefix() const { return add_dummy_prefix_; }
  // The normalizer maps text 1:1 except ' ' -> U+2581 (no precompiled character
  // map, remove_extra_whitespaces off, escape_whitespaces on), as in Llama 2,
  // Mistral and Gemma.
  bool identity_normalizer() const { return identity_normalizer_; }

 private:
  SpmBackend();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool add_dummy_prefix_ = true;
  bool identity_normalizer_ = false;
};

// The serialized ModelProto `model_bytes` with normalizer_spec.add_dummy_prefix set
// to false and self_test_data dropped (its samples assume the original setting).
// Returns false if the bytes are not a well-formed protobuf message. Exposed for
// tests.
// *identity_normalizer tells whether the normalizer is the identity (see
// SpmBackend::identity_normalizer).
bool DisableDummyPrefix(const std::string& model_bytes, std::string* out,
                        bool* had_dummy_prefix, bool* identity_normalizer);

}  // namespace qcal::text

#endif  // QCAL_WORKER_TEXT_SPM_BACKEND_H_
