// End to end over real gRPC on loopback with real qcal-coordinator and qcal-worker
// processes: statistics equal the single-process engine's (bitwise for min, max,
// counts and sketch buckets; sums within 1e-12 relative) for 1, 2 and 3 workers and
// several shard and batch sizes; kill -9 of a worker mid-shard and of the
// coordinator mid-job change nothing; bad input and bad tokens get clear statuses
// while the coordinator keeps serving.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/stats/stats_proto.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "proto/qcal/v1/calibration.grpc.pb.h"
#include "proto/qcal/v1/worker.grpc.pb.h"
#include "tests/e2e_util.h"
#include "tests/test_cluster.h"
#include "worker/engine/engine.h"
#include "worker/text/sampler.h"

namespace qcal {
namespace {

namespace fs = std::filesystem;
using namespace e2e;
using testing::ReadAll;
using testing::TestCluster;

// The single-process engine's statistics for the same sampling options.
const stats::StatsSet& Reference(int samples, int seq_len) {
  static std::map<std::pair<int, int>, stats::StatsSet> cache;
  auto key = std::make_pair(samples, seq_len);
  if (!cache.count(key)) {
    text::SamplingOptions o;
    o.num_samples = samples;
    o.seq_len = seq_len;
    auto sampler = text::OpenCorpusSampler(kData + "/" + kModel, kData + "/" + kCorpus, o);
    EXPECT_TRUE(sampler.ok()) << sampler.status();
    auto ids = sampler->sampler->Samples(0, samples);
    EXPECT_TRUE(ids.ok());
    EngineOptions eo;
    eo.batch_size = 8;
    eo.threads = 1;
    auto engine = CalibrationEngine::Load(kData + "/" + kModel, eo);
    EXPECT_TRUE(engine.ok());
    stats::StatsSet s;
    EXPECT_TRUE((*engine)->Accumulate(*ids, &s).ok());
    cache[key] = std::move(s);
  }
  return cache[key];
}

void ExpectSameStatistics(const stats::StatsSet& got, const stats::StatsSet& want) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(got.tokens(), want.tokens());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got.at(i).name, want.at(i).name);
    for (int side = 0; side < 2; ++side) {
      const auto& a = side ? got.at(i).output : got.at(i).input;
      const auto& b = side ? want.at(i).output : want.at(i).input;
      ASSERT_EQ(a.count(), b.count()) << want.at(i).name;
      ASSERT_EQ(a.min(), b.min()) << want.at(i).name;
      ASSERT_EQ(a.max(), b.max()) << want.at(i).name;
      ASSERT_TRUE(a.sketch() == b.sketch()) << want.at(i).name;
      for (int64_t c = 0; c < a.channels(); ++c) {
        const double d = std::abs(a.sum()[c] - b.sum()[c]) / std::max(1e-300, std::abs(b.sum()[c]));
        const double e = std::abs(a.sumsq()[c] - b.sumsq()[c]) / std::max(1e-300, b.sumsq()[c]);
        worst = std::max({worst, d, e});
      }
    }
  }
  EXPECT_LE(worst, 1e-12);
  std::printf("  statistics equal the single-process engine's; largest relative sum difference %.3g\n", worst);
}

TEST(ServiceE2eTest, OneTwoThreeWorkersAnyShardAndBatchSizeGiveTheEngineStatistics) {
  TestCluster c(TempDir("workers"));
  ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
  c.AddWorker();
  c.AddWorker();
  const std::string a = Submit(c, Spec(24, 64, 4, 3));
  v1::Job ja = WaitFinal(c, a);
  ASSERT_EQ(ja.state(), v1::JOB_CALIBRATED) << ja.DebugString() << c.Logs();
  EXPECT_EQ(ja.progress().samples_done(), 24);
  std::printf("2 workers, shard 4, batch 3:\n");
  ExpectSameStatistics(FetchStats(c, a), Reference(24, 64));

  c.AddWorker();
  const std::string b = Submit(c, Spec(24, 64, 7, 1));
  ASSERT_EQ(WaitFinal(c, b).state(), v1::JOB_CALIBRATED) << c.Logs();
  std::printf("3 workers, shard 7, batch 1:\n");
  ExpectSameStatistics(FetchStats(c, b), Reference(24, 64));

  c.workers()[0]->Kill(SIGTERM);
  c.workers()[1]->Kill(SIGTERM);
  const std::string d = Submit(c, Spec(24, 64, 24, 8));
  ASSERT_EQ(WaitFinal(c, d).state(), v1::JOB_CALIBRATED) << c.Logs();
  std::printf("1 worker, shard 24, batch 8:\n");
  ExpectSameStatistics(FetchStats(c, d), Reference(24, 64));
}

TEST(ServiceE2eTest, KillNineWorkerMidShard) {
  TestCluster c(TempDir("kill-worker"));
  ASSERT_TRUE(c.StartCoordinator(kData, /*lease_seconds=*/2)) << c.Logs();
  testing::Child& doomed = c.AddWorker();
  const std::string id = Submit(c, Spec(24, 64, 4, 4));
  // Leased and nothing reported yet: the worker is inside its first shard.
  ASSERT_TRUE(WaitFor(c, id, [](const v1::Job& j) {
    return j.progress().shards_leased() > 0 && j.progress().shards_done() == 0;
  })) << c.Logs();
  ASSERT_TRUE(doomed.Kill(SIGKILL));
  c.AddWorker();
  c.AddWorker();
  v1::Job j = WaitFinal(c, id);
  ASSERT_EQ(j.state(), v1::JOB_CALIBRATED) << c.Logs();
  // The dead worker's shard came back through its lease expiring, or earlier through
  // a backup task once the other workers ran out of work.
  EXPECT_GE(j.progress().lease_expiries() + j.progress().backup_wins(), 1);
  EXPECT_EQ(j.progress().samples_done(), 24);  // no shard counted twice
  ExpectSameStatistics(FetchStats(c, id), Reference(24, 64));
}

// A straggler: the first worker finishes its task but reports 8 s late (no
// heartbeats meanwhile). The second worker takes every other shard, then a backup of
// the straggler's; the job completes while the straggler still holds its lease,
// every shard counted once, and the straggler's late report is refused by name.
TEST(ServiceE2eTest, AStragglersTaskIsBackedUpAndItsLateReportRefused) {
  TestCluster c(TempDir("backup"));
  ASSERT_TRUE(c.StartCoordinator(kData, /*lease_seconds=*/15)) << c.Logs();
  const std::string id = Submit(c, Spec(24, 64, 4, 4));
  c.AddWorker({"--debug-report-delay-ms", "8000"});
  ASSERT_TRUE(WaitFor(c, id, [](const v1::Job& j) { return j.progress().shards_leased() > 0; }))
      << c.Logs();
  c.AddWorker();
  const v1::Job j = WaitFinal(c, id);
  const std::string straggler_log = ReadAll(c.dir() + "/worker0.log");
  ASSERT_EQ(j.state(), v1::JOB_CALIBRATED) << c.Logs();
  EXPECT_EQ(straggler_log.find("reported"), std::string::npos) << straggler_log;
  EXPECT_EQ(straggler_log.find("refused"), std::string::npos) << straggler_log;
  EXPECT_TRUE(c.workers()[0]->running());
  EXPECT_EQ(j.progress().backup_tasks(), 1);
  EXPECT_EQ(j.progress().backup_wins(), 1);
  EXPECT_EQ(j.progress().shards_done(), 6);
  EXPECT_EQ(j.progress().samples_done(), 24);
  EXPECT_EQ(j.progress().lease_expiries(), 0);
  ASSERT_EQ(j.progress().workers_size(), 2);
  EXPECT_EQ(j.progress().workers(0).tasks_done(), 0);
  EXPECT_EQ(j.progress().workers(1).samples_done(), 24);
  ExpectSameStatistics(FetchStats(c, id), Reference(24, 64));

  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string log;
  while (std::chrono::steady_clock::now() < until &&
         (log = ReadAll(c.dir() + "/worker0.log")).find("report refused") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(log.find("report refused: task " + id + ".t"), std::string::npos) << log;
  EXPECT_NE(log.find("was superseded"), std::string::npos) << log;
  std::printf("straggler: %s", log.substr(log.find("report refused")).c_str());
  // Nothing changed, and the straggler moved on (it is still serving).
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  v1::GetJobRequest r;
  r.set_job_id(id);
  v1::Job after;
  ASSERT_TRUE(stub->GetJob(&ctx, r, &after).ok());
  EXPECT_EQ(after.progress().samples_done(), 24);
  EXPECT_EQ(after.version(), j.version());
  EXPECT_TRUE(c.workers()[0]->running());
  ExpectSameStatistics(FetchStats(c, id), Reference(24, 64));
}

TEST(ServiceE2eTest, KillNineCoordinatorMidJob) {
  TestCluster c(TempDir("kill-coordinator"));
  ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
  c.AddWorker();
  c.AddWorker();
  const std::string id = Submit(c, Spec(48, 64, 2, 2));
  ASSERT_TRUE(WaitFor(c, id, [](const v1::Job& j) {
    return j.progress().shards_done() >= 2 && j.state() == v1::JOB_RUNNING;
  })) << c.Logs();
  ASSERT_TRUE(c.coordinator().Kill(SIGKILL));
  ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
  v1::Job j = WaitFinal(c, id);
  ASSERT_EQ(j.state(), v1::JOB_CALIBRATED) << c.Logs();
  EXPECT_EQ(j.progress().samples_done(), 48);
  ExpectSameStatistics(FetchStats(c, id), Reference(48, 64));
}

// ---------------------------------------------------------------- bad input

grpc::Status Call(TestCluster& c, const v1::SubmitJobRequest& r, const std::string& token) {
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::Job job;
  return stub->SubmitJob(&ctx, r, &job);
}

// grpc.health.v1.Health/Check with an empty request, without any token.
bool HealthServing(TestCluster& c) {
  grpc::GenericStub stub(c.Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::ByteBuffer req, resp;
  grpc::Slice empty("");
  req = grpc::ByteBuffer(&empty, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &req, &resp,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> l(mu);
                   status = s;
                   done = true;
                   cv.notify_all();
                 });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return done; });
  std::vector<grpc::Slice> slices;
  if (!status.ok() || !resp.Dump(&slices).ok() || slices.empty()) return false;
  const std::string bytes(reinterpret_cast<const char*>(slices[0].begin()), slices[0].size());
  return bytes == std::string("\x08\x01", 2);  // status: SERVING
}

// Server reflection's list_services, without any token: OK with the raw response
// in *response, or the call's status (UNIMPLEMENTED where reflection is not offered).
grpc::Status ListServicesByReflection(TestCluster& c, std::string* response) {
  grpc::GenericStub stub(c.Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&] { EXPECT_TRUE(cq.Next(&tag, &ok)); return ok; };
  call->StartCall(nullptr);
  step();
  grpc::Slice list_services(std::string("\x3a\x00", 2));  // field 7, empty string
  grpc::ByteBuffer request(&list_services, 1), reply;
  call->Write(request, nullptr);
  step();
  call->WritesDone(nullptr);
  step();
  call->Read(&reply, nullptr);
  if (step()) {
    std::vector<grpc::Slice> slices;
    if (reply.Dump(&slices).ok()) {
      for (const grpc::Slice& slice : slices) {
        response->append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
    }
  }
  grpc::Status status;
  call->Finish(&status, nullptr);
  step();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

grpc::Status RegisterWorker(TestCluster& c, const std::string& token) {
  auto stub = v1::WorkerService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::RegisterWorkerResponse resp;
  return stub->RegisterWorker(&ctx, v1::RegisterWorkerRequest(), &resp);
}

// Token roles (issue 15, finding 3): each token opens its own API only; one token
// file alone is refused at start unless --unauthenticated-api opens the other side on
// purpose; reflection is offered only while the client API needs no token.
TEST(ServiceE2eTest, TokenRolesAreSeparate) {
  const std::string dir = TempDir("roles");
  fs::create_directories(dir + "/tokens");
  std::ofstream(dir + "/tokens/client") << "client-secret\n";
  std::ofstream(dir + "/tokens/worker") << "worker-secret\n";
  std::ofstream(dir + "/tokens/same") << "client-secret\n";
  struct Refused {
    std::vector<std::string> flags;
    std::string words;
  };
  const std::vector<Refused> refused = {
      {{"--worker-token-file", dir + "/tokens/worker"}, "would leave the client API open"},
      {{"--client-token-file", dir + "/tokens/client"}, "would leave the worker API open"},
      {{"--client-token-file", dir + "/tokens/client", "--worker-token-file", dir + "/tokens/same"},
       "same token"},
      {{"--client-token-file", dir + "/tokens/client", "--unauthenticated-api", "client"},
       "contradicts --client-token-file"},
  };
  for (const Refused& r : refused) {
    TestCluster c(dir + "/refused", r.flags);
    EXPECT_FALSE(c.StartCoordinator(kData)) << r.words;
    EXPECT_NE(c.Logs().find(r.words), std::string::npos) << c.Logs();
  }

  v1::SubmitJobRequest bad;  // no model: refused by validation once past auth
  std::string listed;
  {
    TestCluster c(dir + "/both", {"--client-token-file", dir + "/tokens/client",
                                  "--worker-token-file", dir + "/tokens/worker"});
    ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
    EXPECT_EQ(Call(c, bad, "worker-secret").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Call(c, bad, "client-secret").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(RegisterWorker(c, "client-secret").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_TRUE(RegisterWorker(c, "worker-secret").ok());
    EXPECT_EQ(ListServicesByReflection(c, &listed).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    TestCluster c(dir + "/client-open", {"--worker-token-file", dir + "/tokens/worker",
                                         "--unauthenticated-api", "client"});
    ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
    EXPECT_EQ(Call(c, bad, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(RegisterWorker(c, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_TRUE(RegisterWorker(c, "worker-secret").ok());
    const grpc::Status s = ListServicesByReflection(c, &listed);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_NE(listed.find("qcal.v1.CalibrationService"), std::string::npos);
    EXPECT_NE(c.Logs().find("auth on (client API open)"), std::string::npos) << c.Logs();
  }
}

// ---------------------------------------------------------------- disk

// A tmpfs of `mb` MiB mounted at `dir` (needs root); unmounted when destroyed.
class TmpfsVolume {
 public:
  TmpfsVolume(const std::string& dir, int mb) : dir_(dir) {
    fs::create_directories(dir_);
    mounted_ = testing::ExitedZero(testing::RunProgram(
        {"/bin/mount", "-t", "tmpfs", "-o", "size=" + std::to_string(mb) + "m", "tmpfs", dir_},
        "", dir_ + ".mount.out", dir_ + ".mount.err"));
  }
  ~TmpfsVolume() {
    if (mounted_) testing::RunProgram({"/bin/umount", "-l", dir_}, "", "/dev/null", "/dev/null");
  }
  bool mounted() const { return mounted_; }
  // Fills the volume with one file but for `leave` bytes.
  bool FillLeaving(int64_t leave) {
    const fs::space_info space = fs::space(dir_);
    const int64_t size = static_cast<int64_t>(space.available) - leave;
    return size > 0 && testing::ExitedZero(testing::RunProgram(
                           {"/usr/bin/fallocate", "-l", std::to_string(size), dir_ + "/fill"}, "",
                           "/dev/null", dir_ + ".fill.err"));
  }
  void Free() { fs::remove(dir_ + "/fill"); }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Issue 15, finding 1: with the database on a volume that fills up mid-job the
// coordinator aborted inside RocksDB (its info log on the same volume). Now it
// stays up, suspends writes, refuses new work by name, keeps the worker's lease,
// and once space is freed finishes the job with the statistics of a fault-free run.
// The reserve is 0 here so the volume really fills (with a reserve it never does:
// ShortOfDiskRefusesNewWorkKeepsLeasesAndResumes).
TEST(ServiceE2eTest, AFullDiskPausesTheJobAndFreedSpaceFinishesIt) {
  const std::string vol = TempDir("vol");
  TmpfsVolume volume(vol, 64);
  if (!volume.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << ReadAll(vol + ".mount.err");
  }
  ASSERT_TRUE(volume.FillLeaving(8 << 20)) << ReadAll(vol + ".fill.err");
  TestCluster c(vol + "/cluster", {"--min-free-disk-mb", "0"});
  ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
  const std::string id = Submit(c, Spec(256, 64, 1, 8));
  c.AddWorker();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (c.Logs().find("short of space") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(c.Logs().find("short of space"), std::string::npos) << "the disk never filled" << c.Logs();
  EXPECT_TRUE(c.coordinator().running()) << c.Logs();
  const grpc::Status refused = Call(c, Spec(8, 64, 4, 8), "");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_NE(refused.error_message().find("bytes free"), std::string::npos) << refused.error_message();
  EXPECT_TRUE(HealthServing(c)) << "the process serves; only new work waits";

  volume.Free();
  const v1::Job j = WaitFinal(c, id);
  ASSERT_EQ(j.state(), v1::JOB_CALIBRATED) << c.Logs();
  EXPECT_NE(c.Logs().find("has space again"), std::string::npos) << c.Logs();
  ExpectSameStatistics(FetchStats(c, id), Reference(256, 64));
  EXPECT_EQ(c.Logs().find("Assertion"), std::string::npos) << c.Logs();
}

// Issue 15, finding 2, through the shipped binary: a flipped byte in the newest
// write-ahead log refuses to start with a message naming the log and the recovery
// flag; --recover-to-consistent-point --verify-db says what was dropped; then the
// database opens normally.
TEST(ServiceE2eTest, ACorruptLogRefusesToStartAndRecoveryReportsWhatWasDropped) {
  const std::string dir = TempDir("corrupt-log");
  std::string db;
  {
    TestCluster c(dir, {});
    ASSERT_TRUE(c.StartCoordinator(kData)) << c.Logs();
    for (int i = 0; i < 20; ++i) Submit(c, Spec(8, 64, 1, 8));
    db = c.dir() + "/db";
    ASSERT_TRUE(c.coordinator().Kill(SIGTERM));
  }
  std::string log;
  for (const auto& e : fs::directory_iterator(db)) {
    if (e.path().extension() == ".log" && e.path().string() > log) log = e.path().string();
  }
  ASSERT_FALSE(log.empty());
  {
    std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(fs::file_size(log) / 2);
    f.seekg(at);
    char b = 0;
    f.read(&b, 1);
    b = static_cast<char>(b ^ 0x5a);
    f.seekp(at);
    f.write(&b, 1);
  }
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {QCAL_COORDINATOR_BIN, "--db", db, "--data-root", kData,
                                     "--listen", "127.0.0.1:0", "--metrics-listen", ""};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const int status = testing::RunProgram(argv, "", dir + "/run.out", dir + "/run.err",
                                           std::chrono::seconds(60));
    return std::make_pair(status, ReadAll(dir + "/run.err"));
  };
  auto [refused, why] = run({"--verify-db"});
  EXPECT_FALSE(testing::ExitedZero(refused)) << why;
  EXPECT_NE(why.find(fs::path(log).filename().string()), std::string::npos) << why;
  EXPECT_NE(why.find("--recover-to-consistent-point"), std::string::npos) << why;
  auto [recovered, report] = run({"--recover-to-consistent-point", "--verify-db"});
  EXPECT_TRUE(testing::ExitedZero(recovered)) << report;
  EXPECT_NE(report.find("dropping"), std::string::npos) << report;
  EXPECT_NE(report.find("intact"), std::string::npos) << report;
  auto [again, clean] = run({"--verify-db"});
  EXPECT_TRUE(testing::ExitedZero(again)) << clean;
}

TEST(ServiceE2eTest, BadInputAndTokensGetClearStatusesAndTheServerKeepsServing) {
  const std::string root = TempDir("bad-root");
  fs::remove_all(root);
  fs::create_directories(root + "/models");
  fs::create_directories(root + "/corpus");
  for (const char* m : {"llama-tiny", "mamba", "corrupt"}) {
    fs::copy(kData + "/models/llama-tiny", root + "/models/" + m);
    for (auto& e : fs::directory_iterator(root + "/models/" + m)) {
      fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    }
  }
  {
    std::string cfg = testing::ReadAll(root + "/models/mamba/config.json");
    cfg.replace(cfg.find("\"llama\""), 7, "\"mamba\"");
    std::ofstream(root + "/models/mamba/config.json") << cfg;
    std::string w = testing::ReadAll(root + "/models/corrupt/model.safetensors");
    std::ofstream(root + "/models/corrupt/model.safetensors", std::ios::binary) << w.substr(0, 5000);
  }
  fs::copy_file(kData + "/corpus/sample.jsonl", root + "/corpus/sample.jsonl");
  std::ofstream(root + "/corpus/bad.jsonl") << "not json\n{\"meta\": 1}\n";
  const std::string dir = TempDir("auth");
  fs::create_directories(dir + "/tokens");
  std::ofstream(dir + "/tokens/client") << "client-secret\n";
  std::ofstream(dir + "/tokens/worker") << "worker-secret\n";
  TestCluster c(dir + "/cluster", {"--client-token-file", dir + "/tokens/client",
                                   "--worker-token-file", dir + "/tokens/worker"});
  ASSERT_TRUE(c.StartCoordinator(root)) << c.Logs();

  auto spec = [](const std::string& model, const std::string& corpus, int64_t samples) {
    v1::SubmitJobRequest r;
    r.mutable_spec()->set_model(model);
    r.mutable_spec()->set_corpus(corpus);
    r.mutable_spec()->mutable_sampling()->set_num_samples(samples);
    r.mutable_spec()->mutable_sampling()->set_seq_len(32);
    r.mutable_spec()->set_shard_size(4);
    return r;
  };
  const auto good = spec("models/llama-tiny", "corpus/sample.jsonl", 8);
  // Tokens: only health answers without the right one.
  EXPECT_TRUE(HealthServing(c));
  EXPECT_EQ(Call(c, good, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Call(c, good, "guess").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    auto stub = v1::WorkerService::NewStub(c.Channel());
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer client-secret");  // a client token is no worker token
    v1::RegisterWorkerResponse resp;
    EXPECT_EQ(stub->RegisterWorker(&ctx, v1::RegisterWorkerRequest(), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  const std::string tok = "client-secret";
  struct Case {
    v1::SubmitJobRequest req;
    grpc::StatusCode code;
    std::string words;
  };
  std::vector<Case> cases = {
      {spec("/etc", "corpus/sample.jsonl", 8), grpc::StatusCode::PERMISSION_DENIED, "outside the data roots"},
      {spec("models/../../etc", "corpus/sample.jsonl", 8), grpc::StatusCode::INVALID_ARGUMENT, ".."},
      {spec("models/missing", "corpus/sample.jsonl", 8), grpc::StatusCode::NOT_FOUND, "models/missing"},
      {spec("models/mamba", "corpus/sample.jsonl", 8), grpc::StatusCode::UNIMPLEMENTED, "mamba"},
      {spec("models/corrupt", "corpus/sample.jsonl", 8), grpc::StatusCode::INVALID_ARGUMENT, "model.safetensors"},
      {spec("models/llama-tiny", "corpus/bad.jsonl", 8), grpc::StatusCode::INVALID_ARGUMENT, "bad.jsonl:1"},
      {spec("models/llama-tiny", "corpus/sample.jsonl", 0), grpc::StatusCode::INVALID_ARGUMENT, "num_samples"},
      {spec("models/llama-tiny", "corpus/sample.jsonl", int64_t{1} << 50), grpc::StatusCode::INVALID_ARGUMENT, "num_samples"},
  };
  for (const Case& k : cases) {
    grpc::Status s = Call(c, k.req, tok);
    EXPECT_EQ(s.error_code(), k.code) << k.req.spec().model() << " " << s.error_message();
    EXPECT_NE(s.error_message().find(k.words), std::string::npos) << s.error_message();
  }
  {
    auto stub = v1::CalibrationService::NewStub(c.Channel());
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + tok);
    v1::GetJobRequest r;
    r.set_job_id("job-unknown");
    v1::Job j;
    grpc::Status s = stub->GetJob(&ctx, r, &j);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(s.error_message().find("job-unknown"), std::string::npos);
  }
  // A report under a stale lease: lease a task, let the lease expire, report.
  const std::string id = [&] {
    auto stub = v1::CalibrationService::NewStub(c.Channel());
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + tok);
    v1::Job j;
    EXPECT_TRUE(stub->SubmitJob(&ctx, good, &j).ok());
    return j.id();
  }();
  auto wstub = v1::WorkerService::NewStub(c.Channel());
  auto wctx = [](grpc::ClientContext& ctx) { ctx.AddMetadata("authorization", "Bearer worker-secret"); };
  v1::RegisterWorkerResponse reg;
  {
    grpc::ClientContext ctx;
    wctx(ctx);
    ASSERT_TRUE(wstub->RegisterWorker(&ctx, v1::RegisterWorkerRequest(), &reg).ok());
  }
  v1::LeaseTaskResponse lease;
  {
    grpc::ClientContext ctx;
    wctx(ctx);
    v1::LeaseTaskRequest r;
    r.set_worker_id(reg.worker_id());
    ASSERT_TRUE(wstub->LeaseTask(&ctx, r, &lease).ok());
    ASSERT_TRUE(lease.has_task());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));  // lease is 3 s
  {
    grpc::ClientContext ctx;
    wctx(ctx);
    v1::CompleteTaskResponse resp;
    auto writer = wstub->CompleteTask(&ctx, &resp);
    v1::CompleteTaskChunk chunk;
    chunk.mutable_header()->set_worker_id(reg.worker_id());
    chunk.mutable_header()->set_task_id(lease.task().task_id());
    chunk.mutable_header()->set_lease_id(lease.task().lease_id());
    chunk.mutable_header()->set_samples(4);
    chunk.mutable_header()->set_tokens(10);
    writer->Write(chunk);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find("not current"), std::string::npos) << s.error_message();
  }
  // Still serving, and the job is intact.
  EXPECT_TRUE(HealthServing(c));
  EXPECT_TRUE(c.coordinator().running());
  auto stub = v1::CalibrationService::NewStub(c.Channel());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + tok);
  v1::GetJobRequest r;
  r.set_job_id(id);
  v1::Job j;
  ASSERT_TRUE(stub->GetJob(&ctx, r, &j).ok());
  EXPECT_EQ(j.progress().shards_done(), 0);
  EXPECT_EQ(j.progress().lease_expiries(), 1);
  // SIGTERM: graceful stop with exit code 0.
  ASSERT_TRUE(c.coordinator().Kill(SIGTERM));
  EXPECT_TRUE(WIFEXITED(c.coordinator().exit_status()) && WEXITSTATUS(c.coordinator().exit_status()) == 0);
}

}  // namespace
}  // namespace qcal
