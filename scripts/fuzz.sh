#!/usr/bin/env bash
# Fuzzes qcal's input parsers and the coordinator's request validation with
# libFuzzer (fuzz/; issue 15) for a bounded time, and keeps what it learns.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [HARNESS...]
#
# HARNESS: safetensors model_config tokenizer corpus coordinator (default: all).
# 1. Installs Debian's clang-14 and its runtimes if missing (apt only, like
#    scripts/install-deps.sh, which it runs for the rest of the build).
# 2. Builds build-fuzz/ (a CMake build of its own: clang++-14, every qcal library
#    compiled with -fsanitize=fuzzer-no-link,address,undefined; UBSan findings are
#    fatal; no libtorch code is compiled) and its <harness>_fuzzer programs.
# 3. Runs each for SECONDS with fuzz/corpus/<harness> as the seed corpus (and
#    fuzz/dicts/<harness>.dict, value profiling on), then merges the new inputs
#    that reach new edges back into fuzz/corpus/<harness> (libFuzzer -merge=1
#    -use_counters=0; commit them: the replay tests run them in ctest).
# Exits 1 if any target crashed, leaked, ran out of memory (-rss_limit_mb 2048,
# also per allocation) or timed out (25 s per input: the largest request the
# coordinator accepts takes about 7 s under ASan); the reproducer stays in
# build-fuzz/fuzz-artifacts/<harness>/ and the log in build-fuzz/fuzz-logs/.
#
# Environment: QCAL_FUZZ_JOBS (build parallelism, default nproc),
# QCAL_FUZZ_FLAGS (extra libFuzzer flags, e.g. "-fork=2 -ignore_crashes=1" to
# go on after a crash), QCAL_FUZZ_NO_MERGE=1 leaves fuzz/corpus as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET] [HARNESS...]" >&2
  exit 2
fi
shift || true
all=(safetensors model_config tokenizer corpus coordinator)
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then harnesses=("${all[@]}"); fi
for h in "${harnesses[@]}"; do
  if [ ! -d "fuzz/corpus/$h" ]; then
    echo "fuzz: unknown harness '$h' (one of: ${all[*]})" >&2
    exit 2
  fi
done

# ---- 1. clang-14 -------------------------------------------------------------
PACKAGES=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
bash scripts/install-deps.sh

# ---- 2. build ----------------------------------------------------------------
build=build-fuzz
sanitize="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
if [ ! -f "$build/build.ninja" ]; then
  # Debug with -O1: assertions stay on. The SentencePiece shim (a dlopened module
  # linked with -z defs) gets the shared sanitizer runtime to link; the harnesses
  # never load it (they write no tokenizer.model).
  cmake -S . -B "$build" -G Ninja \
    -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
    -DCMAKE_CXX_FLAGS="$sanitize -fno-omit-frame-pointer" \
    -DCMAKE_MODULE_LINKER_FLAGS="-shared-libsan" \
    -DQCAL_BUILD_TESTS=ON -DQCAL_BUILD_BENCH=OFF -DQCAL_WERROR=OFF \
    -DQCAL_FUZZ_LIBFUZZER=ON
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("${h}_fuzzer"); done
ninja -C "$build" -j "${QCAL_FUZZ_JOBS:-$(nproc)}" "${targets[@]}"

# ---- 3. fuzz -----------------------------------------------------------------
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
read -r -a extra <<<"${QCAL_FUZZ_FLAGS:-}"
failed=()
summary=()
for h in "${harnesses[@]}"; do
  corpus="fuzz/corpus/$h"
  work="$build/fuzz-work/$h"
  artifacts="$build/fuzz-artifacts/$h"
  log="$build/fuzz-logs/$h.log"
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  fuzzer="$build/fuzz/${h}_fuzzer"
  echo "fuzz: $h for ${seconds} s (log: $log)"
  dict=()
  if [ -f "fuzz/dicts/$h.dict" ]; then dict=(-dict="fuzz/dicts/$h.dict"); fi
  # New inputs go to $work (the first folder); the checked-in corpus seeds it.
  set +e
  "$fuzzer" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -use_value_profile=1 \
    "${dict[@]}" -artifact_prefix="$artifacts/" -print_final_stats=1 "${extra[@]}" \
    "$work" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  # Runs: the final stats, or (-fork) the last status line's count.
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ -z "$execs" ]; then
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  fi
  # With -fork and -ignore_crashes libFuzzer exits 0 after a crash: the artifacts tell.
  found=$(ls "$artifacts" | grep -E '^(crash|leak|oom|timeout)-' | tr '\n' ' ' || true)
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    failed+=("$h")
    summary+=("$h: FAILED (exit $rc) after ${execs:-?} runs; in $artifacts: ${found:-see the log}")
    grep -E -m5 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|property violated|out-of-memory|Timeout' "$log" || tail -20 "$log"
  else
    summary+=("$h: ok, ${execs:-?} runs in ${seconds} s")
  fi
  if [ "${QCAL_FUZZ_NO_MERGE:-0}" != "1" ] && [ -n "$(ls -A "$work")" ]; then
    before=$(ls "$corpus" | wc -l)
    # Only inputs that reach new edges (-use_counters=0): a small corpus, fast replays.
    "$fuzzer" -merge=1 -use_counters=0 -timeout=25 -rss_limit_mb=2048 "$corpus" "$work" \
      >>"$log" 2>&1 || \
      echo "fuzz: merging $h's new inputs failed (see $log)"
    # libFuzzer names inputs by their SHA-1: drop one that repeats a seed.
    for f in "$corpus"/seed-*; do
      s=$(sha1sum "$f" | cut -d' ' -f1)
      if [ -f "$corpus/$s" ]; then rm -f "$corpus/$s"; fi
    done
    echo "fuzz: $h: fuzz/corpus/$h has $(ls "$corpus" | wc -l) inputs (was $before)"
  fi
done

echo "fuzz: summary"
for s in "${summary[@]}"; do echo "  $s"; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (replay one: $build/fuzz/<harness>_fuzzer FILE)" >&2
  exit 1
fi
