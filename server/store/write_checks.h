// Internal to qcal_store: the WriteBatch checks shared by every Store
// implementation, so that all of them refuse exactly the same batches.
#ifndef QCAL_SERVER_STORE_WRITE_CHECKS_H_
#define QCAL_SERVER_STORE_WRITE_CHECKS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/store/stats_merge.h"
#include "server/store/store.h"

namespace qcal::server {

// The checks that need no stored data: every family is valid and Merge is used
// only on kStats. INVALID_ARGUMENT naming the op otherwise.
absl::Status CheckBatchStructure(const WriteBatch& batch);

// "stats key 'job-1/000003'" (escaped and shortened), for messages.
std::string DescribeKey(Family f, absl::string_view key);

// Prefixes `status`'s message with the key (keeps the code).
absl::Status AnnotateKey(Family f, absl::string_view key, const absl::Status& status);

// INVALID_ARGUMENT unless a Merge operand of `operand` shape may merge into a value
// of `current` shape.
absl::Status CheckSameShape(Family f, absl::string_view key,
                            const LinearStatsShape& current,
                            const LinearStatsShape& operand);

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_WRITE_CHECKS_H_
