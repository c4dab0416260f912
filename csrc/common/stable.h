// Shared, header-only helpers for torch-artic kernels on LibTorch's stable ABI.
//
// Only stable headers are included here (torch/csrc/stable, torch/headeronly), so a
// kernel file compiles in seconds and the binary loads into every torch >= the
// TORCH_TARGET_VERSION set by setup.py (2.10).
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace torch_artic {

using torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;

// Safety net only: the Python layer validates arguments (with errors that name them)
// before calling an op; these checks keep a direct torch.ops call from reading out of
// bounds.
inline void check_float_contiguous(const Tensor& t, const char* name) {
  STD_TORCH_CHECK(
      t.scalar_type() == ScalarType::Float || t.scalar_type() == ScalarType::Double ||
          t.scalar_type() == ScalarType::Half || t.scalar_type() == ScalarType::BFloat16,
      name, " must be a floating tensor");
  STD_TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline std::vector<int64_t> shape_of(const Tensor& t) {
  auto s = t.sizes();
  return std::vector<int64_t>(s.begin(), s.end());
}

}  // namespace torch_artic
