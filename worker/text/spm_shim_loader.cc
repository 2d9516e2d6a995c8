// No abseil header may be included here (see spm_backend.h).
#include "worker/text/spm_shim_loader.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace qcal::text {

// spm_shim_blob.cc (generated): the bytes of the built qcal_spm_shim.
extern const unsigned char kSpmShimBlob[];
extern const std::size_t kSpmShimBlob_size;

namespace {

constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;

bool WriteAll(int fd, std::string* error) {
  const unsigned char* p = kSpmShimBlob;
  size_t left = kSpmShimBlob_size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = std::string("writing the SentencePiece shim: ") + std::strerror(errno);
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

std::string DlError() {
  const char* e = dlerror();
  return e != nullptr ? e : "unknown dlopen error";
}

// Writes the shim to `fd`, dlopens it as `path` (a name of that file) and closes
// `fd`: the mapping outlives the descriptor.
void* WriteAndOpen(int fd, const std::string& path, std::string* error) {
  void* handle = nullptr;
  if (WriteAll(fd, error)) {
    handle = dlopen(path.c_str(), kDlopenFlags);
    if (handle == nullptr) *error = DlError();
  }
  ::close(fd);
  return handle;
}

// dlopen of the shim through an anonymous memory file.
void* OpenFromMemfd(std::string* error) {
  const int fd = memfd_create("qcal_spm_shim", MFD_CLOEXEC);
  if (fd < 0) {
    *error = std::string("memfd_create: ") + std::strerror(errno);
    return nullptr;
  }
  return WriteAndOpen(fd, "/proc/self/fd/" + std::to_string(fd), error);
}

// dlopen of the shim through a temporary file, deleted once loaded (no /proc, or a
// seccomp profile without memfd_create).
void* OpenFromTempFile(std::string* error) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                     "/qcal_spm_shim.XXXXXX";
  const int fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    *error = "creating " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  void* handle = WriteAndOpen(fd, path, error);
  ::unlink(path.c_str());
  return handle;
}

struct Loaded {
  const QcalSpmApi* api = nullptr;
  std::string error;
};

Loaded Load() {
  Loaded out;
  std::string memfd_error, file_error;
  void* handle = OpenFromMemfd(&memfd_error);
  if (handle == nullptr) handle = OpenFromTempFile(&file_error);
  if (handle == nullptr) {
    out.error = "cannot load SentencePiece (libsentencepiece0): " + memfd_error +
                (file_error.empty() || file_error == memfd_error ? "" : "; " + file_error);
    return out;
  }
  auto fn = reinterpret_cast<QcalSpmApiFn>(dlsym(handle, QCAL_SPM_API_SYMBOL));
  const QcalSpmApi* api = fn != nullptr ? fn() : nullptr;
  if (api == nullptr || api->version != QCAL_SPM_API_VERSION ||
      api->struct_size != sizeof(QcalSpmApi)) {
    out.error = "the embedded SentencePiece shim does not match this build (" QCAL_SPM_API_SYMBOL
                ")";
    dlclose(handle);
    return out;
  }
  out.api = api;  // never unloaded: processors may live until exit
  return out;
}

}  // namespace

const QcalSpmApi* SpmShimApi(std::string* error) {
  static const Loaded loaded = Load();
  if (loaded.api == nullptr) *error = loaded.error;
  return loaded.api;
}

}  // namespace qcal::text
