// CPU kernels of sketch_render: task split, memory layout and loops; every formula is
// the header's, shared with the CUDA kernels.
//
// Forward: tasks are (sample, block of kRowBlock rows); a task visits the sample's
// lines in order, skips those with strength 0, and for every row its line may touch it
// evaluates only the columns of the row's cut through the line's cutoff capsule
// (computed analytically, then confirmed per pixel by the exact test d2 < (R s)^2).
// Each output pixel is therefore accumulated by one thread, in line order.
//
// Backward: (1) the same per-pixel pass recomputes each pixel's composite state and
// folds in the incoming gradient (a per-pixel coefficient, plus for soft_or the
// smallest factor and for soft_or/max a line index); (2) tasks (sample, line) revisit
// the line's capsule and sum its gradient contributions (points, strength, sigma,
// colours) in float64; (3) each sample gathers its lines' sums into its keypoints in
// line order, and gradients of shared inputs are summed over the samples in order.
// Nothing of size [B, E, H, W] exists; the extra memory is two or three [B, C, H, W]
// buffers. The task split depends only on the shapes, so results are bit-identical run
// to run and for any thread count.
//
// Inner loops run over the columns of one row on flat buffers, branch-free
// (`#pragma omp simd`).
#include "sketch/sketch.h"

#include "common/kernels.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

namespace torch_artic::sketch {
namespace {

constexpr int64_t kRowBlock = 16;

// Problems this small run on the calling thread: waking the pool would cost more than
// the work (and much more when the machine is oversubscribed).
constexpr int64_t kSerialPixels = int64_t(1) << 16;

// grain size for parallel_for over n tasks: all of them (serial) for small problems
template <typename T>
int64_t grain_for(int64_t n, const Args<T>& a) {
  const bool small = a.B * a.C * a.H * a.W < kSerialPixels && a.B * a.E < 4096;
  return small ? std::max<int64_t>(n, 1) : 1;
}

// The CPU's view of the arguments: the shared Args plus a table of each line's ends.
template <typename T>
struct Lines {
  Args<T> a;
  std::vector<int32_t> ei, ej;

  explicit Lines(const Args<T>& args) : a(args) {
    ei.resize(static_cast<size_t>(a.E));
    ej.resize(static_cast<size_t>(a.E));
    for (int64_t e = 0; e < a.E; ++e) {
      int64_t i, j;
      edge_ij(e, a.K, &i, &j);
      ei[e] = static_cast<int32_t>(i);
      ej[e] = static_cast<int32_t>(j);
    }
  }
  EdgeP<T> edge(int64_t b, int64_t e) const { return a.edge(b, e, ei[e], ej[e]); }
  Capsule capsule(int64_t b, int64_t e) const { return a.capsule(b, e, ei[e], ej[e]); }
};

// Intensity I and clamped t of one line along the columns [x0, x0 + n) of row y.
template <typename T>
inline void intensity_row(const EdgeP<T>& E, int64_t y, int64_t x0, int64_t n, T* I, T* t) {
  const T apy = static_cast<T>(y) - E.ay;
  // int32 column indices: their conversion to floating point vectorises (int64's not)
  const int32_t xs = static_cast<int32_t>(x0), nn = static_cast<int32_t>(n);
#pragma omp simd
  for (int32_t i = 0; i < nn; ++i) {
    const PixelGeo<T> g = pixel_geometry(E, static_cast<T>(xs + i) - E.ax, apy);
    const T ex = pixel_falloff(E, g);
    I[i] = g.inside ? E.w * ex : T(0);
    t[i] = g.t;
  }
}

// max: the lines of sample b by descending bound (ties: ascending index), and each
// line's per-channel bound [E, C] (see max_bound).
template <typename T>
void max_order(const Lines<T>& L, int64_t b, std::vector<int32_t>& order, std::vector<T>& bound) {
  const Args<T>& a = L.a;
  order.resize(static_cast<size_t>(a.E));
  bound.resize(static_cast<size_t>(a.E * a.C));
  std::vector<T> top(static_cast<size_t>(a.E));
  for (int64_t e = 0; e < a.E; ++e) {
    const T w = a.strength(b, e);
    const T* ci = a.c ? a.color(b, L.ei[e]) : nullptr;
    const T* cj = a.c ? a.color(b, L.ej[e]) : nullptr;
    T m = T(0);
    for (int64_t k = 0; k < a.C; ++k) {
      const T bk = max_bound(w, ci ? ci[k] : T(1), cj ? cj[k] : T(1));
      bound[e * a.C + k] = bk;
      m = (bk != bk || m != m) ? bk + m : (bk > m ? bk : m);
    }
    top[e] = m != m ? std::numeric_limits<T>::infinity() : m;  // NaN lines first
    order[e] = static_cast<int32_t>(e);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t u, int32_t v) { return top[u] > top[v]; });
}

// max: whether every pixel of a row span (in every channel) already holds more than the
// line's bound there, so that the line cannot change it. s points at channel 0 of the
// span; channels are `plane` apart.
template <typename T>
bool row_saturated(const T* s, int64_t plane, int64_t C, int64_t n, const T* bound) {
  for (int64_t k = 0; k < C; ++k) {
    const T* sk = s + k * plane;
    T low = std::numeric_limits<T>::infinity();
#pragma omp simd reduction(min : low)
    for (int64_t i = 0; i < n; ++i) low = std::min(low, max_key(sk[i]));
    if (!(low > bound[k])) return false;
  }
  return true;
}

// The per-pixel pass over rows [y0, y1) of sample b: the final composite state of every
// pixel and channel (see composite_add) into V ([C, H, W] of sample b; the running
// value), and with TRACK into P and F (soft_or's split product) and idx (soft_or's
// smallest-factor line, max's argmax line).
template <typename T, int MODE, bool TRACK>
void raster_block(const Lines<T>& L, int64_t b, int64_t y0, int64_t y1, T* V, T* P, T* F,
                  int32_t* idx, T* Ib, T* tb) {
  const Args<T>& a = L.a;
  const int64_t C = a.C, H = a.H, W = a.W;
  constexpr bool kSplit = TRACK && MODE == kSoftOr;
  constexpr bool kId = TRACK && MODE != kSumClamp;
  for (int64_t k = 0; k < C; ++k) {
    for (int64_t y = y0; y < y1; ++y) {
      const int64_t o = (k * H + y) * W;
      std::fill(V + o, V + o + W, composite_init<MODE, T>());
      if (kSplit) std::fill(P + o, P + o + W, T(1));
      if (kSplit) std::fill(F + o, F + o + W, T(1));
      if (kId) std::fill(idx + o, idx + o + W, int32_t(-1));
    }
  }
  // max: the lines in descending order of their bound, so that the running maximum
  // rises early and a line's row is skipped where every pixel already exceeds what the
  // line can reach (the tie rule of composite_add keeps the result order-free)
  std::vector<int32_t> order;
  std::vector<T> bound;
  if (MODE == kMax) max_order(L, b, order, bound);
  for (int64_t q = 0; q < a.E; ++q) {
    const int64_t e = MODE == kMax ? order[q] : q;
    if (a.strength(b, e) == T(0)) continue;
    const Capsule cap = L.capsule(b, e);
    int64_t ry0, ry1;
    capsule_rows(cap, y0, y1, &ry0, &ry1);
    if (ry1 <= ry0) continue;
    const EdgeP<T> E = L.edge(b, e);
    const T* ci = a.c ? a.color(b, L.ei[e]) : nullptr;
    const T* cj = a.c ? a.color(b, L.ej[e]) : nullptr;
    const int32_t ie = static_cast<int32_t>(e);
    for (int64_t y = ry0; y < ry1; ++y) {
      int64_t x0, x1;
      capsule_span(cap, static_cast<double>(y), W, &x0, &x1);
      const int64_t n = x1 - x0;
      if (n <= 0) continue;
      if (MODE == kMax && cap.finite &&
          row_saturated(V + y * W + x0, H * W, C, n, bound.data() + e * C)) {
        continue;
      }
      intensity_row(E, y, x0, n, Ib, tb);
      for (int64_t k = 0; k < C; ++k) {
        const T c0 = ci ? ci[k] : T(1);
        const T dc = ci ? cj[k] - ci[k] : T(0);
        const int64_t o = (k * H + y) * W + x0;
        T* v = V + o;
        T* p = kSplit ? P + o : nullptr;
        T* f = kSplit ? F + o : nullptr;
        int32_t* id = kId ? idx + o : nullptr;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          T pv = kSplit ? p[i] : T(1);
          T fm = kSplit ? f[i] : T(1);
          int32_t iv = kId ? id[i] : -1;
          composite_add<MODE, TRACK>(v[i], pv, fm, iv, line_value(Ib[i], line_color(c0, dc, tb[i])),
                                     ie);
          if (kSplit) p[i] = pv;
          if (kSplit) f[i] = fm;
          if (kId) id[i] = iv;
        }
      }
    }
  }
}

// The gradient sums of line e of sample b: acc[kAccFixed + 2 C] (see the header).
template <typename T, int MODE>
void edge_grad(const Lines<T>& L, int64_t b, int64_t e, const T* S, const T* F,
               const int32_t* idx, bool need_w, double* acc, T* buf) {
  const Args<T>& a = L.a;
  const int64_t C = a.C, H = a.H, W = a.W;
  std::fill(acc, acc + kAccFixed + 2 * C, 0.0);
  // A zero-strength line has zero intensity: only its strength can have a gradient, and
  // under max (where it never wins) not even that.
  const Capsule cap = L.capsule(b, e);
  if (skip_line_grad<MODE>(a.strength(b, e), need_w, cap)) return;
  int64_t ry0, ry1;
  capsule_rows(cap, 0, H, &ry0, &ry1);
  if (ry1 <= ry0) return;
  const EdgeP<T> E = L.edge(b, e);
  const T* ci = a.c ? a.color(b, L.ei[e]) : nullptr;
  const T* cj = a.c ? a.color(b, L.ej[e]) : nullptr;
  const int32_t ie = static_cast<int32_t>(e);
  // per-row buffers: t, qx, qy, d2, falloff (0 outside), I, interior, gI, gt
  T* tb = buf;
  T* qxb = buf + W;
  T* qyb = buf + 2 * W;
  T* d2b = buf + 3 * W;
  T* eb = buf + 4 * W;
  T* Ib = buf + 5 * W;
  T* inb = buf + 6 * W;
  T* gIb = buf + 7 * W;
  T* gtb = buf + 8 * W;
  GradTerms<double> sum{};
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
      const PixelGeo<T> g = pixel_geometry(E, static_cast<T>(xs + i) - E.ax, apy);
      const T ex = g.inside ? pixel_falloff(E, g) : T(0);
      tb[i] = g.t;
      qxb[i] = g.qx;
      qyb[i] = g.qy;
      d2b[i] = g.d2;
      eb[i] = ex;
      Ib[i] = E.w * ex;
      inb[i] = g.interior ? T(1) : T(0);
      gIb[i] = T(0);
      gtb[i] = T(0);
    }
    for (int64_t k = 0; k < C; ++k) {
      const T c0 = ci ? end_color(ci[k], E.w) : T(1);
      const T dc = ci ? end_color(cj[k], E.w) - c0 : T(0);
      const int64_t o = (k * H + y) * W + x0;
      const T* s = S + o;
      const T* f = MODE == kSoftOr ? F + o : nullptr;
      const int32_t* id = MODE != kSumClamp ? idx + o : nullptr;
      T rci = 0, rcj = 0;
#pragma omp simd reduction(+ : rci, rcj)
      for (int64_t i = 0; i < n; ++i) {
        const bool in = eb[i] != T(0);  // inside the cutoff: only there does the line count
        const T c = in ? line_color(c0, dc, tb[i]) : T(0);
        const T gvr = composite_grad<MODE>(s[i], MODE == kSoftOr ? f[i] : T(1),
                                           MODE != kSumClamp ? id[i] : -1, ie,
                                           line_value(Ib[i], c));
        const T gv = in ? gvr : T(0);
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
      PixelGeo<T> g;
      g.t = tb[i];
      g.qx = qxb[i];
      g.qy = qyb[i];
      g.d2 = d2b[i];
      g.interior = inb[i] != T(0);
      const GradTerms<T> q = pixel_grad_terms(g, Ib[i], eb[i], gIb[i], gtb[i]);
      raqx += q.aqx;
      raqy += q.aqy;
      rbqx += q.bqx;
      rbqy += q.bqy;
      rtqx += q.tqx;
      rtqy += q.tqy;
      rt1 += q.t1;
      rtt += q.tt;
      rw += q.w;
      rs += q.s;
    }
    // (float64 across rows)
    sum.aqx += raqx;
    sum.aqy += raqy;
    sum.bqx += rbqx;
    sum.bqy += rbqy;
    sum.tqx += rtqx;
    sum.tqy += rtqy;
    sum.t1 += rt1;
    sum.tt += rtt;
    sum.w += rw;
    sum.s += rs;
  }
  finish_edge_grad(E, sum, acc);
}

// max: exactly one line (the pixel's argmax, idx) receives each pixel's gradient, so
// rows [y0, y1) of sample b are walked once, each pixel adding its winner's terms to
// acc[e * Q + ...] (Q = 10 + 2 C: the GradTerms sums, then the colour sums of i and j),
// in float64. A pixel's cost is one line evaluation, instead of one per line whose
// capsule covers it.
template <typename T>
void max_grad_block(const Lines<T>& L, const std::vector<EdgeP<T>>& edges, int64_t b,
                    int64_t y0, int64_t y1, const T* S, const int32_t* idx, double* acc) {
  const Args<T>& a = L.a;
  const int64_t C = a.C, H = a.H, W = a.W;
  const int64_t Q = 10 + 2 * C;
  for (int64_t k = 0; k < C; ++k) {
    for (int64_t y = y0; y < y1; ++y) {
      const int64_t o = (k * H + y) * W;
      for (int64_t x = 0; x < W; ++x) {
        const int32_t e = idx[o + x];
        const T gv = S[o + x];
        if (e < 0 || gv == T(0)) continue;
        const EdgeP<T>& E = edges[e];
        const PixelGeo<T> g =
            pixel_geometry(E, static_cast<T>(x) - E.ax, static_cast<T>(y) - E.ay);
        const T ex = g.inside ? pixel_falloff(E, g) : T(0);
        const T I = E.w * ex;
        const T c0 = a.c ? a.color(b, L.ei[e])[k] : T(1);
        const T dc = a.c ? a.color(b, L.ej[e])[k] - c0 : T(0);
        const T gvI = gv * I;
        const GradTerms<T> t = pixel_grad_terms(g, I, ex, gv * line_color(c0, dc, g.t), gvI * dc);
        double* r = acc + e * Q;
        r[0] += t.aqx;
        r[1] += t.aqy;
        r[2] += t.bqx;
        r[3] += t.bqy;
        r[4] += t.tqx;
        r[5] += t.tqy;
        r[6] += t.t1;
        r[7] += t.tt;
        r[8] += t.w;
        r[9] += t.s;
        r[10 + k] += gvI * (T(1) - g.t);
        r[10 + C + k] += gvI * g.t;
      }
    }
  }
}

// The state a forward keeps for the backward (see the header), or none (nullptr).
template <typename T>
struct State {
  T* value;        // sum_clamp: the sums before the clamp; soft_or: (pex, fm) planes
  int32_t* index;  // soft_or / max: the tracked line
};

template <typename T>
struct KeptState {  // ... as the backward reads it
  const T* value;
  const int32_t* index;
};

template <typename T, int MODE>
void forward_impl(const Lines<T>& L, T* out, State<T> keep) {
  const Args<T>& a = L.a;
  const int64_t nb = (a.H + kRowBlock - 1) / kRowBlock;
  const int64_t plane = a.C * a.H * a.W, all = a.B * plane;
  const bool tracked = keep.index != nullptr;  // soft_or / max with a kept state
  torch::stable::parallel_for(0, a.B * nb, grain_for(a.B * nb, a),
                              [&](int64_t begin, int64_t end) {
    std::vector<T> buf(static_cast<size_t>(2 * a.W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nb, blk = task % nb;
      const int64_t y0 = blk * kRowBlock, y1 = std::min(a.H, y0 + kRowBlock);
      T* v = out + b * plane;
      if (tracked) {
        T* pex = MODE == kSoftOr ? keep.value + b * plane : nullptr;
        T* fm = MODE == kSoftOr ? keep.value + all + b * plane : nullptr;
        raster_block<T, MODE, true>(L, b, y0, y1, v, pex, fm, keep.index + b * plane,
                                    buf.data(), buf.data() + a.W);
      } else {
        raster_block<T, MODE, false>(L, b, y0, y1, v, nullptr, nullptr, nullptr, buf.data(),
                                     buf.data() + a.W);
      }
      for (int64_t k = 0; k < a.C; ++k) {
        for (int64_t y = y0; y < y1; ++y) {
          T* row = v + (k * a.H + y) * a.W;
          if (MODE == kSumClamp && keep.value) {
            std::copy(row, row + a.W, keep.value + b * plane + (k * a.H + y) * a.W);
          }
#pragma omp simd
          for (int64_t x = 0; x < a.W; ++x) row[x] = composite_out<MODE>(row[x]);
        }
      }
    }
  });
}

struct Needs {
  bool strength, sigma, colors;
};

template <typename T, int MODE>
void backward_impl(const Tensor& like, const Lines<T>& L, const T* g, KeptState<T> kept,
                   Needs need, T* gp, T* gw, T* gs, T* gc) {
  const Args<T>& a = L.a;
  const int64_t B = a.B, E = a.E, C = a.C, H = a.H, W = a.W, K = a.K;
  const int64_t plane = C * H * W;
  const size_t total = static_cast<size_t>(B * plane);
  // Per pixel and channel: S = the backward coefficient (composite_coef), F = soft_or's
  // smallest factor, idx = soft_or's / max's tracked line; from the kept state when the
  // forward kept one, else from a state pass (the forward's work again).
  // (scratch buffers as tensors: running out of memory is then a clear error)
  const int64_t n = static_cast<int64_t>(total);
  const ScalarType dt = like.scalar_type();
  Tensor St = empty(kBackwardOp, like, {n}, dt, "per-pixel coefficients");
  Tensor Ft = empty(kBackwardOp, like, {MODE == kSoftOr && !kept.value ? n : 0}, dt,
                    "per-pixel factors");
  Tensor It = empty(kBackwardOp, like, {MODE != kSumClamp && !kept.index ? n : 0},
                    ScalarType::Int, "per-pixel lines");
  T* S = St.mutable_data_ptr<T>();
  T* Fbuf = Ft.mutable_data_ptr<T>();
  int32_t* Ibuf = It.mutable_data_ptr<int32_t>();
  const T* F = MODE == kSoftOr ? (kept.value ? kept.value + total : Fbuf) : nullptr;
  const int32_t* idx = MODE != kSumClamp ? (kept.index ? kept.index : Ibuf) : nullptr;
  const bool have = MODE == kSumClamp ? kept.value != nullptr
                                      : (kept.index != nullptr &&
                                         (MODE == kMax || kept.value != nullptr));
  const int64_t nb = (H + kRowBlock - 1) / kRowBlock;
  torch::stable::parallel_for(0, B * nb, grain_for(B * nb, a), [&](int64_t begin,
                                                                   int64_t end) {
    std::vector<T> buf(static_cast<size_t>(2 * W));
    std::vector<T> vbuf(have ? 0 : static_cast<size_t>(plane));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nb, blk = task % nb;
      const int64_t y0 = blk * kRowBlock, y1 = std::min(H, y0 + kRowBlock);
      const int64_t ob = b * plane;
      const T* st = nullptr;   // the running value (sum_clamp's sums)
      const T* pex = nullptr;  // soft_or's product without its smallest factor
      if (have) {
        st = MODE == kSumClamp ? kept.value + ob : nullptr;
        pex = MODE == kSoftOr ? kept.value + ob : nullptr;
      } else {
        T* pbuf = MODE == kSoftOr ? S + ob : nullptr;  // pex in place of S
        raster_block<T, MODE, MODE != kSumClamp>(
            L, b, y0, y1, vbuf.data(), pbuf, MODE == kSoftOr ? Fbuf + ob : nullptr,
            MODE != kSumClamp ? Ibuf + ob : nullptr, buf.data(), buf.data() + W);
        st = vbuf.data();
        pex = pbuf;
      }
      for (int64_t k = 0; k < C; ++k) {
        for (int64_t y = y0; y < y1; ++y) {
          const int64_t o = (k * H + y) * W;
          T* s = S + ob + o;
          const T* gg = g + ob + o;
          const T* sv = st ? st + o : nullptr;
          const T* pv = pex ? pex + o : nullptr;
#pragma omp simd
          for (int64_t x = 0; x < W; ++x) {
            s[x] = composite_coef<MODE>(sv ? sv[x] : T(0), pv ? pv[x] : T(1), gg[x]);
          }
        }
      }
    }
  });
  const int64_t P = kAccFixed + 2 * C;
  Tensor acct = empty(kBackwardOp, like, {B * E * P}, ScalarType::Double, "per-line sums");
  double* acc = acct.mutable_data_ptr<double>();
  if (MODE == kMax) {
    // winners' terms per (sample, row block), then summed over the blocks in order
    const int64_t Q = 10 + 2 * C;
    Tensor partt = empty(kBackwardOp, like, {B * nb * E * Q}, ScalarType::Double,
                         "per-block line sums");
    double* part = partt.mutable_data_ptr<double>();
    std::fill(part, part + B * nb * E * Q, 0.0);
    torch::stable::parallel_for(0, B * nb, grain_for(B * nb, a), [&](int64_t begin,
                                                                     int64_t end) {
      std::vector<EdgeP<T>> edges(static_cast<size_t>(E));
      int64_t cached = -1;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / nb, blk = task % nb;
        if (b != cached) {
          for (int64_t e = 0; e < E; ++e) edges[e] = L.edge(b, e);
          cached = b;
        }
        const int64_t y0 = blk * kRowBlock, y1 = std::min(H, y0 + kRowBlock);
        max_grad_block<T>(L, edges, b, y0, y1, S + b * plane, idx + b * plane,
                          part + task * E * Q);
      }
    });
    torch::stable::parallel_for(0, B * E, grain_for(B * E, a), [&](int64_t begin,
                                                                   int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / E, e = task % E;
        std::vector<double> r(static_cast<size_t>(Q), 0.0);
        for (int64_t blk = 0; blk < nb; ++blk) {
          const double* p = part + ((b * nb + blk) * E + e) * Q;
          for (int64_t q = 0; q < Q; ++q) r[q] += p[q];
        }
        double* out = acc + task * P;
        const GradTerms<double> sum{r[0], r[1], r[2], r[3], r[4],
                                    r[5], r[6], r[7], r[8], r[9]};
        finish_edge_grad(L.edge(b, e), sum, out);
        for (int64_t q = 0; q < 2 * C; ++q) out[kAccFixed + q] = r[10 + q];
        if (nan_line_grad<MODE>(a.strength(b, e), L.capsule(b, e))) {
          std::fill(out, out + P, std::numeric_limits<double>::quiet_NaN());
        }
      }
    });
  } else {
    torch::stable::parallel_for(0, B * E, grain_for(B * E, a), [&](int64_t begin,
                                                                   int64_t end) {
      std::vector<T> buf(static_cast<size_t>(9 * W));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / E, e = task % E;
        edge_grad<T, MODE>(L, b, e, S + b * plane,
                           MODE == kSoftOr ? F + b * plane : nullptr,
                           MODE != kSumClamp ? idx + b * plane : nullptr,
                           need.strength, acc + task * P, buf.data());
      }
    });
  }
  // Per-sample gathers: points always; strength, sigma and colours when batched.
  const bool cb = a.c_b;
  torch::stable::parallel_for(0, B, grain_for(B, a), [&](int64_t begin, int64_t end) {
    std::vector<double> sp(static_cast<size_t>(K * 2)), sc(static_cast<size_t>(K * C));
    for (int64_t b = begin; b < end; ++b) {
      std::fill(sp.begin(), sp.end(), 0.0);
      std::fill(sc.begin(), sc.end(), 0.0);
      for (int64_t e = 0; e < E; ++e) {
        const double* r = acc + (b * E + e) * P;
        const int64_t i = L.ei[e], j = L.ej[e];
        sp[2 * i] += r[0];
        sp[2 * i + 1] += r[1];
        sp[2 * j] += r[2];
        sp[2 * j + 1] += r[3];
        if (need.strength && a.w_b) gw[b * E + e] = static_cast<T>(r[4]);
        if (need.sigma && a.s_b) gs[b * E + e] = static_cast<T>(r[5]);
        if (need.colors) {
          for (int64_t k = 0; k < C; ++k) {
            sc[i * C + k] += r[kAccFixed + k];
            sc[j * C + k] += r[kAccFixed + C + k];
          }
        }
      }
      for (int64_t q = 0; q < K * 2; ++q) gp[b * K * 2 + q] = static_cast<T>(sp[q]);
      if (need.colors && cb)
        for (int64_t q = 0; q < K * C; ++q) gc[b * K * C + q] = static_cast<T>(sc[q]);
    }
  });
  // Shared inputs: their gradient is the sum over the samples, in sample order.
  if ((need.strength && !a.w_b) || (need.sigma && !a.s_b)) {
    for (int64_t e = 0; e < E; ++e) {
      double sw = 0.0, ss = 0.0;
      for (int64_t b = 0; b < B; ++b) {
        sw += acc[(b * E + e) * P + 4];
        ss += acc[(b * E + e) * P + 5];
      }
      if (need.strength && !a.w_b) gw[e] = static_cast<T>(sw);
      if (need.sigma && !a.s_b) gs[e] = static_cast<T>(ss);
    }
  }
  if (need.colors && !cb) {
    std::vector<double> sc(static_cast<size_t>(K * C), 0.0);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t e = 0; e < E; ++e) {
        const double* r = acc + (b * E + e) * P;
        const int64_t i = L.ei[e], j = L.ej[e];
        for (int64_t k = 0; k < C; ++k) {
          sc[i * C + k] += r[kAccFixed + k];
          sc[j * C + k] += r[kAccFixed + C + k];
        }
      }
    }
    for (int64_t q = 0; q < K * C; ++q) gc[q] = static_cast<T>(sc[q]);
  }
}

std::tuple<Tensor, Tensor, Tensor> sketch_render_forward_cpu(TA_SKETCH_FORWARD_PARAMS) {
  Forward f = begin_forward(points, strength, sigma, colors, height, width, composite, cutoff,
                            keep_state);
  if (f.B > 0) {
    dispatch_cpu_floating(kOp, points.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      const Lines<T> L(make_args<T>(points, strength, sigma, colors, height, width, cutoff));
      const State<T> keep{f.state.numel() ? f.state.mutable_data_ptr<T>() : nullptr,
                          f.index.numel() ? f.index.mutable_data_ptr<int32_t>() : nullptr};
      dispatch_composite(f.mode, [&](auto m) {
        forward_impl<T, decltype(m)::value>(L, f.image.mutable_data_ptr<T>(), keep);
      });
    });
  }
  return {f.image, f.state, f.index};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sketch_render_backward_cpu(
    TA_SKETCH_BACKWARD_PARAMS) {
  Backward r = begin_backward(grad, points, strength, sigma, colors, state, state_index, height,
                              width, composite, cutoff, need_strength, need_sigma, need_colors);
  if (r.B > 0) {
    dispatch_cpu_floating(kBackwardOp, points.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      const Lines<T> L(make_args<T>(points, strength, sigma, colors, height, width, cutoff));
      const KeptState<T> st{
          r.kept && state.numel() ? state.const_data_ptr<T>() : nullptr,
          r.kept && state_index.numel() ? state_index.const_data_ptr<int32_t>() : nullptr};
      dispatch_composite(r.mode, [&](auto m) {
        backward_impl<T, decltype(m)::value>(
            points, L, grad.const_data_ptr<T>(), st,
            Needs{r.need_strength, r.need_sigma, r.need_colors}, r.gp.mutable_data_ptr<T>(),
            r.need_strength ? r.gw.mutable_data_ptr<T>() : nullptr,
            r.need_sigma ? r.gs.mutable_data_ptr<T>() : nullptr,
            r.need_colors ? r.gc.mutable_data_ptr<T>() : nullptr);
      });
    });
  }
  return {r.gp, r.gw, r.gs, r.gc};
}

}  // namespace
}  // namespace torch_artic::sketch

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  TA_IMPL_OP(m, CPU, sketch, sketch_render_forward_cpu, sketch_render_backward_cpu);
}
