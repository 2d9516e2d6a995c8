// The replay driver: links with one harness (fuzz/*_fuzzer.cc) in the ordinary
// build and runs LLVMFuzzerTestOneInput on every file under the given folders (or
// on the given files), in sorted order, so the checked-in corpus (fuzz/corpus/<h>)
// runs as a CTest test without clang or libFuzzer.
//
//   <harness>_fuzz_replay PATH...
//
// A crash is the process dying (the harness aborts on a violated property); the
// driver prints each input's name before running it, so the last name printed is
// the culprit. Exit status 1 when a path is missing or holds no input.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 1;
  }
  std::vector<fs::path> inputs;
  for (int a = 1; a < argc; ++a) {
    std::error_code ec;
    const fs::path p = argv[a];
    if (fs::is_regular_file(p, ec)) {
      inputs.push_back(p);
    } else if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::recursive_directory_iterator(p, ec)) {
        if (e.is_regular_file()) inputs.push_back(e.path());
      }
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a folder\n", argv[a]);
      return 1;
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no input under the given paths\n");
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  for (const fs::path& p : inputs) {
    std::ifstream f(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!f.good() && !f.eof()) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 1;
    }
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("replay: %zu inputs in %.2f s, no crash\n", inputs.size(), seconds);
  return 0;
}
