// qcal-coordinator: owns all calibration state in one RocksDB, serves the client,
// worker and operations APIs over gRPC, grpc.health.v1, Prometheus metrics on their
// own port, and shuts down gracefully on SIGTERM/SIGINT.
#include <dlfcn.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/atomic_file.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "server/core/coordinator.h"
#include "server/metrics/metrics.h"
#include "server/service/rpc_metrics.h"
#include "server/service/services.h"
#include "server/store/rocksdb_store.h"

namespace {

// gRPC 1.51's reflection library (Debian package libgrpc++1.51), loaded on demand.
constexpr char kReflectionLibrary[] = "libgrpc++_reflection.so.1.51";

struct Flags {
  std::string listen = "127.0.0.1:7070";
  std::string db;
  std::vector<std::string> data_roots;
  std::string output_root;
  std::string metrics_listen = "127.0.0.1:9090";
  std::string client_token_file, worker_token_file;
  std::string unauthenticated_api;
  std::string tls_cert, tls_key;
  std::string port_file;
  double lease_seconds = 60;
  int max_shard_attempts = 5;
  bool sync_writes = false;
  int64_t min_free_disk_mb = 256;
  bool recover_to_consistent_point = false;
  bool verify_db = false;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "on", "off", or which API is open when only one is ("worker API open").
std::string AuthSummary(const qcal::server::Auth& auth) {
  using Role = qcal::server::Auth::Role;
  if (!auth.enabled()) return "off";
  if (auth.open(Role::kClient)) return "on (client API open)";
  if (auth.open(Role::kWorker)) return "on (worker API open)";
  return "on";
}

int Fail(const std::string& what) {
  std::cerr << "qcal-coordinator: " << what << "\n";
  return 1;
}

// Server reflection answers without a token, so it is offered only while the client
// API needs none. gRPC's reflection library adds itself to every ServerBuilder as
// soon as it is loaded (a static initializer), so linking it would offer reflection
// whatever the flags say: it is not linked, only loaded here when wanted.
absl::Status OfferReflection() {
  if (::dlopen(kReflectionLibrary, RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = ::dlerror();
    return absl::UnavailableError(
        absl::StrCat("server reflection is not offered: cannot load ", kReflectionLibrary, ": ",
                     why == nullptr ? "unknown error" : why));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsOf(const Flags& f) {
  if (f.tls_cert.empty() && f.tls_key.empty()) return grpc::InsecureServerCredentials();
  if (f.tls_cert.empty() || f.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({ReadFile(f.tls_key), ReadFile(f.tls_cert)});
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<qcal::server::CoordinatorOptions> CoordinatorOptionsOf(const Flags& f) {
  qcal::server::CoordinatorOptions options;
  options.data_roots = f.data_roots.empty() ? std::vector<std::string>{"."} : f.data_roots;
  options.lease_duration = absl::Seconds(f.lease_seconds);
  options.heartbeat_interval = std::max(absl::Milliseconds(200), options.lease_duration / 6);
  options.max_shard_attempts = f.max_shard_attempts;
  options.min_free_bytes = f.min_free_disk_mb << 20;
  if (!f.output_root.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(f.output_root, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot create --output-root ", f.output_root, ": ", ec.message()));
    }
    options.output_root = f.output_root;
  }
  return options;
}

// The client, worker and operations services, health and the RPC metrics on
// f.listen; *port receives the bound port.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const Flags& f, const std::vector<grpc::Service*>& services, qcal::server::Metrics* metrics,
    int* port) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = ServerCredentialsOf(f);
  if (!creds.ok()) return creds.status();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(f.listen, *creds, port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(qcal::server::RpcMetricsInterceptor(metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *port == 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", f.listen));
  server->GetHealthCheckService()->SetServingStatus(true);  // the database is open
  return server;
}

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> ServeMetrics(const Flags& f,
                                                                 qcal::server::Metrics* metrics) {
  if (f.metrics_listen.empty()) return nullptr;
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(f.metrics_listen);
    exposer->RegisterCollectable(metrics->registry());
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", f.metrics_listen, ": ", e.what()));
  }
}

// Blocks until SIGTERM or SIGINT while expiring leases and sampling the database size.
// A database that cannot be opened; for damage, what the operator can do.
std::string OpenFailure(const Flags& f, const absl::Status& status) {
  std::string message(status.message());
  if (absl::IsDataLoss(status)) {
    absl::StrAppend(&message, "\n  the database is damaged: `qcal-coordinator --db ", f.db,
                    " --verify-db` reads all of it and says where; "
                    "`--recover-to-consistent-point` opens it by replaying the write-ahead "
                    "log up to its first corrupt record and dropping the rest (it prints "
                    "what was dropped and every job as recovered)");
  }
  return message;
}

void PrintJobs(qcal::server::Coordinator* core) {
  namespace v1 = qcal::v1;
  v1::ListJobsRequest request;
  request.set_page_size(1000);
  while (true) {
    absl::StatusOr<v1::ListJobsResponse> page = core->ListJobs(request);
    if (!page.ok()) {
      std::cerr << "  (listing jobs: " << page.status().message() << ")\n";
      return;
    }
    for (const v1::Job& j : page->jobs()) {
      std::cerr << "  " << j.id() << " " << v1::JobState_Name(j.state()) << " "
                << j.progress().shards_done() << "/" << j.progress().shards_total()
                << " shards\n";
    }
    if (page->next_page_token().empty()) return;
    request.set_page_token(page->next_page_token());
  }
}

// --recover-to-consistent-point: what RocksDB dropped, then every job as recovered.
void ReportRecovery(const qcal::server::RocksDbStore& store, qcal::server::Coordinator* core) {
  const std::vector<std::string>& notes = store.recovery_notes();
  if (notes.empty()) {
    std::cerr << "qcal-coordinator: recovery: the write-ahead log was intact; nothing dropped\n";
  } else {
    std::cerr << "qcal-coordinator: recovery: replayed the write-ahead log up to its first "
                 "corrupt record; RocksDB dropped:\n";
    for (const std::string& note : notes) std::cerr << "  " << note << "\n";
  }
  std::cerr << "qcal-coordinator: recovery: jobs as recovered (shards after the corruption "
               "are computed again):\n";
  PrintJobs(core);
}

// --verify-db: every record and table block read with checksums, then the records
// parsed as the coordinator loads them. 0 when intact, 1 otherwise.
int VerifyDb(qcal::server::RocksDbStore* store, const qcal::server::CoordinatorOptions& options) {
  for (const std::string& note : store->recovery_notes()) {
    std::cerr << "qcal-coordinator: recovery dropped: " << note << "\n";
  }
  absl::StatusOr<std::array<int64_t, qcal::server::kNumFamilies>> counts = store->Verify();
  if (!counts.ok()) return Fail(absl::StrCat("verify: ", counts.status().message()));
  std::cerr << "qcal-coordinator: verify: every table block and record read with checksums:";
  for (int i = 0; i < qcal::server::kNumFamilies; ++i) {
    std::cerr << " " << qcal::server::FamilyName(static_cast<qcal::server::Family>(i)) << " "
              << (*counts)[i];
  }
  std::cerr << "\n";
  auto core = qcal::server::Coordinator::Create(store, options, nullptr);
  if (!core.ok()) return Fail(absl::StrCat("verify: records do not load: ", core.status().message()));
  std::cerr << "qcal-coordinator: verify: every record loads; the database is intact\n";
  return 0;
}

// The health service's name for "accepting new work": probes of "" say the process
// serves; this one turns NOT_SERVING while the database volume is short of space.
constexpr char kWorkService[] = "qcal.v1.CalibrationService";

// Checks the disk, says so when the state changes, and publishes it to health.
void WatchDisk(qcal::server::Coordinator* core, grpc::Server* server, bool* was_refusing) {
  const qcal::server::DiskState d = core->CheckDiskSpace();
  server->GetHealthCheckService()->SetServingStatus(kWorkService, !d.refusing);
  if (d.refusing == *was_refusing) return;
  *was_refusing = d.refusing;
  const std::string free = d.free_bytes ? absl::StrCat(*d.free_bytes, " bytes free") : "free space unknown";
  if (d.refusing) {
    std::cerr << "qcal-coordinator: database volume short of space (" << free << ", reserve "
              << d.reserve_bytes << (d.writes_suspended ? ", writes suspended" : "")
              << "): refusing new jobs, reports and leases until space is freed\n";
  } else {
    std::cerr << "qcal-coordinator: database volume has space again (" << free
              << "): taking new work\n";
  }
}

// Blocks until SIGTERM or SIGINT while expiring leases, watching the disk and
// sampling the database size.
void ServeUntilSignalled(const sigset_t& stop, qcal::server::Coordinator* core,
                         qcal::server::RocksDbStore* store, qcal::server::Metrics* metrics,
                         grpc::Server* server) {
  absl::Notification stopping;
  std::thread janitor([&] {
    bool refusing = false;
    while (!stopping.WaitForNotificationWithTimeout(absl::Milliseconds(500))) {
      WatchDisk(core, server, &refusing);
      // While writes are suspended an expiry could not be stored either.
      if (!core->disk_state().writes_suspended) {
        absl::Status st = core->ExpireLeases();
        if (!st.ok()) std::cerr << "qcal-coordinator: lease expiry: " << st.message() << "\n";
      }
      metrics->SetDbSize(store->ApproximateSizeBytes());
    }
  });
  int sig = 0;
  sigwait(&stop, &sig);
  std::cerr << "qcal-coordinator: signal " << sig << ", shutting down\n";
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  stopping.Notify();
  janitor.join();
}

int Run(const Flags& f) {
  using namespace qcal::server;
  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  absl::StatusOr<Auth> auth = LoadAuth(f.client_token_file, f.worker_token_file,
                                       f.unauthenticated_api);
  if (!auth.ok()) return Fail(std::string(auth.status().message()));
  absl::StatusOr<CoordinatorOptions> options = CoordinatorOptionsOf(f);
  if (!options.ok()) return Fail(std::string(options.status().message()));
  const bool reflection = auth->open(Auth::Role::kClient);
  if (reflection) {
    if (absl::Status s = OfferReflection(); !s.ok()) std::cerr << "qcal-coordinator: " << s.message() << "\n";
  }

  RocksDbOptions db_options;
  db_options.sync_writes = f.sync_writes;
  if (f.recover_to_consistent_point) {
    db_options.wal_recovery = RocksDbOptions::WalRecovery::kToConsistentPoint;
  }
  auto store = RocksDbStore::Open(f.db, db_options);
  if (!store.ok()) return Fail(OpenFailure(f, store.status()));
  Metrics metrics;
  if (f.verify_db) return VerifyDb(store->get(), *options);
  auto core = Coordinator::Create(store->get(), *options, &metrics);
  if (!core.ok()) return Fail(OpenFailure(f, core.status()));
  if (f.recover_to_consistent_point) ReportRecovery(**store, core->get());

  CalibrationServiceImpl calibration(core->get(), &*auth);
  WorkerServiceImpl workers(core->get(), &*auth);
  OperationsServiceImpl operations(core->get(), &*auth);
  int port = 0;
  auto server = StartServer(f, {&calibration, &workers, &operations}, &metrics, &port);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  auto exposer = ServeMetrics(f, &metrics);
  if (!exposer.ok()) return Fail(std::string(exposer.status().message()));

  const std::string host = f.listen.substr(0, f.listen.rfind(':'));
  const std::string bound = absl::StrCat(host == "0.0.0.0" || host == "[::]" ? "127.0.0.1" : host, ":", port);
  if (!f.port_file.empty()) {
    if (absl::Status s = qcal::WriteFileAtomically(f.port_file, bound + "\n"); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  std::cerr << "qcal-coordinator: serving on " << bound << " (db " << f.db << ", auth "
            << AuthSummary(*auth) << ", tls " << (f.tls_cert.empty() ? "off" : "on")
            << ", reflection " << (reflection ? "on" : "off")
            << (f.metrics_listen.empty() ? "" : ", metrics on " + f.metrics_listen) << ")\n";

  ServeUntilSignalled(stop, core->get(), store->get(), &metrics, server->get());
  server->reset();
  exposer->reset();
  core->reset();
  store->reset();
  std::cerr << "qcal-coordinator: stopped\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qcal-coordinator: calibration job coordinator (gRPC, RocksDB)"};
  Flags f;
  app.add_option("--listen", f.listen, "gRPC address (port 0 picks a free one)")->capture_default_str();
  app.add_option("--db", f.db, "RocksDB directory (created if missing)")->required();
  app.add_option("--data-root", f.data_roots,
                 "Directory that model, corpus and output paths must stay inside (repeatable; "
                 "default: the current directory)");
  app.add_option("--output-root", f.output_root, "Directory exports are written under");
  app.add_option("--metrics-listen", f.metrics_listen,
                 "Prometheus /metrics address (empty: off)")->capture_default_str();
  app.add_option("--client-token-file", f.client_token_file, "Bearer token clients must send");
  app.add_option("--worker-token-file", f.worker_token_file, "Bearer token workers must send");
  app.add_option("--unauthenticated-api", f.unauthenticated_api,
                 "With only one token file: run the other API (client or worker) without a "
                 "token on purpose (otherwise refused)")
      ->check(CLI::IsMember({"client", "worker"}));
  app.add_option("--tls-cert", f.tls_cert, "PEM certificate chain (enables TLS)");
  app.add_option("--tls-key", f.tls_key, "PEM private key");
  app.add_option("--port-file", f.port_file, "Write the bound host:port here once serving");
  app.add_option("--lease-seconds", f.lease_seconds, "Task lease without heartbeat")
      ->check(CLI::Range(0.2, 86400.0))
      ->capture_default_str();
  app.add_option("--max-shard-attempts", f.max_shard_attempts,
                 "Failed leases of one shard before its job fails")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_flag("--sync-writes", f.sync_writes, "fsync every RocksDB write (machine-crash safety)");
  app.add_option("--min-free-disk-mb", f.min_free_disk_mb,
                 "Free space the database volume keeps: below it new jobs, reports and "
                 "leases are refused (RESOURCE_EXHAUSTED) until space is freed (0: off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_flag("--recover-to-consistent-point", f.recover_to_consistent_point,
               "Open a database whose write-ahead log is corrupt by replaying it up to the "
               "first corrupt record; prints what was dropped and the jobs as recovered");
  app.add_flag("--verify-db", f.verify_db,
               "Read every record and table block of the database with checksums, print "
               "the counts, and exit (0: intact, 1: damage found)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return Run(f);
}
