#include "client/process.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "client/exit_codes.h"
#include "client/local_cluster.h"
#include "gtest/gtest.h"

namespace qcal::client {
namespace {

SpawnOptions Options(std::vector<std::string> argv, std::string log = "") {
  SpawnOptions o;
  o.argv = std::move(argv);
  o.log_file = std::move(log);
  return o;
}

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/process_test_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Script(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0755);
    return path;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string dir_;
};

TEST_F(ProcessTest, RunsAndLogs) {
  const std::string log = dir_ + "/child.log";
  auto child = ChildProcess::Spawn(Options({Script("exit3", "echo out; echo err >&2; exit 3"), "a b"}, log));
  ASSERT_TRUE(child.ok()) << child.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*child)->Running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ((*child)->ExitDescription(), "exited with status 3");
  EXPECT_EQ((*child)->name(), "exit3");
  EXPECT_EQ(Read(log), "out\nerr\n");
  EXPECT_EQ(LastLogLine(log), "err");
  EXPECT_EQ(LastLogLine(dir_ + "/absent.log"), "");
}

TEST_F(ProcessTest, ExecFailureIsReported) {
  auto missing = ChildProcess::Spawn(Options({dir_ + "/no-such-program"}));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot execute"), std::string::npos);
  const std::string not_exec = dir_ + "/plain";
  std::ofstream(not_exec) << "x";
  auto denied = ChildProcess::Spawn(Options({not_exec}));
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.status().message().find("Permission denied"), std::string::npos);
}

TEST_F(ProcessTest, StopUsesSigtermThenSigkill) {
  auto polite = ChildProcess::Spawn(Options({Script("sleep", "exec sleep 100")}));
  auto stubborn = ChildProcess::Spawn(
      Options({Script("stubborn", "trap '' TERM; while :; do sleep 0.05; done")}));
  ASSERT_TRUE(polite.ok() && stubborn.ok());
  absl::SleepFor(absl::Milliseconds(200));  // let the trap be installed
  const absl::Time start = absl::Now();
  StopAll({polite->get(), stubborn->get()}, absl::Milliseconds(500));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ((*polite)->ExitDescription(), "killed by signal 15 (Terminated)");
  EXPECT_EQ((*stubborn)->ExitDescription(), "killed by signal 9 (Killed)");
  EXPECT_FALSE((*stubborn)->Running());
}

TEST_F(ProcessTest, HurryKillsAtOnce) {
  auto stubborn = ChildProcess::Spawn(
      Options({Script("stubborn", "trap '' TERM; while :; do sleep 0.05; done")}));
  ASSERT_TRUE(stubborn.ok());
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  StopAll({stubborn->get()}, absl::Seconds(60), [] { return true; });
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE((*stubborn)->Running());
}

TEST_F(ProcessTest, RedirectsAppendsAndRunsToCompletion) {
  const std::string cat = Script("cat", "cat; echo oops >&2; exit 4");
  std::ofstream(dir_ + "/in") << "from stdin\n";
  SpawnOptions o = Options({cat}, dir_ + "/out");
  o.stdin_file = dir_ + "/in";
  o.stderr_file = dir_ + "/err";
  auto status = RunToCompletion(o, absl::Seconds(60));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 4);
  EXPECT_EQ(Read(dir_ + "/out"), "from stdin\n");
  EXPECT_EQ(Read(dir_ + "/err"), "oops\n");
  o.append_log = true;
  ASSERT_TRUE(RunToCompletion(o, absl::Seconds(60)).ok());
  EXPECT_EQ(Read(dir_ + "/out"), "from stdin\nfrom stdin\n") << "a restarted process appends";

  auto slow = RunToCompletion(Options({Script("slow", "exec sleep 100")}), absl::Milliseconds(300));
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded) << slow.status();
}

TEST_F(ProcessTest, KillSendsTheSignalAndReportsWhetherItEnded) {
  auto child = ChildProcess::Spawn(Options({Script("sleep", "exec sleep 100")}));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_FALSE((*child)->WaitStatus().has_value());
  EXPECT_TRUE((*child)->Kill(SIGKILL, absl::Seconds(10)));
  ASSERT_TRUE((*child)->WaitStatus().has_value());
  EXPECT_TRUE(WIFSIGNALED(*(*child)->WaitStatus()) && WTERMSIG(*(*child)->WaitStatus()) == SIGKILL);
  auto stubborn = ChildProcess::Spawn(
      Options({Script("stubborn", "trap '' TERM; while :; do sleep 0.05; done")}));
  ASSERT_TRUE(stubborn.ok());
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE((*stubborn)->Kill(SIGTERM, absl::Milliseconds(300))) << "ignored SIGTERM";
  EXPECT_FALSE((*stubborn)->Running()) << "killed after the timeout";
}

TEST_F(ProcessTest, FindExecutable) {
  const std::string tool = Script("qcal-tool", "true");
  EXPECT_EQ(*FindExecutable("qcal-tool", "", {dir_ + "/none", dir_}, "--tool-bin"), tool);
  EXPECT_EQ(*FindExecutable("qcal-tool", tool, {}, "--tool-bin"), tool);
  auto bad_override = FindExecutable("qcal-tool", dir_ + "/nope", {dir_}, "--tool-bin");
  EXPECT_TRUE(IsUsageError(bad_override.status())) << bad_override.status();
  auto missing = FindExecutable("qcal-no-such-tool-xyz", "", {dir_}, "--tool-bin");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--tool-bin"), std::string::npos);
  auto sh = FindExecutable("sh", "", {dir_}, "--sh");
  ASSERT_TRUE(sh.ok()) << sh.status();
  EXPECT_EQ(sh->substr(sh->size() - 3), "/sh");
  auto self = SelfExecutablePath();
  ASSERT_TRUE(self.ok());
  EXPECT_NE(self->find("process_test"), std::string::npos);
}

// A coordinator stand-in: records its arguments, writes the port file, waits.
constexpr char kFakeCoordinator[] = R"(
printf '%s\n' "$@" > "$(dirname "$0")/coordinator.args"
while [ $# -gt 0 ]; do
  case "$1" in --port-file) port_file="$2"; shift;; esac
  shift
done
echo "serving"
printf '127.0.0.1:4' > "$port_file.tmp"; printf '5678\n' >> "$port_file.tmp"
mv "$port_file.tmp" "$port_file"
exec sleep 100)";

TEST_F(ProcessTest, LocalClusterStartsChecksAndStops) {
  LocalClusterOptions options;
  options.coordinator_bin = Script("coordinator", kFakeCoordinator);
  options.worker_bin = Script("worker", R"(echo "$@" > "$(dirname "$0")/worker-$4.args"
exec sleep 100)");
  options.data_roots = {"/models", "/corpora"};
  options.workers = 2;
  options.threads = 3;
  options.log_dir = dir_;
  options.stop_grace = absl::Seconds(2);
  auto cluster = LocalCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_EQ((*cluster)->address(), "127.0.0.1:45678");
  const std::string db = (*cluster)->db_dir();
  EXPECT_NE(db.find("/qcal-run-"), std::string::npos) << db;
  absl::SleepFor(absl::Milliseconds(300));  // let the workers write their arguments
  const std::string args = Read(dir_ + "/coordinator.args");
  EXPECT_EQ(args.rfind("--listen\n127.0.0.1:0\n--db\n" + db +
                           "\n--data-root\n/models\n--data-root\n/corpora\n--port-file\n",
                       0),
            0u)
      << args;
  EXPECT_NE(args.find("\n--metrics-listen\n\n"), std::string::npos) << args;
  EXPECT_EQ(Read(dir_ + "/worker-local-1.args"),
            "--coordinator 127.0.0.1:45678 --name local-1 --threads 3\n");
  EXPECT_EQ(LastLogLine(dir_ + "/coordinator.log"), "serving");
  EXPECT_TRUE((*cluster)->Health().ok());
  (*cluster)->Stop();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(db).parent_path()));
}

TEST_F(ProcessTest, LocalClusterReportsACoordinatorThatDies) {
  LocalClusterOptions options;
  options.coordinator_bin =
      Script("coordinator", "echo 'starting'; echo 'error: --db is locked' >&2; exit 1");
  options.worker_bin = Script("worker", "exec sleep 100");
  options.log_dir = dir_;
  auto cluster = LocalCluster::Start(options);
  ASSERT_FALSE(cluster.ok());
  EXPECT_EQ(cluster.status().code(), absl::StatusCode::kUnavailable);
  const std::string message(cluster.status().message());
  EXPECT_NE(message.find("coordinator (pid "), std::string::npos) << message;
  EXPECT_NE(message.find("exited with status 1 before serving: error: --db is locked (log: " +
                         dir_ + "/coordinator.log)"),
            std::string::npos)
      << message;
}

TEST_F(ProcessTest, LocalClusterHealthNoticesDeadWorkers) {
  LocalClusterOptions options;
  options.coordinator_bin = Script("coordinator", kFakeCoordinator);
  options.worker_bin = Script("worker", "echo 'cannot load model'; exit 2");
  options.workers = 2;
  options.log_dir = dir_;
  options.stop_grace = absl::Seconds(2);
  auto cluster = LocalCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::Status health;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((health = (*cluster)->Health()).ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(health.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(health.message().find("exited with status 2 (all 2 workers have exited): "
                                  "cannot load model"),
            std::string::npos)
      << health;
}

}  // namespace
}  // namespace qcal::client
