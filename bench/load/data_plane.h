// The load test's data-plane phase: fake workers lease tasks and send pre-built
// CompleteTask reports as fast as one coordinator merges them, while a client polls
// GetJob; reports/s, MB/s, client and server merge latency, the coordinator's CPU by
// thread, its write volume, and how many workers it absorbs at the default report
// interval. Also the sparse 7B-shaped model folder the 7B run points it at.
//
// Threading: call RunDataPlane from the main thread (it starts the coordinator, see
// coordinator_process.h); it starts and joins its own worker and prober threads.
// Errors: every failure (an RPC error, a miscounted merge, an unclean stop) is printed
// and counted in DataResult::errors; WriteSparse7bModel returns a Status.
#ifndef QCAL_BENCH_LOAD_DATA_PLANE_H_
#define QCAL_BENCH_LOAD_DATA_PLANE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bench/load/common.h"

namespace qcal::bench {

struct DataResult {
  bool ran = false;
  std::string name;
  int64_t errors = 0;
  int64_t reports = 0;
  int workers = 0;
  double report_mb = 0;
  double mean_buckets = 0;
  int64_t max_buckets = 0;
  double window_s = 0;
  double reports_per_s = 0, mb_per_s = 0;
  Summary complete, lease, probe;
  double server_merge_mean = -1;       // qcal_shard_merge_seconds sum / count
  std::string server_merge_p99 = "?";  // bucket bound holding the 99th percentile
  double coordinator_cpu_s = 0, own_cpu_s = 0;
  std::vector<std::pair<std::string, double>> threads;  // CPU s by thread name, descending
  double readback_s = -1;
  double db_disk_mb = 0;
  double load_before = 0, load_after = 0;  // 1-minute load average of the machine
  double cpu_pressure = -1;                // /proc/pressure/cpu some avg10 at the end
  double written_mb = 0;                   // the coordinator's write() bytes in the window
};

// Runs one data-plane phase named `name` against a coordinator of its own (scratch
// under work/data-<name>, its database removed afterwards unless --keep) serving
// `roots`: `workers` fake workers complete at most `max_reports` one-sample tasks of
// `model` (relative to f.data_dir, or absolute), each with the report built from
// `seed`, within f.phase_seconds. Prints its progress and figures to stdout.
DataResult RunDataPlane(const Flags& f, const std::string& work, const std::string& name,
                        const std::string& model, const std::vector<std::string>& roots,
                        int workers, int max_reports, uint64_t seed);

// A llama model folder shaped like a 7B model: config.json and a model.safetensors
// whose header declares every tensor (BF16, right shape) and whose data is a hole
// (sparse file: ~13.5 GB apparent size, a few KB on disk), so the coordinator can
// serve a 7B job without 13.5 GB of weights. Passes CheckModelFiles, which validates
// headers and offsets against the file size and reads no weight. *apparent_bytes is
// model.safetensors' size.
absl::Status WriteSparse7bModel(const std::string& dir, int64_t* apparent_bytes);

}  // namespace qcal::bench

#endif  // QCAL_BENCH_LOAD_DATA_PLANE_H_
