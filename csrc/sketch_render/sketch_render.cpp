// Schemas and CPU kernels of sketch_render (see the header for the math).
//
// Forward: tasks are (sample, block of kRowBlock rows); a task visits the sample's
// edges in order, skips those with weight 0, and for every row its edge may touch it
// evaluates only the columns of the row's cut through the edge's cutoff capsule
// (computed analytically, then confirmed per pixel by the exact test d2 < (R s)^2).
// Each output pixel is therefore accumulated by one thread, in edge order.
//
// Backward: (1) the same per-pixel pass recomputes each pixel's composite state and
// folds in the incoming gradient (a per-pixel coefficient, plus for soft_or the
// smallest factor and for soft_or/max an edge index); (2) tasks (sample, edge)
// revisit the edge's capsule and sum its gradient contributions (points, weight,
// sigma, colours) in float64; (3) each sample gathers its edges' sums into its
// keypoints in edge order. Nothing of size [B, E, H, W] exists; the extra memory is
// two or three [B, C, H, W] buffers. The task split depends only on the shapes, so
// results are bit-identical run to run and for any thread count.
//
// Inner loops run over the columns of one row on flat buffers, branch-free
// (`#pragma omp simd`).
#include "sketch_render/sketch_render.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>
#include <vector>

namespace torch_artic {
namespace sketch {
namespace {

constexpr int64_t kRowBlock = 16;

// Problems this small run on the calling thread: waking the pool would cost more than
// the work (and much more when the machine is oversubscribed).
constexpr int64_t kSerialPixels = int64_t(1) << 16;

// grain size for parallel_for over n tasks: all of them (serial) for small problems
inline int64_t grain_for(int64_t n, int64_t B, int64_t C, int64_t H, int64_t W, int64_t E) {
  const bool small = B * C * H * W < kSerialPixels && B * E < 4096;
  return small ? std::max<int64_t>(n, 1) : 1;
}

template <typename T>
struct In {
  const T* p;
  const T* w;
  const T* s;
  const T* c;  // nullptr without colours
  int64_t B, K, E, C, H, W;
  bool w_b, s_b, c_b;  // batched ([B, ...]) rather than shared ([1, ...])
  std::vector<int32_t> ei, ej;
  T R;

  T weight(int64_t b, int64_t e) const { return w[(w_b ? b : 0) * E + e]; }
  T sig(int64_t b, int64_t e) const { return s[(s_b ? b : 0) * E + e]; }
  const T* col(int64_t b, int64_t k) const { return c + ((c_b ? b : 0) * K + k) * C; }
  EdgeP<T> edge(int64_t b, int64_t e) const {
    const T* pb = p + b * K * 2;
    const int64_t i = ei[e], j = ej[e];
    return make_edge<T>(pb[2 * i], pb[2 * i + 1], pb[2 * j], pb[2 * j + 1], weight(b, e),
                        sig(b, e), R);
  }
  Capsule capsule(int64_t b, int64_t e) const {
    const T* pb = p + b * K * 2;
    const int64_t i = ei[e], j = ej[e];
    return make_capsule(static_cast<double>(pb[2 * i]), static_cast<double>(pb[2 * i + 1]),
                        static_cast<double>(pb[2 * j]), static_cast<double>(pb[2 * j + 1]),
                        static_cast<double>(sig(b, e)), static_cast<double>(R));
  }
};

template <typename T>
In<T> make_in(const Tensor& points, const Tensor& weights, const Tensor& sigma,
              const std::optional<Tensor>& colors, int64_t H, int64_t W, double cutoff) {
  In<T> in;
  in.p = points.const_data_ptr<T>();
  in.w = weights.const_data_ptr<T>();
  in.s = sigma.const_data_ptr<T>();
  in.c = colors.has_value() ? colors->const_data_ptr<T>() : nullptr;
  in.B = points.size(0);
  in.K = points.size(1);
  in.E = in.K * (in.K - 1) / 2;
  in.C = colors.has_value() ? colors->size(2) : 1;
  in.H = H;
  in.W = W;
  in.w_b = weights.size(0) != 1;
  in.s_b = sigma.size(0) != 1;
  in.c_b = colors.has_value() && colors->size(0) != 1;
  in.ei.reserve(static_cast<size_t>(in.E));
  in.ej.reserve(static_cast<size_t>(in.E));
  for (int64_t i = 0; i < in.K; ++i)
    for (int64_t j = i + 1; j < in.K; ++j) {
      in.ei.push_back(static_cast<int32_t>(i));
      in.ej.push_back(static_cast<int32_t>(j));
    }
  in.R = static_cast<T>(cutoff);
  return in;
}

// Intensity I and clamped t of one edge along the columns [x0, x0 + n) of row y.
template <typename T>
inline void intensity_row(const EdgeP<T> E, int64_t y, int64_t x0, int64_t n, T* I, T* t) {
  const T apy = static_cast<T>(y) - E.ay;
  // int32 column indices: their conversion to floating point vectorises (int64's not)
  const int32_t xs = static_cast<int32_t>(x0), nn = static_cast<int32_t>(n);
#pragma omp simd
  for (int32_t i = 0; i < nn; ++i) {
    const T apx = static_cast<T>(xs + i) - E.ax;
    bool interior;
    const T tt = proj_t(E, apx, apy, interior);
    const T qx = apx - tt * E.abx, qy = apy - tt * E.aby;
    const T d2 = qx * qx + qy * qy;
    const T ex = sr_exp(-d2 / E.s2);
    I[i] = d2 >= E.cut2 ? T(0) : E.w * ex;
    t[i] = tt;
  }
}

// The per-pixel pass. PRE = false: the forward (A = the output [C, H, W] of sample b).
// PRE = true: the backward's state pass: A = per-pixel coefficient, F = soft_or's
// smallest factor, idx = soft_or's smallest-factor edge / max's argmax edge; g = the
// incoming gradient of sample b.
template <typename T, int MODE, bool PRE>
void raster_block(const In<T>& in, int64_t b, int64_t y0, int64_t y1, T* A, T* F, int32_t* idx,
                  const T* g, T* Ib, T* tb) {
  const int64_t C = in.C, H = in.H, W = in.W;
  const T init = MODE == kSoftOr ? T(1) : T(0);
  for (int64_t k = 0; k < C; ++k) {
    for (int64_t y = y0; y < y1; ++y) {
      const int64_t o = (k * H + y) * W;
      std::fill(A + o, A + o + W, init);
      if (PRE && MODE == kSoftOr) std::fill(F + o, F + o + W, T(1));
      if (PRE && MODE != kSumClamp) std::fill(idx + o, idx + o + W, int32_t(-1));
    }
  }
  for (int64_t e = 0; e < in.E; ++e) {
    const T w = in.weight(b, e);
    if (w == T(0)) continue;
    const Capsule cap = in.capsule(b, e);
    int64_t ry0, ry1;
    capsule_rows(cap, y0, y1, &ry0, &ry1);
    if (ry1 <= ry0) continue;
    const EdgeP<T> E = in.edge(b, e);
    const T* ci = in.c ? in.col(b, in.ei[e]) : nullptr;
    const T* cj = in.c ? in.col(b, in.ej[e]) : nullptr;
    const int32_t ie = static_cast<int32_t>(e);
    for (int64_t y = ry0; y < ry1; ++y) {
      int64_t x0, x1;
      capsule_span(cap, static_cast<double>(y), W, &x0, &x1);
      const int64_t n = x1 - x0;
      if (n <= 0) continue;
      intensity_row(E, y, x0, n, Ib, tb);
      for (int64_t k = 0; k < C; ++k) {
        const T c0 = ci ? ci[k] : T(1);
        const T dc = ci ? cj[k] - ci[k] : T(0);
        const int64_t o = (k * H + y) * W + x0;
        T* a = A + o;
        if (MODE == kSumClamp) {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) a[i] += Ib[i] * (c0 + tb[i] * dc);
        } else if (MODE == kSoftOr && !PRE) {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) a[i] *= T(1) - Ib[i] * (c0 + tb[i] * dc);
        } else if (MODE == kSoftOr) {
          T* f = F + o;
          int32_t* id = idx + o;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) {
            const T fe = T(1) - Ib[i] * (c0 + tb[i] * dc);
            const T fm = f[i];
            const bool sw = std::fabs(fe) < std::fabs(fm);
            a[i] *= sw ? fm : fe;
            f[i] = sw ? fe : fm;
            id[i] = sw ? ie : id[i];
          }
        } else {
          int32_t* id = PRE ? idx + o : nullptr;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) {
            const T v = Ib[i] * (c0 + tb[i] * dc);
            const bool up = max_key(v) > max_key(a[i]);
            a[i] = up ? v : a[i];
            if (PRE) id[i] = up ? ie : id[i];
          }
        }
      }
    }
  }
  for (int64_t k = 0; k < C; ++k) {
    for (int64_t y = y0; y < y1; ++y) {
      const int64_t o = (k * H + y) * W;
      T* a = A + o;
      const T* gg = PRE ? g + o : nullptr;
      if (!PRE && MODE == kSumClamp) {
#pragma omp simd
        for (int64_t x = 0; x < W; ++x) a[x] = a[x] > T(1) ? T(1) : a[x];
      } else if (!PRE && MODE == kSoftOr) {
#pragma omp simd
        for (int64_t x = 0; x < W; ++x) a[x] = T(1) - a[x];
      } else if (PRE && MODE == kSumClamp) {
#pragma omp simd
        for (int64_t x = 0; x < W; ++x) a[x] = a[x] > T(1) ? T(0) : gg[x];
      } else if (PRE && MODE == kSoftOr) {
#pragma omp simd
        for (int64_t x = 0; x < W; ++x) a[x] *= gg[x];
      } else if (PRE) {
        std::copy(gg, gg + W, a);
      }
    }
  }
}

// Accumulator layout per (sample, edge): grad a (2), grad b (2), weight, sigma,
// colour of i (C), colour of j (C).
constexpr int64_t kAccFixed = 6;

template <typename T, int MODE>
void edge_grad(const In<T>& in, int64_t b, int64_t e, const T* A, const T* F,
               const int32_t* idx, bool need_w, double* acc, T* buf) {
  const int64_t C = in.C, H = in.H, W = in.W;
  std::fill(acc, acc + kAccFixed + 2 * C, 0.0);
  const T w = in.weight(b, e);
  // A zero-weight edge has zero intensity: only its weight can have a gradient, and
  // under max (where it never wins) not even that.
  if (w == T(0) && !(need_w && MODE != kMax)) return;
  const Capsule cap = in.capsule(b, e);
  int64_t ry0, ry1;
  capsule_rows(cap, 0, H, &ry0, &ry1);
  if (ry1 <= ry0) return;
  const EdgeP<T> E = in.edge(b, e);
  const T* ci = in.c ? in.col(b, in.ei[e]) : nullptr;
  const T* cj = in.c ? in.col(b, in.ej[e]) : nullptr;
  const int32_t ie = static_cast<int32_t>(e);
  T* tb = buf;
  T* qxb = buf + W;
  T* qyb = buf + 2 * W;
  T* d2b = buf + 3 * W;
  T* eb = buf + 4 * W;  // exp(-d2/s2) where inside, else 0
  T* Ib = buf + 5 * W;
  T* inb = buf + 6 * W;  // 1 where 0 < t_raw < 1
  T* gIb = buf + 7 * W;
  T* gtb = buf + 8 * W;
  double saqx = 0, saqy = 0, sbqx = 0, sbqy = 0, stqx = 0, stqy = 0, st1 = 0, stt = 0, sw = 0,
         ss = 0;
  double* gci = acc + kAccFixed;
  double* gcj = acc + kAccFixed + C;
  for (int64_t y = ry0; y < ry1; ++y) {
    int64_t x0, x1;
    capsule_span(cap, static_cast<double>(y), W, &x0, &x1);
    const int64_t n = x1 - x0;
    if (n <= 0) continue;
    const T apy = static_cast<T>(y) - E.ay;
    const int32_t xs = static_cast<int32_t>(x0), nn = static_cast<int32_t>(n);
#pragma omp simd
    for (int32_t i = 0; i < nn; ++i) {
      const T apx = static_cast<T>(xs + i) - E.ax;
      bool interior;
      const T tt = proj_t(E, apx, apy, interior);
      const T qx = apx - tt * E.abx, qy = apy - tt * E.aby;
      const T d2 = qx * qx + qy * qy;
      const T ex = sr_exp(-d2 / E.s2);
      const bool inside = !(d2 >= E.cut2);
      tb[i] = tt;
      qxb[i] = qx;
      qyb[i] = qy;
      d2b[i] = d2;
      eb[i] = inside ? ex : T(0);
      Ib[i] = inside ? E.w * ex : T(0);
      inb[i] = interior ? T(1) : T(0);
      gIb[i] = T(0);
      gtb[i] = T(0);
    }
    for (int64_t k = 0; k < C; ++k) {
      const T c0 = ci ? ci[k] : T(1);
      const T dc = ci ? cj[k] - ci[k] : T(0);
      const int64_t o = (k * H + y) * W + x0;
      const T* a = A + o;
      const T* f = MODE == kSoftOr ? F + o : nullptr;
      const int32_t* id = MODE != kSumClamp ? idx + o : nullptr;
      T rci = 0, rcj = 0;
#pragma omp simd reduction(+ : rci, rcj)
      for (int64_t i = 0; i < n; ++i) {
        const T c = c0 + tb[i] * dc;
        const T v = Ib[i] * c;
        T gv;
        if (MODE == kSumClamp) {
          gv = a[i];
        } else if (MODE == kMax) {
          gv = id[i] == ie ? a[i] : T(0);
        } else {
          const T fe = T(1) - v;
          const T fm = f[i];
          const bool zero = fm == T(0) || fe == T(0);
          const T ratio = fm / (zero ? T(1) : fe);
          gv = id[i] == ie ? a[i] : (zero ? T(0) : a[i] * ratio);
        }
        gIb[i] += gv * c;
        const T gvI = gv * Ib[i];
        gtb[i] += gvI * dc;
        rci += gvI * (T(1) - tb[i]);
        rcj += gvI * tb[i];
      }
      gci[k] += rci;
      gcj[k] += rcj;
    }
    T raqx = 0, raqy = 0, rbqx = 0, rbqy = 0, rtqx = 0, rtqy = 0, rt1 = 0, rtt = 0, rw = 0,
      rs = 0;
#pragma omp simd reduction(+ : raqx, raqy, rbqx, rbqy, rtqx, rtqy, rt1, rtt, rw, rs)
    for (int64_t i = 0; i < n; ++i) {
      const T gI = gIb[i];
      const T gII = gI * Ib[i];
      const T t = tb[i];
      const T ca = gII * (T(1) - t), cb = gII * t;
      raqx += ca * qxb[i];
      raqy += ca * qyb[i];
      rbqx += cb * qxb[i];
      rbqy += cb * qyb[i];
      const T gt = gtb[i] * inb[i];
      rtqx += gt * qxb[i];
      rtqy += gt * qyb[i];
      rt1 += gt * (T(1) - t);
      rtt += gt * t;
      rw += gI * eb[i];
      rs += gII * d2b[i];
    }
    saqx += raqx;
    saqy += raqy;
    sbqx += rbqx;
    sbqy += rbqy;
    stqx += rtqx;
    stqy += rtqy;
    st1 += rt1;
    stt += rtt;
    sw += rw;
    ss += rs;
  }
  const double s = static_cast<double>(E.s), s2 = static_cast<double>(E.s2);
  const double k2 = s2 > 0.0 ? 2.0 / s2 : 0.0;
  const double k3 = s2 > 0.0 ? 2.0 / (s2 * s) : 0.0;
  const double l2 = static_cast<double>(E.l2s);
  const double abx = static_cast<double>(E.abx), aby = static_cast<double>(E.aby);
  acc[0] = k2 * saqx - (stqx + st1 * abx) / l2;
  acc[1] = k2 * saqy - (stqy + st1 * aby) / l2;
  acc[2] = k2 * sbqx + (stqx - stt * abx) / l2;
  acc[3] = k2 * sbqy + (stqy - stt * aby) / l2;
  acc[4] = sw;
  acc[5] = k3 * ss;
}

template <typename T, int MODE>
void forward_impl(const In<T>& in, T* out) {
  const int64_t nb = (in.H + kRowBlock - 1) / kRowBlock;
  const int64_t plane = in.C * in.H * in.W;
  const int64_t grain = grain_for(in.B * nb, in.B, in.C, in.H, in.W, in.E);
  torch::stable::parallel_for(0, in.B * nb, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(static_cast<size_t>(2 * in.W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nb, blk = task % nb;
      const int64_t y0 = blk * kRowBlock, y1 = std::min(in.H, y0 + kRowBlock);
      raster_block<T, MODE, false>(in, b, y0, y1, out + b * plane, nullptr, nullptr, nullptr,
                                   buf.data(), buf.data() + in.W);
    }
  });
}

template <typename T, int MODE>
void backward_impl(const In<T>& in, const T* g, bool need_w, bool need_s, bool need_c, T* gp,
                   T* gw, T* gs, T* gc) {
  const int64_t B = in.B, E = in.E, C = in.C, H = in.H, W = in.W, K = in.K;
  const int64_t plane = C * H * W;
  const size_t total = static_cast<size_t>(B * plane);
  std::vector<T> A(total);
  std::vector<T> F(MODE == kSoftOr ? total : 0);
  std::vector<int32_t> idx(MODE != kSumClamp ? total : 0);
  const int64_t nb = (H + kRowBlock - 1) / kRowBlock;
  torch::stable::parallel_for(0, B * nb, grain_for(B * nb, B, C, H, W, E),
                              [&](int64_t begin, int64_t end) {
    std::vector<T> buf(static_cast<size_t>(2 * W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nb, blk = task % nb;
      const int64_t y0 = blk * kRowBlock, y1 = std::min(H, y0 + kRowBlock);
      raster_block<T, MODE, true>(in, b, y0, y1, A.data() + b * plane,
                                  MODE == kSoftOr ? F.data() + b * plane : nullptr,
                                  MODE != kSumClamp ? idx.data() + b * plane : nullptr,
                                  g + b * plane, buf.data(), buf.data() + W);
    }
  });
  const int64_t P = kAccFixed + 2 * C;
  std::vector<double> acc(static_cast<size_t>(B * E * P));
  torch::stable::parallel_for(0, B * E, grain_for(B * E, B, C, H, W, E),
                              [&](int64_t begin, int64_t end) {
    std::vector<T> buf(static_cast<size_t>(9 * W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / E, e = task % E;
      edge_grad<T, MODE>(in, b, e, A.data() + b * plane,
                         MODE == kSoftOr ? F.data() + b * plane : nullptr,
                         MODE != kSumClamp ? idx.data() + b * plane : nullptr, need_w,
                         acc.data() + task * P, buf.data());
    }
  });
  torch::stable::parallel_for(0, B, grain_for(B, B, C, H, W, E), [&](int64_t begin,
                                                                      int64_t end) {
    std::vector<double> sp(static_cast<size_t>(K * 2)), sc(static_cast<size_t>(K * C));
    for (int64_t b = begin; b < end; ++b) {
      std::fill(sp.begin(), sp.end(), 0.0);
      std::fill(sc.begin(), sc.end(), 0.0);
      for (int64_t e = 0; e < E; ++e) {
        const double* a = acc.data() + (b * E + e) * P;
        const int64_t i = in.ei[e], j = in.ej[e];
        sp[2 * i] += a[0];
        sp[2 * i + 1] += a[1];
        sp[2 * j] += a[2];
        sp[2 * j + 1] += a[3];
        if (need_w) gw[b * E + e] = static_cast<T>(a[4]);
        if (need_s) gs[b * E + e] = static_cast<T>(a[5]);
        if (need_c) {
          for (int64_t k = 0; k < C; ++k) {
            sc[i * C + k] += a[kAccFixed + k];
            sc[j * C + k] += a[kAccFixed + C + k];
          }
        }
      }
      for (int64_t q = 0; q < K * 2; ++q) gp[b * K * 2 + q] = static_cast<T>(sp[q]);
      if (need_c)
        for (int64_t q = 0; q < K * C; ++q) gc[b * K * C + q] = static_cast<T>(sc[q]);
    }
  });
}

template <typename F>
void dispatch_mode(int64_t composite, F&& f) {
  switch (composite) {
    case kSumClamp: f(std::integral_constant<int, kSumClamp>{}); break;
    case kSoftOr: f(std::integral_constant<int, kSoftOr>{}); break;
    default: f(std::integral_constant<int, kMax>{}); break;
  }
}

template <typename F>
void dispatch_cpu_dtype(ScalarType st, F&& f) {
  if (st == ScalarType::Double) {
    f(double{});
  } else {
    STD_TORCH_CHECK(st == ScalarType::Float, "sketch_render on the CPU supports float32 and "
                                             "float64");
    f(float{});
  }
}

Tensor sketch_render_forward_cpu(const Tensor& points, const Tensor& weights, const Tensor& sigma,
                                 const std::optional<Tensor>& colors, int64_t height,
                                 int64_t width, int64_t composite, double cutoff) {
  check_args(points, weights, sigma, colors, height, width, composite);
  const int64_t B = points.size(0);
  const int64_t C = colors.has_value() ? colors->size(2) : 1;
  Tensor out = torch::stable::new_empty(points, {B, C, height, width});
  if (B == 0) return out;
  dispatch_cpu_dtype(points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const In<T> in = make_in<T>(points, weights, sigma, colors, height, width, cutoff);
    dispatch_mode(composite, [&](auto mode) {
      forward_impl<T, decltype(mode)::value>(in, out.mutable_data_ptr<T>());
    });
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sketch_render_backward_cpu(
    const Tensor& grad, const Tensor& points, const Tensor& weights, const Tensor& sigma,
    const std::optional<Tensor>& colors, int64_t height, int64_t width, int64_t composite,
    double cutoff, bool need_weights, bool need_sigma, bool need_colors) {
  check_args(points, weights, sigma, colors, height, width, composite);
  check_grad(grad, points, colors, height, width);
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
  dispatch_cpu_dtype(points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const In<T> in = make_in<T>(points, weights, sigma, colors, height, width, cutoff);
    dispatch_mode(composite, [&](auto mode) {
      backward_impl<T, decltype(mode)::value>(
          in, grad.const_data_ptr<T>(), need_weights, need_sigma, need_colors,
          gp.mutable_data_ptr<T>(), need_weights ? gw.mutable_data_ptr<T>() : nullptr,
          need_sigma ? gs.mutable_data_ptr<T>() : nullptr,
          need_colors ? gc.mutable_data_ptr<T>() : nullptr);
    });
  });
  return {gp, gw, gs, gc};
}

}  // namespace
}  // namespace sketch
}  // namespace torch_artic

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def(
      "sketch_render_forward(Tensor points, Tensor weights, Tensor sigma, Tensor? colors, "
      "int height, int width, int composite, float cutoff) -> Tensor");
  m.def(
      "sketch_render_backward(Tensor grad, Tensor points, Tensor weights, Tensor sigma, "
      "Tensor? colors, int height, int width, int composite, float cutoff, bool need_weights, "
      "bool need_sigma, bool need_colors) "
      "-> (Tensor grad_points, Tensor grad_weights, Tensor grad_sigma, Tensor grad_colors)");
}

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  m.impl("sketch_render_forward", TORCH_BOX(&torch_artic::sketch::sketch_render_forward_cpu));
  m.impl("sketch_render_backward", TORCH_BOX(&torch_artic::sketch::sketch_render_backward_cpu));
}
