// Schemas of the pairwise_distance_stats ops (backend-neutral: the CPU and CUDA
// kernels register implementations of these).
#include "common/stable.h"

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def(
      "pairwise_distance_stats(Tensor points, Tensor? confidence) "
      "-> (Tensor wsum, Tensor w2sum, Tensor mean, Tensor m2)");
  m.def(
      "pairwise_distance_stats_backward(Tensor points, Tensor? confidence, Tensor mean, "
      "Tensor coef_m2, Tensor coef_mean, Tensor coef_wsum, Tensor coef_w2sum) "
      "-> (Tensor grad_points, Tensor grad_confidence)");
}
