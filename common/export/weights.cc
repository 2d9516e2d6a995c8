// Model tensors read as float32 with a smoothing plan applied (export_internal.h).
#include "absl/strings/str_cat.h"
#include "common/export/export_internal.h"
#include "common/status_macros.h"

namespace qcal::exporter::internal {

absl::StatusOr<std::unique_ptr<WeightReader>> WeightReader::Open(const std::string& model_dir,
                                                                 const SmoothingPlan* plan) {
  auto r = std::unique_ptr<WeightReader>(new WeightReader());
  QCAL_ASSIGN_OR_RETURN(r->files_, ModelFiles::Open(model_dir));
  if (plan == nullptr) return r;
  const bool fused = plan->smoothing.fuse;
  for (const GroupScales& g : plan->applied) {
    for (const std::string& l : g.group.linears) {
      r->ops_[l + ".weight"].push_back({OpKind::kMultiplyColumns, &g.scales});
    }
    if (!fused) continue;
    if (g.group.source_is_norm) {
      r->ops_[g.group.source + ".weight"].push_back({OpKind::kDivide, &g.scales});
    } else {
      r->ops_[g.group.source + ".weight"].push_back({OpKind::kDivideRows, &g.scales});
      if (r->files_->Has(g.group.source + ".bias")) {
        r->ops_[g.group.source + ".bias"].push_back({OpKind::kDivide, &g.scales});
      }
    }
  }
  return r;
}

absl::StatusOr<TensorView> WeightReader::Raw(const std::string& name) const {
  QCAL_ASSIGN_OR_RETURN(auto found, files_->Find(name));
  return found.second;
}

absl::StatusOr<std::vector<float>> WeightReader::Read(const std::string& name,
                                                      std::vector<int64_t>* shape) const {
  QCAL_ASSIGN_OR_RETURN(auto found, files_->Find(name));
  QCAL_ASSIGN_OR_RETURN(std::vector<float> w, found.first->ReadFloat32(name));
  *shape = found.second.shape;
  auto it = ops_.find(name);
  if (it == ops_.end()) return w;
  for (const Op& op : it->second) {
    const std::vector<float>& s = *op.scales;
    const int64_t n = static_cast<int64_t>(s.size());
    const bool ok = op.kind == OpKind::kDivide
                        ? shape->size() == 1 && (*shape)[0] == n
                        : shape->size() == 2 &&
                              (*shape)[op.kind == OpKind::kDivideRows ? 0 : 1] == n;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          found.first->path(), ": ", name, " does not fit smoothing scales of ", n,
          " channels"));
    }
    const int64_t cols = shape->size() == 2 ? (*shape)[1] : 1;
    for (size_t i = 0; i < w.size(); ++i) {
      const int64_t row = static_cast<int64_t>(i) / cols;
      const int64_t col = static_cast<int64_t>(i) % cols;
      switch (op.kind) {
        case OpKind::kDivide: w[i] /= s[i]; break;
        case OpKind::kDivideRows: w[i] /= s[row]; break;
        case OpKind::kMultiplyColumns: w[i] *= s[col]; break;
      }
    }
  }
  return w;
}

}  // namespace qcal::exporter::internal
