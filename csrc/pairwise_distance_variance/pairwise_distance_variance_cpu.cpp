// CPU kernels of pairwise_distance_stats (the math is in the header).
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

#include "common/kernels.h"

#include <algorithm>
#include <tuple>
#include <vector>

namespace torch_artic::pdv {
namespace {

// Below this many pair evaluations a kernel runs on the calling thread.
constexpr int64_t kSerialWork = int64_t(1) << 16;

// One sample's points [K, D] -> soa[k * K + j].
template <typename T>
inline void to_soa(const T* pb, int64_t K, int64_t D, T* soa) {
  for (int64_t j = 0; j < K; ++j)
    for (int64_t k = 0; k < D; ++k) soa[k * K + j] = pb[j * D + k];
}

struct Sums {
  double* s1;   // sum w (d - shift)
  double* s2;   // sum w (d - shift)^2
  double* sw;   // sum w        (weighted only)
  double* sw2;  // sum w^2      (weighted only)
};

template <typename T, int DD, bool Weighted>
void forward_chunk(const T* p, const T* c, int64_t b0, int64_t b1, int64_t K, int64_t D,
                   const T* shift, Sums acc, T* soa) {
  for (int64_t b = b0; b < b1; ++b) {
    to_soa(p + b * K * D, K, D, soa);
    const T* cb = Weighted ? c + b * K : nullptr;
    for (int64_t i = 0; i < K; ++i) {
      const double wi = Weighted ? static_cast<double>(cb[i]) : 1.0;
      const T* sh = shift + i * K;
      double* a1 = acc.s1 + i * K;
      double* a2 = acc.s2 + i * K;
      double* aw = Weighted ? acc.sw + i * K : nullptr;
      double* aw2 = Weighted ? acc.sw2 + i * K : nullptr;
      // the diagonal pair (i, i): weight c_i^2, distance 0
      if (Weighted) accumulate_weight(aw[i], aw2[i], wi * wi);
#pragma omp simd
      for (int64_t j = i + 1; j < K; ++j) {
        const T d = distance<DD, T>(soa + i, K, soa + j, K, D);
        const double wij = Weighted ? wi * static_cast<double>(cb[j]) : 1.0;
        accumulate(a1[j], a2[j], static_cast<double>(d), static_cast<double>(sh[j]), wij);
        if (Weighted) accumulate_weight(aw[j], aw2[j], wij);
      }
    }
  }
}

template <typename T, int DD>
void stats_cpu(const Tensor& points, const std::optional<Tensor>& confidence, Tensor& wsum,
               Tensor& w2sum, Tensor& mean, Tensor& m2) {
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  const T* p = points.const_data_ptr<T>();
  const T* c = confidence.has_value() ? confidence->const_data_ptr<T>() : nullptr;
  const int64_t KK = K * K;

  // Per-pair shift: the distance in sample 0 (0 for an empty batch).
  std::vector<T> shift(static_cast<size_t>(KK), T(0));
  if (B > 0) {
    std::vector<T> soa(static_cast<size_t>(K * D));
    to_soa(p, K, D, soa.data());
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = i + 1; j < K; ++j)
        shift[i * K + j] = distance<DD, T>(soa.data() + i, K, soa.data() + j, K, D);
  }

  // A fixed chunking of the batch (a function of B and K only) keeps the float64
  // summation order, hence the result, independent of the thread count.
  const int64_t budget = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(KK, 1));
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({B, 16, budget}));
  const int64_t per = (B + chunks - 1) / chunks;
  const int64_t nacc = c ? 4 : 2;
  Tensor accbuf = empty(kOp, points, {chunks * nacc * KK}, ScalarType::Double, "float64 sums");
  double* accp = accbuf.mutable_data_ptr<double>();
  std::fill(accp, accp + chunks * nacc * KK, 0.0);
  auto acc_of = [&](int64_t ch) {
    double* base = accp + ch * nacc * KK;
    return Sums{base, base + KK, c ? base + 2 * KK : nullptr, c ? base + 3 * KK : nullptr};
  };
  // Small problems run on the calling thread: waking the pool costs more than the work.
  const int64_t grain = B * KK <= kSerialWork ? chunks : 1;
  if (B > 0) {
    torch::stable::parallel_for(0, chunks, grain, [&](int64_t begin, int64_t end) {
      std::vector<T> soa(static_cast<size_t>(K * D));
      for (int64_t ch = begin; ch < end; ++ch) {
        const int64_t b0 = ch * per, b1 = std::min(B, b0 + per);
        if (c) {
          forward_chunk<T, DD, true>(p, c, b0, b1, K, D, shift.data(), acc_of(ch), soa.data());
        } else {
          forward_chunk<T, DD, false>(p, c, b0, b1, K, D, shift.data(), acc_of(ch), soa.data());
        }
      }
    });
  }

  T* o_ws = wsum.mutable_data_ptr<T>();
  T* o_w2 = w2sum.mutable_data_ptr<T>();
  T* o_mu = mean.mutable_data_ptr<T>();
  T* o_m2 = m2.mutable_data_ptr<T>();
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) {
      const int64_t ij = i * K + j;
      double s1 = 0, s2 = 0, sw = 0, sw2 = 0;
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const Sums a = acc_of(ch);
        s1 += a.s1[ij];
        s2 += a.s2[ij];
        if (c) {
          sw += a.sw[ij];
          sw2 += a.sw2[ij];
        }
      }
      if (!c) sw = sw2 = static_cast<double>(B);
      const PairStats<double> st =
          finish(s1, s2, sw, sw2, static_cast<double>(shift[ij]), i == j);
      const T vals[4] = {static_cast<T>(st.wsum), static_cast<T>(st.w2sum),
                         static_cast<T>(st.mean), static_cast<T>(st.m2)};
      T* outs[4] = {o_ws, o_w2, o_mu, o_m2};
      for (int o = 0; o < 4; ++o) {
        outs[o][ij] = vals[o];
        outs[o][j * K + i] = vals[o];
      }
    }
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pairwise_distance_stats_cpu(
    const Tensor& points, const std::optional<Tensor>& confidence) {
  check_args(kOp, points, confidence);
  auto [wsum, w2sum, mean, m2] = stats_outputs(points);
  dispatch_cpu_floating(kOp, points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    dispatch_dim(points.size(2), [&](auto dd) {
      stats_cpu<T, decltype(dd)::value>(points, confidence, wsum, w2sum, mean, m2);
    });
  });
  return {wsum, w2sum, mean, m2};
}

// Coefficient matrices of the backward, row i.
template <typename T>
struct CoefRow {
  const T *mu, *A, *Bm, *C, *Dv;
};

// One gradient row (b, i): a straight loop over j (vectorised for D = 2, 3; for any
// other D the inner loop over the coordinates writes the row directly).
template <typename T, int DD, bool Weighted>
inline void backward_row(const T* soa, int64_t i, T ci, const T* cb, int64_t K, int64_t D,
                         CoefRow<T> r, T* g, T* gc) {
  if (DD == 2 || DD == 3) {
    const T* s0 = soa;
    const T* s1 = soa + K;
    const T* s2 = DD == 3 ? soa + 2 * K : soa;
    const T x0 = s0[i], x1 = s1[i], x2 = DD == 3 ? s2[i] : T(0);
    T a0 = 0, a1 = 0, a2 = 0, aw = 0;
#pragma omp simd reduction(+ : a0, a1, a2, aw)
    for (int64_t j = 0; j < K; ++j) {
      const T d = distance<DD, T>(soa + i, K, soa + j, K, D);
      const T cj = Weighted ? cb[j] : T(1);
      const T wij = ci * cj;
      const T dm = d - r.mu[j];
      const T gd = grad_distance_over_d(wij, d, dm, r.A[j], r.Bm[j]);
      a0 += gd * (x0 - s0[j]);
      a1 += gd * (x1 - s1[j]);
      if (DD == 3) a2 += gd * (x2 - s2[j]);
      if (Weighted) aw += grad_pair_weight(wij, dm, r.A[j], r.Bm[j], r.C[j], r.Dv[j]) * cj;
    }
    g[0] = a0;
    g[1] = a1;
    if (DD == 3) g[2] = a2;
    if (Weighted) *gc = aw;
  } else {
    for (int64_t k = 0; k < D; ++k) g[k] = T(0);
    T aw = 0;
    for (int64_t j = 0; j < K; ++j) {
      const T d = distance<0, T>(soa + i, K, soa + j, K, D);
      const T cj = Weighted ? cb[j] : T(1);
      const T wij = ci * cj;
      const T dm = d - r.mu[j];
      const T gd = grad_distance_over_d(wij, d, dm, r.A[j], r.Bm[j]);
      for (int64_t k = 0; k < D; ++k) g[k] += gd * (soa[k * K + i] - soa[k * K + j]);
      if (Weighted) aw += grad_pair_weight(wij, dm, r.A[j], r.Bm[j], r.C[j], r.Dv[j]) * cj;
    }
    if (Weighted) *gc = aw;
  }
}

template <typename T, int DD, bool Weighted>
void backward_cpu(const Tensor& points, const std::optional<Tensor>& confidence,
                  const Tensor& mean, const Tensor& cm2, const Tensor& cmean,
                  const Tensor& cwsum, const Tensor& cw2sum, Tensor& gp, Tensor& gc) {
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  const T* p = points.const_data_ptr<T>();
  const T* c = Weighted ? confidence->const_data_ptr<T>() : nullptr;
  const T* mu = mean.const_data_ptr<T>();
  const T* A = cm2.const_data_ptr<T>();
  const T* Bm = cmean.const_data_ptr<T>();
  const T* C = cwsum.const_data_ptr<T>();
  const T* Dv = cw2sum.const_data_ptr<T>();
  T* g = gp.mutable_data_ptr<T>();
  T* gcp = Weighted ? gc.mutable_data_ptr<T>() : nullptr;
  // At least kSerialWork pair evaluations per task (so small problems stay serial).
  const int64_t grain = std::max<int64_t>(1, kSerialWork / std::max<int64_t>(K * K, 1));
  torch::stable::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> soa(static_cast<size_t>(K * D));
    for (int64_t b = begin; b < end; ++b) {
      to_soa(p + b * K * D, K, D, soa.data());
      const T* cb = Weighted ? c + b * K : nullptr;
      for (int64_t i = 0; i < K; ++i) {
        const int64_t o = i * K;
        backward_row<T, DD, Weighted>(soa.data(), i, Weighted ? cb[i] : T(1), cb, K, D,
                                      CoefRow<T>{mu + o, A + o, Bm + o, C + o, Dv + o},
                                      g + (b * K + i) * D, Weighted ? gcp + b * K + i : nullptr);
      }
    }
  });
}

std::tuple<Tensor, Tensor> pairwise_distance_stats_backward_cpu(
    const Tensor& points, const std::optional<Tensor>& confidence, const Tensor& mean,
    const Tensor& coef_m2, const Tensor& coef_mean, const Tensor& coef_wsum,
    const Tensor& coef_w2sum) {
  check_backward_args(points, confidence, mean, coef_m2, coef_mean, coef_wsum, coef_w2sum);
  auto [gp, gc] = gradient_outputs(points, confidence);
  dispatch_cpu_floating(kBackwardOp, points.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    dispatch_dim(points.size(2), [&](auto dd) {
      constexpr int DD = decltype(dd)::value;
      if (confidence.has_value()) {
        backward_cpu<T, DD, true>(points, confidence, mean, coef_m2, coef_mean, coef_wsum,
                                  coef_w2sum, gp, gc);
      } else {
        backward_cpu<T, DD, false>(points, confidence, mean, coef_m2, coef_mean, coef_wsum,
                                   coef_w2sum, gp, gc);
      }
    });
  });
  return {gp, gc};
}

}  // namespace
}  // namespace torch_artic::pdv

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  TA_IMPL_OP(m, CPU, pdv, pairwise_distance_stats_cpu, pairwise_distance_stats_backward_cpu);
}
