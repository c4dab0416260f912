// sketch_render: soft, anti-aliased straight lines between connected keypoints.
// The math shared by the CPU and CUDA kernels (every per-pixel and per-edge formula is
// here, as TA_HD functions), the argument struct both fill the same way, and the op's
// argument checks.
//
// Inputs (Python prepares them; all in pixel units, one dtype):
//   points   [B, K, 2]  (x, y) keypoints in pixels
//   strength [Bw, E]    per-line weight w_e, Bw in {1, B}; line e = (i, j), i < j, in
//                       row-major upper-triangle order (torch.triu_indices(K, K, 1))
//   sigma    [Bs, E]    per-line width sigma_e in pixels, Bs in {1, B}
//   colors   [Bc, K, C] optional per-keypoint colours, Bc in {1, B}
//   composite           "sum_clamp", "soft_or" or "max" (anything else is an error)
// For pixel centre p = (x, y) (x = column, y = row) and line e with a = p_i, b = p_j:
//   t_raw = ((p - a) . (b - a)) / |b - a|^2   (0 when |b - a|^2 == 0)
//   t     = clamp(t_raw, 0, 1),   q = (p - a) - t (b - a),   d2 = |q|^2
//   I_e   = w_e exp(-d2 / sigma_e^2)  if not (d2 >= (R sigma_e)^2), else 0   (R = cutoff)
//   c_e,k = c_i,k + t (c_j,k - c_i,k)     (1 without colours)
//   v_e,k = I_e c_e,k
// and per channel k the composite over the lines:
//   sum_clamp: out = min(1, sum_e v)      (subgradient: 1 where sum <= 1, else 0)
//   soft_or:   out = 1 - prod_e (1 - v)
//   max:       out = max(0, max_e v)      (gradient to the first maximal line; the
//                                          background 0 wins ties; NaN counts as +inf)
// Lines with w_e == 0 contribute exactly nothing and are skipped (in the backward
// too, unless the weight gradient is requested: then they are visited for it).
//
// Backward (first order), per pixel and channel gv_e = d out / d v_e times the
// incoming gradient g:
//   sum_clamp: gv = g [S <= 1]
//   soft_or:   gv = g prod_{f != e} (1 - v_f), computed without division by a zero
//              factor: the smallest-magnitude factor is kept apart (P_excl, fmin)
//   max:       gv = g [e == argmax]
// then, with gI = sum_k gv_k c_k and gt = sum_k gv_k I (c_j,k - c_i,k):
//   dw = gI exp(-d2/s^2) [inside],  ds = gI I 2 d2 / s^3,
//   da = gI I (2/s^2) (1 - t) q + gt dt/da,  db = gI I (2/s^2) t q + gt dt/db,
// (d d2 / d a = -2 (1 - t) q holds for the clamped t as well: at an interior t the
// derivative of d2 w.r.t. t vanishes), dt/da = -(q + (1 - t)(b - a)) / |b - a|^2,
// dt/db = (q - t (b - a)) / |b - a|^2 where 0 < t_raw < 1 (else 0), and
//   dc_i,k = gv_k I (1 - t),  dc_j,k = gv_k I t.
// Gradients of shared ([1, ...]) strength, sigma and colours are summed over the batch
// in sample order.
//
// Kept state. With keep_state the forward also returns what the backward needs, so the
// backward does not redraw the image (without it, the backward recomputes it):
//   sum_clamp: state = the sums before the clamp [B, C, H, W];      state_index [0]
//   soft_or:   state = [2, B, C, H, W] (pex, fm: the product split at its smallest
//              factor, see composite_add);   state_index = fm's line [B, C, H, W] int32
//   max:       state [0];   state_index = the argmax line [B, C, H, W] int32 (-1: none)
// state is in the compute type (float32, or float64 for float64 points).
#pragma once

#include "common/math.h"
#include "common/stable.h"

#include <cstdint>
#include <string>
#include <type_traits>

namespace torch_artic {
namespace sketch {

constexpr const char* kOp = "sketch_render_forward";
constexpr const char* kBackwardOp = "sketch_render_backward";

// ---------------------------------------------------------------- composite
enum Composite : int { kSumClamp = 0, kSoftOr = 1, kMax = 2 };

inline Composite parse_composite(const char* op, const std::string& name) {
  if (name == "sum_clamp") return kSumClamp;
  if (name == "soft_or") return kSoftOr;
  if (name == "max") return kMax;
  detail::fail(op, "`composite` must be 'sum_clamp', 'soft_or' or 'max', got '", name, "'");
}

// Calls f(std::integral_constant<int, MODE>{}) for the composite.
template <typename F>
void dispatch_composite(Composite mode, F&& f) {
  switch (mode) {
    case kSumClamp: f(std::integral_constant<int, kSumClamp>{}); break;
    case kSoftOr: f(std::integral_constant<int, kSoftOr>{}); break;
    case kMax: f(std::integral_constant<int, kMax>{}); break;
  }
}

// ---------------------------------------------------------------- one line
// Per-line constants of the intensity, in the compute type A.
template <typename A>
struct EdgeP {
  A ax, ay, abx, aby;
  A l2;   // |b - a|^2
  A l2s;  // l2 if l2 > 0 else 1 (a safe divisor)
  A pm;   // 1 if l2 > 0 else 0
  A w, s, s2, cut2;
};

template <typename A>
TA_HD EdgeP<A> make_edge(A ax, A ay, A bx, A by, A w, A s, A R) {
  EdgeP<A> e;
  e.ax = ax;
  e.ay = ay;
  e.abx = bx - ax;
  e.aby = by - ay;
  e.l2 = e.abx * e.abx + e.aby * e.aby;
  const bool pos = e.l2 > A(0);
  e.l2s = pos ? e.l2 : A(1);
  e.pm = pos ? A(1) : A(0);
  e.w = w;
  e.s = s;
  e.s2 = s * s;
  const A rs = R * s;
  e.cut2 = rs * rs;
  return e;
}

// exp for the intensities. float on the host: Cephes-style range reduction and degree-6
// polynomial (relative error ~1e-7), written so that it vectorises (no calls, no
// branches; round-to-nearest by the 1.5 * 2^23 trick). Arguments are clamped below at
// -87 (results are only used inside the cutoff, where x > -R^2); NaN stays NaN.
// float on the device: expf. double: the library exp (matches torch.exp to rounding).
TA_HD float sr_exp(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  x = x < -87.0f ? -87.0f : (x > 0.0f ? 0.0f : x);
  const float kMagic = 12582912.0f;  // 1.5 * 2^23
  const float tn = x * 1.44269504088896341f + kMagic;
  const float n = tn - kMagic;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n for the integer n in [-126, 0], built in the exponent bits
  const int32_t ni = __builtin_bit_cast(int32_t, tn) - __builtin_bit_cast(int32_t, kMagic);
  return p * __builtin_bit_cast(float, (ni + 127) << 23);
#endif
}
TA_HD double sr_exp(double x) { return exp(x); }

// ---------------------------------------------------------------- one pixel
// The geometry of pixel u relative to a line (apx, apy = u - a).
template <typename A>
struct PixelGeo {
  A t;            // clamped projection parameter
  A qx, qy, d2;   // offset from the nearest point of the segment, its squared length
  bool interior;  // 0 < t_raw < 1 (t has its own gradient)
  bool inside;    // d2 < (R sigma)^2: the pixel is drawn
};

template <typename A>
TA_HD PixelGeo<A> pixel_geometry(const EdgeP<A>& e, A apx, A apy) {
  PixelGeo<A> g;
  const A dot = apx * e.abx + apy * e.aby;
  // (0 when l2 == 0; a multiply rather than a select, which keeps the loops vectorised)
  const A traw = (dot / e.l2s) * e.pm;
  g.interior = (traw > A(0)) & (traw < A(1));
  g.t = traw < A(0) ? A(0) : (traw > A(1) ? A(1) : traw);
  g.qx = apx - g.t * e.abx;
  g.qy = apy - g.t * e.aby;
  g.d2 = g.qx * g.qx + g.qy * g.qy;
  g.inside = !(g.d2 >= e.cut2);
  return g;
}

// exp(-d2 / sigma^2) (the caller masks it with `inside`).
template <typename A>
TA_HD A pixel_falloff(const EdgeP<A>& e, const PixelGeo<A>& g) {
  return sr_exp(-g.d2 / e.s2);
}

// The line's colour at t: c_i + t (c_j - c_i), from c0 = c_i and dc = c_j - c_i.
template <typename A>
TA_HD A line_color(A c0, A dc, A t) {
  return c0 + t * dc;
}

// A line's value at a pixel: I c where the line draws (I != 0: inside its cutoff, of
// non-zero strength; exp(-d2 / sigma^2) >= e^{-R^2} > 0 there), exactly 0 elsewhere, even
// for a NaN colour.
template <typename A>
TA_HD A line_value(A I, A c) {
  return I != A(0) ? I * c : A(0);
}

// An end colour of a line of strength w: a line of strength 0 is never drawn, so for its
// strength gradient a non-finite colour counts as 0.
template <typename A>
TA_HD A end_color(A c, A w) {
  return (w == A(0)) & !is_finite(static_cast<double>(c)) ? A(0) : c;
}

// max composite key: NaN compares as +inf, so a NaN intensity wins (NaN in, NaN out).
template <typename A>
TA_HD A max_key(A v) {
  return v != v ? A(INFINITY) : v;
}

// The composite of one pixel and channel. `st` is the running value: the sum
// (sum_clamp), the product of (1 - v) (soft_or) or the maximum (max). With TRACK (what
// the backward needs) soft_or also keeps the product split as `pex` * `fm`, with `fm`
// the smallest-magnitude factor so far and `id` its line, so that d/dv never divides
// by a zero factor; max keeps its argmax line in `id`. `st` itself is the same with and
// without TRACK, so the image does not depend on whether the state is kept.
template <int MODE, typename A>
TA_HD A composite_init() {
  return MODE == kSoftOr ? A(1) : A(0);
}

template <int MODE, bool TRACK, typename A>
TA_HD void composite_add(A& st, A& pex, A& fm, int32_t& id, A v, int32_t e) {
  if (MODE == kSumClamp) {
    st += v;
  } else if (MODE == kSoftOr) {
    const A fe = A(1) - v;
    st *= fe;
    if (TRACK) {
      const bool sw = hd_abs(fe) < hd_abs(fm);
      pex *= sw ? fm : fe;
      fm = sw ? fe : fm;
      id = sw ? e : id;
    }
  } else {
    // The first (lowest-index) maximal line wins whatever order the lines come in; the
    // background (id -1, value 0) keeps its ties.
    const A kv = max_key(v), ks = max_key(st);
    const bool up = (kv > ks) | (TRACK & (kv == ks) & (id >= 0) & (e < id));
    st = up ? v : st;
    if (TRACK) id = up ? e : id;
  }
}

// Under max, an upper bound of a line's value in one channel: v = w exp(..) c(t) with
// c(t) between c_i and c_j, so v <= max(0, w c_i, w c_j) (c = 1 without colours). NaN
// when either product is NaN, so that a NaN line is never skipped.
template <typename A>
TA_HD A max_bound(A w, A ci, A cj) {
  const A a = w * ci, b = w * cj;
  if ((a != a) | (b != b)) return a + b;
  const A m = a > b ? a : b;
  return m > A(0) ? m : A(0);
}

// The output value from the final state.
template <int MODE, typename A>
TA_HD A composite_out(A st) {
  if (MODE == kSumClamp) return st > A(1) ? A(1) : st;
  if (MODE == kSoftOr) return A(1) - st;
  return st;
}

// The per-pixel coefficient of the backward from the final tracked state (st, pex) and
// the incoming gradient g.
template <int MODE, typename A>
TA_HD A composite_coef(A st, A pex, A g) {
  if (MODE == kSumClamp) return st > A(1) ? A(0) : g;
  if (MODE == kSoftOr) return g * pex;
  return g;
}

// gv: d out / d v_e times the incoming gradient, for line e with value v at the pixel.
template <int MODE, typename A>
TA_HD A composite_grad(A coef, A fm, int32_t id, int32_t e, A v) {
  if (MODE == kSumClamp) return coef;
  if (MODE == kMax) return id == e ? coef : A(0);
  const A fe = A(1) - v;
  const bool zero = (fm == A(0)) | (fe == A(0));
  const A ratio = fm / (zero ? A(1) : fe);
  return id == e ? coef : (zero ? A(0) : coef * ratio);
}

// One pixel's contributions to a line's ten gradient sums, from gI = sum_k gv_k c_k and
// gt = sum_k gv_k I dc_k (see the top of the file); I and ex are 0 outside the cutoff.
template <typename A>
struct GradTerms {
  A aqx, aqy, bqx, bqy, tqx, tqy, t1, tt, w, s;
};

template <typename A>
TA_HD GradTerms<A> pixel_grad_terms(const PixelGeo<A>& g, A I, A ex, A gI, A gt) {
  const A gII = gI * I;
  const A ca = gII * (A(1) - g.t), cb = gII * g.t;
  const A gti = g.interior ? gt : A(0);
  return GradTerms<A>{ca * g.qx,          ca * g.qy, cb * g.qx, cb * g.qy,  gti * g.qx,
                      gti * g.qy,         gti * (A(1) - g.t),   gti * g.t, gI * ex,
                      gII * g.d2};
}

// A line's summed terms -> its gradient: d a (2), d b (2), d w, d sigma, in S.
template <typename S, typename A>
TA_HD void finish_edge_grad(const EdgeP<A>& e, const GradTerms<S>& r, S* out) {
  const S s = static_cast<S>(e.s), s2 = static_cast<S>(e.s2);
  const S k2 = s2 > S(0) ? S(2) / s2 : S(0);
  const S k3 = s2 > S(0) ? S(2) / (s2 * s) : S(0);
  const S l2 = static_cast<S>(e.l2s);
  const S abx = static_cast<S>(e.abx), aby = static_cast<S>(e.aby);
  out[0] = k2 * r.aqx - (r.tqx + r.t1 * abx) / l2;
  out[1] = k2 * r.aqy - (r.tqy + r.t1 * aby) / l2;
  out[2] = k2 * r.bqx + (r.tqx - r.tt * abx) / l2;
  out[3] = k2 * r.bqy + (r.tqy - r.tt * aby) / l2;
  out[4] = r.w;
  out[5] = k3 * r.s;
}

// Per (sample, line) gradient record: d a (2), d b (2), d w, d sigma, then the colour
// gradients of i (C) and of j (C).
constexpr int64_t kAccFixed = 6;

TA_HD int64_t record_size(int64_t C) { return kAccFixed + 2 * C; }

// ---------------------------------------------------------------- lines of the upper triangle
// First line index of row i (lines (i, j), j > i).
TA_HD int64_t row_start(int64_t i, int64_t K) { return i * (2 * K - i - 1) / 2; }

// Line e -> (i, j), row-major over i < j.
TA_HD void edge_ij(int64_t e, int64_t K, int64_t* i, int64_t* j) {
  const double m = 2.0 * static_cast<double>(K) - 1.0;
  const double disc = m * m - 8.0 * static_cast<double>(e);
  int64_t r = static_cast<int64_t>(floor((m - sqrt(disc > 0.0 ? disc : 0.0)) * 0.5));
  r = r < 0 ? 0 : (r > K - 2 ? K - 2 : r);
  while (r > 0 && row_start(r, K) > e) --r;
  while (r < K - 2 && row_start(r + 1, K) <= e) ++r;
  *i = r;
  *j = e - row_start(r, K) + r + 1;
}

// ---------------------------------------------------------------- culling geometry
// The capsule {p : dist(p, [a, b]) <= r}, in double, with r grown a little beyond
// R |sigma| so that rounding can never cull a pixel the exact per-pixel test keeps.
struct Capsule {
  double ax, ay, bx, by, r, ux, uy, L;
  double iux, iuy;  // 1 / ux, 1 / uy (0 when that component is 0)
  bool finite;
};

TA_HD Capsule make_capsule(double ax, double ay, double bx, double by, double sigma, double R) {
  Capsule c;
  c.ax = ax;
  c.ay = ay;
  c.bx = bx;
  c.by = by;
  const double rr = R * fabs(sigma);
  c.finite = is_finite(ax) && is_finite(ay) && is_finite(bx) && is_finite(by) && is_finite(rr);
  const double mag = fmax(fmax(fabs(ax), fabs(ay)), fmax(fabs(bx), fabs(by)));
  c.r = rr * (1.0 + 1e-3) + 0.05 + 1e-6 * mag;
  const double dx = bx - ax, dy = by - ay;
  c.L = sqrt(dx * dx + dy * dy);
  c.ux = c.L > 0.0 ? dx / c.L : 0.0;
  c.uy = c.L > 0.0 ? dy / c.L : 0.0;
  c.iux = c.ux != 0.0 ? 1.0 / c.ux : 0.0;
  c.iuy = c.uy != 0.0 ? 1.0 / c.uy : 0.0;
  return c;
}

// Rows [*y0, *y1) of [lo, hi) that the capsule may touch (all of them if not finite).
TA_HD void capsule_rows(const Capsule& c, int64_t lo, int64_t hi, int64_t* y0, int64_t* y1) {
  if (!c.finite) {
    *y0 = lo;
    *y1 = hi;
    return;
  }
  const double a = ceil(fmin(c.ay, c.by) - c.r);
  const double b = floor(fmax(c.ay, c.by) + c.r) + 1.0;
  *y0 = a <= double(lo) ? lo : (a >= double(hi) ? hi : static_cast<int64_t>(a));
  *y1 = b <= double(lo) ? lo : (b >= double(hi) ? hi : static_cast<int64_t>(b));
  if (*y1 < *y0) *y1 = *y0;
}

// Columns [*x0, *x1) of row y (within [0, W)) that the capsule may touch: the row's
// cut through the capsule is the union of its cuts through the two end disks and the
// rectangle between them (an interval, the capsule being convex). The rectangle is
// 0 <= X ux + dy uy <= L, |-X uy + dy ux| <= r with X = x - ax, dy = y - ay.
TA_HD void capsule_span(const Capsule& c, double y, int64_t W, int64_t* x0, int64_t* x1) {
  if (!c.finite) {
    *x0 = 0;
    *x1 = W;
    return;
  }
  double lo = INFINITY, hi = -INFINITY;
  const double r2 = c.r * c.r;
  const double dya = y - c.ay, dyb = y - c.by;
  if (dya * dya <= r2) {
    const double h = sqrt(r2 - dya * dya);
    lo = c.ax - h;
    hi = c.ax + h;
  }
  if (dyb * dyb <= r2) {
    const double h = sqrt(r2 - dyb * dyb);
    lo = fmin(lo, c.bx - h);
    hi = fmax(hi, c.bx + h);
  }
  if (c.L > 0.0) {
    double xl = -INFINITY, xh = INFINITY;
    const double along = dya * c.uy, across = dya * c.ux;
    if (c.ux != 0.0) {
      const double p = -along * c.iux, q = (c.L - along) * c.iux;
      xl = fmax(xl, fmin(p, q));
      xh = fmin(xh, fmax(p, q));
    } else if (along < 0.0 || along > c.L) {
      xl = INFINITY;
    }
    if (c.uy != 0.0) {
      const double p = (across - c.r) * c.iuy, q = (across + c.r) * c.iuy;
      xl = fmax(xl, fmin(p, q));
      xh = fmin(xh, fmax(p, q));
    } else if (across < -c.r || across > c.r) {
      xl = INFINITY;
    }
    if (xl <= xh) {
      lo = fmin(lo, c.ax + xl);
      hi = fmax(hi, c.ax + xh);
    }
  }
  if (!(lo <= hi)) {
    *x0 = *x1 = 0;
    return;
  }
  const double a = ceil(lo), b = floor(hi) + 1.0;
  *x0 = a <= 0.0 ? 0 : (a >= double(W) ? W : static_cast<int64_t>(a));
  *x1 = b <= 0.0 ? 0 : (b >= double(W) ? W : static_cast<int64_t>(b));
  if (*x1 < *x0) *x1 = *x0;
}

// Conservative test: may the capsule touch the axis-aligned box [x0, x1] x [y0, y1]?
TA_HD bool capsule_hits_box(const Capsule& c, double x0, double y0, double x1, double y1) {
  if (!c.finite) return true;
  if (fmin(c.ax, c.bx) - c.r > x1 || fmax(c.ax, c.bx) + c.r < x0) return false;
  if (fmin(c.ay, c.by) - c.r > y1 || fmax(c.ay, c.by) + c.r < y0) return false;
  // distance from the box centre to the segment, minus the box's half-diagonal
  const double cx = 0.5 * (x0 + x1), cy = 0.5 * (y0 + y1);
  const double hx = 0.5 * (x1 - x0), hy = 0.5 * (y1 - y0);
  double t = 0.0;
  if (c.L > 0.0) {
    t = ((cx - c.ax) * c.ux + (cy - c.ay) * c.uy) / c.L;
    t = fmin(1.0, fmax(0.0, t));
  }
  const double qx = cx - (c.ax + t * (c.bx - c.ax)), qy = cy - (c.ay + t * (c.by - c.ay));
  const double reach = c.r + sqrt(hx * hx + hy * hy) + 1e-6;
  return qx * qx + qy * qy <= reach * reach;
}

// ---------------------------------------------------------------- the arguments
// The op's inputs as raw pointers and sizes, filled once per call (make_args) and read
// the same way by the CPU and CUDA kernels.
template <typename T>
struct Args {
  using A = acc_t<T>;
  const T* p;
  const T* w;
  const T* s;
  const T* c;  // nullptr without colours
  int64_t B, K, E, C, H, W;
  bool w_b, s_b, c_b;  // batched ([B, ...]) rather than shared ([1, ...])
  double R;

  TA_HD A strength(int64_t b, int64_t e) const { return load(w, (w_b ? b : 0) * E + e); }
  TA_HD A sigma(int64_t b, int64_t e) const { return load(s, (s_b ? b : 0) * E + e); }
  TA_HD const T* color(int64_t b, int64_t k) const { return c + ((c_b ? b : 0) * K + k) * C; }
  TA_HD EdgeP<A> edge(int64_t b, int64_t e, int64_t i, int64_t j) const {
    const T* pb = p + b * K * 2;
    return make_edge<A>(load(pb, 2 * i), load(pb, 2 * i + 1), load(pb, 2 * j),
                        load(pb, 2 * j + 1), strength(b, e), sigma(b, e), static_cast<A>(R));
  }
  TA_HD Capsule capsule(int64_t b, int64_t e, int64_t i, int64_t j) const {
    const T* pb = p + b * K * 2;
    return make_capsule(static_cast<double>(load(pb, 2 * i)),
                        static_cast<double>(load(pb, 2 * i + 1)),
                        static_cast<double>(load(pb, 2 * j)),
                        static_cast<double>(load(pb, 2 * j + 1)),
                        static_cast<double>(sigma(b, e)), R);
  }
};

template <typename T>
Args<T> make_args(const Tensor& points, const Tensor& strength, const Tensor& sigma,
                  const std::optional<Tensor>& colors, int64_t H, int64_t W, double cutoff) {
  Args<T> a;
  a.p = points.const_data_ptr<T>();
  a.w = strength.const_data_ptr<T>();
  a.s = sigma.const_data_ptr<T>();
  a.c = colors.has_value() ? colors->const_data_ptr<T>() : nullptr;
  a.B = points.size(0);
  a.K = points.size(1);
  a.E = a.K * (a.K - 1) / 2;
  a.C = colors.has_value() ? colors->size(2) : 1;
  a.H = H;
  a.W = W;
  a.w_b = strength.size(0) != 1;
  a.s_b = sigma.size(0) != 1;
  a.c_b = colors.has_value() && colors->size(0) != 1;
  a.R = cutoff;
  return a;
}

// ---------------------------------------------------------------- rules of the backward
// Whether a line's backward is all zeros and can be skipped: a line of strength 0 is never
// drawn, so only its strength can have a gradient (sum over its pixels of g e^{-d2/s2} c),
// and not under max (it never wins) nor when its geometry is not finite (no pixels).
template <int MODE, typename A>
TA_HD bool skip_line_grad(A w, bool need_w, const Capsule& cap) {
  return w == A(0) && (MODE == kMax || !need_w || !cap.finite);
}

// Under max a line whose geometry is not finite (a NaN or infinite end or width) gets a
// NaN gradient whether or not it wins a pixel: as where it is evaluated everywhere.
template <int MODE, typename A>
TA_HD bool nan_line_grad(A w, const Capsule& cap) {
  return MODE == kMax && w != A(0) && !cap.finite;
}

// ---------------------------------------------------------------- argument checks
// Called by every backend's entry points; returns the parsed composite.
inline Composite check_args(const char* op, const Tensor& points, const Tensor& strength,
                            const Tensor& sigma, const std::optional<Tensor>& colors,
                            int64_t height, int64_t width, const std::string& composite,
                            double cutoff) {
  TA_CHECK(points.dim() == 3 && points.size(2) == 2, op,
           "`points` must have shape [B, K, 2], got ", shape_str(points));
  const ScalarType dt = points.scalar_type();
  check_tensor_arg(op, points, "points", points, "points", dt);
  const int64_t B = points.size(0), K = points.size(1);
  const int64_t E = K * (K - 1) / 2;
  const std::pair<const Tensor*, const char*> lines[] = {{&strength, "strength"},
                                                         {&sigma, "sigma"}};
  for (const auto& l : lines) {
    check_tensor_arg(op, *l.first, l.second, points, "points", dt);
    TA_CHECK(l.first->dim() == 2 && (l.first->size(0) == 1 || l.first->size(0) == B) &&
                 l.first->size(1) == E,
             op, "`", l.second, "` must have shape [1 or B, K (K - 1) / 2] = [1 or ", B, ", ",
             E, "], got ", shape_str(*l.first));
  }
  if (colors.has_value()) {
    const Tensor& c = *colors;
    check_tensor_arg(op, c, "colors", points, "points", dt);
    TA_CHECK(c.dim() == 3 && (c.size(0) == 1 || c.size(0) == B) && c.size(1) == K &&
                 c.size(2) >= 1,
             op, "`colors` must have shape [1 or B, K, C] = [1 or ", B, ", ", K,
             ", C] with C >= 1, got ", shape_str(c));
  }
  TA_CHECK(height >= 1 && width >= 1, op, "`height` and `width` must be >= 1, got ", height,
           " and ", width);
  TA_CHECK(cutoff > 0.0 && is_finite(cutoff), op, "`cutoff` must be finite and > 0, got ",
           cutoff);
  return parse_composite(op, composite);
}

// The dtype of the kept state: the compute type acc_t.
inline ScalarType state_dtype(ScalarType points) {
  return points == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

// The shapes of the kept state (none: [0]).
inline std::vector<int64_t> state_shape(Composite mode, bool keep, int64_t B, int64_t C,
                                        int64_t H, int64_t W) {
  if (!keep || mode == kMax) return {0};
  if (mode == kSoftOr) return {2, B, C, H, W};
  return {B, C, H, W};
}

inline std::vector<int64_t> state_index_shape(Composite mode, bool keep, int64_t B, int64_t C,
                                              int64_t H, int64_t W) {
  if (!keep || mode == kSumClamp) return {0};
  return {B, C, H, W};
}

// The backward's state arguments: both empty (recompute), or exactly what a forward
// with keep_state returns. Returns whether a state is given.
inline bool check_state(const Tensor& state, const Tensor& state_index, const Tensor& points,
                        Composite mode, int64_t C, int64_t H, int64_t W) {
  const char* op = kBackwardOp;
  const int64_t B = points.size(0);
  check_tensor_arg(op, state, "state", points, "points", state_dtype(points.scalar_type()));
  check_tensor_arg(op, state_index, "state_index", points, "points", ScalarType::Int);
  const bool kept = state.dim() > 1 || state_index.dim() > 1;  // none: [0]
  const auto want = state_shape(mode, kept, B, C, H, W);
  const auto want_i = state_index_shape(mode, kept, B, C, H, W);
  const auto got = shape_of(state), got_i = shape_of(state_index);
  TA_CHECK(got == want && got_i == want_i, op,
           "`state` and `state_index` must be both empty or the state a forward with "
           "keep_state returned for this composite, got ",
           shape_str(state), " and ", shape_str(state_index));
  return kept;
}

inline void check_grad(const Tensor& grad, const Tensor& points,
                       const std::optional<Tensor>& colors, int64_t height, int64_t width) {
  const int64_t C = colors.has_value() ? colors->size(2) : 1;
  check_tensor_arg(kBackwardOp, grad, "grad", points, "points", points.scalar_type());
  check_sizes(kBackwardOp, grad, "grad", {points.size(0), C, height, width}, "[B, C, H, W]");
}

// ---------------------------------------------------------------- entry points
// The parameters of the two ops, as in sketch_schema.cpp (every backend's entry points
// take exactly these).
#define TA_SKETCH_FORWARD_PARAMS                                                             \
  const Tensor &points, const Tensor &strength, const Tensor &sigma,                        \
      const std::optional<Tensor>&colors, int64_t height, int64_t width, std::string composite, \
      double cutoff, bool keep_state
#define TA_SKETCH_BACKWARD_PARAMS                                                          \
  const Tensor &grad, const Tensor &points, const Tensor &strength, const Tensor &sigma,  \
      const std::optional<Tensor>&colors, const Tensor &state, const Tensor &state_index, \
      int64_t height, int64_t width, std::string composite, double cutoff,                 \
      bool need_strength, bool need_sigma, bool need_colors

// What every backend's entry points do before their kernels: check, allocate.
struct Forward {
  Composite mode;
  int64_t B;
  Tensor image, state, index;
};

inline Forward begin_forward(const Tensor& points, const Tensor& strength, const Tensor& sigma,
                             const std::optional<Tensor>& colors, int64_t height, int64_t width,
                             const std::string& composite, double cutoff, bool keep_state) {
  Forward f;
  f.mode = check_args(kOp, points, strength, sigma, colors, height, width, composite, cutoff);
  f.B = points.size(0);
  const int64_t C = colors.has_value() ? colors->size(2) : 1;
  f.image = empty(kOp, points, {f.B, C, height, width}, "image");
  f.state = empty(kOp, points, state_shape(f.mode, keep_state, f.B, C, height, width),
                  state_dtype(points.scalar_type()), "state");
  f.index = empty(kOp, points, state_index_shape(f.mode, keep_state, f.B, C, height, width),
                  ScalarType::Int, "state_index");
  return f;
}

struct Backward {
  Composite mode;
  bool kept;  // the forward's state is given
  bool need_strength, need_sigma, need_colors;
  int64_t B, K, E, C;
  Tensor gp, gw, gs, gc;  // each gradient has the shape of its input ([0]: not needed)
};

// (with B = 0 the gradients come back already zeroed: nothing left to compute)
inline Backward begin_backward(const Tensor& grad, const Tensor& points, const Tensor& strength,
                               const Tensor& sigma, const std::optional<Tensor>& colors,
                               const Tensor& state, const Tensor& state_index, int64_t height,
                               int64_t width, const std::string& composite, double cutoff,
                               bool need_strength, bool need_sigma, bool need_colors) {
  Backward r;
  r.mode =
      check_args(kBackwardOp, points, strength, sigma, colors, height, width, composite, cutoff);
  check_grad(grad, points, colors, height, width);
  r.B = points.size(0);
  r.K = points.size(1);
  r.E = r.K * (r.K - 1) / 2;
  r.C = colors.has_value() ? colors->size(2) : 1;
  r.kept = check_state(state, state_index, points, r.mode, r.C, height, width);
  r.need_strength = need_strength;
  r.need_sigma = need_sigma;
  r.need_colors = need_colors && colors.has_value();
  const std::vector<int64_t> none{0};
  r.gp = empty(kBackwardOp, points, {r.B, r.K, 2}, "grad_points");
  r.gw = empty(kBackwardOp, points, need_strength ? shape_of(strength) : none, "grad_strength");
  r.gs = empty(kBackwardOp, points, need_sigma ? shape_of(sigma) : none, "grad_sigma");
  r.gc = empty(kBackwardOp, points, r.need_colors ? shape_of(*colors) : none, "grad_colors");
  if (r.B == 0) {
    for (Tensor* t : {&r.gw, &r.gs, &r.gc}) torch::stable::zero_(*t);
  }
  return r;
}

}  // namespace sketch
}  // namespace torch_artic
