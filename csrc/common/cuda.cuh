// Host-side helpers shared by the CUDA kernels of torch-artic (stable ABI only).
#pragma once

#include "common/stable.h"

#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cuda_runtime.h>

namespace torch_artic {

// The current CUDA stream of t's device (kernels launch on it, as torch's own do).
inline cudaStream_t current_stream(const Tensor& t) {
  void* s = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &s));
  return static_cast<cudaStream_t>(s);
}

inline void check_launch() {
  const cudaError_t err = cudaGetLastError();
  STD_TORCH_CHECK(err == cudaSuccess, "torch_artic CUDA kernel launch failed: ",
                  cudaGetErrorString(err));
}

// Calls f(T{}) for the floating dtype st (float, double, c10::Half, c10::BFloat16).
template <typename F>
void dispatch_floating(ScalarType st, F&& f) {
  switch (st) {
    case ScalarType::Float: f(float{}); break;
    case ScalarType::Double: f(double{}); break;
    case ScalarType::Half: f(c10::Half{}); break;
    case ScalarType::BFloat16: f(c10::BFloat16{}); break;
    default: STD_TORCH_CHECK(false, "torch_artic: unsupported dtype");
  }
}

}  // namespace torch_artic
