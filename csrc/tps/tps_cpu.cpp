// CPU kernel of tps_inverse (see the header): samples in parallel on torch's thread pool,
// each sample handled by one thread, so results do not depend on the thread count.
// Within a sample the iteration is synchronous (every running point takes its k-th step
// before the fold rule of step k is applied, as in the batched reference), the running
// points are kept in a compact list (finished points cost nothing), and the spline is
// evaluated kLanes points at a time, vectorised across the points. No CUDA kernel: on GPU
// the torch reference of torch_artic/tps.py runs (a fixed number of iterations, no sync).
#include "tps/tps.h"
#include "common/cpu.h"
#include "common/kernels.h"

#include <algorithm>
#include <tuple>
#include <vector>

namespace torch_artic::tps {
namespace {

constexpr int64_t kLanes = 16;

// The sums of kLanes points, one array per component (what the loops vectorise over).
template <typename A>
struct LaneSums {
  alignas(64) A vx[kLanes], vy[kLanes], jxx[kLanes], jxy[kLanes], jyx[kLanes], jyy[kLanes];
  Eval<A> get(int64_t l) const { return Eval<A>{vx[l], vy[l], jxx[l], jxy[l], jyx[l], jyy[l]}; }
  void set(int64_t l, const Eval<A>& e) {
    vx[l] = e.vx;
    vy[l] = e.vy;
    jxx[l] = e.jxx;
    jxy[l] = e.jxy;
    jyx[l] = e.jyx;
    jyy[l] = e.jyy;
  }
};

// g (and, with kJacobian, its Jacobian) at cnt <= kLanes points (qx, qy) -> out[0..cnt).
// The unused lanes repeat point 0.
template <bool kJacobian, typename A>
[[gnu::always_inline]] inline void eval_lanes_impl(const A* c, const A* w, const A* aff,
                                                   int64_t n, const A* qx_in, const A* qy_in,
                                                   int64_t cnt, Eval<A>* out) {
  alignas(64) A qx[kLanes], qy[kLanes];
  LaneSums<A> sums;
  for (int64_t l = 0; l < kLanes; ++l) {
    qx[l] = qx_in[l < cnt ? l : 0];
    qy[l] = qy_in[l < cnt ? l : 0];
  }
#pragma omp simd
  for (int64_t l = 0; l < kLanes; ++l) sums.set(l, affine_part(aff, qx[l], qy[l]));
  // the centres in order, vectorised across the lanes
  for (int64_t i = 0; i < n; ++i) {
    const A cx = c[2 * i], cy = c[2 * i + 1], wx = w[2 * i], wy = w[2 * i + 1];
    if constexpr (kJacobian) {
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) {
        Eval<A> e = sums.get(l);
        add_center(e, qx[l], qy[l], cx, cy, wx, wy);
        sums.set(l, e);
      }
    } else {
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) {
        add_center_value(sums.vx[l], sums.vy[l], qx[l], qy[l], cx, cy, wx, wy);
      }
    }
  }
  for (int64_t l = 0; l < cnt; ++l) out[l] = sums.get(l);
}

// The evaluation, compiled for AVX-512 and AVX2 besides the baseline (common/cpu.h picks
// one at run time). Each lane is one point with its own sums in the same order, and no
// a * b + c is contracted into an FMA (-ffp-contract=off), so every variant gives bitwise
// the same values; only the number of lanes per instruction changes.
#define TA_TPS_EVAL_VARIANT(A, name, target)                                              \
  target void name(bool jacobian, const A* c, const A* w, const A* aff, int64_t n,        \
                   const A* qx, const A* qy, int64_t cnt, Eval<A>* out) {                 \
    if (jacobian) {                                                                       \
      eval_lanes_impl<true>(c, w, aff, n, qx, qy, cnt, out);                              \
    } else {                                                                              \
      eval_lanes_impl<false>(c, w, aff, n, qx, qy, cnt, out);                             \
    }                                                                                     \
  }
TA_TPS_EVAL_VARIANT(float, eval_lanes_baseline, )
TA_TPS_EVAL_VARIANT(double, eval_lanes_baseline, )
#ifdef TA_X86_DISPATCH
TA_TPS_EVAL_VARIANT(float, eval_lanes_avx2, TA_TARGET("avx2"))
TA_TPS_EVAL_VARIANT(double, eval_lanes_avx2, TA_TARGET("avx2"))
TA_TPS_EVAL_VARIANT(float, eval_lanes_avx512, TA_TARGET("avx512f"))
TA_TPS_EVAL_VARIANT(double, eval_lanes_avx512, TA_TARGET("avx512f"))
#endif
#undef TA_TPS_EVAL_VARIANT

template <typename A>
using EvalLanes = void (*)(bool, const A*, const A*, const A*, int64_t, const A*, const A*,
                           int64_t, Eval<A>*);

template <typename A>
EvalLanes<A> pick_eval_lanes() {
#ifdef TA_X86_DISPATCH
  switch (cpu_isa()) {
    case Isa::kAvx512: return &eval_lanes_avx512;
    case Isa::kAvx2: return &eval_lanes_avx2;
    default: break;
  }
#endif
  return &eval_lanes_baseline;
}

// Writes point m's state into the planar rows s (stride M).
template <typename A>
void store_point(A* s, int64_t M, int64_t m, const Point<A>& p) {
  s[kRowQ * M + m] = p.qx;
  s[(kRowQ + 1) * M + m] = p.qy;
  s[kRowR * M + m] = p.rx;
  s[(kRowR + 1) * M + m] = p.ry;
  s[kRowJx * M + m] = p.a;
  s[(kRowJx + 1) * M + m] = p.c;
  s[kRowJy * M + m] = p.b;
  s[(kRowJy + 1) * M + m] = p.d;
  s[kRowNr * M + m] = p.nr;
  s[kRowRad * M + m] = p.rad;
  s[kRowDet * M + m] = p.det;
}

template <typename A>
bool running(const Point<A>& s, A tol) {
  return (s.nr > tol) & (s.rad > A(0));
}

template <typename A>
void inverse_samples(const A* centers, const A* params, const A* start_centers,
                     const A* start_params, const A* targets, int64_t B, int64_t N, int64_t Nf,
                     int64_t M, int64_t max_iter, A* state, bool* folds) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(N * M, 1));
  const EvalLanes<A> eval_lanes = pick_eval_lanes<A>();
  torch::stable::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    std::vector<Point<A>> pts(static_cast<size_t>(M));
    std::vector<int64_t> active(static_cast<size_t>(M));
    std::vector<Step<A>> steps(static_cast<size_t>(M));
    std::vector<Outcome<A>> outcomes(static_cast<size_t>(M));
    alignas(64) A tx[kLanes], ty[kLanes];
    Eval<A> ev[kLanes], ev_f[kLanes];
    for (int64_t b = begin; b < end; ++b) {
      const A* c = centers + b * N * 2;
      const A* w = params + b * (N + 3) * 2;
      const A* aff = w + N * 2;
      const A* cf = start_centers + b * Nf * 2;
      const A* wf = start_params + b * (Nf + 3) * 2;
      const A* px = targets + b * 3 * M;
      const A* py = px + M;
      const A* tol = py + M;
      const A floor = start_radius_floor(c, N);
      bool fold = false;
      // the start q0 = f(p), its radius, and g there
      int64_t K = 0;
      for (int64_t m0 = 0; m0 < M; m0 += kLanes) {
        const int64_t cnt = std::min(kLanes, M - m0);
        eval_lanes(false, cf, wf, wf + Nf * 2, Nf, px + m0, py + m0, cnt, ev_f);
        for (int64_t l = 0; l < cnt; ++l) {
          tx[l] = ev_f[l].vx;
          ty[l] = ev_f[l].vy;
        }
        eval_lanes(true, c, w, aff, N, tx, ty, cnt, ev);
        for (int64_t l = 0; l < cnt; ++l) {
          const int64_t m = m0 + l;
          Point<A>& p = pts[m];
          p = start_point(tx[l], ty[l], ev[l], px[m], py[m], floor);
          fold |= p.det <= A(0);
          if (running(p, tol[m])) active[K++] = m;
        }
      }
      for (int64_t it = 0; it < max_iter && K > 0; ++it) {
        // every running point's step, trial and evaluation
        for (int64_t k0 = 0; k0 < K; k0 += kLanes) {
          const int64_t cnt = std::min(kLanes, K - k0);
          for (int64_t l = 0; l < cnt; ++l) {
            const Point<A>& p = pts[active[k0 + l]];
            steps[k0 + l] = newton_dogleg_step(p);
            tx[l] = p.qx + steps[k0 + l].dx;
            ty[l] = p.qy + steps[k0 + l].dy;
          }
          eval_lanes(true, c, w, aff, N, tx, ty, cnt, ev);
          for (int64_t l = 0; l < cnt; ++l) {
            const int64_t m = active[k0 + l];
            outcomes[k0 + l] = step_outcome(pts[m], steps[k0 + l], ev[l], px[m], py[m]);
            fold |= outcomes[k0 + l].trial.det <= A(0);
          }
        }
        // then the fold rule, the update, and the points still running
        const bool patience_over = it + 1 >= kFoldPatience;
        int64_t next = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t m = active[k];
          const Outcome<A>& o = outcomes[k];
          A rad = o.rad;
          if (patience_over && fold && !(o.accept && !steps[k].outside)) rad = A(0);
          Point<A>& p = pts[m];
          if (o.accept) p = o.trial;
          p.rad = rad;
          if (running(p, tol[m])) active[next++] = m;
        }
        K = next;
      }
      A* s = state + b * kStateRows * M;
      for (int64_t m = 0; m < M; ++m) store_point(s, M, m, pts[m]);
      folds[b] = fold;
    }
  });
}

std::tuple<Tensor, Tensor> tps_inverse_cpu(const Tensor& centers, const Tensor& params,
                                           const Tensor& start_centers,
                                           const Tensor& start_params, const Tensor& targets,
                                           int64_t max_iter) {
  check_args(centers, params, start_centers, start_params, targets, max_iter);
  const int64_t B = centers.size(0), N = centers.size(1), Nf = start_centers.size(1);
  const int64_t M = targets.size(2);
  Tensor state = empty(kOp, centers, {B, kStateRows, M}, "state");
  Tensor folds = empty(kOp, centers, {B, 1}, ScalarType::Bool, "folds");
  if (B == 0) return {state, folds};
  dispatch_cpu_floating(kOp, centers.scalar_type(), [&](auto tag) {
    using A = decltype(tag);
    inverse_samples<A>(centers.const_data_ptr<A>(), params.const_data_ptr<A>(),
                       start_centers.const_data_ptr<A>(), start_params.const_data_ptr<A>(),
                       targets.const_data_ptr<A>(), B, N, Nf, M, max_iter,
                       state.mutable_data_ptr<A>(), folds.mutable_data_ptr<bool>());
  });
  return {state, folds};
}

}  // namespace
}  // namespace torch_artic::tps

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  TA_IMPL_CPU(m, tps, kOp, tps_inverse_cpu);
}
