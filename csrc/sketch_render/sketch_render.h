// sketch_render: soft, anti-aliased straight lines between connected keypoints.
//
// Inputs (Python prepares them; all in pixel units, one dtype):
//   points  [B, K, 2]  (x, y) keypoints in pixels
//   weights [Bw, E]    per-edge weight w_e, Bw in {1, B}; edge e = (i, j), i < j, in
//                      row-major upper-triangle order (torch.triu_indices(K, K, 1))
//   sigma   [Bs, E]    per-edge width sigma_e in pixels, Bs in {1, B}
//   colors  [Bc, K, C] optional per-keypoint colours, Bc in {1, B}
// For pixel centre p = (x, y) (x = column, y = row) and edge e with a = p_i, b = p_j:
//   t_raw = ((p - a) . (b - a)) / |b - a|^2   (0 when |b - a|^2 == 0)
//   t     = clamp(t_raw, 0, 1),   q = (p - a) - t (b - a),   d2 = |q|^2
//   I_e   = w_e exp(-d2 / sigma_e^2)  if not (d2 >= (R sigma_e)^2), else 0   (R = cutoff)
//   c_e,k = c_i,k + t (c_j,k - c_i,k)     (1 without colours)
//   v_e,k = I_e c_e,k
// and per channel k the composite over the edges:
//   sum_clamp: out = min(1, sum_e v)      (subgradient: 1 where sum <= 1, else 0)
//   soft_or:   out = 1 - prod_e (1 - v)
//   max:       out = max(0, max_e v)      (gradient to the first maximal edge; the
//                                          background 0 wins ties; NaN counts as +inf)
// Edges with w_e == 0 contribute exactly nothing and are skipped (in the backward
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
#pragma once

#include "common/stable.h"

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SR_HD __host__ __device__ __forceinline__
#else
#define SR_HD inline
#endif

namespace torch_artic {
namespace sketch {

enum Composite : int64_t { kSumClamp = 0, kSoftOr = 1, kMax = 2 };

// Per-edge constants of the intensity, in the compute type A.
template <typename A>
struct EdgeP {
  A ax, ay, abx, aby;
  A l2;   // |b - a|^2
  A l2s;  // l2 if l2 > 0 else 1 (a safe divisor)
  A pm;  // 1 if l2 > 0 else 0
  A w, s, s2, cut2;
  bool pos;  // l2 > 0
};

template <typename A>
SR_HD EdgeP<A> make_edge(A ax, A ay, A bx, A by, A w, A s, A R) {
  EdgeP<A> e;
  e.ax = ax;
  e.ay = ay;
  e.abx = bx - ax;
  e.aby = by - ay;
  e.l2 = e.abx * e.abx + e.aby * e.aby;
  e.pos = e.l2 > A(0);
  e.l2s = e.pos ? e.l2 : A(1);
  e.pm = e.pos ? A(1) : A(0);
  e.w = w;
  e.s = s;
  e.s2 = s * s;
  const A rs = R * s;
  e.cut2 = rs * rs;
  return e;
}

// Projection parameter (clamped) and whether it is strictly interior.
template <typename A>
SR_HD A proj_t(const EdgeP<A>& e, A apx, A apy, bool& interior) {
  const A dot = apx * e.abx + apy * e.aby;
  // (0 when l2 == 0; a multiply rather than a select, which keeps the loops vectorised)
  const A traw = (dot / e.l2s) * e.pm;
  interior = (traw > A(0)) & (traw < A(1));
  return traw < A(0) ? A(0) : (traw > A(1) ? A(1) : traw);
}

// exp for the intensities. float: Cephes-style range reduction and degree-6
// polynomial (relative error ~1e-7), written so that it vectorises (no calls, no
// branches; round-to-nearest by the 1.5 * 2^23 trick). Arguments are clamped below at
// -87 (results are only used inside the cutoff, where x > -R^2); NaN stays NaN.
// double: the library exp (float64 results match torch.exp to rounding).
SR_HD float sr_exp(float x) {
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
SR_HD double sr_exp(double x) { return exp(x); }

// max composite key: NaN compares as +inf, so a NaN intensity wins (NaN in, NaN out).
// Finite test without <cmath>'s isfinite (host and device alike): x - x is 0 only for
// finite x.
SR_HD bool finite_d(double x) { return x - x == 0.0; }

template <typename A>
SR_HD A max_key(A v) {
  return v != v ? A(INFINITY) : v;
}

// ---------------------------------------------------------------- culling geometry
// The capsule {p : dist(p, [a, b]) <= r}, in double, with r grown a little beyond
// R |sigma| so that rounding can never cull a pixel the exact per-pixel test keeps.
struct Capsule {
  double ax, ay, bx, by, r, ux, uy, L;
  double iux, iuy;  // 1 / ux, 1 / uy (0 when that component is 0)
  bool finite;
};

SR_HD Capsule make_capsule(double ax, double ay, double bx, double by, double sigma, double R) {
  Capsule c;
  c.ax = ax;
  c.ay = ay;
  c.bx = bx;
  c.by = by;
  const double rr = R * fabs(sigma);
  c.finite = finite_d(ax) && finite_d(ay) && finite_d(bx) && finite_d(by) && finite_d(rr);
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
SR_HD void capsule_rows(const Capsule& c, int64_t lo, int64_t hi, int64_t* y0, int64_t* y1) {
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
SR_HD void capsule_span(const Capsule& c, double y, int64_t W, int64_t* x0, int64_t* x1) {
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
SR_HD bool capsule_hits_box(const Capsule& c, double x0, double y0, double x1, double y1) {
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

// ---------------------------------------------------------------- argument checks
// Safety net for direct torch.ops calls; Python validates with named errors first.
inline void check_args(const Tensor& points, const Tensor& weights, const Tensor& sigma,
                       const std::optional<Tensor>& colors, int64_t height, int64_t width,
                       int64_t composite) {
  check_float_contiguous(points, "points");
  STD_TORCH_CHECK(points.dim() == 3 && points.size(2) == 2, "points must be [B, K, 2]");
  const int64_t B = points.size(0), K = points.size(1);
  const int64_t E = K * (K - 1) / 2;
  STD_TORCH_CHECK(K >= 1, "points must have K >= 1");
  for (const Tensor* t : {&weights, &sigma}) {
    STD_TORCH_CHECK(t->dim() == 2 && (t->size(0) == 1 || t->size(0) == B) && t->size(1) == E,
                    "weights and sigma must be [1 or B, K (K - 1) / 2]");
    STD_TORCH_CHECK(t->scalar_type() == points.scalar_type() && t->is_contiguous(),
                    "weights and sigma must be contiguous, in the dtype of points");
  }
  if (colors.has_value()) {
    const Tensor& c = *colors;
    STD_TORCH_CHECK(c.dim() == 3 && (c.size(0) == 1 || c.size(0) == B) && c.size(1) == K &&
                        c.size(2) >= 1,
                    "colors must be [1 or B, K, C]");
    STD_TORCH_CHECK(c.scalar_type() == points.scalar_type() && c.is_contiguous(),
                    "colors must be contiguous, in the dtype of points");
  }
  STD_TORCH_CHECK(height >= 1 && width >= 1, "height and width must be >= 1");
  STD_TORCH_CHECK(composite >= 0 && composite <= 2, "composite must be 0, 1 or 2");
}

inline void check_grad(const Tensor& grad, const Tensor& points,
                       const std::optional<Tensor>& colors, int64_t height, int64_t width) {
  const int64_t C = colors.has_value() ? colors->size(2) : 1;
  STD_TORCH_CHECK(grad.dim() == 4 && grad.size(0) == points.size(0) && grad.size(1) == C &&
                      grad.size(2) == height && grad.size(3) == width,
                  "grad must be [B, C, H, W]");
  STD_TORCH_CHECK(grad.scalar_type() == points.scalar_type() && grad.is_contiguous(),
                  "grad must be contiguous, in the dtype of points");
}

}  // namespace sketch
}  // namespace torch_artic
