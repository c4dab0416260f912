// Host-side helpers shared by the CUDA kernels of torch-artic (stable ABI only): the
// current stream, the launch check and the CUDA dtype dispatch.
#pragma once

#include "common/kernels.h"
#include "common/math.h"

#include <torch/csrc/stable/accelerator.h>

#include <cuda_runtime.h>

namespace torch_artic {

// The current CUDA stream of t's device (kernels launch on it, as torch's own do).
inline cudaStream_t current_stream(const Tensor& t) {
  void* s = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &s));
  return static_cast<cudaStream_t>(s);
}

inline void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  TA_CHECK(err == cudaSuccess, op, "CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// This thread's index in a 1-D launch.
__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// The floating dtypes the CUDA kernels compute in (float16/bfloat16 accumulate in float32).
inline constexpr ScalarType kCudaFloating[] = {ScalarType::Float, ScalarType::Double,
                                               ScalarType::Half, ScalarType::BFloat16};

// Calls f(T{}) for T = float, double, c10::Half or c10::BFloat16.
template <typename F>
void dispatch_cuda_floating(const char* op, ScalarType st, F&& f) {
  switch (st) {
    case ScalarType::Float: f(float{}); break;
    case ScalarType::Double: f(double{}); break;
    case ScalarType::Half: f(c10::Half{}); break;
    case ScalarType::BFloat16: f(c10::BFloat16{}); break;
    default: detail::fail(op, "the CUDA kernel supports floating dtypes only, got ", dtype_name(st));
  }
}

}  // namespace torch_artic
