// CUDA kernels of sketch_render (see the header for the math).
//
// Forward (and the backward's per-pixel state pass): one block per (16 x 16 pixel
// tile, sample), one thread per pixel. The block walks the sample's edges in chunks of
// kChunk: each thread of the first kChunk loads one edge, drops it if its weight is 0
// or its cutoff capsule misses the tile, and stores the survivors' constants in shared
// memory; then every thread composites the surviving edges into its pixel in edge
// order. No atomics: each output element is written by one thread.
//
// Backward: (1) the state pass writes per-pixel coefficients (as on the CPU); (2) one
// block per (edge, sample) walks the edge's capsule row by row (a warp per row, lanes
// across the row's span) and reduces the edge's gradient sums in a fixed tree (warp
// shuffles, then the warps in order) into a [B, E, 6 + 2C] buffer; (3) one thread per
// (sample, keypoint) gathers its edges' sums in a fixed order, one per (sample, edge)
// writes the weight and sigma gradients. Everything is deterministic without atomics,
// so torch.use_deterministic_algorithms(True) needs no special path.
//
// Colour channels are processed in groups of kCG per launch (one launch unless C > 4).
// float16/bfloat16 inputs compute and accumulate in float32, float32 in float32,
// float64 in float64.
#include "sketch_render/sketch_render.h"
#include "common/cuda.cuh"

#include <torch/csrc/stable/accelerator.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

namespace torch_artic {
namespace sketch {
namespace {

constexpr int kTile = 16;
constexpr int kPixThreads = kTile * kTile;
constexpr int kChunk = 128;
constexpr int kCG = 4;
constexpr int kEdgeThreads = 256;
constexpr int kWarps = kEdgeThreads / 32;
constexpr int kNR = 10 + 2 * kCG;  // per-thread partial sums in the edge kernel
constexpr int64_t kMaxGridY = 65535;

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T>
__device__ __forceinline__ typename Acc<T>::type ld(const T* p, int64_t i) {
  return static_cast<typename Acc<T>::type>(p[i]);
}

// First edge index of row i of the upper triangle (edges (i, j), j > i).
__device__ __forceinline__ int64_t row_start(int64_t i, int64_t K) {
  return i * (2 * K - i - 1) / 2;
}

// Edge e -> (i, j), row-major over i < j.
__device__ __forceinline__ void edge_ij(int64_t e, int64_t K, int64_t* i, int64_t* j) {
  const double m = 2.0 * static_cast<double>(K) - 1.0;
  int64_t r = static_cast<int64_t>(floor((m - sqrt(fmax(0.0, m * m - 8.0 * double(e)))) * 0.5));
  r = r < 0 ? 0 : (r > K - 2 ? K - 2 : r);
  while (r > 0 && row_start(r, K) > e) --r;
  while (r < K - 2 && row_start(r + 1, K) <= e) ++r;
  *i = r;
  *j = e - row_start(r, K) + r + 1;
}

template <typename A>
struct SEdge {
  EdgeP<A> ep;
  A ci[kCG], dc[kCG];  // colour at a, and colour(b) - colour(a), of this launch's group
};

template <typename T>
struct Args {
  const T* p;
  const T* w;
  const T* s;
  const T* c;  // nullptr without colours
  int64_t B, K, E, C, H, W;
  bool w_b, s_b, c_b;
  double R;
  int64_t c0;  // first channel of this launch's group
  int nc;      // channels in the group (<= kCG)
};

// ---------------------------------------------------------------- per-pixel pass
template <typename T, int MODE, bool PRE>
__global__ void __launch_bounds__(kPixThreads)
    pixel_kernel(const Args<T> a, const T* __restrict__ grad, T* __restrict__ out,
                 typename Acc<T>::type* __restrict__ coefA,
                 typename Acc<T>::type* __restrict__ coefB, int32_t* __restrict__ idx) {
  using A = typename Acc<T>::type;
  __shared__ SEdge<A> sh[kChunk];
  __shared__ int keep[kChunk];
  const int tid = threadIdx.x;
  const int64_t tiles_x = (a.W + kTile - 1) / kTile;
  const int64_t tx0 = (static_cast<int64_t>(blockIdx.x) % tiles_x) * kTile;
  const int64_t ty0 = (static_cast<int64_t>(blockIdx.x) / tiles_x) * kTile;
  const int64_t x = tx0 + tid % kTile, y = ty0 + tid / kTile;
  const bool valid = x < a.W && y < a.H;
  const double bx0 = double(tx0), by0 = double(ty0);
  const int64_t xe = tx0 + kTile < a.W ? tx0 + kTile : a.W;
  const int64_t ye = ty0 + kTile < a.H ? ty0 + kTile : a.H;
  const double bx1 = double(xe - 1), by1 = double(ye - 1);
  const A px = static_cast<A>(x), py = static_cast<A>(y);
  const int64_t HW = a.H * a.W;
  for (int64_t b = blockIdx.y; b < a.B; b += gridDim.y) {
    A st[kCG], fm[kCG];
    int32_t id[kCG];
#pragma unroll
    for (int k = 0; k < kCG; ++k) {
      st[k] = MODE == kSoftOr ? A(1) : A(0);
      fm[k] = A(1);
      id[k] = -1;
    }
    const T* pb = a.p + b * a.K * 2;
    for (int64_t e0 = 0; e0 < a.E; e0 += kChunk) {
      __syncthreads();  // the previous chunk's edges are no longer read
      if (tid < kChunk) {
        int kp = 0;
        const int64_t e = e0 + tid;
        if (e < a.E) {
          const A w = ld(a.w, (a.w_b ? b : 0) * a.E + e);
          if (w != A(0)) {
            int64_t i, j;
            edge_ij(e, a.K, &i, &j);
            const A ax = ld(pb, 2 * i), ay = ld(pb, 2 * i + 1);
            const A bx = ld(pb, 2 * j), by = ld(pb, 2 * j + 1);
            const A s = ld(a.s, (a.s_b ? b : 0) * a.E + e);
            const Capsule cap = make_capsule(double(ax), double(ay), double(bx), double(by),
                                             double(s), a.R);
            if (capsule_hits_box(cap, bx0, by0, bx1, by1)) {
              kp = 1;
              SEdge<A>& se = sh[tid];
              se.ep = make_edge<A>(ax, ay, bx, by, w, s, static_cast<A>(a.R));
              const int64_t cb = (a.c_b ? b : 0) * a.K;
#pragma unroll
              for (int k = 0; k < kCG; ++k) {
                A ci = A(1), cj = A(1);
                if (a.c && k < a.nc) {
                  ci = ld(a.c, (cb + i) * a.C + a.c0 + k);
                  cj = ld(a.c, (cb + j) * a.C + a.c0 + k);
                }
                se.ci[k] = ci;
                se.dc[k] = a.c ? cj - ci : A(0);
              }
            }
          }
        }
        keep[tid] = kp;
      }
      __syncthreads();
      if (!valid) continue;
      const int64_t left = a.E - e0;
      const int n = left < kChunk ? static_cast<int>(left) : kChunk;
      for (int q = 0; q < n; ++q) {
        if (!keep[q]) continue;  // uniform across the block
        const EdgeP<A>& ep = sh[q].ep;
        const A apx = px - ep.ax, apy = py - ep.ay;
        bool interior;
        const A t = proj_t(ep, apx, apy, interior);
        const A qx = apx - t * ep.abx, qy = apy - t * ep.aby;
        const A d2 = qx * qx + qy * qy;
        if (d2 >= ep.cut2) continue;
        const A I = ep.w * sr_exp(-d2 / ep.s2);
        const int32_t ie = static_cast<int32_t>(e0 + q);
#pragma unroll
        for (int k = 0; k < kCG; ++k) {
          if (k >= a.nc) break;
          const A v = I * (sh[q].ci[k] + t * sh[q].dc[k]);
          if (MODE == kSumClamp) {
            st[k] += v;
          } else if (MODE == kSoftOr && !PRE) {
            st[k] *= A(1) - v;
          } else if (MODE == kSoftOr) {
            const A fe = A(1) - v;
            const bool sw = fabs(fe) < fabs(fm[k]);
            st[k] *= sw ? fm[k] : fe;
            if (sw) {
              fm[k] = fe;
              id[k] = ie;
            }
          } else {
            if (max_key(v) > max_key(st[k])) {
              st[k] = v;
              id[k] = ie;
            }
          }
        }
      }
    }
    if (valid) {
#pragma unroll
      for (int k = 0; k < kCG; ++k) {
        if (k >= a.nc) break;
        const int64_t o = (b * a.C + a.c0 + k) * HW + y * a.W + x;
        if (!PRE) {
          A r = st[k];
          if (MODE == kSumClamp) r = r > A(1) ? A(1) : r;
          if (MODE == kSoftOr) r = A(1) - r;
          out[o] = static_cast<T>(r);
        } else {
          const A g = ld(grad, o);
          if (MODE == kSumClamp) {
            coefA[o] = st[k] > A(1) ? A(0) : g;
          } else if (MODE == kSoftOr) {
            coefA[o] = g * st[k];
            coefB[o] = fm[k];
            idx[o] = id[k];
          } else {
            coefA[o] = g;
            idx[o] = id[k];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- per-edge sums
template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

template <typename T, int MODE>
__global__ void __launch_bounds__(kEdgeThreads)
    edge_kernel(const Args<T> a, bool geo, bool need_w,
                const typename Acc<T>::type* __restrict__ coefA,
                const typename Acc<T>::type* __restrict__ coefB,
                const int32_t* __restrict__ idx, typename Acc<T>::type* __restrict__ acc) {
  using A = typename Acc<T>::type;
  __shared__ A red[kWarps][kNR];
  const int64_t e = blockIdx.x;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t P = 6 + 2 * a.C;
  const int64_t HW = a.H * a.W;
  int64_t i, j;
  edge_ij(e, a.K, &i, &j);
  const int32_t ie = static_cast<int32_t>(e);
  for (int64_t b = blockIdx.y; b < a.B; b += gridDim.y) {
    A r[kNR];
#pragma unroll
    for (int q = 0; q < kNR; ++q) r[q] = A(0);
    const A w = ld(a.w, (a.w_b ? b : 0) * a.E + e);
    // zero weight: nothing but (unless max) the weight's own gradient
    const bool skip = w == A(0) && !(need_w && MODE != kMax);
    const T* pb = a.p + b * a.K * 2;
    const A ax = ld(pb, 2 * i), ay = ld(pb, 2 * i + 1);
    const A bx = ld(pb, 2 * j), by = ld(pb, 2 * j + 1);
    const A s = ld(a.s, (a.s_b ? b : 0) * a.E + e);
    const EdgeP<A> ep = make_edge<A>(ax, ay, bx, by, w, s, static_cast<A>(a.R));
    if (!skip) {
      const Capsule cap = make_capsule(double(ax), double(ay), double(bx), double(by),
                                       double(s), a.R);
      int64_t ry0, ry1;
      capsule_rows(cap, 0, a.H, &ry0, &ry1);
      const T* ci = a.c ? a.c + ((a.c_b ? b : 0) * a.K + i) * a.C : nullptr;
      const T* cj = a.c ? a.c + ((a.c_b ? b : 0) * a.K + j) * a.C : nullptr;
      for (int64_t y = ry0 + warp; y < ry1; y += kWarps) {
        int64_t x0, x1;
        capsule_span(cap, double(y), a.W, &x0, &x1);
        const A apy = static_cast<A>(y) - ep.ay;
        for (int64_t x = x0 + lane; x < x1; x += 32) {
          const A apx = static_cast<A>(x) - ep.ax;
          bool interior;
          const A t = proj_t(ep, apx, apy, interior);
          const A qx = apx - t * ep.abx, qy = apy - t * ep.aby;
          const A d2 = qx * qx + qy * qy;
          if (d2 >= ep.cut2) continue;
          const A ex = sr_exp(-d2 / ep.s2);
          const A I = ep.w * ex;
          A gI = A(0), gt = A(0);
          const int64_t pix = y * a.W + x;
          for (int64_t k = 0; k < a.C; ++k) {
            const A c0 = ci ? ld(ci, k) : A(1);
            const A dc = ci ? ld(cj, k) - c0 : A(0);
            const A c = c0 + t * dc;
            const int64_t o = (b * a.C + k) * HW + pix;
            A gv;
            if (MODE == kSumClamp) {
              gv = coefA[o];
            } else if (MODE == kMax) {
              gv = idx[o] == ie ? coefA[o] : A(0);
            } else {
              const A fe = A(1) - I * c;
              const A fm = coefB[o];
              if (idx[o] == ie) {
                gv = coefA[o];
              } else if (fm == A(0) || fe == A(0)) {
                gv = A(0);
              } else {
                gv = coefA[o] * (fm / fe);
              }
            }
            gI += gv * c;
            const A gvI = gv * I;
            gt += gvI * dc;
#pragma unroll
            for (int kk = 0; kk < kCG; ++kk) {
              if (kk < a.nc && k == a.c0 + kk) {
                r[10 + kk] += gvI * (A(1) - t);
                r[10 + kCG + kk] += gvI * t;
              }
            }
          }
          if (geo) {
            const A gII = gI * I;
            const A ca = gII * (A(1) - t), cb = gII * t;
            r[0] += ca * qx;
            r[1] += ca * qy;
            r[2] += cb * qx;
            r[3] += cb * qy;
            const A gti = interior ? gt : A(0);
            r[4] += gti * qx;
            r[5] += gti * qy;
            r[6] += gti * (A(1) - t);
            r[7] += gti * t;
            r[8] += gI * ex;
            r[9] += gII * d2;
          }
        }
      }
    }
    // deterministic block reduction: a fixed shuffle tree per warp, then warps in order
#pragma unroll
    for (int q = 0; q < kNR; ++q) {
      const A v = warp_sum(r[q]);
      if (lane == 0) red[warp][q] = v;
    }
    __syncthreads();
    if (tid == 0) {
      A tot[kNR];
#pragma unroll
      for (int q = 0; q < kNR; ++q) {
        A v = A(0);
        for (int wi = 0; wi < kWarps; ++wi) v += red[wi][q];
        tot[q] = v;
      }
      A* out = acc + (b * a.E + e) * P;
      if (geo) {
        const A s2 = ep.s2;
        const A k2 = s2 > A(0) ? A(2) / s2 : A(0);
        const A k3 = s2 > A(0) ? A(2) / (s2 * ep.s) : A(0);
        const A l2 = ep.l2s;
        out[0] = k2 * tot[0] - (tot[4] + tot[6] * ep.abx) / l2;
        out[1] = k2 * tot[1] - (tot[5] + tot[6] * ep.aby) / l2;
        out[2] = k2 * tot[2] + (tot[4] - tot[7] * ep.abx) / l2;
        out[3] = k2 * tot[3] + (tot[5] - tot[7] * ep.aby) / l2;
        out[4] = tot[8];
        out[5] = k3 * tot[9];
        if (skip) {
#pragma unroll
          for (int q = 0; q < 6; ++q) out[q] = A(0);
        }
      }
      for (int kk = 0; kk < a.nc; ++kk) {
        out[6 + a.c0 + kk] = tot[10 + kk];
        out[6 + a.C + a.c0 + kk] = tot[10 + kCG + kk];
      }
    }
    __syncthreads();  // red is reused by the next sample
  }
}

// One thread per (sample, keypoint): its incident edges' sums, in a fixed order.
template <typename T>
__global__ void gather_kernel(int64_t B, int64_t K, int64_t E, int64_t C, bool need_c,
                              const typename Acc<T>::type* __restrict__ acc, T* __restrict__ gp,
                              T* __restrict__ gc) {
  using A = typename Acc<T>::type;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= B * K) return;
  const int64_t b = r / K, k = r % K;
  const int64_t P = 6 + 2 * C;
  const A* ab = acc + b * E * P;
  A gx = 0, gy = 0;
  for (int64_t i = 0; i < k; ++i) {  // edges (i, k): k is the second endpoint
    const A* q = ab + (row_start(i, K) + (k - i - 1)) * P;
    gx += q[2];
    gy += q[3];
  }
  for (int64_t j = k + 1; j < K; ++j) {  // edges (k, j): k is the first endpoint
    const A* q = ab + (row_start(k, K) + (j - k - 1)) * P;
    gx += q[0];
    gy += q[1];
  }
  gp[r * 2] = static_cast<T>(gx);
  gp[r * 2 + 1] = static_cast<T>(gy);
  if (!need_c) return;
  for (int64_t ch = 0; ch < C; ++ch) {
    A g = 0;
    for (int64_t i = 0; i < k; ++i) g += ab[(row_start(i, K) + (k - i - 1)) * P + 6 + C + ch];
    for (int64_t j = k + 1; j < K; ++j) g += ab[(row_start(k, K) + (j - k - 1)) * P + 6 + ch];
    gc[r * C + ch] = static_cast<T>(g);
  }
}

template <typename T>
__global__ void edge_out_kernel(int64_t n, int64_t C, const typename Acc<T>::type* __restrict__ acc,
                                T* __restrict__ gw, T* __restrict__ gs) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int64_t P = 6 + 2 * C;
  if (gw) gw[r] = static_cast<T>(acc[r * P + 4]);
  if (gs) gs[r] = static_cast<T>(acc[r * P + 5]);
}

// ---------------------------------------------------------------- host side

template <typename F>
void dispatch_mode(int64_t composite, F&& f) {
  switch (composite) {
    case kSumClamp: f(std::integral_constant<int, kSumClamp>{}); break;
    case kSoftOr: f(std::integral_constant<int, kSoftOr>{}); break;
    default: f(std::integral_constant<int, kMax>{}); break;
  }
}

template <typename T>
Args<T> make_args(const Tensor& points, const Tensor& weights, const Tensor& sigma,
                  const std::optional<Tensor>& colors, int64_t H, int64_t W, double cutoff) {
  Args<T> a;
  a.p = points.const_data_ptr<T>();
  a.w = weights.const_data_ptr<T>();
  a.s = sigma.const_data_ptr<T>();
  a.c = colors.has_value() ? colors->const_data_ptr<T>() : nullptr;
  a.B = points.size(0);
  a.K = points.size(1);
  a.E = a.K * (a.K - 1) / 2;
  a.C = colors.has_value() ? colors->size(2) : 1;
  a.H = H;
  a.W = W;
  a.w_b = weights.size(0) != 1;
  a.s_b = sigma.size(0) != 1;
  a.c_b = colors.has_value() && colors->size(0) != 1;
  a.R = cutoff;
  a.c0 = 0;
  a.nc = 1;
  return a;
}

dim3 pixel_grid(int64_t B, int64_t H, int64_t W) {
  const int64_t tiles = ((W + kTile - 1) / kTile) * ((H + kTile - 1) / kTile);
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(B, kMaxGridY)));
}

Tensor sketch_render_forward_cuda(const Tensor& points, const Tensor& weights,
                                  const Tensor& sigma, const std::optional<Tensor>& colors,
                                  int64_t height, int64_t width, int64_t composite,
                                  double cutoff) {
  check_args(points, weights, sigma, colors, height, width, composite);
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const int64_t B = points.size(0);
  const int64_t C = colors.has_value() ? colors->size(2) : 1;
  Tensor out = torch::stable::new_empty(points, {B, C, height, width});
  if (B == 0) return out;
  const cudaStream_t stream = current_stream(points);
  dispatch_floating(points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    Args<T> a = make_args<T>(points, weights, sigma, colors, height, width, cutoff);
    dispatch_mode(composite, [&](auto mode) {
      constexpr int M = decltype(mode)::value;
      for (int64_t c0 = 0; c0 < C; c0 += kCG) {
        a.c0 = c0;
        a.nc = static_cast<int>(std::min<int64_t>(kCG, C - c0));
        pixel_kernel<T, M, false><<<pixel_grid(B, height, width), kPixThreads, 0, stream>>>(
            a, nullptr, out.mutable_data_ptr<T>(), nullptr, nullptr, nullptr);
        check_launch();
      }
    });
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sketch_render_backward_cuda(
    const Tensor& grad, const Tensor& points, const Tensor& weights, const Tensor& sigma,
    const std::optional<Tensor>& colors, int64_t height, int64_t width, int64_t composite,
    double cutoff, bool need_weights, bool need_sigma, bool need_colors) {
  check_args(points, weights, sigma, colors, height, width, composite);
  check_grad(grad, points, colors, height, width);
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  const int64_t B = points.size(0), K = points.size(1);
  const int64_t E = K * (K - 1) / 2;
  const int64_t C = colors.has_value() ? colors->size(2) : 1;
  need_colors = need_colors && colors.has_value();
  Tensor gp = torch::stable::new_empty(points, {B, K, 2});
  Tensor gw = torch::stable::new_empty(points, need_weights ? std::vector<int64_t>{B, E}
                                                            : std::vector<int64_t>{0});
  Tensor gs = torch::stable::new_empty(points, need_sigma ? std::vector<int64_t>{B, E}
                                                          : std::vector<int64_t>{0});
  Tensor gc = torch::stable::new_empty(points, need_colors ? std::vector<int64_t>{B, K, C}
                                                           : std::vector<int64_t>{0});
  if (B == 0) return {gp, gw, gs, gc};
  const cudaStream_t stream = current_stream(points);
  const ScalarType acc_t =
      points.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  const bool soft_or = composite == kSoftOr, with_idx = composite != kSumClamp;
  Tensor coefA = torch::stable::new_empty(points, {B, C, height, width}, acc_t);
  Tensor coefB = torch::stable::new_empty(
      points, soft_or ? std::vector<int64_t>{B, C, height, width} : std::vector<int64_t>{0},
      acc_t);
  Tensor idx = torch::stable::new_empty(
      points, with_idx ? std::vector<int64_t>{B, C, height, width} : std::vector<int64_t>{0},
      ScalarType::Int);
  Tensor acc = torch::stable::new_empty(points, {B, E, 6 + 2 * C}, acc_t);
  dispatch_floating(points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    Args<T> a = make_args<T>(points, weights, sigma, colors, height, width, cutoff);
    A* pA = coefA.mutable_data_ptr<A>();
    A* pB = soft_or ? coefB.mutable_data_ptr<A>() : nullptr;
    int32_t* pI = with_idx ? idx.mutable_data_ptr<int32_t>() : nullptr;
    A* pacc = acc.mutable_data_ptr<A>();
    dispatch_mode(composite, [&](auto mode) {
      constexpr int M = decltype(mode)::value;
      for (int64_t c0 = 0; c0 < C; c0 += kCG) {
        a.c0 = c0;
        a.nc = static_cast<int>(std::min<int64_t>(kCG, C - c0));
        pixel_kernel<T, M, true><<<pixel_grid(B, height, width), kPixThreads, 0, stream>>>(
            a, grad.const_data_ptr<T>(), nullptr, pA, pB, pI);
        check_launch();
      }
      if (E > 0) {
        const dim3 grid(static_cast<unsigned>(E), static_cast<unsigned>(std::min(B, kMaxGridY)));
        for (int64_t c0 = 0; c0 < C; c0 += kCG) {
          a.c0 = c0;
          a.nc = static_cast<int>(std::min<int64_t>(kCG, C - c0));
          edge_kernel<T, M><<<grid, kEdgeThreads, 0, stream>>>(a, c0 == 0, need_weights, pA, pB,
                                                               pI, pacc);
          check_launch();
        }
      }
    });
    const int64_t rows = B * K;
    gather_kernel<T><<<static_cast<unsigned>((rows + 255) / 256), 256, 0, stream>>>(
        B, K, E, C, need_colors, pacc, gp.mutable_data_ptr<T>(),
        need_colors ? gc.mutable_data_ptr<T>() : nullptr);
    check_launch();
    if ((need_weights || need_sigma) && E > 0) {
      const int64_t n = B * E;
      edge_out_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
          n, C, pacc, need_weights ? gw.mutable_data_ptr<T>() : nullptr,
          need_sigma ? gs.mutable_data_ptr<T>() : nullptr);
      check_launch();
    }
  });
  return {gp, gw, gs, gc};
}

}  // namespace
}  // namespace sketch
}  // namespace torch_artic

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CUDA, m) {
  m.impl("sketch_render_forward", TORCH_BOX(&torch_artic::sketch::sketch_render_forward_cuda));
  m.impl("sketch_render_backward", TORCH_BOX(&torch_artic::sketch::sketch_render_backward_cuda));
}
