// Test helpers for corpus tests: temporary files and zstd compression.
#ifndef QCAL_COMMON_CORPUS_CORPUS_TEST_UTIL_H_
#define QCAL_COMMON_CORPUS_CORPUS_TEST_UTIL_H_

#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace qcal::corpus::testing_util {

inline std::string TempPath(const std::string& name) {
  static std::atomic<int> counter{0};
  return ::testing::TempDir() + "/qcal_corpus_" + std::to_string(::getpid()) + "_" +
         std::to_string(counter++) + "_" + name;
}

inline std::string WriteFile(const std::string& name, const std::string& content) {
  std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary);
  out << content;
  return path;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One zstd frame holding `content`, with a content checksum as the zstd command
// line tool writes by default.
inline std::string Zstd(const std::string& content, int level = 3) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(content.size()), '\0');
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), content.data(), content.size());
  ZSTD_freeCCtx(cctx);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

}  // namespace qcal::corpus::testing_util

#endif  // QCAL_COMMON_CORPUS_CORPUS_TEST_UTIL_H_
