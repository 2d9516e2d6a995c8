// Shared by the fuzz harnesses (fuzz/*_fuzzer.cc): a scratch folder of this
// process's own and small file helpers. Header-only, so each harness is one source
// file for both the libFuzzer build (scripts/fuzz.sh) and the replay tests
// (replay_main.cc).
//
// A harness failure that is not the code under test (a full /tmp, say) aborts with
// a message: it is never mistaken for a clean run.
#ifndef QCAL_FUZZ_FUZZ_UTIL_H_
#define QCAL_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

// Aborts (a crash the fuzzer reports) when a property the code promises fails.
#define QCAL_FUZZ_CHECK(cond, what)                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "%s:%d: property violated: %s (%s)\n", __FILE__, __LINE__, \
                   #cond, std::string(what).c_str());                              \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

namespace qcal::fuzz {

[[noreturn]] inline void HarnessError(const std::string& what) {
  std::fprintf(stderr, "fuzz harness: %s\n", what.c_str());
  std::abort();
}

namespace internal {
inline std::string*& ScratchPath() {
  static std::string* path = nullptr;
  return path;
}
inline void RemoveScratch() {
  if (ScratchPath() == nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(*ScratchPath(), ec);
}
}  // namespace internal

// A folder made on first use under $TEST_TMPDIR (Bazel), $TMPDIR or /tmp, in
// canonical form (the coordinator compares canonical paths), removed at exit.
inline const std::string& ScratchDir() {
  std::string*& path = internal::ScratchPath();
  if (path == nullptr) {
    const char* base = std::getenv("TEST_TMPDIR");
    if (base == nullptr || *base == '\0') base = std::getenv("TMPDIR");
    if (base == nullptr || *base == '\0') base = "/tmp";
    std::string tmpl = std::string(base) + "/qcal-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) HarnessError("cannot create a folder under " + std::string(base));
    std::error_code ec;
    path = new std::string(std::filesystem::canonical(tmpl, ec).string());
    if (ec) HarnessError("cannot canonicalize " + tmpl);
    std::atexit(internal::RemoveScratch);
  }
  return *path;
}

// Replaces `path` with exactly `size` bytes.
inline void WriteFile(const std::string& path, const void* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  f.close();
  if (!f) HarnessError("cannot write " + path);
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  WriteFile(path, bytes.data(), bytes.size());
}

inline void MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) HarnessError("cannot create " + path + ": " + ec.message());
}

}  // namespace qcal::fuzz

#endif  // QCAL_FUZZ_FUZZ_UTIL_H_
