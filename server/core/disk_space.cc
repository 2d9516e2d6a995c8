// Coordinator: disk space on the database volume (issue 15). Below the reserve, and
// while the store has suspended writes after a failed one, new work is refused so
// the volume never fills under RocksDB; leased tasks keep their leases (heartbeats
// write nothing) and their workers retry their reports.
#include <algorithm>
#include <cinttypes>

#include "absl/strings/str_cat.h"
#include "server/core/coordinator.h"

namespace qcal::server {
namespace {

// Free space a reopen needs at least, whatever the reserve: a new log and manifest.
constexpr int64_t kMinFreeToResume = int64_t{16} << 20;

}  // namespace

DiskState Coordinator::CheckDiskSpace() {
  DiskState state;
  state.reserve_bytes = options_.min_free_bytes;
  state.free_bytes = store_->FreeBytes();
  const bool low = options_.min_free_bytes > 0 && state.free_bytes.has_value() &&
                   *state.free_bytes < options_.min_free_bytes;
  state.writes_suspended = store_->WritesSuspended();
  // Reopening on a volume still short of space would only fail again (and reads
  // fail while the database is closed), so wait for the reserve and some room.
  const bool room = !state.free_bytes.has_value() ||
                    *state.free_bytes >= std::max(options_.min_free_bytes, kMinFreeToResume);
  if (state.writes_suspended && room) state.writes_suspended = !store_->ResumeWrites().ok();
  state.refusing = low || state.writes_suspended;
  if (metrics_ != nullptr) metrics_->SetDiskState(state.free_bytes.value_or(-1), state.refusing);
  absl::MutexLock lock(&disk_mu_);
  disk_ = state;
  return state;
}

DiskState Coordinator::disk_state() const {
  absl::MutexLock lock(&disk_mu_);
  return disk_;
}

absl::Status Coordinator::CheckRoomFor(const std::string& what) const {
  const DiskState state = disk_state();
  if (!state.refusing) return absl::OkStatus();
  const std::string free =
      state.free_bytes.has_value() ? absl::StrCat(*state.free_bytes, " bytes free") : "unknown free space";
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " are refused for now: the database volume (", store_->Location(), ") has ", free,
      ", reserve ", state.reserve_bytes, " bytes",
      state.writes_suspended ? ", and the database suspended writes after a failed one" : "",
      "; they are taken again once space is freed"));
}

}  // namespace qcal::server
