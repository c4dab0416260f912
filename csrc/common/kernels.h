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

// TA_IMPL(m, "cpu", kCpuFloating, "op_name", &function)
#define TA_IMPL(m, device, dtypes, op, fn) \
  ::torch_artic::impl_kernel((m), (device), (dtypes), (op), TORCH_BOX(fn))

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
