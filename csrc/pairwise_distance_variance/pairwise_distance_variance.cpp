// Schemas and CPU kernels of pairwise_distance_stats (see the header for the math).
//
// Forward: the batch is cut into a fixed number of chunks that depends on B and K
// only (never on the thread count); each chunk accumulates its own [K, K] float64
// sums, and the chunks are added in order. Backward: parallel over samples, each
// gradient row written by one thread. Results are therefore bit-identical run to run
// and for any torch.get_num_threads(). Extra memory: O(chunks * K^2) + O(threads * K D).
//
// Inner loops run over j on a structure-of-arrays copy of one sample's keypoints, so
// they vectorise (`#pragma omp simd`, enabled by -fopenmp-simd).
#include "pairwise_distance_variance/pairwise_distance_variance.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace torch_artic {
namespace {

constexpr int64_t kMaxD = 8;
// Below this many pair evaluations a kernel runs on the calling thread.
constexpr int64_t kSerialWork = int64_t(1) << 16;

// One sample's points [K, D] -> soa[k * K + j].
template <typename T>
inline void to_soa(const T* pb, int64_t K, int64_t D, T* soa) {
  for (int64_t j = 0; j < K; ++j)
    for (int64_t k = 0; k < D; ++k) soa[k * K + j] = pb[j * D + k];
}

template <typename T, int DD>
inline T soa_dist(const T* xi, const T* soa, int64_t K, int64_t j, int64_t D, T* diff) {
  T s = 0;
  const int64_t nd = DD > 0 ? DD : D;
  for (int64_t k = 0; k < nd; ++k) {
    const T t = xi[k] - soa[k * K + j];
    if (diff) diff[k] = t;
    s += t * t;
  }
  return std::sqrt(s);
}

struct Accum {
  double* s1;   // sum w (d - c)
  double* s2;   // sum w (d - c)^2
  double* sw;   // sum w
  double* sw2;  // sum w^2
};

template <typename T, int DD, bool Weighted>
void forward_chunk(const T* p, const T* w, int64_t b0, int64_t b1, int64_t K, int64_t D,
                   const T* shift, Accum acc, T* soa) {
  const int64_t nd = DD > 0 ? DD : D;
  for (int64_t b = b0; b < b1; ++b) {
    to_soa(p + b * K * D, K, D, soa);
    const T* wb = Weighted ? w + b * K : nullptr;
    for (int64_t i = 0; i < K; ++i) {
      T xi[kMaxD];
      for (int64_t k = 0; k < nd; ++k) xi[k] = soa[k * K + i];
      const double wi = Weighted ? static_cast<double>(wb[i]) : 1.0;
      const T* c = shift + i * K;
      double* a1 = acc.s1 + i * K;
      double* a2 = acc.s2 + i * K;
      if (Weighted) {
        double* aw = acc.sw + i * K;
        double* aw2 = acc.sw2 + i * K;
        aw[i] += wi * wi;  // the diagonal pair (i, i): weight w_i^2, distance 0
        aw2[i] += wi * wi * wi * wi;
#pragma omp simd
        for (int64_t j = i + 1; j < K; ++j) {
          const T d = soa_dist<T, DD>(xi, soa, K, j, nd, nullptr);
          const double e = static_cast<double>(d) - static_cast<double>(c[j]);
          const double wij = wi * static_cast<double>(wb[j]);
          a1[j] += wij * e;
          a2[j] += wij * e * e;
          aw[j] += wij;
          aw2[j] += wij * wij;
        }
      } else {
#pragma omp simd
        for (int64_t j = i + 1; j < K; ++j) {
          const T d = soa_dist<T, DD>(xi, soa, K, j, nd, nullptr);
          const double e = static_cast<double>(d) - static_cast<double>(c[j]);
          a1[j] += e;
          a2[j] += e * e;
        }
      }
    }
  }
}

template <typename T, int DD>
void stats_cpu_impl(const Tensor& points, const std::optional<Tensor>& weights, Tensor& wsum,
                    Tensor& w2sum, Tensor& mean, Tensor& m2) {
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  const T* p = points.const_data_ptr<T>();
  const T* w = weights.has_value() ? weights->const_data_ptr<T>() : nullptr;
  const int64_t KK = K * K;

  // Per-pair shift: the distance in sample 0.
  std::vector<T> shift(static_cast<size_t>(KK), T(0));
  {
    std::vector<T> soa(static_cast<size_t>(K * D));
    to_soa(p, K, D, soa.data());
    for (int64_t i = 0; i < K; ++i) {
      T xi[kMaxD];
      for (int64_t k = 0; k < D; ++k) xi[k] = soa[k * K + i];
      for (int64_t j = i + 1; j < K; ++j)
        shift[i * K + j] = soa_dist<T, DD>(xi, soa.data(), K, j, D, nullptr);
    }
  }

  // A fixed chunking of the batch (a function of B and K only) keeps the float64
  // summation order, hence the result, independent of the thread count.
  const int64_t budget = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(KK, 1));
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({B, 16, budget}));
  const int64_t per = (B + chunks - 1) / chunks;
  const int64_t nacc = w ? 4 : 2;
  std::vector<double> accbuf(static_cast<size_t>(chunks * nacc * KK), 0.0);
  auto acc_of = [&](int64_t c) {
    double* base = accbuf.data() + c * nacc * KK;
    return Accum{base, base + KK, w ? base + 2 * KK : nullptr, w ? base + 3 * KK : nullptr};
  };
  // Small problems run on the calling thread: waking the pool costs more than the work.
  const int64_t grain = B * KK <= kSerialWork ? chunks : 1;
  torch::stable::parallel_for(0, chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> soa(static_cast<size_t>(K * D));
    for (int64_t c = begin; c < end; ++c) {
      const int64_t b0 = c * per, b1 = std::min(B, b0 + per);
      if (w) {
        forward_chunk<T, DD, true>(p, w, b0, b1, K, D, shift.data(), acc_of(c), soa.data());
      } else {
        forward_chunk<T, DD, false>(p, w, b0, b1, K, D, shift.data(), acc_of(c), soa.data());
      }
    }
  });

  T* o_ws = wsum.mutable_data_ptr<T>();
  T* o_w2 = w2sum.mutable_data_ptr<T>();
  T* o_mu = mean.mutable_data_ptr<T>();
  T* o_m2 = m2.mutable_data_ptr<T>();
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) {
      const int64_t ij = i * K + j;
      double s1 = 0, s2 = 0, sw = 0, sw2 = 0;
      for (int64_t c = 0; c < chunks; ++c) {
        const Accum a = acc_of(c);
        s1 += a.s1[ij];
        s2 += a.s2[ij];
        if (w) {
          sw += a.sw[ij];
          sw2 += a.sw2[ij];
        }
      }
      if (!w) sw = sw2 = static_cast<double>(B);
      double mu = 0.0, mm = 0.0;
      if (j != i && sw > 0.0) {
        mu = static_cast<double>(shift[ij]) + s1 / sw;
        mm = s2 - s1 * s1 / sw;
        if (mm < 0.0) mm = 0.0;  // rounding; (not std::max: NaN must stay NaN)
      }
      const T vals[4] = {static_cast<T>(sw), static_cast<T>(sw2), static_cast<T>(mu),
                         static_cast<T>(mm)};
      T* outs[4] = {o_ws, o_w2, o_mu, o_m2};
      for (int o = 0; o < 4; ++o) {
        outs[o][ij] = vals[o];
        outs[o][j * K + i] = vals[o];
      }
    }
  }
}

template <typename T>
void stats_cpu(const Tensor& points, const std::optional<Tensor>& weights, Tensor& wsum,
               Tensor& w2sum, Tensor& mean, Tensor& m2) {
  switch (points.size(2)) {
    case 2: return stats_cpu_impl<T, 2>(points, weights, wsum, w2sum, mean, m2);
    case 3: return stats_cpu_impl<T, 3>(points, weights, wsum, w2sum, mean, m2);
    default: return stats_cpu_impl<T, 0>(points, weights, wsum, w2sum, mean, m2);
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pairwise_distance_stats_cpu(
    const Tensor& points, const std::optional<Tensor>& weights) {
  check_pds_args(points, weights);
  STD_TORCH_CHECK(points.size(0) >= 1 && points.size(2) >= 1 && points.size(2) <= kMaxD,
                  "pairwise_distance_stats on the CPU needs B >= 1 and 1 <= D <= 8");
  const int64_t K = points.size(1);
  Tensor wsum = torch::stable::new_empty(points, {K, K});
  Tensor w2sum = torch::stable::new_empty(points, {K, K});
  Tensor mean = torch::stable::new_empty(points, {K, K});
  Tensor m2 = torch::stable::new_empty(points, {K, K});
  if (points.scalar_type() == ScalarType::Double) {
    stats_cpu<double>(points, weights, wsum, w2sum, mean, m2);
  } else {
    STD_TORCH_CHECK(points.scalar_type() == ScalarType::Float,
                    "pairwise_distance_stats on the CPU supports float32 and float64");
    stats_cpu<float>(points, weights, wsum, w2sum, mean, m2);
  }
  return {wsum, w2sum, mean, m2};
}

// One gradient row (b, i) for D = 2 or 3: a straight, vectorisable loop over j.
template <typename T, int DD, bool Weighted>
inline void backward_row_23(const T* xi, T wi, const T* soa, const T* wb, int64_t K,
                            const T* mur, const T* Ar, const T* Br, const T* Cr, const T* Dr,
                            T* g, T* gw) {
  const T x0 = xi[0], x1 = xi[1], x2 = DD == 3 ? xi[2] : T(0);
  const T* s0 = soa;
  const T* s1 = soa + K;
  const T* s2 = DD == 3 ? soa + 2 * K : soa;
  T a0 = 0, a1 = 0, a2 = 0, aw = 0;
#pragma omp simd reduction(+ : a0, a1, a2, aw)
  for (int64_t j = 0; j < K; ++j) {
    const T t0 = x0 - s0[j];
    const T t1 = x1 - s1[j];
    const T t2 = DD == 3 ? x2 - s2[j] : T(0);
    const T d = std::sqrt(t0 * t0 + t1 * t1 + t2 * t2);
    const T wj = Weighted ? wb[j] : T(1);
    const T wij = wi * wj;
    const T dm = d - mur[j];
    // 1/d where d > 0, else 0 (the pair then contributes nothing): selects around an
    // unconditional division keep the loop branch-free, hence vectorised.
    const bool pos = d > T(0);
    const T inv = (pos ? T(1) : T(0)) / (pos ? d : T(1));
    const T gd = wij * (T(2) * Ar[j] * dm + Br[j]) * inv;
    a0 += gd * t0;
    a1 += gd * t1;
    a2 += gd * t2;
    if (Weighted) aw += (Ar[j] * dm * dm + Br[j] * dm + Cr[j] + T(2) * Dr[j] * wij) * wj;
  }
  g[0] = a0;
  g[1] = a1;
  if (DD == 3) g[2] = a2;
  if (Weighted) *gw = aw;
}

// One gradient row (b, i) for any D <= kMaxD.
template <typename T, bool Weighted>
inline void backward_row_any(const T* xi, T wi, const T* soa, const T* wb, int64_t K, int64_t D,
                             const T* mur, const T* Ar, const T* Br, const T* Cr, const T* Dr,
                             T* g, T* gw) {
  T acc[kMaxD];
  for (int64_t k = 0; k < D; ++k) acc[k] = T(0);
  T aw = 0;
  for (int64_t j = 0; j < K; ++j) {
    T diff[kMaxD];
    const T d = soa_dist<T, 0>(xi, soa, K, j, D, diff);
    const T wj = Weighted ? wb[j] : T(1);
    const T wij = wi * wj;
    const T dm = d - mur[j];
    const T inv = d > T(0) ? T(1) / d : T(0);
    const T gd = wij * (T(2) * Ar[j] * dm + Br[j]) * inv;
    for (int64_t k = 0; k < D; ++k) acc[k] += gd * diff[k];
    if (Weighted) aw += (Ar[j] * dm * dm + Br[j] * dm + Cr[j] + T(2) * Dr[j] * wij) * wj;
  }
  for (int64_t k = 0; k < D; ++k) g[k] = acc[k];
  if (Weighted) *gw = aw;
}

template <typename T, int DD, bool Weighted>
void backward_cpu_impl(const Tensor& points, const std::optional<Tensor>& weights,
                       const Tensor& mean, const Tensor& cm2, const Tensor& cmean,
                       const Tensor& cwsum, const Tensor& cw2sum, Tensor& gp, Tensor* gw) {
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  const T* p = points.const_data_ptr<T>();
  const T* w = Weighted ? weights->const_data_ptr<T>() : nullptr;
  const T* mu = mean.const_data_ptr<T>();
  const T* A = cm2.const_data_ptr<T>();
  const T* Bm = cmean.const_data_ptr<T>();
  const T* C = cwsum.const_data_ptr<T>();
  const T* Dv = cw2sum.const_data_ptr<T>();
  T* g = gp.mutable_data_ptr<T>();
  T* gwp = Weighted ? gw->mutable_data_ptr<T>() : nullptr;
  // At least kSerialWork pair evaluations per task (so small problems stay serial).
  const int64_t grain = std::max<int64_t>(1, kSerialWork / std::max<int64_t>(K * K, 1));
  torch::stable::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> soa(static_cast<size_t>(K * D));
    for (int64_t b = begin; b < end; ++b) {
      to_soa(p + b * K * D, K, D, soa.data());
      const T* wb = Weighted ? w + b * K : nullptr;
      for (int64_t i = 0; i < K; ++i) {
        T xi[kMaxD];
        for (int64_t k = 0; k < D; ++k) xi[k] = soa[k * K + i];
        const T wi = Weighted ? wb[i] : T(1);
        const int64_t r = i * K;
        T* gr = g + (b * K + i) * D;
        T* gwr = Weighted ? gwp + b * K + i : nullptr;
        if (DD == 2 || DD == 3) {
          backward_row_23<T, DD, Weighted>(xi, wi, soa.data(), wb, K, mu + r, A + r, Bm + r,
                                           C + r, Dv + r, gr, gwr);
        } else {
          backward_row_any<T, Weighted>(xi, wi, soa.data(), wb, K, D, mu + r, A + r, Bm + r,
                                        C + r, Dv + r, gr, gwr);
        }
      }
    }
  });
}

template <typename T>
void backward_cpu(const Tensor& points, const std::optional<Tensor>& weights, const Tensor& mean,
                  const Tensor& cm2, const Tensor& cmean, const Tensor& cwsum,
                  const Tensor& cw2sum, Tensor& gp, Tensor* gw) {
  const bool weighted = weights.has_value();
  const int64_t D = points.size(2);
#define PDS_BWD(DD, WW) \
  backward_cpu_impl<T, DD, WW>(points, weights, mean, cm2, cmean, cwsum, cw2sum, gp, gw)
  if (D == 2) {
    weighted ? PDS_BWD(2, true) : PDS_BWD(2, false);
  } else if (D == 3) {
    weighted ? PDS_BWD(3, true) : PDS_BWD(3, false);
  } else {
    weighted ? PDS_BWD(0, true) : PDS_BWD(0, false);
  }
#undef PDS_BWD
}

std::tuple<Tensor, Tensor> pairwise_distance_stats_backward_cpu(
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
  STD_TORCH_CHECK(points.size(2) >= 1 && points.size(2) <= kMaxD,
                  "pairwise_distance_stats on the CPU needs 1 <= D <= 8");
  Tensor gp = torch::stable::new_empty(points, shape_of(points));
  Tensor gw = weights.has_value() ? torch::stable::new_empty(points, shape_of(*weights))
                                  : torch::stable::new_empty(points, {0});
  Tensor* gwp = weights.has_value() ? &gw : nullptr;
  if (points.scalar_type() == ScalarType::Double) {
    backward_cpu<double>(points, weights, mean, coef_m2, coef_mean, coef_wsum, coef_w2sum, gp,
                         gwp);
  } else {
    STD_TORCH_CHECK(points.scalar_type() == ScalarType::Float,
                    "pairwise_distance_stats on the CPU supports float32 and float64");
    backward_cpu<float>(points, weights, mean, coef_m2, coef_mean, coef_wsum, coef_w2sum, gp,
                        gwp);
  }
  return {gp, gw};
}

}  // namespace
}  // namespace torch_artic

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def(
      "pairwise_distance_stats(Tensor points, Tensor? weights) "
      "-> (Tensor wsum, Tensor w2sum, Tensor mean, Tensor m2)");
  m.def(
      "pairwise_distance_stats_backward(Tensor points, Tensor? weights, Tensor mean, "
      "Tensor coef_m2, Tensor coef_mean, Tensor coef_wsum, Tensor coef_w2sum) "
      "-> (Tensor grad_points, Tensor grad_weights)");
}

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  m.impl("pairwise_distance_stats", TORCH_BOX(&torch_artic::pairwise_distance_stats_cpu));
  m.impl("pairwise_distance_stats_backward",
         TORCH_BOX(&torch_artic::pairwise_distance_stats_backward_cpu));
}
