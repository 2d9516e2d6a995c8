// Plain-text tables for the terminal: columns left-aligned and separated by at
// least two spaces, one line per row (the first row is usually the header). Used by
// `list`, the evaluation table of `evaluate` and `run`, and anything tabular.
#ifndef QCAL_CLIENT_COLUMNS_H_
#define QCAL_CLIENT_COLUMNS_H_

#include <string>
#include <vector>

namespace qcal::client {

// Rows may differ in length; a missing cell is empty. No trailing spaces.
std::string FormatColumns(const std::vector<std::vector<std::string>>& rows);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_COLUMNS_H_
