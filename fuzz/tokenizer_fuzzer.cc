// Fuzz target: tokenizer.json (worker/text/tokenizer.h LoadTokenizer, the
// byte-level BPE reader), what a worker reads from every model folder a client
// names, then encoding and decoding a few strings with the tokenizer it accepted.
//
// Input: the bytes up to the first NUL are tokenizer.json; the bytes after it, if
// any, are tokenizer_config.json (special-token names, add_bos_token, ...). Both
// go into a folder of their own, as LoadTokenizer takes a folder. Only
// tokenizer.json is ever written, never tokenizer.model, so the SentencePiece shim
// (dlopened, and RTLD_DEEPBIND does not mix with ASan) is not loaded.
//
// Properties: no crash; every id Encode returns lies in [0, vocab_size()) (the
// header: vocab_size is one more than the largest id), and Decode accepts them.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "worker/text/tokenizer.h"

namespace {

const char* const kTexts[] = {
    "Hello world",
    "  leading spaces, trailing\t\n",
    "<|endoftext|>after a special token<|im_start|>",
    "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac 123 4567 \xf0\x9f\x98\x80",
    "e\xcc\x81",  // e + combining acute: NFC changes it
    "",
};

void Use(const qcal::text::Tokenizer& tok, const std::string& text) {
  for (bool special : {false, true}) {
    auto ids = tok.Encode(text, special);
    if (!ids.ok()) continue;
    for (int32_t id : *ids) {
      QCAL_FUZZ_CHECK(id >= 0 && id < tok.vocab_size(),
                      absl::StrCat("id ", id, " of \"", text, "\"; vocab_size ", tok.vocab_size()));
    }
    QCAL_FUZZ_CHECK(tok.Decode(*ids).ok(), absl::StrCat("Decode of the ids of \"", text, "\""));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = qcal::fuzz::ScratchDir() + "/tokenizer";
  static const bool made = (qcal::fuzz::MakeDirs(dir), true);
  (void)made;
  const char* bytes = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(bytes, '\0', size);
  const size_t json_size = nul ? static_cast<size_t>(static_cast<const char*>(nul) - bytes) : size;
  qcal::fuzz::WriteFile(dir + "/tokenizer.json", bytes, json_size);
  const std::string config_path = dir + "/tokenizer_config.json";
  if (nul != nullptr) {
    qcal::fuzz::WriteFile(config_path, bytes + json_size + 1, size - json_size - 1);
  } else {
    std::remove(config_path.c_str());
  }

  auto tok = qcal::text::LoadTokenizer(dir);
  if (!tok.ok()) {
    QCAL_FUZZ_CHECK(!tok.status().message().empty(), "an error says what is wrong");
    return 0;
  }
  QCAL_FUZZ_CHECK(!(*tok)->Describe().empty(), "Describe");
  for (const char* text : kTexts) Use(**tok, text);
  // The start of the input itself as text (invalid UTF-8 is an error, not a crash).
  Use(**tok, std::string(bytes, json_size < 200 ? json_size : 200));
  for (int32_t id : {-1, 0, (*tok)->vocab_size() - 1, (*tok)->vocab_size()}) {
    (void)(*tok)->Decode(std::vector<int32_t>{id});
  }
  return 0;
}
