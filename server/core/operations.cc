// Coordinator: long-running operations (evaluations, exports) and their records.
#include <algorithm>
#include "server/core/coordinator.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/records.h"

namespace qcal::server {
namespace {

using google::protobuf::util::TimeUtil;

absl::StatusOr<std::string> OperationId(const std::string& name) {
  if (!absl::StartsWith(name, "operations/") || name.size() == 11 || name.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("operation name \"", name, "\" is not \"operations/<id>\""));
  }
  return name.substr(11);
}

}  // namespace

void Coordinator::SyncOperation(WriteBatch& b, const JobView& j) {
  const v1::Job& job = j.record.job();
  v1::OperationRecord r;
  v1::Operation* op = r.mutable_operation();
  op->set_name("operations/" + job.id());
  r.set_job_id(j.record.parent_job());
  r.set_create_ms(TimeUtil::TimestampToMilliseconds(job.create_time()));
  const WorkKind& kind = KindOf(j.record);
  kind.DescribeOperation(j.record, op);
  switch (job.state()) {
    case v1::JOB_SUCCEEDED:
      op->set_done(true);
      break;
    case v1::JOB_FAILED:
      op->set_done(true);
      op->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kAborted));
      op->mutable_error()->set_message(job.error());
      break;
    case v1::JOB_CANCELLED:
      op->set_done(true);
      op->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
      op->mutable_error()->set_message(absl::StrCat(kind.noun(), " cancelled"));
      break;
    default:
      break;
  }
  b.Put(Family::kOperations, job.id(), r.SerializeAsString());
  ++operations_version_;
  operations_changed_.SignalAll();
}

absl::StatusOr<v1::Operation> Coordinator::GetOperation(const std::string& name) {
  QCAL_ASSIGN_OR_RETURN(std::string id, OperationId(name));
  QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kOperations, id));
  if (!value) return absl::NotFoundError(absl::StrCat("no operation \"", name, "\""));
  v1::OperationRecord r;
  if (!r.ParseFromString(*value)) return Corrupt("operations/" + id);
  return r.operation();
}

absl::StatusOr<v1::ListOperationsResponse> Coordinator::ListOperations(
    const v1::ListOperationsRequest& req) {
  int page = req.page_size() == 0 ? 100 : req.page_size();
  if (page < 0 || page > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size ", page, " is out of range [1, 1000]"));
  }
  std::string job;
  if (!req.filter().empty()) {
    if (!absl::StartsWith(req.filter(), "job=")) {
      return absl::InvalidArgumentError(
          absl::StrCat("filter \"", req.filter(), "\" is not empty or \"job=<id>\""));
    }
    job = req.filter().substr(4);
  }
  std::vector<v1::OperationRecord> all;
  absl::Status st;
  QCAL_RETURN_IF_ERROR(store_->Scan(Family::kOperations, "", [&](const std::string& key,
                                                                  const std::string& value) {
    v1::OperationRecord r;
    if (!r.ParseFromString(value)) {
      st = Corrupt("operations/" + key);
      return false;
    }
    if (job.empty() || r.job_id() == job) all.push_back(std::move(r));
    return true;
  }));
  QCAL_RETURN_IF_ERROR(st);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.create_ms() != b.create_ms() ? a.create_ms() > b.create_ms()
                                          : a.operation().name() > b.operation().name();
  });
  size_t start = 0;
  if (!req.page_token().empty()) {
    if (!absl::SimpleAtoi(req.page_token(), &start) || start > all.size()) {
      return absl::InvalidArgumentError("page_token is not one this server returned");
    }
  }
  v1::ListOperationsResponse resp;
  for (size_t i = start; i < all.size() && resp.operations_size() < page; ++i) {
    *resp.add_operations() = all[i].operation();
  }
  if (start + resp.operations_size() < all.size()) {
    resp.set_next_page_token(absl::StrCat(start + resp.operations_size()));
  }
  return resp;
}

absl::Status Coordinator::CancelOperation(const std::string& name) {
  QCAL_ASSIGN_OR_RETURN(std::string id, OperationId(name));
  bool is_job = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    is_job = it != jobs_.end() && KindOf(it->second.record).is_operation();
    if (is_job && IsFinal(it->second.record.job().state())) return absl::OkStatus();
  }
  if (is_job) return CancelJob(id).status();  // its operation follows the job
  absl::MutexLock lock(&mu_);
  QCAL_ASSIGN_OR_RETURN(auto value, store_->Get(Family::kOperations, id));
  if (!value) return absl::NotFoundError(absl::StrCat("no operation \"", name, "\""));
  v1::OperationRecord r;
  if (!r.ParseFromString(*value)) return Corrupt("operations/" + id);
  if (r.operation().done()) return absl::OkStatus();
  r.mutable_operation()->set_done(true);
  r.mutable_operation()->mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
  r.mutable_operation()->mutable_error()->set_message("cancelled by CancelOperation");
  WriteBatch b;
  b.Put(Family::kOperations, id, r.SerializeAsString());
  QCAL_RETURN_IF_ERROR(store_->Write(b));
  ++operations_version_;
  operations_changed_.SignalAll();
  return absl::OkStatus();
}

int64_t Coordinator::OperationsVersion() {
  absl::MutexLock lock(&mu_);
  return operations_version_;
}

int64_t Coordinator::AwaitOperationChange(int64_t seen, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  while (operations_version_ == seen && absl::Now() < deadline) {
    operations_changed_.WaitWithDeadline(&mu_, deadline);
  }
  return operations_version_;
}

}  // namespace qcal::server
