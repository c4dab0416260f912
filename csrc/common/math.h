// Building blocks of the per-element math that the CPU and the CUDA kernels share.
//
// Every op keeps its math in csrc/<module>/<module>.h as TA_HD functions (host and
// device), called by both its CPU (.cpp) and CUDA (.cu) kernels: the CPU tests run the
// very lines the GPU runs. This header only provides the macro and the compute types.
#pragma once

#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define TA_HD __host__ __device__ __forceinline__
#else
#define TA_HD inline
#endif

namespace torch_artic {

// The type a kernel computes and accumulates in for storage type T: float for
// float16/bfloat16/float32, double for float64.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

// Element i of p, converted to the compute type.
template <typename T>
TA_HD acc_t<T> load(const T* p, int64_t i) {
  return static_cast<acc_t<T>>(p[i]);
}

// sqrt, |x| and exp in the precision of their argument, on host and device alike
// (an unqualified sqrt(float) on the host would resolve to the double ::sqrt).
TA_HD float hd_sqrt(float x) { return sqrtf(x); }
TA_HD double hd_sqrt(double x) { return sqrt(x); }
TA_HD float hd_abs(float x) { return fabsf(x); }
TA_HD double hd_abs(double x) { return fabs(x); }

// Finite test without <cmath>'s isfinite (host and device alike): x - x is 0 only for
// finite x.
TA_HD bool is_finite(double x) { return x - x == 0.0; }

}  // namespace torch_artic
