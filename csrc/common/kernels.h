// Kernel registration with the dtypes each kernel supports, and the CPU dtype dispatch.
//
// Every kernel is registered through TA_IMPL (inside STABLE_TORCH_LIBRARY_IMPL), which
// also records (op, device, dtypes) in one table. torch_artic._C.kernels() returns that
// table to Python, where the dispatch rule and backend_info() read it: which dtypes run
// natively is stated once, next to the kernel, by the same list its dtype dispatch uses.
#pragma once

#include "common/stable.h"

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace torch_artic {

struct KernelInfo {
  std::string op;
  std::string device;  // "cpu" or "cuda"
  std::vector<ScalarType> dtypes;
};

// The table (one instance in the shared library: an inline function's static).
inline std::vector<KernelInfo>& kernel_table() {
  static std::vector<KernelInfo> table;
  return table;
}

template <typename Lib, std::size_t N>
void impl_kernel(Lib& m, const char* device, const ScalarType (&dtypes)[N], const char* op,
                 void (*fn)(StableIValue*, uint64_t, uint64_t)) {
  kernel_table().push_back(KernelInfo{op, device, std::vector<ScalarType>(dtypes, dtypes + N)});
  m.impl(op, fn);
}

// Inside STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m): TA_IMPL_CPU(m, ns, kOp, fn)
// registers torch_artic::ns::fn as the CPU kernel of the op named torch_artic::ns::kOp,
// computing in kCpuFloating (TA_IMPL_CUDA: CUDA, kCudaFloating, from common/cuda.cuh).
#define TA_IMPL(m, device, dtypes, ns, op, fn)                                         \
  ::torch_artic::impl_kernel((m), (device), ::torch_artic::dtypes, ::torch_artic::ns::op, \
                             TORCH_BOX(&::torch_artic::ns::fn))
#define TA_IMPL_CPU(m, ns, op, fn) TA_IMPL(m, "cpu", kCpuFloating, ns, op, fn)
#define TA_IMPL_CUDA(m, ns, op, fn) TA_IMPL(m, "cuda", kCudaFloating, ns, op, fn)
// An op's forward and backward kernels: ns::kOp <- fwd, ns::kBackwardOp <- bwd (DEV: CPU,
// CUDA).
#define TA_IMPL_OP(m, DEV, ns, fwd, bwd) \
  TA_IMPL_##DEV(m, ns, kOp, fwd);        \
  TA_IMPL_##DEV(m, ns, kBackwardOp, bwd)

// ---------------------------------------------------------------- CPU dtype dispatch
// The floating dtypes the CPU kernels compute in (and nothing else).
inline constexpr ScalarType kCpuFloating[] = {ScalarType::Float, ScalarType::Double};

// Calls f(T{}) for T = float or double; any other dtype is an error naming the op.
template <typename F>
void dispatch_cpu_floating(const char* op, ScalarType st, F&& f) {
  switch (st) {
    case ScalarType::Float: f(float{}); break;
    case ScalarType::Double: f(double{}); break;
    default: detail::fail(op, "the CPU kernel supports float32 and float64, got ", dtype_name(st));
  }
}

}  // namespace torch_artic
