// The qcal version, as `qcal --version` prints it and every export's provenance
// records it. Keep in step with project(qcal VERSION ...) in CMakeLists.txt.
#ifndef QCAL_COMMON_VERSION_H_
#define QCAL_COMMON_VERSION_H_

namespace qcal {

inline constexpr char kQcalVersion[] = "0.1.0";

}  // namespace qcal

#endif  // QCAL_COMMON_VERSION_H_
