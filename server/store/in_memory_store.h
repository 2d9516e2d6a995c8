// InMemoryStore: the Store fake for fast tests. One std::map per family under a
// mutex; kStats merges are applied eagerly with MergeLinearStats, so a bad operand
// fails its Write (nothing applied) exactly where RocksDbStore's Write fails.
// Nothing survives the object. The conformance suite (store_conformance_test.cc)
// runs the same cases against this and RocksDbStore.
//
// Thread-safety: all methods may be called concurrently. Scan copies the matching
// entries under the lock and calls `fn` without it (a snapshot; `fn` may call back).
#ifndef QCAL_SERVER_STORE_IN_MEMORY_STORE_H_
#define QCAL_SERVER_STORE_IN_MEMORY_STORE_H_

#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/store/store.h"

namespace qcal::server {

class InMemoryStore : public Store {
 public:
  // Holds only kMeta[kSchemaVersionKey], like a new RocksDbStore.
  InMemoryStore();

  absl::StatusOr<std::optional<std::string>> Get(Family f,
                                                 const std::string& key) override;
  absl::Status Write(const WriteBatch& batch) override;
  absl::Status Scan(Family f, const std::string& prefix,
                    const std::function<bool(const std::string& key,
                                             const std::string& value)>& fn) override;

 private:
  using Map = std::map<std::string, std::string>;

  mutable absl::Mutex mu_;
  std::array<Map, kNumFamilies> maps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qcal::server

#endif  // QCAL_SERVER_STORE_IN_MEMORY_STORE_H_
