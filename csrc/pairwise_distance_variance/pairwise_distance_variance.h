// pairwise_distance_stats: the batch statistics of every pairwise keypoint distance.
// The math shared by the CPU and CUDA kernels, and the op's argument check.
//
// For points p [B, K, D] and optional confidence c [B, K] (pair weight
// w_bij = c_bi c_bj, 1 if absent), with d_bij = ||p_bi - p_bj||, the op returns four
// [K, K] tensors:
//   wsum_ij  = sum_b w_bij                (W)
//   w2sum_ij = sum_b w_bij^2              (V)
//   mean_ij  = sum_b w_bij d_bij / W      (0 where W == 0, and on the diagonal)
//   m2_ij    = sum_b w_bij (d_bij - mean_ij)^2
// Both backends make one pass over the batch, accumulating the shifted sums
//   s1 = sum_b w (d - s),   s2 = sum_b w (d - s)^2
// about a per-pair shift s (the pair's distance in sample 0, which lies inside the
// data, so no catastrophic cancellation), then
//   mean = s + s1 / W,   m2 = s2 - s1^2 / W   (clamped at 0 against rounding).
// The CPU accumulates in float64; CUDA in acc_t<T> (float32, or float64 for float64).
// An empty batch (B = 0) gives W = V = mean = m2 = 0: the statistics of no samples,
// which merge with others as the identity.
//
// Backward (first order): given symmetrised coefficient matrices
//   A = sym(dL/dm2), Bm = sym(dL/dmean) / W, C = sym(dL/dwsum), Dv = sym(dL/dw2sum)
// (sym(G) = G + G^T), with dm = d_bij - mean_ij:
//   dL/dd_bij = w_bij (2 A_ij dm + Bm_ij)
//   dL/dw_bij = A_ij dm^2 + Bm_ij dm + C_ij + 2 Dv_ij w_bij
//   grad_p[b,i] = sum_j dL/dd_bij (p_bi - p_bj) / d_bij     (0 where d_bij == 0)
//   grad_c[b,i] = sum_j dL/dw_bij c_bj                       (j = i included)
// No [B, K, K] intermediate exists in either direction. Any D >= 1.
#pragma once

#include "common/math.h"
#include "common/stable.h"

#include <tuple>
#include <type_traits>
#include <utility>

namespace torch_artic {
namespace pdv {

// ---------------------------------------------------------------- math (host and device)

// ||a - b|| for D-vectors with strides sa, sb (DD > 0: D known at compile time).
template <int DD, typename A, typename T>
TA_HD A distance(const T* a, int64_t sa, const T* b, int64_t sb, int64_t D) {
  const int64_t nd = DD > 0 ? DD : D;
  A s = A(0);
  for (int64_t k = 0; k < nd; ++k) {
    const A t = load(a, k * sa) - load(b, k * sb);
    s += t * t;
  }
  return hd_sqrt(s);
}

// One sample's contribution to a pair's shifted sums (distance d, shift s, weight w).
template <typename A>
TA_HD void accumulate(A& s1, A& s2, A d, A shift, A w) {
  const A e = d - shift;
  s1 += w * e;
  s2 += w * e * e;
}

// ... and to its weight sums.
template <typename A>
TA_HD void accumulate_weight(A& sw, A& sw2, A w) {
  sw += w;
  sw2 += w * w;
}

// The statistics of a pair from its sums (diagonal pairs: mean = m2 = 0).
template <typename A>
struct PairStats {
  A wsum, w2sum, mean, m2;
};

template <typename A>
TA_HD PairStats<A> finish(A s1, A s2, A sw, A sw2, A shift, bool diagonal) {
  PairStats<A> r{sw, sw2, A(0), A(0)};
  if (!diagonal && sw > A(0)) {
    r.mean = shift + s1 / sw;
    r.m2 = s2 - s1 * s1 / sw;
    if (r.m2 < A(0)) r.m2 = A(0);  // rounding (not fmax: NaN must stay NaN)
  }
  return r;
}

// dL/dd_bij / d_bij, 0 where d == 0 (the pair then moves no point). Written with
// selects around an unconditional division, so CPU loops over it stay vectorised.
template <typename A>
TA_HD A grad_distance_over_d(A wij, A d, A dm, A ca, A cb) {
  const bool pos = d > A(0);
  const A inv = (pos ? A(1) : A(0)) / (pos ? d : A(1));
  return wij * (A(2) * ca * dm + cb) * inv;
}

// dL/dw_bij.
template <typename A>
TA_HD A grad_pair_weight(A wij, A dm, A ca, A cb, A cc, A cd) {
  return ca * dm * dm + cb * dm + cc + A(2) * cd * wij;
}

// Calls f(std::integral_constant<int, DD>{}) with DD = D for D = 2, 3 (specialised
// kernels), else DD = 0 (any D).
template <typename F>
void dispatch_dim(int64_t D, F&& f) {
  switch (D) {
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// ---------------------------------------------------------------- argument checks
constexpr const char* kOp = "pairwise_distance_stats";
constexpr const char* kBackwardOp = "pairwise_distance_stats_backward";

inline void check_args(const char* op, const Tensor& points,
                       const std::optional<Tensor>& confidence) {
  TA_CHECK(points.dim() == 3 && points.size(2) >= 1, op,
           "`points` must have shape [B, K, D] with D >= 1, got ", shape_str(points));
  check_tensor_arg(op, points, "points", points, "points", points.scalar_type());
  if (confidence.has_value()) {
    check_tensor_arg(op, *confidence, "confidence", points, "points", points.scalar_type());
    check_sizes(op, *confidence, "confidence", {points.size(0), points.size(1)}, "[B, K]");
  }
}

inline void check_backward_args(const Tensor& points, const std::optional<Tensor>& confidence,
                                const Tensor& mean, const Tensor& coef_m2,
                                const Tensor& coef_mean, const Tensor& coef_wsum,
                                const Tensor& coef_w2sum) {
  check_args(kBackwardOp, points, confidence);
  const int64_t K = points.size(1);
  const std::pair<const Tensor*, const char*> coefs[] = {{&mean, "mean"},
                                                         {&coef_m2, "coef_m2"},
                                                         {&coef_mean, "coef_mean"},
                                                         {&coef_wsum, "coef_wsum"},
                                                         {&coef_w2sum, "coef_w2sum"}};
  for (const auto& c : coefs) {
    check_tensor_arg(kBackwardOp, *c.first, c.second, points, "points", points.scalar_type());
    check_sizes(kBackwardOp, *c.first, c.second, {K, K}, "[K, K]");
  }
}

// The outputs every backend's entry points allocate: the forward's four [K, K]
// statistics, the backward's gradients (grad_confidence [0] without confidences).
inline std::tuple<Tensor, Tensor, Tensor, Tensor> stats_outputs(const Tensor& points) {
  const int64_t K = points.size(1);
  return {empty(kOp, points, {K, K}, "wsum"), empty(kOp, points, {K, K}, "w2sum"),
          empty(kOp, points, {K, K}, "mean"), empty(kOp, points, {K, K}, "m2")};
}

inline std::tuple<Tensor, Tensor> gradient_outputs(const Tensor& points,
                                                   const std::optional<Tensor>& confidence) {
  const auto conf = confidence.has_value() ? shape_of(*confidence) : std::vector<int64_t>{0};
  return {empty(kBackwardOp, points, shape_of(points), "grad_points"),
          empty(kBackwardOp, points, conf, "grad_confidence")};
}

}  // namespace pdv
}  // namespace torch_artic
