// qcal-coordinator: owns all calibration state in one RocksDB, serves the client,
// worker and operations APIs over gRPC, grpc.health.v1, Prometheus metrics on their
// own port, and shuts down gracefully on SIGTERM/SIGINT.
#include <dlfcn.h>
#include <signal.h>

#include <algorithm>
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
void ServeUntilSignalled(const sigset_t& stop, qcal::server::Coordinator* core,
                         qcal::server::RocksDbStore* store, qcal::server::Metrics* metrics,
                         grpc::Server* server) {
  absl::Notification stopping;
  std::thread janitor([&] {
    while (!stopping.WaitForNotificationWithTimeout(absl::Milliseconds(500))) {
      absl::Status st = core->ExpireLeases();
      if (!st.ok()) std::cerr << "qcal-coordinator: lease expiry: " << st.message() << "\n";
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
  auto store = RocksDbStore::Open(f.db, db_options);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  Metrics metrics;
  auto core = Coordinator::Create(store->get(), *options, &metrics);
  if (!core.ok()) return Fail(std::string(core.status().message()));

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return Run(f);
}
