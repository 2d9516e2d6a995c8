// The coordinator core without a network: job lifecycle, exactly-once shards under
// expiry, duplicate and stale reports, restart from the store alone, store faults,
// and every kind of bad input with its status.
#include "server/core/coordinator.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/export/export.h"
#include "common/model_config.h"
#include "common/quant/response_json.h"
#include "common/stats/stats_proto.h"
#include "common/stats/tensor_stats.h"
#include "gtest/gtest.h"
#include "server/store/fault_injecting_store.h"
#include "server/store/in_memory_store.h"

namespace qcal::server {
namespace {

namespace fs = std::filesystem;
const std::string kData = QCAL_TEST_DATA_DIR;

// A data root with the tiny model, a few broken variants and corpora.
class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("coord-" + std::to_string(::getpid()) + "-" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "models");
    fs::create_directories(root_ / "corpus");
    Copy("llama-tiny", "llama-tiny");
    Copy("llama-tiny", "mamba");
    Edit(root_ / "models/mamba/config.json", "\"llama\"", "\"mamba\"");
    Copy("llama-tiny", "corrupt");
    std::string w = Slurp(root_ / "models/corrupt/model.safetensors");
    Spit(root_ / "models/corrupt/model.safetensors", w.substr(0, w.size() - 1000));
    fs::copy_file(kData + "/corpus/sample.jsonl", root_ / "corpus/sample.jsonl");
    Spit(root_ / "corpus/empty.jsonl", "");
    fs::create_symlink("/etc", root_ / "escape");
    clock_ = absl::FromUnixSeconds(1'700'000'000);
    Restart();
  }

  void Restart() {
    core_.reset();
    CoordinatorOptions o;
    o.data_roots = {root_.string()};
    o.lease_duration = absl::Seconds(30);
    o.max_shard_attempts = 3;
    o.output_root = (root_ / "out").string();
    fs::create_directories(o.output_root);
    o.now = [this] { return clock_; };
    auto c = Coordinator::Create(&faulty_, o, nullptr);
    ASSERT_TRUE(c.ok()) << c.status();
    core_ = std::move(c).value();
  }

  void Copy(const std::string& from, const std::string& to) {
    fs::copy(kData + "/models/" + from, root_ / "models" / to);
    for (auto& e : fs::directory_iterator(root_ / "models" / to)) {
      fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    }
  }
  static std::string Slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  static void Spit(const fs::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << s;
  }
  static void Edit(const fs::path& p, const std::string& from, const std::string& to) {
    std::string s = Slurp(p);
    s.replace(s.find(from), from.size(), to);
    Spit(p, s);
  }

  v1::SubmitJobRequest Spec(int samples = 20, int shard = 4) {
    v1::SubmitJobRequest r;
    r.mutable_spec()->set_model("models/llama-tiny");
    r.mutable_spec()->set_corpus("corpus/sample.jsonl");
    r.mutable_spec()->mutable_sampling()->set_num_samples(samples);
    r.mutable_spec()->mutable_sampling()->set_seq_len(64);
    r.mutable_spec()->set_shard_size(shard);
    return r;
  }

  std::string Register() {
    v1::RegisterWorkerRequest r;
    r.set_name("test");
    auto w = core_->RegisterWorker(r);
    EXPECT_TRUE(w.ok());
    return w->worker_id();
  }

  v1::Task Lease(const std::string& worker) {
    v1::LeaseTaskRequest r;
    r.set_worker_id(worker);
    auto t = core_->LeaseTask(r);
    EXPECT_TRUE(t.ok()) << t.status();
    return t->task();
  }

  // A report for `task` built from real TensorStats over generated rows, plus the
  // same statistics merged into `expect` (the independent reference).
  std::pair<v1::CompleteTaskHeader, std::vector<v1::LinearStatsProto>> Report(
      const std::string& worker, const v1::Task& task, const v1::Job& job,
      std::map<std::string, std::pair<stats::TensorStats, stats::TensorStats>>* expect) {
    v1::CompleteTaskHeader h;
    h.set_worker_id(worker);
    h.set_task_id(task.task_id());
    h.set_lease_id(task.lease_id());
    h.set_samples(task.sample_end() - task.sample_begin());
    h.set_tokens(h.samples() * 10);
    h.set_compute_seconds(0.5);
    std::vector<v1::LinearStatsProto> out;
    std::mt19937 rng(static_cast<unsigned>(task.shard_begin() * 7919 + 1));
    std::student_t_distribution<float> heavy(2.0f);
    auto cfg = LoadModelConfig(root_.string() + "/models/llama-tiny");
    for (const auto& l : LinearModules(*cfg)) {
      stats::TensorStats in(l.in_features), o(l.out_features);
      std::vector<float> a(10 * l.in_features), b(10 * l.out_features);
      for (auto& x : a) x = heavy(rng);
      for (auto& x : b) x = heavy(rng);
      EXPECT_TRUE(in.AddRows(a.data(), 10).ok());
      EXPECT_TRUE(o.AddRows(b.data(), 10).ok());
      v1::LinearStatsProto p;
      p.set_name(l.name);
      stats::ToProto(in, p.mutable_input());
      stats::ToProto(o, p.mutable_output());
      out.push_back(p);
      if (expect) {
        auto it = expect->find(l.name);
        if (it == expect->end()) {
          expect->emplace(l.name, std::make_pair(in, o));
        } else {
          EXPECT_TRUE(it->second.first.Merge(in).ok());
          EXPECT_TRUE(it->second.second.Merge(o).ok());
        }
      }
    }
    (void)job;
    return {h, out};
  }

  // A two-shard job whose first lease (worker `slow`) straggles: the other shard
  // (worker `fast`) is reported at 8 samples/s, and 3 s later `fast` gets a backup of
  // the straggler's. Workers are registered unless given.
  struct Backed {
    v1::Job job;
    std::string slow, fast;
    v1::Task straggler, backup;
  };
  Backed StartBackup(std::string slow = "", std::string fast = "") {
    Backed b;
    b.slow = slow.empty() ? Register() : slow;
    b.fast = fast.empty() ? Register() : fast;
    auto job = core_->SubmitJob(Spec(8, 4));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return b;
    b.job = *job;
    b.straggler = Lease(b.slow);
    v1::Task other = Lease(b.fast);
    auto [h, l] = Report(b.fast, other, b.job, nullptr);
    EXPECT_TRUE(core_->CompleteTask(h, l).ok());
    clock_ += absl::Seconds(3);
    b.backup = Lease(b.fast);
    EXPECT_FALSE(b.backup.task_id().empty());
    EXPECT_EQ(b.backup.shard_begin(), b.straggler.shard_begin());
    return b;
  }

  fs::path root_;
  absl::Time clock_;
  InMemoryStore memory_;
  FaultInjectingStore faulty_{&memory_};
  std::unique_ptr<Coordinator> core_;
};

TEST_F(CoordinatorTest, JobRunsToCalibratedAndEveryShardCountsOnce) {
  auto job = core_->SubmitJob(Spec());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_PENDING);
  EXPECT_EQ(job->progress().shards_total(), 5);
  EXPECT_EQ(job->architecture(), "llama");
  std::vector<v1::Job> seen;
  auto handle = core_->Watch(job->id(), [&](const v1::Job& j) { seen.push_back(j); });
  ASSERT_TRUE(handle.ok());

  const std::string w = Register();
  std::map<std::string, std::pair<stats::TensorStats, stats::TensorStats>> expect;
  int reports = 0;
  while (true) {
    v1::Task t = Lease(w);
    if (t.task_id().empty()) break;
    auto [h, linears] = Report(w, t, *job, &expect);
    auto r = core_->CompleteTask(h, linears);
    ASSERT_TRUE(r.ok()) << r.status();
    ++reports;
    // A duplicate of the same report is refused and changes nothing.
    auto dup = core_->CompleteTask(h, linears);
    EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  }
  auto done = core_->GetJob(job->id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::JOB_CALIBRATED);
  EXPECT_EQ(done->progress().shards_done(), 5);
  EXPECT_EQ(done->progress().samples_done(), 20);
  EXPECT_EQ(done->progress().tokens_done(), 200);
  EXPECT_GE(reports, 2);
  EXPECT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().state(), v1::JOB_CALIBRATED);
  core_->Unwatch(*handle);

  // The stored statistics equal the independent merge, bitwise for min/max/sketch.
  int linears = 0;
  ASSERT_TRUE(core_->StreamStats(job->id(), false, 1 << 10, [&](const v1::JobStatsChunk& c) {
    for (const auto& l : c.linears()) {
      ++linears;
      auto in = stats::TensorStatsFromProto(l.input(), l.name());
      if (!in.ok()) {
        ADD_FAILURE() << in.status();
        return false;
      }
      const auto& want = expect.at(l.name()).first;
      EXPECT_EQ(in->count(), want.count());
      EXPECT_EQ(in->min(), want.min());
      EXPECT_EQ(in->max(), want.max());
      EXPECT_TRUE(in->sketch() == want.sketch());
      for (int64_t ch = 0; ch < in->channels(); ++ch) {
        EXPECT_NEAR(in->sum()[ch], want.sum()[ch], 1e-12 * (1 + std::abs(want.sum()[ch])));
      }
    }
    return true;
  }).ok());
  EXPECT_EQ(linears, 15);
}

TEST_F(CoordinatorTest, ExpiredLeaseReturnsShardsAndRefusesTheLateReport) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok());
  const std::string w1 = Register(), w2 = Register();
  v1::Task t1 = Lease(w1);
  auto [h1, l1] = Report(w1, t1, *job, nullptr);
  clock_ += absl::Seconds(31);
  ASSERT_TRUE(core_->ExpireLeases().ok());
  auto after = core_->GetJob(job->id());
  EXPECT_EQ(after->progress().lease_expiries(), 1);
  EXPECT_EQ(after->progress().shards_leased(), 0);
  // The late report of the expired lease changes nothing.
  auto late = core_->CompleteTask(h1, l1);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(core_->GetJob(job->id())->progress().shards_done(), 0);
  // A heartbeat of the old lease is refused too.
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w1);
  hb.set_task_id(t1.task_id());
  hb.set_lease_id(t1.lease_id());
  EXPECT_EQ(core_->Heartbeat(hb).status().code(), absl::StatusCode::kFailedPrecondition);
  // Another worker gets the same shard again and completes it.
  v1::Task t2 = Lease(w2);
  EXPECT_EQ(t2.shard_begin(), t1.shard_begin());
  EXPECT_NE(t2.lease_id(), t1.lease_id());
  auto [h2, l2] = Report(w2, t2, *job, nullptr);
  ASSERT_TRUE(core_->CompleteTask(h2, l2).ok());
  // A foreign report (right task, wrong lease) is refused.
  h2.set_lease_id("lease-forged");
  EXPECT_EQ(core_->CompleteTask(h2, l2).status().code(), absl::StatusCode::kFailedPrecondition);
  h2.set_task_id("no-such-task");
  EXPECT_EQ(core_->CompleteTask(h2, l2).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, RestartResumesFromTheStoreAlone) {
  auto job = core_->SubmitJob(Spec(12, 4));
  ASSERT_TRUE(job.ok());
  std::string w = Register();
  v1::Task t = Lease(w);
  auto [h, l] = Report(w, t, *job, nullptr);
  ASSERT_TRUE(core_->CompleteTask(h, l).ok());
  v1::Task leased = Lease(w);  // still leased when the coordinator "dies"
  Restart();
  auto j = core_->GetJob(job->id());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state(), v1::JOB_RUNNING);
  EXPECT_EQ(j->progress().shards_done(), t.shard_end() - t.shard_begin());
  // The surviving lease is still honoured after the restart.
  auto [h2, l2] = Report(w, leased, *job, nullptr);
  ASSERT_TRUE(core_->CompleteTask(h2, l2).ok());
  // Workers must register again.
  v1::LeaseTaskRequest lr;
  lr.set_worker_id(w);
  EXPECT_EQ(core_->LeaseTask(lr).status().code(), absl::StatusCode::kNotFound);
  w = Register();
  while (true) {
    v1::Task n = Lease(w);
    if (n.task_id().empty()) break;
    auto [h3, l3] = Report(w, n, *job, nullptr);
    ASSERT_TRUE(core_->CompleteTask(h3, l3).ok());
  }
  EXPECT_EQ(core_->GetJob(job->id())->state(), v1::JOB_CALIBRATED);
  EXPECT_EQ(core_->GetJob(job->id())->progress().samples_done(), 12);
}

TEST_F(CoordinatorTest, StoreFailureMidReportChangesNothing) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok());
  const std::string w = Register();
  v1::Task t = Lease(w);
  auto [h, l] = Report(w, t, *job, nullptr);
  faulty_.FailNextWrites(1);
  EXPECT_EQ(core_->CompleteTask(h, l).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(core_->GetJob(job->id())->progress().shards_done(), 0);
  // The retry under the same (still current) lease is applied exactly once.
  ASSERT_TRUE(core_->CompleteTask(h, l).ok());
  EXPECT_EQ(core_->GetJob(job->id())->progress().samples_done(), 4);
  Restart();  // and the store agrees with memory
  EXPECT_EQ(core_->GetJob(job->id())->progress().samples_done(), 4);
}

TEST_F(CoordinatorTest, RepeatedFailuresFailTheJobWithReasons) {
  auto job = core_->SubmitJob(Spec(4, 4));
  ASSERT_TRUE(job.ok());
  const std::string w = Register();
  for (int i = 0; i < 3; ++i) {
    v1::Task t = Lease(w);
    ASSERT_FALSE(t.task_id().empty()) << i;
    v1::FailTaskRequest f;
    f.set_worker_id(w);
    f.set_task_id(t.task_id());
    f.set_lease_id(t.lease_id());
    f.set_reason("out of memory " + std::to_string(i));
    f.set_retryable(true);
    ASSERT_TRUE(core_->FailTask(f).ok());
  }
  auto j = core_->GetJob(job->id());
  EXPECT_EQ(j->state(), v1::JOB_FAILED);
  ASSERT_EQ(j->failure_reasons_size(), 3);
  EXPECT_NE(j->failure_reasons(2).find("out of memory 2"), std::string::npos);
  EXPECT_TRUE(Lease(w).task_id().empty());
}

TEST_F(CoordinatorTest, CancelStopsHeartbeats) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok());
  const std::string w = Register();
  v1::Task t = Lease(w);
  ASSERT_TRUE(core_->CancelJob(job->id()).ok());
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w);
  hb.set_task_id(t.task_id());
  hb.set_lease_id(t.lease_id());
  auto r = core_->Heartbeat(hb);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->cancelled());
  auto [h, l] = Report(w, t, *job, nullptr);
  EXPECT_EQ(core_->CompleteTask(h, l).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(core_->CancelJob(job->id()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Lease(w).task_id().empty());
}

// A heartbeat of `t`'s lease.
absl::StatusOr<v1::HeartbeatResponse> Beat(Coordinator& core, const std::string& worker,
                                           const v1::Task& t) {
  v1::HeartbeatRequest hb;
  hb.set_worker_id(worker);
  hb.set_task_id(t.task_id());
  hb.set_lease_id(t.lease_id());
  return core.Heartbeat(hb);
}

TEST_F(CoordinatorTest, TasksNeverExceedTheShareOfEachLiveWorker) {
  auto job = core_->SubmitJob(Spec(16, 1));  // 16 shards
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string w1 = Register(), w2 = Register();
  v1::Task t1 = Lease(w1);  // no speed measured yet: one shard
  EXPECT_EQ(t1.shard_end() - t1.shard_begin(), 1);
  auto [h1, l1] = Report(w1, t1, *job, nullptr);  // 1 sample in 0.5 s
  ASSERT_TRUE(core_->CompleteTask(h1, l1).ok());
  // The report interval (30 s at 2 samples/s) would allow all 15; two live workers
  // get at most half of what is pending each time.
  v1::Task t2 = Lease(w2);
  EXPECT_EQ(t2.shard_end() - t2.shard_begin(), 8);
  v1::Task t3 = Lease(w1);
  EXPECT_EQ(t3.shard_end() - t3.shard_begin(), 4);
  auto j = core_->GetJob(job->id());
  EXPECT_EQ(j->progress().workers_active(), 2);
  ASSERT_EQ(j->progress().workers_size(), 2);
  EXPECT_EQ(j->progress().workers(0).worker_id(), w1);
  EXPECT_EQ(j->progress().workers(0).tasks_done(), 1);
  EXPECT_EQ(j->progress().workers(0).samples_done(), 1);
  EXPECT_DOUBLE_EQ(j->progress().workers(0).samples_per_second(), 2);
  EXPECT_TRUE(j->progress().workers(1).active());
  // A worker that joins mid-job gets its share at its next lease.
  const std::string w3 = Register();
  v1::Task t4 = Lease(w3);
  EXPECT_EQ(t4.shard_end() - t4.shard_begin(), 1);  // 3 pending over 3 workers
}

TEST_F(CoordinatorTest, AStragglerGetsABackupAndTheFirstReportWins) {
  auto job = core_->SubmitJob(Spec(8, 4));  // 2 shards
  ASSERT_TRUE(job.ok());
  const std::string slow = Register(), fast = Register();
  v1::Task straggler = Lease(slow);
  v1::Task other = Lease(fast);
  std::map<std::string, std::pair<stats::TensorStats, stats::TensorStats>> expect;
  auto [h, l] = Report(fast, other, *job, &expect);
  ASSERT_TRUE(core_->CompleteTask(h, l).ok());  // 8 samples/s measured
  // Nothing pending, and the straggler is not late yet (predicted 0.5 s).
  EXPECT_TRUE(Lease(fast).task_id().empty());
  clock_ += absl::Seconds(1);
  EXPECT_TRUE(Lease(fast).task_id().empty());
  clock_ += absl::Seconds(1);  // 2 s > 1.5 x 0.5 s + 1 s
  v1::Task backup = Lease(fast);
  ASSERT_FALSE(backup.task_id().empty());
  EXPECT_NE(backup.task_id(), straggler.task_id());
  EXPECT_NE(backup.lease_id(), straggler.lease_id());
  EXPECT_EQ(backup.shard_begin(), straggler.shard_begin());
  EXPECT_EQ(backup.shard_end(), straggler.shard_end());
  EXPECT_EQ(backup.sample_begin(), straggler.sample_begin());
  // One backup per task; the straggler's worker never backs itself up.
  const std::string third = Register();
  EXPECT_TRUE(Lease(third).task_id().empty());
  EXPECT_TRUE(Lease(slow).task_id().empty());
  auto j = core_->GetJob(job->id());
  EXPECT_EQ(j->progress().backup_tasks(), 1);
  EXPECT_EQ(j->progress().workers_active(), 2);
  EXPECT_EQ(j->progress().shards_leased(), 1);
  auto beat = Beat(*core_, slow, straggler);
  ASSERT_TRUE(beat.ok());
  EXPECT_FALSE(beat->cancelled());

  // The backup reports first: merged once, in the batch that ends the straggler.
  auto [hb, lb] = Report(fast, backup, *job, &expect);
  ASSERT_TRUE(core_->CompleteTask(hb, lb).ok());
  j = core_->GetJob(job->id());
  EXPECT_EQ(j->state(), v1::JOB_CALIBRATED);
  EXPECT_EQ(j->progress().shards_done(), 2);
  EXPECT_EQ(j->progress().samples_done(), 8);
  EXPECT_EQ(j->progress().backup_wins(), 1);
  EXPECT_EQ(j->progress().workers_active(), 0);
  beat = Beat(*core_, slow, straggler);
  ASSERT_TRUE(beat.ok());
  EXPECT_TRUE(beat->cancelled());
  EXPECT_NE(beat->reason().find("superseded: task " + backup.task_id()), std::string::npos)
      << beat->reason();
  // The straggler's late report is refused by name, again and again, and after the
  // coordinator restarts; nothing is counted twice.
  auto [hs, ls] = Report(slow, straggler, *job, nullptr);
  for (int i = 0; i < 2; ++i) {
    auto late = core_->CompleteTask(hs, ls);
    EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(late.status().message().find("was superseded"), std::string::npos) << late.status();
    if (i == 0) Restart();
  }
  EXPECT_EQ(core_->GetJob(job->id())->progress().samples_done(), 8);
  EXPECT_EQ(core_->GetJob(job->id())->progress().tokens_done(), 80);
  int linears = 0;
  ASSERT_TRUE(core_->StreamStats(job->id(), false, 1 << 20, [&](const v1::JobStatsChunk& c) {
    for (const auto& lin : c.linears()) {
      ++linears;
      auto in = stats::TensorStatsFromProto(lin.input(), lin.name());
      EXPECT_TRUE(in.ok());
      EXPECT_EQ(in->count(), expect.at(lin.name()).first.count());
      EXPECT_EQ(in->max(), expect.at(lin.name()).first.max());
    }
    return true;
  }).ok());
  EXPECT_EQ(linears, 15);
}

TEST_F(CoordinatorTest, TheOriginalCanWinTooAcrossARestart) {
  auto [job, slow, fast, straggler, backup] = StartBackup();
  ASSERT_FALSE(backup.task_id().empty());
  Restart();  // both leases survive; the pairing is stored with the backup
  auto [hs, ls] = Report(slow, straggler, job, nullptr);
  ASSERT_TRUE(core_->CompleteTask(hs, ls).ok());
  auto j = core_->GetJob(job.id());
  EXPECT_EQ(j->state(), v1::JOB_CALIBRATED);
  EXPECT_EQ(j->progress().samples_done(), 8);
  EXPECT_EQ(j->progress().backup_wins(), 0);
  auto beat = Beat(*core_, fast, backup);
  ASSERT_TRUE(beat.ok());
  EXPECT_TRUE(beat->cancelled());
  auto [hb, lb] = Report(fast, backup, job, nullptr);
  auto late = core_->CompleteTask(hb, lb);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("superseded"), std::string::npos) << late.status();
  EXPECT_EQ(core_->GetJob(job.id())->progress().samples_done(), 8);
}

TEST_F(CoordinatorTest, ALeaseThatEndsLeavesItsShardsWithTheOtherCopy) {
  auto [job, slow, fast, straggler, backup] = StartBackup();
  ASSERT_FALSE(backup.task_id().empty());
  // The straggler's worker gives up: its shards stay leased to the backup.
  v1::FailTaskRequest f;
  f.set_worker_id(slow);
  f.set_task_id(straggler.task_id());
  f.set_lease_id(straggler.lease_id());
  f.set_reason("out of memory");
  f.set_retryable(true);
  ASSERT_TRUE(core_->FailTask(f).ok());
  auto j = core_->GetJob(job.id());
  EXPECT_EQ(j->progress().shards_leased(), 1);
  EXPECT_EQ(j->progress().workers_active(), 1);
  EXPECT_TRUE(Lease(slow).task_id().empty());  // nothing went back to pending
  auto [hb, lb] = Report(fast, backup, job, nullptr);
  ASSERT_TRUE(core_->CompleteTask(hb, lb).ok());
  j = core_->GetJob(job.id());
  EXPECT_EQ(j->state(), v1::JOB_CALIBRATED);
  EXPECT_EQ(j->progress().samples_done(), 8);

  // And when both copies expire, the shards go back to the queue.
  const Backed second = StartBackup(slow, fast);
  const v1::Task& a = second.straggler;
  const v1::Task& copy = second.backup;
  ASSERT_FALSE(copy.task_id().empty());
  clock_ += absl::Seconds(31);
  ASSERT_TRUE(core_->ExpireLeases().ok());
  j = core_->GetJob(second.job.id());
  EXPECT_EQ(j->progress().shards_leased(), 0);
  EXPECT_EQ(j->progress().lease_expiries(), 2);
  v1::Task again = Lease(slow);
  EXPECT_EQ(again.shard_begin(), a.shard_begin());
  EXPECT_TRUE(again.task_id() != a.task_id() && again.task_id() != copy.task_id());
}

TEST_F(CoordinatorTest, CancellingAJobEndsItsBackups) {
  auto [job, slow, fast, straggler, backup] = StartBackup();
  ASSERT_FALSE(backup.task_id().empty());
  ASSERT_TRUE(core_->CancelJob(job.id()).ok());
  for (const auto& [w, t] : {std::pair{slow, straggler}, {fast, backup}}) {
    auto beat = Beat(*core_, w, t);
    ASSERT_TRUE(beat.ok());
    EXPECT_TRUE(beat->cancelled());
  }
  auto [hb, lb] = Report(fast, backup, job, nullptr);
  EXPECT_EQ(core_->CompleteTask(hb, lb).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(core_->GetJob(job.id())->progress().samples_done(), 4);
}

// Issue 15, findings 5, 6, 7 and 10: a FIFO as a corpus or model file is refused
// (it blocked a server thread until someone wrote to it); a model folder inside the
// roots whose files link outside is refused; outside paths get one answer whether
// they exist or not, and link targets are never told; absurd config values are
// refused by name before anything is sized from them.
TEST_F(CoordinatorTest, HostileFilesAndConfigsAreRefusedAtSubmit) {
  auto expect = [&](v1::SubmitJobRequest r, absl::StatusCode c, const std::string& words) {
    absl::Status s = core_->SubmitJob(r).status();
    EXPECT_EQ(s.code(), c) << s;
    EXPECT_NE(s.message().find(words), std::string::npos) << s;
    return std::string(s.message());
  };
  ASSERT_EQ(::mkfifo((root_ / "corpus/fifo.jsonl").c_str(), 0600), 0);
  auto r = Spec();
  r.mutable_spec()->set_corpus("corpus/fifo.jsonl");
  expect(r, absl::StatusCode::kInvalidArgument, "is a FIFO, not a regular file");
  r = Spec();
  r.mutable_spec()->set_corpus("corpus");
  expect(r, absl::StatusCode::kInvalidArgument, "is a directory, not a regular file");

  Copy("llama-tiny", "fifo-config");
  fs::remove(root_ / "models/fifo-config/config.json");
  ASSERT_EQ(::mkfifo((root_ / "models/fifo-config/config.json").c_str(), 0600), 0);
  r = Spec();
  r.mutable_spec()->set_model("models/fifo-config");
  expect(r, absl::StatusCode::kInvalidArgument, "is a FIFO");

  // Inside the roots as a folder, outside through its files.
  fs::create_directories(root_ / "models/linked");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    if (fs::exists(kData + "/models/llama-tiny/" + f)) {
      fs::create_symlink(fs::absolute(kData + "/models/llama-tiny/" + f), root_ / "models/linked" / f);
    }
  }
  r = Spec();
  r.mutable_spec()->set_model("models/linked");
  std::string m = expect(r, absl::StatusCode::kPermissionDenied, "outside the data roots");
  EXPECT_EQ(m.find(fs::absolute(kData).string()), std::string::npos) << m;

  // One answer for outside paths, existing or not; no link target in it.
  r = Spec();
  r.mutable_spec()->set_model("/etc/hostname");
  const std::string exists = expect(r, absl::StatusCode::kPermissionDenied, "outside");
  r.mutable_spec()->set_model("/etc/no-such-file-here");
  const std::string absent = expect(r, absl::StatusCode::kPermissionDenied, "outside");
  EXPECT_EQ(exists.substr(exists.find("\" is outside")), absent.substr(absent.find("\" is outside")));
  r.mutable_spec()->set_model("escape/hostname");  // escape -> /etc
  m = expect(r, absl::StatusCode::kPermissionDenied, "outside the data roots");
  EXPECT_EQ(m.find("/etc"), std::string::npos) << m;

  Copy("llama-tiny", "huge");
  Edit(root_ / "models/huge/config.json", "\"num_hidden_layers\": 2",
       "\"num_hidden_layers\": 1099511627776");
  r = Spec();
  r.mutable_spec()->set_model("models/huge");
  expect(r, absl::StatusCode::kInvalidArgument, "above qcal's limit of 1024");
  // 10 M samples in shards of 1: 10 M shard records (12.7 s and 3.1 GB before).
  r = Spec(10'000'000, 1);
  expect(r, absl::StatusCode::kInvalidArgument, "above the limit of 262144 per job");
  EXPECT_TRUE(core_->SubmitJob(Spec()).ok());  // and still serving
}

TEST_F(CoordinatorTest, BadInputGetsTheRightStatus) {
  auto code = [&](v1::SubmitJobRequest r) { return core_->SubmitJob(r).status(); };
  auto expect = [&](v1::SubmitJobRequest r, absl::StatusCode c, const std::string& words) {
    absl::Status s = code(r);
    EXPECT_EQ(s.code(), c) << s;
    EXPECT_NE(s.message().find(words), std::string::npos) << s;
  };
  auto r = Spec();
  r.mutable_spec()->set_model("/etc");
  expect(r, absl::StatusCode::kPermissionDenied, "outside the data roots");
  r = Spec();
  r.mutable_spec()->set_model("models/../models/llama-tiny");
  expect(r, absl::StatusCode::kInvalidArgument, "..");
  r = Spec();
  r.mutable_spec()->set_model("escape");
  expect(r, absl::StatusCode::kPermissionDenied, "outside the data roots");
  r = Spec();
  r.mutable_spec()->set_model("models/nope");
  expect(r, absl::StatusCode::kNotFound, "models/nope");
  r = Spec();
  r.mutable_spec()->set_model("models/mamba");
  expect(r, absl::StatusCode::kUnimplemented, "mamba");
  r = Spec();
  r.mutable_spec()->set_model("models/corrupt");
  expect(r, absl::StatusCode::kInvalidArgument, "model.safetensors");
  r = Spec();
  r.mutable_spec()->set_corpus("corpus/empty.jsonl");
  expect(r, absl::StatusCode::kInvalidArgument, "no usable document");
  r = Spec();
  r.mutable_spec()->mutable_sampling()->set_num_samples(0);
  expect(r, absl::StatusCode::kInvalidArgument, "num_samples");
  r = Spec();
  r.mutable_spec()->mutable_sampling()->set_num_samples(int64_t{1} << 40);
  expect(r, absl::StatusCode::kInvalidArgument, "num_samples");
  r = Spec(21);  // sample.jsonl has 20 documents
  expect(r, absl::StatusCode::kInvalidArgument, "20 usable documents");
  r = Spec();
  r.mutable_spec()->mutable_sampling()->set_seq_len(100000);
  expect(r, absl::StatusCode::kInvalidArgument, "max_position_embeddings");
  r = Spec();
  r.mutable_spec()->mutable_sampling()->set_mode("random");
  expect(r, absl::StatusCode::kInvalidArgument, "sampling.mode");
  EXPECT_EQ(core_->GetJob("job-404").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->CancelJob("job-404").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->GetOperation("operations/x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->GetOperation("x").status().code(), absl::StatusCode::kInvalidArgument);
  // Still serving after all that.
  EXPECT_TRUE(core_->SubmitJob(Spec()).ok());
  // Idempotent submit.
  auto a = Spec();
  a.set_request_id("req-1");
  auto j1 = core_->SubmitJob(a);
  auto j2 = core_->SubmitJob(a);
  ASSERT_TRUE(j1.ok() && j2.ok());
  EXPECT_EQ(j1->id(), j2->id());
  a.mutable_spec()->mutable_sampling()->set_num_samples(8);
  EXPECT_EQ(core_->SubmitJob(a).status().code(), absl::StatusCode::kAlreadyExists);
}

// Issue 15, finding 1: below the disk reserve new work is refused with
// RESOURCE_EXHAUSTED naming the volume and its free bytes, no task is leased, a
// leased task keeps its lease (heartbeats answer), and everything resumes by itself
// once space is back; nothing is lost.
TEST_F(CoordinatorTest, ShortOfDiskRefusesNewWorkKeepsLeasesAndResumes) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string w = Register();
  const v1::Task t = Lease(w);
  ASSERT_FALSE(t.task_id().empty());

  faulty_.SetFreeBytes(1000);
  const DiskState low = core_->CheckDiskSpace();
  EXPECT_TRUE(low.refusing);
  EXPECT_EQ(*low.free_bytes, 1000);
  auto refused = [](const absl::Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << what << ": " << s;
    EXPECT_NE(s.message().find("1000 bytes free"), std::string::npos) << s;
    EXPECT_NE(s.message().find("memory"), std::string::npos) << "names the volume: " << s;
  };
  refused(core_->SubmitJob(Spec()).status(), "submit");
  auto [h, linears] = Report(w, t, *job, nullptr);
  refused(core_->CompleteTask(h, linears).status(), "report");
  v1::ExportRequest e;
  e.set_job_id(job->id());
  e.set_threshold(8);
  e.set_output("x");
  refused(core_->Export(e).status(), "export");
  v1::LeaseTaskRequest lr;
  lr.set_worker_id(w);
  auto idle = core_->LeaseTask(lr);
  ASSERT_TRUE(idle.ok()) << idle.status();
  EXPECT_FALSE(idle->has_task());
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w);
  hb.set_task_id(t.task_id());
  hb.set_lease_id(t.lease_id());
  const int64_t writes = faulty_.counts().writes;
  auto beat = core_->Heartbeat(hb);
  EXPECT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(faulty_.counts().writes, writes) << "the extension is not written while short";

  faulty_.SetFreeBytes(int64_t{1} << 40);
  EXPECT_FALSE(core_->CheckDiskSpace().refusing);
  ASSERT_TRUE(core_->CompleteTask(h, linears).ok());
  while (true) {
    v1::Task next = Lease(w);
    if (next.task_id().empty()) break;
    auto [h2, l2] = Report(w, next, *job, nullptr);
    ASSERT_TRUE(core_->CompleteTask(h2, l2).ok());
  }
  EXPECT_EQ(core_->GetJob(job->id())->state(), v1::JOB_CALIBRATED);
  EXPECT_EQ(core_->GetJob(job->id())->progress().samples_done(), 8);
}

// With every shard leased (and no straggler to back up) a lease answers "no task,
// retry later": the task field absent, not an empty task a worker would run.
TEST_F(CoordinatorTest, NothingToLeaseAnswersNoTask) {
  const std::string w = Register();
  v1::LeaseTaskRequest r;
  r.set_worker_id(w);
  auto idle = core_->LeaseTask(r);
  ASSERT_TRUE(idle.ok()) << idle.status();
  EXPECT_FALSE(idle->has_task());
  EXPECT_GT(idle->retry_after_ms(), 0);
  ASSERT_TRUE(core_->SubmitJob(Spec(4, 4)).ok());
  EXPECT_FALSE(Lease(w).task_id().empty());
  auto busy = core_->LeaseTask(r);
  ASSERT_TRUE(busy.ok()) << busy.status();
  EXPECT_FALSE(busy->has_task()) << busy->task().DebugString();
}

// Issue 15, finding 4: concurrent submits of one request_id on a corpus that takes a
// while to validate made two jobs. The key is now checked again with the insert.
TEST_F(CoordinatorTest, ConcurrentSubmitsOfOneRequestIdMakeOneJob) {
  fs::copy_file(kData + "/corpus/calib.jsonl.zst", root_ / "corpus/calib.jsonl.zst");
  v1::SubmitJobRequest r = Spec(64);
  r.mutable_spec()->set_corpus("corpus/calib.jsonl.zst");
  r.set_request_id("same-key");
  constexpr int kClients = 12;
  std::vector<absl::StatusOr<v1::Job>> got(kClients, absl::UnknownError("not run"));
  std::atomic<bool> go{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      got[i] = core_->SubmitJob(r);
    });
  }
  go = true;
  for (std::thread& t : clients) t.join();
  for (const absl::StatusOr<v1::Job>& j : got) {
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(j->id(), got[0]->id());
  }
  auto list = core_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->jobs_size(), 1);
}

TEST_F(CoordinatorTest, ListJobsPagesNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(core_->SubmitJob(Spec())->id());
  v1::ListJobsRequest r;
  r.set_page_size(2);
  std::vector<std::string> got;
  while (true) {
    auto page = core_->ListJobs(r);
    ASSERT_TRUE(page.ok());
    for (const auto& j : page->jobs()) got.push_back(j.id());
    if (page->next_page_token().empty()) break;
    r.set_page_token(page->next_page_token());
  }
  std::reverse(ids.begin(), ids.end());
  EXPECT_EQ(got, ids);
  r.set_page_token("garbage");
  EXPECT_EQ(core_->ListJobs(r).status().code(), absl::StatusCode::kInvalidArgument);
}

// The one-thread waiter of WaitOperation (services.cc) relies on this: the version
// moves on any operation change, and a waiter wakes at once rather than at its timeout.
TEST_F(CoordinatorTest, AwaitOperationChangeWakesOnAChangeAndOtherwiseTimesOut) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok());
  const std::string w = Register();
  for (v1::Task t = Lease(w); !t.task_id().empty(); t = Lease(w)) {
    auto [h, l] = Report(w, t, *job, nullptr);
    ASSERT_TRUE(core_->CompleteTask(h, l).ok());
  }
  const int64_t before = core_->OperationsVersion();
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(core_->AwaitOperationChange(before, absl::Milliseconds(200)), before);
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(190));
  v1::EvaluateRequest req;
  req.set_job_id(job->id());
  req.add_thresholds(8);
  req.set_eval_corpus("corpus/sample.jsonl");
  req.mutable_eval_sampling()->set_num_samples(4);
  req.mutable_eval_sampling()->set_seq_len(32);
  auto op = core_->Evaluate(req);
  ASSERT_TRUE(op.ok()) << op.status();
  const int64_t created = core_->OperationsVersion();
  EXPECT_GT(created, before);
  int64_t woke = created;
  absl::Duration waited;
  std::thread waiter([&] {
    const absl::Time start = absl::Now();
    woke = core_->AwaitOperationChange(created, absl::Seconds(30));
    waited = absl::Now() - start;
  });
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(core_->CancelOperation(op->name()).ok());
  waiter.join();
  EXPECT_GT(woke, created);
  EXPECT_LT(waited, absl::Seconds(5));
  EXPECT_TRUE(core_->GetOperation(op->name())->done());
}

TEST_F(CoordinatorTest, EvaluationRunsAsExactlyOnceUnitsAndSurvivesARestart) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok());
  std::string w = Register();
  while (true) {
    v1::Task t = Lease(w);
    if (t.task_id().empty()) break;
    auto [h, l] = Report(w, t, *job, nullptr);
    ASSERT_TRUE(core_->CompleteTask(h, l).ok());
  }
  v1::EvaluateRequest req;
  req.set_job_id(job->id());
  req.add_thresholds(1);
  req.add_thresholds(1e7);
  req.set_eval_corpus("corpus/sample.jsonl");
  req.mutable_eval_sampling()->set_num_samples(10);
  req.mutable_eval_sampling()->set_seq_len(32);
  req.set_shard_size(3);  // 4 units per variant, 3 variants
  auto op = core_->Evaluate(req);
  ASSERT_TRUE(op.ok()) << op.status();
  EXPECT_FALSE(op->done());
  // Every unit's result is one partial; give unit u of variant v hits = v, total = n.
  std::map<int, std::pair<int64_t, int64_t>> expect;  // variant -> (hits, total)
  int tasks = 0;
  bool restarted = false;
  while (true) {
    v1::Task t = Lease(w);
    if (t.task_id().empty()) break;
    ++tasks;
    ASSERT_EQ(t.kind(), v1::TASK_EVALUATE);
    v1::EvaluateTaskPayload payload;
    ASSERT_TRUE(t.payload().UnpackTo(&payload));
    const int variant = payload.float_baseline() ? 0 : (payload.threshold() == 1 ? 1 : 2);
    if (!payload.float_baseline()) {
      EXPECT_EQ(payload.linears_size(), 15);
    }
    v1::CompleteTaskHeader h;
    h.set_worker_id(w);
    h.set_task_id(t.task_id());
    h.set_lease_id(t.lease_id());
    h.set_samples(t.sample_end() - t.sample_begin());
    v1::EvaluateResult result;
    for (int64_t u = t.shard_begin(); u < t.shard_end(); ++u) {
      const int64_t n = std::min<int64_t>(3, 10 - (u % 4) * 3);
      auto* p = result.add_shards();
      const int64_t hits = std::min<int64_t>(variant, n);
      p->set_hits(hits);
      p->set_total(n);
      p->set_nll_sum(1.5 * n);
      p->set_predictions(n);
      expect[variant].first += hits;
      expect[variant].second += n;
    }
    google::protobuf::Any any;
    any.PackFrom(result);
    auto done_unit = core_->CompleteTask(h, {}, &any);
    ASSERT_TRUE(done_unit.ok()) << done_unit.status();
    if (!restarted) {
      Restart();
      restarted = true;
      w = Register();
    }
  }
  EXPECT_GE(tasks, 3);
  auto done = core_->GetOperation(op->name());
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE(done->done()) << done->DebugString();
  v1::EvaluateResponse resp;
  ASSERT_TRUE(done->response().UnpackTo(&resp));
  EXPECT_EQ(resp.samples(), 10);
  EXPECT_EQ(expect[0].second, 10);
  EXPECT_DOUBLE_EQ(resp.float_res(), 0.0);
  ASSERT_EQ(resp.thresholds_size(), 2);
  EXPECT_DOUBLE_EQ(resp.thresholds(0).res(), 1.0 * expect[1].first / expect[1].second);
  EXPECT_NEAR(resp.thresholds(1).perplexity(), std::exp(1.5), 1e-12);
  // t = 1 clips nothing (top_0_1 <= ori): every layer is a shadow layer; t = 1e7
  // clips everything: plain W8A8, no shadow layer.
  EXPECT_EQ(resp.thresholds(0).shadow_layers_size(), 2);
  EXPECT_EQ(resp.thresholds(0).no_clip_input_num(), 15);
  EXPECT_EQ(resp.thresholds(1).shadow_layers_size(), 0);
  EXPECT_EQ(resp.thresholds(1).clip_input_num(), 15);
  // Listing by job finds it; the calibration list does not show it.
  v1::ListOperationsRequest lr;
  lr.set_filter("job=" + job->id());
  EXPECT_EQ(core_->ListOperations(lr)->operations_size(), 1);
  EXPECT_EQ(core_->ListJobs(v1::ListJobsRequest())->jobs_size(), 1);

  // An export of the recommended threshold takes the evaluation's recommendation and
  // carries its model_res_acc.json for the `stats` format.
  ASSERT_TRUE(resp.has_recommended_threshold()) << resp.recommendation_note();
  v1::ExportRequest er;
  er.set_job_id(job->id());
  er.set_recommended(true);
  er.set_format("stats");
  er.set_output("stats");
  auto export_op = core_->Export(er);
  ASSERT_TRUE(export_op.ok()) << export_op.status();
  v1::Task t = Lease(w);
  ASSERT_EQ(t.kind(), v1::TASK_EXPORT);
  v1::ExportTaskPayload payload;
  ASSERT_TRUE(t.payload().UnpackTo(&payload));
  EXPECT_EQ(payload.threshold(), resp.recommended_threshold());
  auto res_acc = quant::ModelResAccJsonOf(resp, "models/llama-tiny");
  ASSERT_TRUE(res_acc.ok());
  EXPECT_EQ(payload.model_res_acc_json(), *res_acc);
}

TEST_F(CoordinatorTest, EvaluationBadInput) {
  auto pending = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(pending.ok());
  v1::EvaluateRequest req;
  req.set_job_id(pending->id());
  req.set_eval_corpus("corpus/sample.jsonl");
  auto not_calibrated = core_->Evaluate(req);
  EXPECT_EQ(not_calibrated.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(not_calibrated.status().message().find("calibrated"), std::string::npos);
  ASSERT_TRUE(core_->CancelJob(pending->id()).ok());
  auto job = core_->SubmitJob(Spec(4, 4));
  ASSERT_TRUE(job.ok());
  const std::string w = Register();
  v1::Task t = Lease(w);
  auto [h, l] = Report(w, t, *job, nullptr);
  ASSERT_TRUE(core_->CompleteTask(h, l).ok());
  req.set_job_id(job->id());
  req.set_eval_corpus("corpus/empty.jsonl");
  auto empty = core_->Evaluate(req);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("no usable"), std::string::npos) << empty.status();
  req.set_eval_corpus("corpus/sample.jsonl");
  req.set_job_id("job-404");
  EXPECT_EQ(core_->Evaluate(req).status().code(), absl::StatusCode::kNotFound);
  req.set_job_id(job->id());
  req.add_thresholds(4);
  req.add_thresholds(2);
  EXPECT_EQ(core_->Evaluate(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.clear_thresholds();
  req.add_thresholds(0);
  EXPECT_EQ(core_->Evaluate(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.clear_thresholds();
  req.set_mode("log");
  auto bad_mode = core_->Evaluate(req);
  EXPECT_EQ(bad_mode.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_mode.status().message().find("mode"), std::string::npos);
  // Issue 15, finding 5: 1,000 thresholds x 10 M samples answered UNIMPLEMENTED with
  // no message (an allocation of every unit); now refused by name, before anything.
  req.clear_mode();
  req.mutable_eval_sampling()->set_mode("packed");
  req.mutable_eval_sampling()->set_num_samples(10'000'000);
  req.mutable_eval_sampling()->set_seq_len(2);
  for (int i = 1; i <= 1000; ++i) req.add_thresholds(i);
  auto huge = core_->Evaluate(req);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument) << huge.status();
  EXPECT_NE(huge.status().message().find("above the limit of 262144"), std::string::npos)
      << huge.status();
}

TEST_F(CoordinatorTest, ExportValidatesAndRunsAsOneExactlyOnceTask) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string w = Register();
  v1::ExportRequest early;
  early.set_job_id(job->id());
  early.set_threshold(8);
  early.set_output("early");
  EXPECT_EQ(core_->Export(early).status().code(), absl::StatusCode::kFailedPrecondition);
  while (true) {
    v1::Task t = Lease(w);
    if (t.task_id().empty()) break;
    auto [h, linears] = Report(w, t, *job, nullptr);
    ASSERT_TRUE(core_->CompleteTask(h, linears).ok());
  }

  auto bad = [&](auto edit, absl::StatusCode code, const std::string& words) {
    v1::ExportRequest r;
    r.set_job_id(job->id());
    r.set_threshold(8);
    r.set_output("x");
    edit(r);
    auto op = core_->Export(r);
    EXPECT_EQ(op.status().code(), code) << words << ": " << op.status();
    EXPECT_NE(op.status().message().find(words), std::string::npos) << op.status();
  };
  bad([](v1::ExportRequest& r) { r.set_job_id("job-nope"); }, absl::StatusCode::kNotFound, "job-nope");
  bad([](v1::ExportRequest& r) { r.set_format("onnx"); }, absl::StatusCode::kInvalidArgument, "onnx");
  bad([](v1::ExportRequest& r) { r.set_smoothing("smoothquant:2"); },
      absl::StatusCode::kInvalidArgument, "smoothquant:2");
  bad([](v1::ExportRequest& r) { r.set_smoothing("logeq"); }, absl::StatusCode::kInvalidArgument,
      "mllm");
  bad([](v1::ExportRequest& r) { r.set_fuse(true); }, absl::StatusCode::kInvalidArgument, "fuse");
  bad([](v1::ExportRequest& r) { r.set_threshold(-1); }, absl::StatusCode::kInvalidArgument,
      "threshold");
  bad([](v1::ExportRequest& r) { r.clear_threshold(); }, absl::StatusCode::kInvalidArgument,
      "threshold");
  bad([](v1::ExportRequest& r) { r.set_recommended(true); },
      absl::StatusCode::kFailedPrecondition, "evaluation");
  bad([](v1::ExportRequest& r) { r.set_output("../x"); }, absl::StatusCode::kInvalidArgument, "..");
  bad([](v1::ExportRequest& r) { r.set_output("/etc/qcal-x"); },
      absl::StatusCode::kPermissionDenied, "output");
  bad([](v1::ExportRequest& r) { r.set_mode("signed"); }, absl::StatusCode::kInvalidArgument,
      "signed");
  fs::create_directories(root_ / "out/taken");
  bad([](v1::ExportRequest& r) { r.set_output("taken"); }, absl::StatusCode::kAlreadyExists,
      "taken");
  // Issue 15, finding 9: outputs that could never be created are refused here, not
  // retried 5 times on workers.
  fs::create_symlink(root_ / "out/nowhere", root_ / "out/dangling");
  Spit(root_ / "out/a-file", "x");
  bad([](v1::ExportRequest& r) { r.set_output("dangling"); }, absl::StatusCode::kInvalidArgument,
      "symbolic link to nothing");
  bad([](v1::ExportRequest& r) { r.set_output("dangling/below"); },
      absl::StatusCode::kInvalidArgument, "symbolic link to nothing");
  bad([](v1::ExportRequest& r) { r.set_output("a-file/below"); },
      absl::StatusCode::kInvalidArgument, "lies below a file");
  bad([](v1::ExportRequest& r) { r.set_output(std::string(256, 'n')); },
      absl::StatusCode::kInvalidArgument, "names are limited to 255");
  bad([](v1::ExportRequest& r) { r.set_output(std::string(2100, 'p') + "/" + std::string(2100, 'q')); },
      absl::StatusCode::kInvalidArgument, "paths are limited to 4095");

  v1::ExportRequest r;
  r.set_job_id(job->id());
  r.set_threshold(8);
  r.set_format("compressed-tensors");
  r.set_smoothing("smoothquant:0.5");
  r.set_output("ct");
  auto op = core_->Export(r);
  ASSERT_TRUE(op.ok()) << op.status();
  // A second export into the same folder is refused while the first runs.
  EXPECT_EQ(core_->Export(r).status().code(), absl::StatusCode::kAlreadyExists);
  // Exports are operations, not jobs.
  auto listed = core_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs_size(), 1);

  v1::Task t = Lease(w);
  ASSERT_EQ(t.kind(), v1::TASK_EXPORT);
  v1::ExportTaskPayload payload;
  ASSERT_TRUE(t.payload().UnpackTo(&payload));
  EXPECT_EQ(payload.output_dir(), fs::canonical(root_ / "out").string() + "/ct");
  EXPECT_EQ(payload.threshold(), 8);
  EXPECT_EQ(payload.request().smoothing(),
            exporter::SmoothingName(*exporter::ParseSmoothing("smoothquant:0.5")));
  EXPECT_TRUE(payload.request().fuse()) << "compressed-tensors smoothing is always fused";
  EXPECT_NE(payload.provenance_json().find(job->id()), std::string::npos);

  // The task reads its parent's statistics under its lease only.
  v1::GetTaskStatsRequest sr;
  sr.set_worker_id(w);
  sr.set_task_id(t.task_id());
  sr.set_lease_id("lease-forged");
  EXPECT_EQ(core_->StreamTaskStats(sr, 1 << 20, [](const v1::JobStatsChunk&) { return true; }).code(),
            absl::StatusCode::kFailedPrecondition);
  sr.set_lease_id(t.lease_id());
  int linears = 0;
  ASSERT_TRUE(core_->StreamTaskStats(sr, 1 << 20, [&](const v1::JobStatsChunk& c) {
    linears += c.linears_size();
    return true;
  }).ok());
  EXPECT_EQ(linears, job->linear_modules());

  v1::CompleteTaskHeader h;
  h.set_worker_id(w);
  h.set_task_id(t.task_id());
  h.set_lease_id(t.lease_id());
  google::protobuf::Any any;
  // An export report must carry an ExportResponse.
  EXPECT_EQ(core_->CompleteTask(h, {}, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  v1::ExportResponse resp;
  resp.set_job_id(job->id());
  resp.set_output_dir(payload.output_dir());
  resp.add_files("model.safetensors");
  any.PackFrom(resp);
  ASSERT_TRUE(core_->CompleteTask(h, {}, &any).ok());
  EXPECT_EQ(core_->CompleteTask(h, {}, &any).status().code(), absl::StatusCode::kAlreadyExists);
  Restart();
  auto done = core_->GetOperation(op->name());
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE(done->done());
  v1::ExportResponse got;
  ASSERT_TRUE(done->response().UnpackTo(&got));
  EXPECT_EQ(got.output_dir(), payload.output_dir());
  EXPECT_EQ(got.files(0), "model.safetensors");
}

// A store of schema 1 (before operations had their own final state) is migrated
// when it is opened; one a newer qcal wrote is refused by name, never misread.
TEST_F(CoordinatorTest, AnOlderStoreIsMigratedAndANewerOneRefused) {
  auto job = core_->SubmitJob(Spec(8, 4));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string w = Register();
  for (v1::Task t = Lease(w); !t.task_id().empty(); t = Lease(w)) {
    auto [h, linears] = Report(w, t, *job, nullptr);
    ASSERT_TRUE(core_->CompleteTask(h, linears).ok());
  }
  v1::ExportRequest r;
  r.set_job_id(job->id());
  r.set_threshold(8);
  r.set_output("old");
  auto op = core_->Export(r);
  ASSERT_TRUE(op.ok()) << op.status();
  v1::Task t = Lease(w);
  ASSERT_EQ(t.kind(), v1::TASK_EXPORT);
  v1::ExportTaskPayload payload;
  ASSERT_TRUE(t.payload().UnpackTo(&payload));
  v1::CompleteTaskHeader h;
  h.set_worker_id(w);
  h.set_task_id(t.task_id());
  h.set_lease_id(t.lease_id());
  v1::ExportResponse resp;
  resp.set_output_dir(payload.output_dir());
  google::protobuf::Any any;
  any.PackFrom(resp);
  ASSERT_TRUE(core_->CompleteTask(h, {}, &any).ok());

  // What version 1 wrote for the same history.
  const std::string export_id = op->name().substr(11);
  auto record = [&] {
    v1::JobRecord rec;
    auto v = memory_.Get(Family::kJobs, export_id);
    EXPECT_TRUE(v.ok() && *v && rec.ParseFromString(**v));
    return rec;
  };
  v1::JobRecord rec = record();
  ASSERT_EQ(rec.job().state(), v1::JOB_SUCCEEDED);
  rec.mutable_job()->set_state(v1::JOB_CALIBRATED);
  WriteBatch old;
  old.Put(Family::kJobs, export_id, rec.SerializeAsString());
  old.Put(Family::kMeta, kSchemaVersionKey, "1");
  ASSERT_TRUE(memory_.Write(old).ok());
  Restart();
  EXPECT_EQ(record().job().state(), v1::JOB_SUCCEEDED);
  EXPECT_EQ(*memory_.Get(Family::kMeta, kSchemaVersionKey).value(), std::to_string(kSchemaVersion));
  auto done = core_->GetOperation(op->name());
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->done() && !done->has_error()) << done->DebugString();

  // A kind of work this build does not know.
  rec = record();
  rec.set_kind(static_cast<v1::JobKind>(7));
  WriteBatch newer;
  newer.Put(Family::kJobs, export_id, rec.SerializeAsString());
  ASSERT_TRUE(memory_.Write(newer).ok());
  core_.reset();
  CoordinatorOptions o;
  o.data_roots = {root_.string()};
  auto refused = Coordinator::Create(&memory_, o, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("jobs/" + export_id), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("work kind 7"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace qcal::server
