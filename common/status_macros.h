// Status helpers shared by every component.
//
// Every call that can fail returns absl::Status / absl::StatusOr<T>; these macros
// keep the early-return plumbing short. No exceptions cross a module boundary.
#ifndef QCAL_COMMON_STATUS_MACROS_H_
#define QCAL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QCAL_CONCAT_INNER_(a, b) a##b
#define QCAL_CONCAT_(a, b) QCAL_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define QCAL_RETURN_IF_ERROR(expr)              \
  do {                                          \
    ::absl::Status qcal_status_ = (expr);       \
    if (!qcal_status_.ok()) return qcal_status_; \
  } while (0)

// `lhs = value of expr` or return its status. `lhs` may declare a variable.
#define QCAL_ASSIGN_OR_RETURN(lhs, expr) \
  QCAL_ASSIGN_OR_RETURN_IMPL_(QCAL_CONCAT_(qcal_statusor_, __LINE__), lhs, expr)
#define QCAL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

#endif  // QCAL_COMMON_STATUS_MACROS_H_
