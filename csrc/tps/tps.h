// tps_inverse: the exact inverse of a thin-plate spline at many points, g(q) = p.
//
// The spline (centres c_i, weights w_i in R^2, affine part a_0, a_x, a_y in R^2):
//
//   g(q)     = a_0 + x a_x + y a_y + sum_i w_i U(|q - c_i|^2),  U(r^2) = r^2 log(r^2) / 2
//   dg/dx    = a_x + sum_i w_i (log(r_i^2) + 1) (x - c_ix)      (dg/dy likewise)
//
// (r^2 clamped to the smallest normal number, so U(0) = 0 and its gradient 0.)
// The start is q0 = f(p), f a second spline (start_centers, start_params: in tps_warp the
// forward fit src -> dst), with trust radius kRadius max(RMS |c_i|, |q0|).
// Per point: Powell's dogleg trust-region iteration, the one of torch_artic/tps.py
// (_newton_step, _dogleg; its docstring states every rule), written once here per point:
// newton_dogleg_step() gives the step, step_outcome() the acceptance and the next trust
// radius. A point runs while |r| > tol and its radius is > 0; finished points are left as
// they are. `folds` (per sample): det J_g <= 0 was seen at a running point's trial; from
// iteration kFoldPatience - 1 on it makes the sample's points give up unless they take
// an accepted full Newton step.
//
// The packed state [B, 11, M] (rows): q (0:2), r = g(q) - p (2:4), J's columns
// jx = dg/dx (4:6) and jy = dg/dy (6:8), |r| (8), the trust radius (9; 0: given up),
// det J (10): the layout of the torch reference, which returns the same function.
#pragma once

#include "common/math.h"
#include "common/stable.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace torch_artic {
namespace tps {

constexpr const char* kOp = "tps_inverse";
constexpr int64_t kStateRows = 11;
constexpr int kRowQ = 0, kRowR = 2, kRowJx = 4, kRowJy = 6, kRowNr = 8, kRowRad = 9, kRowDet = 10;
constexpr double kAccept = 1e-4;  // a step is taken if |r|^2 drops by this fraction of the model's
constexpr int64_t kFoldPatience = 3;
constexpr double kRadius = 0.25;  // the initial trust radius, times max(RMS |c_i|, |q0|)

// ---------------------------------------------------------------- log
// Natural log of x >= the smallest normal number (the clamped r^2), written so that it
// vectorises on the host (integer bit manipulation, one division, a polynomial; no calls,
// no branches): x = 2^k z with z in [sqrt(1/2), sqrt(2)) (k and z from the bits of x
// minus those of sqrt(1/2)), log x = k log 2 + 2 atanh(s), s = (z - 1) / (z + 1),
// |s| <= 0.172, and 2 atanh(s) = 2 s sum_j s^(2j) / (2j + 1) to the term below the
// precision (float: j < 5, double: j < 10; relative error a few ulp). log 2 in two parts
// whose high part times k is exact. +inf and NaN pass through. On the device: log.
template <typename A>
struct LogConst;
template <>
struct LogConst<float> {
  static constexpr int kTerms = 5;
  static constexpr float kLn2Hi = 0.693359375f;  // 9 bits: k * kLn2Hi is exact
  static constexpr float kLn2Lo = static_cast<float>(0.693147180559945309417232 - 0.693359375);
};
template <>
struct LogConst<double> {
  static constexpr int kTerms = 10;
  static constexpr double kLn2Hi = static_cast<double>(0.693147180559945309417232f);  // 24 bits
  static constexpr double kLn2Lo =
      static_cast<double>(0.693147180559945309417232121458L - static_cast<long double>(kLn2Hi));
};

// x = 2^k z, z in [sqrt(1/2), sqrt(2)), for normal x > 0.
TA_HD void split_exponent(float x, int32_t& k, float& z) {
  const int32_t bits = __builtin_bit_cast(int32_t, x);
  const int32_t ix = bits - 0x3f3504f3;  // the bits of sqrt(1/2)
  k = ix >> 23;                          // arithmetic shift
  const int32_t high = static_cast<int32_t>(static_cast<uint32_t>(ix) & 0xff800000u);
  z = __builtin_bit_cast(float, bits - high);
}
TA_HD void split_exponent(double x, int32_t& k, double& z) {
  const int64_t bits = __builtin_bit_cast(int64_t, x);
  // on the high word only (32-bit shifts vectorise without AVX-512)
  const int32_t ix = static_cast<int32_t>(static_cast<uint64_t>(bits) >> 32) - 0x3fe6a09e;
  k = ix >> 20;
  const uint64_t shift = static_cast<uint64_t>(static_cast<uint32_t>(ix) & 0xfff00000u) << 32;
  z = __builtin_bit_cast(double, static_cast<int64_t>(static_cast<uint64_t>(bits) - shift));
}

// sum_{j=J}^{T-1} s2^(j-J) / (2j + 1), by Horner (unrolled at compile time).
template <typename A, int J, int T>
TA_HD A atanh_series(A s2) {
  if constexpr (J == T - 1) {
    return A(1) / A(2 * J + 1);
  } else {
    return atanh_series<A, J + 1, T>(s2) * s2 + A(1) / A(2 * J + 1);
  }
}

template <typename A>
TA_HD A tps_log(A x) {
#ifdef __CUDA_ARCH__
  return log(x);
#else
  using C = LogConst<A>;
  int32_t k;
  A z;
  split_exponent(x, k, z);
  const A s = (z - A(1)) / (z + A(1));
  const A s2 = s * s;
  const A p = atanh_series<A, 1, C::kTerms>(s2);
  const A fk = static_cast<A>(k);
  const A r = fk * C::kLn2Hi + ((A(2) * s) * s2 * p + (fk * C::kLn2Lo + A(2) * s));
  return x <= std::numeric_limits<A>::max() ? r : x;  // +inf, NaN: themselves
#endif
}

// ---------------------------------------------------------------- the spline
// g's value and Jacobian at one point: accumulated over the centres by add_center().
template <typename A>
struct Eval {
  A vx, vy;      // g(q)
  A jxx, jxy;    // dg/dx (components x, y)
  A jyx, jyy;    // dg/dy
};

// The affine part at q: the start of the accumulation. a = (a_0, a_x, a_y), each (x, y).
template <typename A>
TA_HD Eval<A> affine_part(const A* a, A x, A y) {
  return Eval<A>{a[0] + x * a[2] + y * a[4], a[1] + x * a[3] + y * a[5], a[2], a[3], a[4], a[5]};
}

// One centre's radial term at q = (x, y): the offset q - c, log r^2 (r^2 clamped to the
// smallest normal number; NaN stays NaN) and U = r^2 log(r^2) / 2.
template <typename A>
struct Radial {
  A dx, dy, lg, u;
};

template <typename A>
TA_HD Radial<A> radial(A x, A y, A cx, A cy) {
  Radial<A> k;
  k.dx = x - cx;
  k.dy = y - cy;
  A r2 = k.dx * k.dx + k.dy * k.dy;
  r2 = r2 < std::numeric_limits<A>::min() ? std::numeric_limits<A>::min() : r2;
  k.lg = tps_log(r2);
  k.u = A(0.5) * r2 * k.lg;
  return k;
}

// Adds centre (cx, cy) with weight (wx, wy) at q = (x, y): value and Jacobian.
template <typename A>
TA_HD void add_center(Eval<A>& g, A x, A y, A cx, A cy, A wx, A wy) {
  const Radial<A> k = radial(x, y, cx, cy);
  g.vx += wx * k.u;
  g.vy += wy * k.u;
  const A gx = (k.lg + A(1)) * k.dx, gy = (k.lg + A(1)) * k.dy;
  g.jxx += wx * gx;
  g.jxy += wy * gx;
  g.jyx += wx * gy;
  g.jyy += wy * gy;
}

// The same for the value (vx, vy) only.
template <typename A>
TA_HD void add_center_value(A& vx, A& vy, A x, A y, A cx, A cy, A wx, A wy) {
  const Radial<A> k = radial(x, y, cx, cy);
  vx += wx * k.u;
  vy += wy * k.u;
}

// ---------------------------------------------------------------- one iteration
template <typename A>
TA_HD A hypot2(A x, A y) {
  return hd_sqrt(x * x + y * y);
}
// float: through double (no overflow or underflow of the squares, correctly rounded
// almost always, as torch.hypot).
TA_HD float hypot2(float x, float y) {
  const double dx = x, dy = y;
  return static_cast<float>(sqrt(dx * dx + dy * dy));
}

// One point's state (see the top of the file); J = [[a, b], [c, d]] = [jx jy].
template <typename A>
struct Point {
  A qx, qy, rx, ry, a, c, b, d, nr, rad, det;
};

// The step of a running point: the Newton step -J^{-1} r if it is no longer than the
// radius, else the dogleg point at distance rad (from the Cauchy point towards the
// Newton point, or along -J^T r when the Cauchy point is beyond the radius or J is
// singular); non-finite components are 0. `outside`: the Newton step left the region.
template <typename A>
struct Step {
  A dx, dy, predicted;  // the step and the model's decrease |r|^2 - |r + J d|^2
  bool outside;
};

template <typename A>
TA_HD Step<A> newton_dogleg_step(const Point<A>& s) {
  const A tiny = std::numeric_limits<A>::min();
  const A nx = (s.b * s.ry - s.d * s.rx) / s.det, ny = (s.c * s.rx - s.a * s.ry) / s.det;
  const A n_len = hypot2(nx, ny);
  Step<A> out;
  out.outside = !(n_len <= s.rad);
  A dx = nx, dy = ny;
  if (out.outside) {
    const A gx = s.a * s.rx + s.c * s.ry, gy = s.b * s.rx + s.d * s.ry;  // J^T r
    const A jgx = s.a * gx + s.b * gy, jgy = s.c * gx + s.d * gy;
    const A g2 = gx * gx + gy * gy;
    const A jg2 = jgx * jgx + jgy * jgy;
    const A f = -(g2 / (jg2 < tiny ? tiny : jg2));
    const A cx = gx * f, cy = gy * f;  // the Cauchy point
    const A c_len = hypot2(cx, cy);
    const bool finite_newton = n_len - n_len == A(0);
    if (c_len >= s.rad || !finite_newton) {  // along -G, shortened to the radius
      A k = s.rad / c_len;
      k = k > A(1) ? A(1) : k;  // NaN stays NaN
      dx = cx * k;
      dy = cy * k;
    } else {
      const A ex = nx - cx, ey = ny - cy;
      const A e2 = ex * ex + ey * ey, ce = cx * ex + cy * ey;
      A disc = ce * ce - e2 * (c_len * c_len - s.rad * s.rad);
      disc = hd_sqrt(disc > A(0) ? disc : A(0));
      A tau = (disc - ce) / (e2 < tiny ? tiny : e2);
      tau = tau < A(0) ? A(0) : (tau > A(1) ? A(1) : tau);
      dx = cx + ex * tau;
      dy = cy + ey * tau;
    }
  }
  // nan_to_num(0, 0, 0)
  dx = dx - dx == A(0) ? dx : A(0);
  dy = dy - dy == A(0) ? dy : A(0);
  out.dx = dx;
  out.dy = dy;
  const A lx = s.rx + s.a * dx + s.b * dy, ly = s.ry + s.c * dx + s.d * dy;
  out.predicted = s.nr * s.nr - (lx * lx + ly * ly);
  return out;
}

// The RMS radius of g's centres: the trust radius at the start is kRadius max(it, |q0|),
// so that it scales with the coordinates.
template <typename A>
TA_HD A start_radius_floor(const A* centers, int64_t n) {
  A sum = A(0);
  for (int64_t i = 0; i < n; ++i) {
    sum += centers[2 * i] * centers[2 * i] + centers[2 * i + 1] * centers[2 * i + 1];
  }
  return hd_sqrt(sum / A(n));
}

// The state at q (all but the radius) from g's value and Jacobian there, for target p.
template <typename A>
TA_HD Point<A> point_at(A qx, A qy, const Eval<A>& g, A px, A py) {
  Point<A> p;
  p.qx = qx;
  p.qy = qy;
  p.rx = g.vx - px;
  p.ry = g.vy - py;
  p.a = g.jxx;
  p.c = g.jxy;
  p.b = g.jyx;
  p.d = g.jyy;
  p.nr = hypot2(p.rx, p.ry);
  p.det = p.a * p.d - p.b * p.c;
  return p;
}

// A point's state at the start q0, with its trust radius.
template <typename A>
TA_HD Point<A> start_point(A qx, A qy, const Eval<A>& g, A px, A py, A radius_floor) {
  Point<A> p = point_at(qx, qy, g, px, py);
  const A q_len = hypot2(qx, qy);
  // max(q_len, radius_floor), NaN if either is (as torch.maximum)
  p.rad = A(kRadius) * (q_len > radius_floor || q_len != q_len ? q_len : radius_floor);
  return p;
}

// What the evaluation g_t at the trial q + d makes of the step: the trial's state (its
// radius not yet set), whether it is accepted, and the next radius before the fold rule.
template <typename A>
struct Outcome {
  Point<A> trial;
  bool accept;
  A rad;
};

template <typename A>
TA_HD Outcome<A> step_outcome(const Point<A>& s, const Step<A>& st, const Eval<A>& g, A px,
                              A py) {
  Outcome<A> o;
  o.trial = point_at(s.qx + st.dx, s.qy + st.dy, g, px, py);
  const A actual = s.nr * s.nr - o.trial.nr * o.trial.nr;
  o.accept = actual > A(kAccept) * st.predicted;
  const A s_len = hypot2(st.dx, st.dy);
  const bool poor = (actual < A(0.25) * st.predicted) | (st.predicted <= A(0));
  const bool good = (actual > A(0.75) * st.predicted) & (s_len >= A(0.99) * s.rad);
  o.rad = poor ? A(0.25) * s_len : (good ? A(2) * s.rad : s.rad);
  return o;
}

// ---------------------------------------------------------------- arguments
inline void check_args(const Tensor& centers, const Tensor& params, const Tensor& start_centers,
                       const Tensor& start_params, const Tensor& targets, int64_t max_iter) {
  TA_CHECK(centers.dim() == 3 && centers.size(2) == 2, kOp,
           "`centers` must have shape [B, N, 2], got ", shape_str(centers));
  const ScalarType st = centers.scalar_type();
  check_tensor_arg(kOp, centers, "centers", centers, "centers", st);
  const int64_t B = centers.size(0), N = centers.size(1);
  TA_CHECK(N >= 1, kOp, "`centers` must have at least one centre, got ", shape_str(centers));
  check_tensor_arg(kOp, params, "params", centers, "centers", st);
  check_sizes(kOp, params, "params", {B, N + 3, 2}, "[B, N + 3, 2]");
  check_tensor_arg(kOp, start_centers, "start_centers", centers, "centers", st);
  check_sizes(kOp, start_centers, "start_centers", {B, -1, 2}, "[B, Nf, 2]");
  const int64_t Nf = start_centers.size(1);
  check_tensor_arg(kOp, start_params, "start_params", centers, "centers", st);
  check_sizes(kOp, start_params, "start_params", {B, Nf + 3, 2}, "[B, Nf + 3, 2]");
  check_tensor_arg(kOp, targets, "targets", centers, "centers", st);
  check_sizes(kOp, targets, "targets", {B, 3, -1}, "[B, 3, M]");
  TA_CHECK(max_iter >= 0, kOp, "`max_iter` must be >= 0, got ", max_iter);
}

}  // namespace tps
}  // namespace torch_artic
