// pairwise_distance_stats: the batch statistics of every pairwise keypoint distance.
//
// For points p [B, K, D] and optional weights w [B, K] (w_bij = w_bi * w_bj, 1 if
// absent), with d_bij = ||p_bi - p_bj||, the op returns four [K, K] tensors:
//   wsum_ij  = sum_b w_bij                (W)
//   w2sum_ij = sum_b w_bij^2              (V2)
//   mean_ij  = sum_b w_bij d_bij / W      (0 where W == 0)
//   m2_ij    = sum_b w_bij (d_bij - mean_ij)^2
// The CPU kernel makes one pass over the batch, accumulating in float64 the sums of
// w (d - c) and w (d - c)^2 about a per-pair shift c (the pair's distance in sample
// 0, which lies inside the data, so no catastrophic cancellation); the CUDA kernel
// makes two passes (mean first, then centred squares) with float32-or-better
// accumulation. The variance is m2 / W (biased)
// or m2 / (W - V2 / W) (unbiased, reliability weights); Python forms it.
//
// Backward (first order): given symmetrised coefficient matrices
//   A = sym(dL/dm2), Bm = sym(dL/dmean) / W, C = sym(dL/dwsum), Dv = sym(dL/dw2sum)
// (sym(G) = G + G^T), with dm = d_bij - mean_ij:
//   dL/dd_bij = w_bij (2 A_ij dm + Bm_ij)
//   dL/dw_bij = A_ij dm^2 + Bm_ij dm + C_ij + 2 Dv_ij w_bij
//   grad_p[b,i] = sum_j dL/dd_bij (p_bi - p_bj) / d_bij     (0 where d_bij == 0)
//   grad_w[b,i] = sum_j dL/dw_bij w_bj                       (j = i included)
// No [B, K, K] intermediate exists in either direction.
#pragma once

#include "common/stable.h"

namespace torch_artic {

// Shape rules shared by the CPU and CUDA entry points.
inline void check_pds_args(const Tensor& points, const std::optional<Tensor>& weights) {
  STD_TORCH_CHECK(points.dim() == 3, "points must be [B, K, D]");
  check_float_contiguous(points, "points");
  if (weights.has_value()) {
    const Tensor& w = *weights;
    STD_TORCH_CHECK(w.dim() == 2 && w.size(0) == points.size(0) && w.size(1) == points.size(1),
                    "weights must be [B, K]");
    STD_TORCH_CHECK(w.scalar_type() == points.scalar_type(), "weights dtype must match points");
    STD_TORCH_CHECK(w.is_contiguous(), "weights must be contiguous");
  }
}

}  // namespace torch_artic
