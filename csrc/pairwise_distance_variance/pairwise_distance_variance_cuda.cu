// CUDA kernels of pairwise_distance_stats (see the header for the math).
//
// Forward: one block per pair (i <= j); its threads stride over the batch and the
// block reduces in shared memory with a fixed tree, two passes (mean, then centred
// squares). Backward: one thread per (b, i) row, looping over j; each gradient entry
// is written by exactly one thread. No atomics anywhere, so both directions are
// deterministic and need no special path under torch.use_deterministic_algorithms.
// float16/bfloat16 inputs accumulate in float32, float32 in float32, float64 in
// float64.
#include "pairwise_distance_variance/pairwise_distance_variance.h"
#include "common/cuda.cuh"

#include <torch/csrc/stable/accelerator.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cuda_runtime.h>

#include <tuple>

namespace torch_artic {
namespace {

constexpr int kThreads = 256;

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T>
__device__ __forceinline__ typename Acc<T>::type ld(const T* p, int64_t i) {
  return static_cast<typename Acc<T>::type>(p[i]);
}

template <typename A>
__device__ __forceinline__ A block_sum(A v, A* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const A r = sh[0];
  __syncthreads();
  return r;
}

template <typename T, typename A>
__device__ __forceinline__ A pair_dist(const T* pb, int64_t i, int64_t j, int64_t D) {
  A s = 0;
  for (int64_t k = 0; k < D; ++k) {
    const A t = ld(pb, i * D + k) - ld(pb, j * D + k);
    s += t * t;
  }
  return sqrt(s);
}

template <typename T>
__global__ void stats_kernel(const T* __restrict__ p, const T* __restrict__ w, int64_t B,
                             int64_t K, int64_t D, T* wsum, T* w2sum, T* mean, T* m2) {
  using A = typename Acc<T>::type;
  const int64_t i = blockIdx.y, j = blockIdx.x;
  if (j < i) return;  // whole block exits together: no divergent __syncthreads
  __shared__ A sh[kThreads];
  A s1 = 0, sw = 0, sw2 = 0;
  for (int64_t b = threadIdx.x; b < B; b += kThreads) {
    const T* pb = p + b * K * D;
    const A wij = w ? ld(w, b * K + i) * ld(w, b * K + j) : A(1);
    s1 += wij * pair_dist<T, A>(pb, i, j, D);
    sw += wij;
    sw2 += wij * wij;
  }
  s1 = block_sum(s1, sh);
  sw = block_sum(sw, sh);
  sw2 = block_sum(sw2, sh);
  const A mu = (i != j && sw > A(0)) ? s1 / sw : A(0);
  A s2 = 0;
  if (i != j) {
    for (int64_t b = threadIdx.x; b < B; b += kThreads) {
      const T* pb = p + b * K * D;
      const A wij = w ? ld(w, b * K + i) * ld(w, b * K + j) : A(1);
      const A c = pair_dist<T, A>(pb, i, j, D) - mu;
      s2 += wij * c * c;
    }
  }
  s2 = block_sum(s2, sh);
  if (threadIdx.x == 0) {
    const T vals[4] = {static_cast<T>(sw), static_cast<T>(sw2), static_cast<T>(mu),
                       static_cast<T>(s2)};
    T* outs[4] = {wsum, w2sum, mean, m2};
    for (int o = 0; o < 4; ++o) {
      outs[o][i * K + j] = vals[o];
      outs[o][j * K + i] = vals[o];
    }
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ p, const T* __restrict__ w, int64_t B,
                                int64_t K, int64_t D, const T* __restrict__ mu,
                                const T* __restrict__ Am, const T* __restrict__ Bm,
                                const T* __restrict__ Cm, const T* __restrict__ Dm, T* gp,
                                T* gw) {
  using A = typename Acc<T>::type;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= B * K) return;
  const int64_t b = r / K, i = r % K;
  const T* pb = p + b * K * D;
  constexpr int kMaxD = 8;
  A xi[kMaxD], acc[kMaxD];
  for (int64_t k = 0; k < D; ++k) {
    xi[k] = ld(pb, i * D + k);
    acc[k] = 0;
  }
  const A wi = w ? ld(w, r) : A(1);
  A aw = 0;
  for (int64_t j = 0; j < K; ++j) {
    A diff[kMaxD];
    A s = 0;
    for (int64_t k = 0; k < D; ++k) {
      diff[k] = xi[k] - ld(pb, j * D + k);
      s += diff[k] * diff[k];
    }
    const A d = sqrt(s);
    const A wj = w ? ld(w, b * K + j) : A(1);
    const A wij = wi * wj;
    const int64_t ij = i * K + j;
    const A dm = d - ld(mu, ij);
    const A a = ld(Am, ij), bm = ld(Bm, ij);
    if (d > A(0)) {
      const A gd = wij * (A(2) * a * dm + bm) / d;
      for (int64_t k = 0; k < D; ++k) acc[k] += gd * diff[k];
    }
    if (gw) aw += (a * dm * dm + bm * dm + ld(Cm, ij) + A(2) * ld(Dm, ij) * wij) * wj;
  }
  for (int64_t k = 0; k < D; ++k) gp[r * D + k] = static_cast<T>(acc[k]);
  if (gw) gw[r] = static_cast<T>(aw);
}


std::tuple<Tensor, Tensor, Tensor, Tensor> pairwise_distance_stats_cuda(
    const Tensor& points, const std::optional<Tensor>& weights) {
  check_pds_args(points, weights);
  STD_TORCH_CHECK(points.size(2) >= 1 && points.size(2) <= 8,
                  "pairwise_distance_stats on CUDA needs 1 <= D <= 8");
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  Tensor wsum = torch::stable::new_empty(points, {K, K});
  Tensor w2sum = torch::stable::new_empty(points, {K, K});
  Tensor mean = torch::stable::new_empty(points, {K, K});
  Tensor m2 = torch::stable::new_empty(points, {K, K});
  if (K == 0) return {wsum, w2sum, mean, m2};
  const cudaStream_t stream = current_stream(points);
  dispatch_floating(points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* w = weights.has_value() ? weights->const_data_ptr<T>() : nullptr;
    const dim3 grid(static_cast<unsigned>(K), static_cast<unsigned>(K));
    stats_kernel<T><<<grid, kThreads, 0, stream>>>(
        points.const_data_ptr<T>(), w, B, K, D, wsum.mutable_data_ptr<T>(),
        w2sum.mutable_data_ptr<T>(), mean.mutable_data_ptr<T>(), m2.mutable_data_ptr<T>());
  });
  check_launch();
  return {wsum, w2sum, mean, m2};
}

std::tuple<Tensor, Tensor> pairwise_distance_stats_backward_cuda(
    const Tensor& points, const std::optional<Tensor>& weights, const Tensor& mean,
    const Tensor& coef_m2, const Tensor& coef_mean, const Tensor& coef_wsum,
    const Tensor& coef_w2sum) {
  check_pds_args(points, weights);
  for (const Tensor* t : {&mean, &coef_m2, &coef_mean, &coef_wsum, &coef_w2sum}) {
    STD_TORCH_CHECK(t->dim() == 2 && t->size(0) == points.size(1) && t->size(1) == points.size(1),
                    "coefficient matrices must be [K, K]");
    STD_TORCH_CHECK(t->scalar_type() == points.scalar_type() && t->is_contiguous(),
                    "coefficient matrices must be contiguous, in the dtype of points");
  }
  STD_TORCH_CHECK(points.size(2) >= 1 && points.size(2) <= 8,
                  "pairwise_distance_stats on CUDA needs 1 <= D <= 8");
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  Tensor gp = torch::stable::new_empty(points, shape_of(points));
  Tensor gw = weights.has_value() ? torch::stable::new_empty(points, shape_of(*weights))
                                  : torch::stable::new_empty(points, {0});
  const int64_t rows = B * K;
  if (rows == 0) return {gp, gw};
  const cudaStream_t stream = current_stream(points);
  dispatch_floating(points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* w = weights.has_value() ? weights->const_data_ptr<T>() : nullptr;
    T* gwp = weights.has_value() ? gw.mutable_data_ptr<T>() : nullptr;
    const unsigned blocks = static_cast<unsigned>((rows + kThreads - 1) / kThreads);
    backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
        points.const_data_ptr<T>(), w, B, K, D, mean.const_data_ptr<T>(),
        coef_m2.const_data_ptr<T>(), coef_mean.const_data_ptr<T>(),
        coef_wsum.const_data_ptr<T>(), coef_w2sum.const_data_ptr<T>(),
        gp.mutable_data_ptr<T>(), gwp);
  });
  check_launch();
  return {gp, gw};
}

}  // namespace
}  // namespace torch_artic

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CUDA, m) {
  m.impl("pairwise_distance_stats", TORCH_BOX(&torch_artic::pairwise_distance_stats_cuda));
  m.impl("pairwise_distance_stats_backward",
         TORCH_BOX(&torch_artic::pairwise_distance_stats_backward_cuda));
}
