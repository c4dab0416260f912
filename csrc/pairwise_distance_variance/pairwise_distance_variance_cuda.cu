// CUDA kernels of pairwise_distance_stats: launch geometry, layout and reductions only;
// the math is the header's, shared with the CPU kernels.
//
// Forward: one block per pair (i <= j); its threads stride over the batch accumulating
// the shifted sums, and the block reduces them in shared memory with a fixed tree.
// Backward: one thread per (b, i) row, looping over j; each gradient entry is written by
// exactly one thread. No atomics anywhere, so both directions are deterministic and need
// no special path under torch.use_deterministic_algorithms. float16/bfloat16 inputs
// accumulate in float32, float32 in float32, float64 in float64.
#include "pairwise_distance_variance/pairwise_distance_variance.h"

#include "common/cuda.cuh"

#include <tuple>

namespace torch_artic::pdv {
namespace {

constexpr int kThreads = 256;

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

template <typename T, int DD>
__global__ void stats_kernel(const T* __restrict__ p, const T* __restrict__ c, int64_t B,
                             int64_t K, int64_t D, T* wsum, T* w2sum, T* mean, T* m2) {
  using A = acc_t<T>;
  const int64_t i = blockIdx.y, j = blockIdx.x;
  if (j < i) return;  // whole block exits together: no divergent __syncthreads
  __shared__ A sh[kThreads];
  const A shift = B > 0 ? distance<DD, A>(p + i * D, 1, p + j * D, 1, D) : A(0);
  A s1 = 0, s2 = 0, sw = 0, sw2 = 0;
  for (int64_t b = threadIdx.x; b < B; b += kThreads) {
    const T* pb = p + b * K * D;
    const A w = c ? load(c, b * K + i) * load(c, b * K + j) : A(1);
    const A d = i == j ? A(0) : distance<DD, A>(pb + i * D, 1, pb + j * D, 1, D);
    accumulate(s1, s2, d, shift, w);
    accumulate_weight(sw, sw2, w);
  }
  s1 = block_sum(s1, sh);
  s2 = block_sum(s2, sh);
  sw = block_sum(sw, sh);
  sw2 = block_sum(sw2, sh);
  if (threadIdx.x == 0) {
    if (!c) sw = sw2 = static_cast<A>(B);
    const PairStats<A> st = finish(s1, s2, sw, sw2, shift, i == j);
    const T vals[4] = {static_cast<T>(st.wsum), static_cast<T>(st.w2sum),
                       static_cast<T>(st.mean), static_cast<T>(st.m2)};
    T* outs[4] = {wsum, w2sum, mean, m2};
    for (int o = 0; o < 4; ++o) {
      outs[o][i * K + j] = vals[o];
      outs[o][j * K + i] = vals[o];
    }
  }
}

template <typename T, int DD>
__global__ void backward_kernel(const T* __restrict__ p, const T* __restrict__ c, int64_t B,
                                int64_t K, int64_t D, const T* __restrict__ mu,
                                const T* __restrict__ Am, const T* __restrict__ Bm,
                                const T* __restrict__ Cm, const T* __restrict__ Dm, T* gp,
                                T* gc) {
  using A = acc_t<T>;
  const int64_t r = global_thread();
  if (r >= B * K) return;
  const int64_t b = r / K, i = r % K;
  const T* pb = p + b * K * D;
  const T* xi = pb + i * D;
  // D = 2, 3: the row's gradient in registers; any other D: accumulated in place
  // (this thread owns row r of gp).
  A acc[DD > 0 ? DD : 1];
  for (int64_t k = 0; k < (DD > 0 ? DD : D); ++k) {
    if (DD > 0) {
      acc[k] = A(0);
    } else {
      gp[r * D + k] = T(0);
    }
  }
  const A ci = c ? load(c, r) : A(1);
  A aw = 0;
  for (int64_t j = 0; j < K; ++j) {
    const T* xj = pb + j * D;
    const A d = distance<DD, A>(xi, 1, xj, 1, D);
    const A cj = c ? load(c, b * K + j) : A(1);
    const A wij = ci * cj;
    const int64_t ij = i * K + j;
    const A dm = d - load(mu, ij);
    const A ca = load(Am, ij), cb = load(Bm, ij);
    const A gd = grad_distance_over_d(wij, d, dm, ca, cb);
    for (int64_t k = 0; k < (DD > 0 ? DD : D); ++k) {
      const A diff = load(xi, k) - load(xj, k);
      if (DD > 0) {
        acc[k] += gd * diff;
      } else {
        gp[r * D + k] = static_cast<T>(load(gp, r * D + k) + gd * diff);
      }
    }
    if (gc) aw += grad_pair_weight(wij, dm, ca, cb, load(Cm, ij), load(Dm, ij)) * cj;
  }
  if (DD > 0) {
    for (int k = 0; k < DD; ++k) gp[r * D + k] = static_cast<T>(acc[k]);
  }
  if (gc) gc[r] = static_cast<T>(aw);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pairwise_distance_stats_cuda(
    const Tensor& points, const std::optional<Tensor>& confidence) {
  check_args(kOp, points, confidence);
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  auto [wsum, w2sum, mean, m2] = stats_outputs(points);
  if (K == 0) return {wsum, w2sum, mean, m2};
  const cudaStream_t stream = current_stream(points);
  dispatch_cuda_floating(kOp, points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* c = confidence.has_value() ? confidence->const_data_ptr<T>() : nullptr;
    const dim3 grid(static_cast<unsigned>(K), static_cast<unsigned>(K));
    dispatch_dim(D, [&](auto dd) {
      stats_kernel<T, decltype(dd)::value><<<grid, kThreads, 0, stream>>>(
          points.const_data_ptr<T>(), c, B, K, D, wsum.mutable_data_ptr<T>(),
          w2sum.mutable_data_ptr<T>(), mean.mutable_data_ptr<T>(), m2.mutable_data_ptr<T>());
    });
  });
  check_launch(kOp);
  return {wsum, w2sum, mean, m2};
}

std::tuple<Tensor, Tensor> pairwise_distance_stats_backward_cuda(
    const Tensor& points, const std::optional<Tensor>& confidence, const Tensor& mean,
    const Tensor& coef_m2, const Tensor& coef_mean, const Tensor& coef_wsum,
    const Tensor& coef_w2sum) {
  check_backward_args(points, confidence, mean, coef_m2, coef_mean, coef_wsum, coef_w2sum);
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  auto [gp, gc] = gradient_outputs(points, confidence);
  const int64_t rows = B * K;
  if (rows == 0) return {gp, gc};
  const cudaStream_t stream = current_stream(points);
  dispatch_cuda_floating(kBackwardOp, points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* c = confidence.has_value() ? confidence->const_data_ptr<T>() : nullptr;
    T* gcp = confidence.has_value() ? gc.mutable_data_ptr<T>() : nullptr;
    const unsigned blocks = static_cast<unsigned>((rows + kThreads - 1) / kThreads);
    dispatch_dim(D, [&](auto dd) {
      backward_kernel<T, decltype(dd)::value><<<blocks, kThreads, 0, stream>>>(
          points.const_data_ptr<T>(), c, B, K, D, mean.const_data_ptr<T>(),
          coef_m2.const_data_ptr<T>(), coef_mean.const_data_ptr<T>(),
          coef_wsum.const_data_ptr<T>(), coef_w2sum.const_data_ptr<T>(),
          gp.mutable_data_ptr<T>(), gcp);
    });
  });
  check_launch(kBackwardOp);
  return {gp, gc};
}

}  // namespace
}  // namespace torch_artic::pdv

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CUDA, m) {
  TA_IMPL_OP(m, CUDA, pdv, pairwise_distance_stats_cuda, pairwise_distance_stats_backward_cuda);
}
