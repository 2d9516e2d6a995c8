// The production wiring of the worker loop: the gRPC coordinator client and the
// model runners.
#include <iostream>

#include "worker/service/runners.h"
#include "worker/service/worker_loop.h"

namespace qcal {

RunnerTable ModelRunners(ModelCache* models, const WorkerLoopOptions& options) {
  RunnerTable table;
  table[v1::TASK_CALIBRATE] = MakeCalibrateRunner(models);
  table[v1::TASK_EVALUATE] = MakeEvaluateRunner(models);
  table[v1::TASK_EXPORT] = MakeExportRunner(options.export_pause_ms);
  return table;
}

int RunWorkerLoop(const WorkerLoopOptions& options, const std::atomic<int>* stop_requests) {
  auto client = ConnectToCoordinator({options.coordinator, options.token_file, options.tls_ca});
  if (!client.ok()) {
    std::cerr << "qcal-worker: " << client.status().message() << std::endl;
    return 1;
  }
  ModelCache models(options.engine);
  WorkerLoop loop(options, client->get(), ModelRunners(&models, options), stop_requests);
  return loop.Run();
}

}  // namespace qcal
