// CUDA kernels of sketch_render: launch geometry, memory layout and reductions only;
// every formula is the header's, shared with (and tested through) the CPU kernels.
//
// Forward (and the backward's per-pixel state pass): one block per (16 x 16 pixel
// tile, sample), one thread per pixel. The block walks the sample's lines in chunks of
// kChunk: each thread of the first kChunk loads one line, drops it if its strength is 0
// or its cutoff capsule misses the tile, and stores the survivors' constants in shared
// memory; then every thread composites the surviving lines into its pixel in line
// order. No atomics: each output element is written by one thread.
//
// Backward: (1) the state pass writes per-pixel coefficients (as on the CPU); (2) one
// block per (line, sample) walks the line's capsule row by row (a warp per row, lanes
// across the row's span) and reduces the line's gradient sums in a fixed tree (warp
// shuffles, then the warps in order) into a [B, E, 6 + 2C] buffer; (3) one thread per
// (sample, keypoint) gathers its lines' sums in a fixed order, one per (sample, line)
// (or per line, summing the samples in order, for shared inputs) writes the strength,
// sigma and colour gradients. Everything is deterministic without atomics, so
// torch.use_deterministic_algorithms(True) needs no special path.
//
// Colour channels are processed in groups of kCG per launch (one launch unless C > 4).
// float16/bfloat16 inputs compute and accumulate in float32, float32 in float32,
// float64 in float64.
#include "sketch/sketch.h"

#include "common/cuda.cuh"

#include <algorithm>
#include <tuple>

namespace torch_artic::sketch {
namespace {

constexpr int kTile = 16;
constexpr int kPixThreads = kTile * kTile;
constexpr int kChunk = 128;
constexpr int kCG = 4;
constexpr int kEdgeThreads = 256;
constexpr int kWarps = kEdgeThreads / 32;
constexpr int kNR = 10 + 2 * kCG;  // per-thread partial sums in the edge kernel
constexpr int64_t kMaxGridY = 65535;

// One launch's share of the arguments: the channels [c0, c0 + nc) of the colours.
template <typename T>
struct Launch {
  Args<T> a;
  int64_t c0;
  int nc;
};

template <typename A>
struct SEdge {
  EdgeP<A> ep;
  A ci[kCG], dc[kCG];  // colour at a, and colour(b) - colour(a), of this launch's group
};

// ---------------------------------------------------------------- per-pixel pass
// Where the per-pixel pass writes. Forward: `out`, and with a kept state `value` (sum_clamp:
// the sums; soft_or: pex then, one [B, C, H, W] plane later, fm) and `index`. Backward
// state pass (grad given): coefA = composite_coef, coefB = soft_or's fm, index.
template <typename T>
struct PixelOut {
  T* out;
  const T* grad;
  acc_t<T>* value;
  acc_t<T>* coefA;
  acc_t<T>* coefB;
  int32_t* index;
};

template <typename T, int MODE, bool TRACK>
__global__ void __launch_bounds__(kPixThreads)
    pixel_kernel(const Launch<T> L, const PixelOut<T> w) {
  using A = acc_t<T>;
  const Args<T>& a = L.a;
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
    A st[kCG], pex[kCG], fm[kCG];
    int32_t id[kCG];
#pragma unroll
    for (int k = 0; k < kCG; ++k) {
      st[k] = composite_init<MODE, A>();
      pex[k] = A(1);
      fm[k] = A(1);
      id[k] = -1;
    }
    for (int64_t e0 = 0; e0 < a.E; e0 += kChunk) {
      __syncthreads();  // the previous chunk's lines are no longer read
      if (tid < kChunk) {
        int kp = 0;
        const int64_t e = e0 + tid;
        if (e < a.E && a.strength(b, e) != A(0)) {
          int64_t i, j;
          edge_ij(e, a.K, &i, &j);
          if (capsule_hits_box(a.capsule(b, e, i, j), bx0, by0, bx1, by1)) {
            kp = 1;
            SEdge<A>& se = sh[tid];
            se.ep = a.edge(b, e, i, j);
#pragma unroll
            for (int k = 0; k < kCG; ++k) {
              A ci = A(1), cj = A(1);
              if (a.c && k < L.nc) {
                ci = load(a.color(b, i), L.c0 + k);
                cj = load(a.color(b, j), L.c0 + k);
              }
              se.ci[k] = ci;
              se.dc[k] = a.c ? cj - ci : A(0);
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
        const PixelGeo<A> g = pixel_geometry(ep, px - ep.ax, py - ep.ay);
        if (!g.inside) continue;
        const A I = ep.w * pixel_falloff(ep, g);
        const int32_t ie = static_cast<int32_t>(e0 + q);
#pragma unroll
        for (int k = 0; k < kCG; ++k) {
          if (k >= L.nc) break;
          const A v = line_value(I, line_color(sh[q].ci[k], sh[q].dc[k], g.t));
          composite_add<MODE, TRACK>(st[k], pex[k], fm[k], id[k], v, ie);
        }
      }
    }
    if (valid) {
#pragma unroll
      for (int k = 0; k < kCG; ++k) {
        if (k >= L.nc) break;
        const int64_t o = (b * a.C + L.c0 + k) * HW + y * a.W + x;
        if (w.grad == nullptr) {  // forward
          w.out[o] = static_cast<T>(composite_out<MODE>(st[k]));
          if (MODE == kSumClamp && w.value) w.value[o] = st[k];
          if (MODE == kSoftOr && TRACK) {
            w.value[o] = pex[k];
            w.value[a.B * a.C * HW + o] = fm[k];
          }
        } else {  // the backward's state pass
          w.coefA[o] = composite_coef<MODE>(st[k], pex[k], load(w.grad, o));
          if (MODE == kSoftOr) w.coefB[o] = fm[k];
        }
        if (TRACK) w.index[o] = id[k];
      }
    }
  }
}

// The backward's coefficients from a kept state: coefA = composite_coef.
template <typename T, int MODE>
__global__ void coef_kernel(int64_t n, const T* __restrict__ grad,
                            const acc_t<T>* __restrict__ value, acc_t<T>* __restrict__ coefA) {
  using A = acc_t<T>;
  const int64_t o = global_thread();
  if (o >= n) return;
  coefA[o] = composite_coef<MODE>(value ? value[o] : A(0), MODE == kSoftOr ? value[o] : A(1),
                                  load(grad, o));
}

// ---------------------------------------------------------------- per-line sums
template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

template <typename T, int MODE>
__global__ void __launch_bounds__(kEdgeThreads)
    edge_kernel(const Launch<T> L, bool geo, bool need_w, const acc_t<T>* __restrict__ coefA,
                const acc_t<T>* __restrict__ coefB, const int32_t* __restrict__ idx,
                acc_t<T>* __restrict__ acc) {
  using A = acc_t<T>;
  const Args<T>& a = L.a;
  __shared__ A red[kWarps][kNR];
  const int64_t e = blockIdx.x;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t P = record_size(a.C);
  const int64_t HW = a.H * a.W;
  int64_t i, j;
  edge_ij(e, a.K, &i, &j);
  const int32_t ie = static_cast<int32_t>(e);
  for (int64_t b = blockIdx.y; b < a.B; b += gridDim.y) {
    A r[kNR];
#pragma unroll
    for (int q = 0; q < kNR; ++q) r[q] = A(0);
    const EdgeP<A> ep = a.edge(b, e, i, j);
    const Capsule cap = a.capsule(b, e, i, j);
    const bool skip = skip_line_grad<MODE>(ep.w, need_w, cap);
    if (!skip) {
      int64_t ry0, ry1;
      capsule_rows(cap, 0, a.H, &ry0, &ry1);
      const T* ci = a.c ? a.color(b, i) : nullptr;
      const T* cj = a.c ? a.color(b, j) : nullptr;
      for (int64_t y = ry0 + warp; y < ry1; y += kWarps) {
        int64_t x0, x1;
        capsule_span(cap, double(y), a.W, &x0, &x1);
        const A apy = static_cast<A>(y) - ep.ay;
        for (int64_t x = x0 + lane; x < x1; x += 32) {
          const PixelGeo<A> g = pixel_geometry(ep, static_cast<A>(x) - ep.ax, apy);
          if (!g.inside) continue;
          const A ex = pixel_falloff(ep, g);
          const A I = ep.w * ex;
          A gI = A(0), gt = A(0);
          const int64_t pix = y * a.W + x;
          for (int64_t k = 0; k < a.C; ++k) {
            const A c0 = ci ? end_color(load(ci, k), ep.w) : A(1);
            const A dc = ci ? end_color(load(cj, k), ep.w) - c0 : A(0);
            const A c = line_color(c0, dc, g.t);
            const int64_t o = (b * a.C + k) * HW + pix;
            const A gv = composite_grad<MODE>(coefA[o], MODE == kSoftOr ? coefB[o] : A(1),
                                              MODE != kSumClamp ? idx[o] : -1, ie,
                                              line_value(I, c));
            gI += gv * c;
            const A gvI = gv * I;
            gt += gvI * dc;
#pragma unroll
            for (int kk = 0; kk < kCG; ++kk) {
              if (kk < L.nc && k == L.c0 + kk) {
                r[10 + kk] += gvI * (A(1) - g.t);
                r[10 + kCG + kk] += gvI * g.t;
              }
            }
          }
          if (geo) {
            const GradTerms<A> q = pixel_grad_terms(g, I, ex, gI, gt);
            r[0] += q.aqx;
            r[1] += q.aqy;
            r[2] += q.bqx;
            r[3] += q.bqy;
            r[4] += q.tqx;
            r[5] += q.tqy;
            r[6] += q.t1;
            r[7] += q.tt;
            r[8] += q.w;
            r[9] += q.s;
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
        const GradTerms<A> sum{tot[0], tot[1], tot[2], tot[3], tot[4],
                               tot[5], tot[6], tot[7], tot[8], tot[9]};
        finish_edge_grad(ep, sum, out);
        if (skip) {
#pragma unroll
          for (int q = 0; q < kAccFixed; ++q) out[q] = A(0);
        }
        if (nan_line_grad<MODE>(ep.w, cap)) {
          for (int64_t q = 0; q < P; ++q) out[q] = A(NAN);
        }
      }
      for (int kk = 0; kk < L.nc; ++kk) {
        out[kAccFixed + L.c0 + kk] = tot[10 + kk];
        out[kAccFixed + a.C + L.c0 + kk] = tot[10 + kCG + kk];
      }
    }
    __syncthreads();  // red is reused by the next sample
  }
}

// One thread per (sample, keypoint): its incident lines' point gradients, in a fixed
// order.
template <typename T>
__global__ void gather_points_kernel(int64_t B, int64_t K, int64_t E, int64_t C,
                                     const acc_t<T>* __restrict__ acc, T* __restrict__ gp) {
  using A = acc_t<T>;
  const int64_t r = global_thread();
  if (r >= B * K) return;
  const int64_t b = r / K, k = r % K;
  const int64_t P = record_size(C);
  const A* ab = acc + b * E * P;
  A gx = 0, gy = 0;
  for (int64_t i = 0; i < k; ++i) {  // lines (i, k): k is the second end
    const A* q = ab + (row_start(i, K) + (k - i - 1)) * P;
    gx += q[2];
    gy += q[3];
  }
  for (int64_t j = k + 1; j < K; ++j) {  // lines (k, j): k is the first end
    const A* q = ab + (row_start(k, K) + (j - k - 1)) * P;
    gx += q[0];
    gy += q[1];
  }
  gp[r * 2] = static_cast<T>(gx);
  gp[r * 2 + 1] = static_cast<T>(gy);
}

// One thread per (sample, keypoint), or per keypoint summing the samples in order when
// the colours are shared: the colour gradients.
template <typename T>
__global__ void gather_colors_kernel(int64_t B, int64_t K, int64_t E, int64_t C, bool batched,
                                     const acc_t<T>* __restrict__ acc, T* __restrict__ gc) {
  using A = acc_t<T>;
  const int64_t r = global_thread();
  if (r >= (batched ? B : 1) * K) return;
  const int64_t k = r % K;
  const int64_t b0 = batched ? r / K : 0, b1 = batched ? b0 + 1 : B;
  const int64_t P = record_size(C);
  for (int64_t ch = 0; ch < C; ++ch) {
    A g = 0;
    for (int64_t b = b0; b < b1; ++b) {
      const A* ab = acc + b * E * P;
      for (int64_t i = 0; i < k; ++i) g += ab[(row_start(i, K) + (k - i - 1)) * P + kAccFixed + C + ch];
      for (int64_t j = k + 1; j < K; ++j) g += ab[(row_start(k, K) + (j - k - 1)) * P + kAccFixed + ch];
    }
    gc[r * C + ch] = static_cast<T>(g);
  }
}

// Column `col` of the per-(sample, line) records, for each of `rows` outputs: per
// (sample, line) when batched (rows = B E, samples = 1), else per line summed over the
// samples in order (rows = E, samples = B).
template <typename T>
__global__ void line_grad_kernel(int64_t rows, int64_t samples, int64_t E, int64_t P, int col,
                                 const acc_t<T>* __restrict__ acc, T* __restrict__ out) {
  const int64_t r = global_thread();
  if (r >= rows) return;
  acc_t<T> s = 0;
  for (int64_t b = 0; b < samples; ++b) s += acc[(b * E + r) * P + col];
  out[r] = static_cast<T>(s);
}

// ---------------------------------------------------------------- host side
dim3 pixel_grid(int64_t B, int64_t H, int64_t W) {
  const int64_t tiles = ((W + kTile - 1) / kTile) * ((H + kTile - 1) / kTile);
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(B, kMaxGridY)));
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + 255) / 256); }

std::tuple<Tensor, Tensor, Tensor> sketch_render_forward_cuda(TA_SKETCH_FORWARD_PARAMS) {
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  Forward f = begin_forward(points, strength, sigma, colors, height, width, composite, cutoff,
                            keep_state);
  if (f.B == 0) return {f.image, f.state, f.index};
  const cudaStream_t stream = current_stream(points);
  const int64_t C = f.image.size(1);
  dispatch_cuda_floating(kOp, points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    Launch<T> L{make_args<T>(points, strength, sigma, colors, height, width, cutoff), 0, 1};
    const PixelOut<T> w{f.image.mutable_data_ptr<T>(), nullptr,
                        f.state.numel() ? f.state.mutable_data_ptr<A>() : nullptr, nullptr,
                        nullptr, f.index.numel() ? f.index.mutable_data_ptr<int32_t>() : nullptr};
    dispatch_composite(f.mode, [&](auto m) {
      constexpr int M = decltype(m)::value;
      for (int64_t c0 = 0; c0 < C; c0 += kCG) {
        L.c0 = c0;
        L.nc = static_cast<int>(std::min<int64_t>(kCG, C - c0));
        const dim3 grid = pixel_grid(f.B, height, width);
        if (keep_state && M != kSumClamp) {
          pixel_kernel<T, M, true><<<grid, kPixThreads, 0, stream>>>(L, w);
        } else {
          pixel_kernel<T, M, false><<<grid, kPixThreads, 0, stream>>>(L, w);
        }
        check_launch(kOp);
      }
    });
  });
  return {f.image, f.state, f.index};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sketch_render_backward_cuda(
    TA_SKETCH_BACKWARD_PARAMS) {
  torch::stable::accelerator::DeviceGuard guard(points.get_device_index());
  Backward r = begin_backward(grad, points, strength, sigma, colors, state, state_index, height,
                              width, composite, cutoff, need_strength, need_sigma, need_colors);
  if (r.B == 0) return {r.gp, r.gw, r.gs, r.gc};
  const int64_t B = r.B, K = r.K, E = r.E, C = r.C;
  const cudaStream_t stream = current_stream(points);
  const ScalarType acc_st = state_dtype(points.scalar_type());
  const bool soft_or = r.mode == kSoftOr, with_idx = r.mode != kSumClamp;
  const int64_t n = B * C * height * width;
  const std::vector<int64_t> plane{B, C, height, width}, none{0};
  // Per pixel and channel: coefA (composite_coef), coefB (soft_or's fm), idx (soft_or's /
  // max's tracked line): from the kept state, or from a state pass.
  Tensor coefA = empty(kBackwardOp, points, plane, acc_st, "per-pixel coefficients");
  Tensor coefB = empty(kBackwardOp, points, soft_or && !r.kept ? plane : none, acc_st,
                       "per-pixel factors");
  Tensor idx = empty(kBackwardOp, points, with_idx && !r.kept ? plane : none, ScalarType::Int,
                     "per-pixel lines");
  Tensor acc = empty(kBackwardOp, points, {B, E, kAccFixed + 2 * C}, acc_st, "per-line sums");
  dispatch_cuda_floating(kBackwardOp, points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    Launch<T> L{make_args<T>(points, strength, sigma, colors, height, width, cutoff), 0, 1};
    A* pA = coefA.mutable_data_ptr<A>();
    const A* kv = r.kept && state.numel() ? state.const_data_ptr<A>() : nullptr;
    const A* pB = !soft_or ? nullptr : (r.kept ? kv + n : coefB.mutable_data_ptr<A>());
    const int32_t* pI = !with_idx ? nullptr
                                  : (r.kept ? state_index.const_data_ptr<int32_t>()
                                            : idx.mutable_data_ptr<int32_t>());
    A* pacc = acc.mutable_data_ptr<A>();
    dispatch_composite(r.mode, [&](auto m) {
      constexpr int M = decltype(m)::value;
      if (r.kept) {
        coef_kernel<T, M><<<blocks_for(n), 256, 0, stream>>>(n, grad.const_data_ptr<T>(), kv,
                                                              pA);
        check_launch(kBackwardOp);
      } else {
        const PixelOut<T> w{nullptr,
                            grad.const_data_ptr<T>(),
                            nullptr,
                            pA,
                            soft_or ? coefB.mutable_data_ptr<A>() : nullptr,
                            with_idx ? idx.mutable_data_ptr<int32_t>() : nullptr};
        for (int64_t c0 = 0; c0 < C; c0 += kCG) {
          L.c0 = c0;
          L.nc = static_cast<int>(std::min<int64_t>(kCG, C - c0));
          pixel_kernel<T, M, M != kSumClamp>
              <<<pixel_grid(B, height, width), kPixThreads, 0, stream>>>(L, w);
          check_launch(kBackwardOp);
        }
      }
      if (E > 0) {
        const dim3 grid(static_cast<unsigned>(E), static_cast<unsigned>(std::min(B, kMaxGridY)));
        for (int64_t c0 = 0; c0 < C; c0 += kCG) {
          L.c0 = c0;
          L.nc = static_cast<int>(std::min<int64_t>(kCG, C - c0));
          edge_kernel<T, M><<<grid, kEdgeThreads, 0, stream>>>(L, c0 == 0, r.need_strength, pA,
                                                               pB, pI, pacc);
          check_launch(kBackwardOp);
        }
      }
    });
    gather_points_kernel<T><<<blocks_for(B * K), 256, 0, stream>>>(B, K, E, C, pacc,
                                                                   r.gp.mutable_data_ptr<T>());
    check_launch(kBackwardOp);
    if (r.need_colors) {
      const bool cb = L.a.c_b;
      gather_colors_kernel<T><<<blocks_for((cb ? B : 1) * K), 256, 0, stream>>>(
          B, K, E, C, cb, pacc, r.gc.mutable_data_ptr<T>());
      check_launch(kBackwardOp);
    }
    const std::tuple<bool, bool, int, Tensor*> lines[] = {{r.need_strength, L.a.w_b, 4, &r.gw},
                                                          {r.need_sigma, L.a.s_b, 5, &r.gs}};
    for (const auto& [need, batched, col, out] : lines) {
      if (!need || E == 0) continue;
      const int64_t rows = (batched ? B : 1) * E;
      line_grad_kernel<T><<<blocks_for(rows), 256, 0, stream>>>(
          rows, batched ? 1 : B, E, record_size(C), col, pacc,
          out->template mutable_data_ptr<T>());
      check_launch(kBackwardOp);
    }
  });
  return {r.gp, r.gw, r.gs, r.gc};
}

}  // namespace
}  // namespace torch_artic::sketch

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CUDA, m) {
  TA_IMPL_OP(m, CUDA, sketch, sketch_render_forward_cuda, sketch_render_backward_cuda);
}
