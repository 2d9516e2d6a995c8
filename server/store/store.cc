#include "server/store/store.h"

namespace qcal::server {

const char* FamilyName(Family f) {
  switch (f) {
    case Family::kJobs:
      return "jobs";
    case Family::kTasks:
      return "tasks";
    case Family::kShards:
      return "shards";
    case Family::kStats:
      return "stats";
    case Family::kOperations:
      return "operations";
    case Family::kMeta:
      return "meta";
  }
  return "?";
}

}  // namespace qcal::server
