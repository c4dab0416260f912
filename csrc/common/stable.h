// Shared, header-only helpers for torch-artic kernels on LibTorch's stable ABI:
// includes, the error macro and the argument checks every op's entry points call.
//
// Only stable headers are included here (torch/csrc/stable, torch/headeronly), so a
// kernel file compiles in seconds and the binary loads into every torch >= the
// TORCH_TARGET_VERSION set by setup.py (2.10).
#pragma once

#include "common/memory.h"

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Layout.h>
#include <torch/headeronly/core/ScalarType.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace torch_artic {

using torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;

// ---------------------------------------------------------------- errors
// TA_CHECK(cond, op, message parts...) throws "torch_artic::<op>: <message>" (a
// RuntimeError in Python). Unlike STD_TORCH_CHECK it never embeds the source path of
// the machine that built the binary.
namespace detail {
template <typename... Args>
[[noreturn]] void fail(const char* op, const Args&... args) {
  std::ostringstream oss;
  oss << "torch_artic::" << op << ": ";
  ((oss << args), ...);
  throw std::runtime_error(oss.str());
}
}  // namespace detail

#define TA_CHECK(cond, op, ...)                                   \
  do {                                                            \
    if (!(cond)) ::torch_artic::detail::fail((op), __VA_ARGS__); \
  } while (0)

// ---------------------------------------------------------------- descriptions
inline std::string shape_str(const Tensor& t) {
  std::ostringstream oss;
  oss << "[";
  for (int64_t d = 0; d < t.dim(); ++d) oss << (d ? ", " : "") << t.size(d);
  oss << "]";
  return oss.str();
}

// The Python name of a dtype ("float32"), as torch prints it.
inline const char* dtype_name(ScalarType st) {
  switch (st) {
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Long: return "int64";
    case ScalarType::Int: return "int32";
    case ScalarType::Bool: return "bool";
    default: return "another dtype";
  }
}

inline std::string device_str(const Tensor& t) {
  const auto d = t.device();
  std::ostringstream oss;
  switch (d.type()) {
    case torch::headeronly::DeviceType::CPU: oss << "cpu"; break;
    case torch::headeronly::DeviceType::CUDA: oss << "cuda:" << static_cast<int>(d.index()); break;
    case torch::headeronly::DeviceType::Meta: oss << "meta"; break;
    default: oss << "device type " << static_cast<int>(d.type()); break;
  }
  return oss.str();
}

// ---------------------------------------------------------------- argument checks
// The Python wrappers validate first (with ValueError/TypeError naming the argument);
// these checks make a direct torch.ops.torch_artic call safe as well: every tensor an
// entry point reads must pass one of them, on every backend.

// `t` is a dense, contiguous tensor on the device of `ref` and of dtype `dtype`.
inline void check_tensor_arg(const char* op, const Tensor& t, const char* name, const Tensor& ref,
                             const char* ref_name, ScalarType dtype) {
  TA_CHECK(t.layout() == torch::headeronly::Layout::Strided, op, "`", name,
           "` must be a dense (strided) tensor");
  TA_CHECK(t.device() == ref.device(), op, "`", name, "` must be on the device of `", ref_name,
           "` (", device_str(ref), "), got ", device_str(t));
  TA_CHECK(t.scalar_type() == dtype, op, "`", name, "` must have dtype ", dtype_name(dtype),
           ", got ", dtype_name(t.scalar_type()));
  TA_CHECK(t.is_contiguous(), op, "`", name, "` must be contiguous");
}

// The sizes of `t` must equal `expected` (-1: any size); `what` names the dims.
inline void check_sizes(const char* op, const Tensor& t, const char* name,
                        std::initializer_list<int64_t> expected, const char* what) {
  bool ok = t.dim() == static_cast<int64_t>(expected.size());
  int64_t d = 0;
  for (int64_t e : expected) {
    if (ok && e >= 0 && t.size(d) != e) ok = false;
    ++d;
  }
  if (!ok) {
    std::ostringstream want;
    want << "[";
    d = 0;
    for (int64_t e : expected) {
      want << (d++ ? ", " : "");
      if (e >= 0) {
        want << e;
      } else {
        want << "*";
      }
    }
    want << "]";
    detail::fail(op, "`", name, "` must have shape ", what, " = ", want.str(), ", got ",
                 shape_str(t));
  }
}

inline std::vector<int64_t> shape_of(const Tensor& t) {
  auto s = t.sizes();
  return std::vector<int64_t>(s.begin(), s.end());
}

inline int64_t element_size(ScalarType st) {
  switch (st) {
    case ScalarType::Double:
    case ScalarType::Long: return 8;
    case ScalarType::Half:
    case ScalarType::BFloat16: return 2;
    case ScalarType::Bool: return 1;
    default: return 4;
  }
}

// A new uninitialised tensor on `like`'s device: every output and every large scratch
// buffer of a kernel comes from here, so that running out of memory is an error that
// says what could not be allocated and how large it was (through the stable ABI torch's
// own allocator message is lost), and large CPU ones are advised huge pages (memory.h).
inline Tensor empty(const char* op, const Tensor& like, const std::vector<int64_t>& shape,
                    ScalarType dtype, const char* what) {
  try {
    Tensor out = torch::stable::new_empty(like, shape, dtype);
    if (out.is_cpu()) {
      advise_huge_pages(out.mutable_data_ptr(),
                        static_cast<size_t>(out.numel()) * static_cast<size_t>(element_size(dtype)));
    }
    return out;
  } catch (const std::exception&) {
    double bytes = static_cast<double>(element_size(dtype));
    std::ostringstream dims;
    dims << "[";
    for (size_t d = 0; d < shape.size(); ++d) {
      bytes *= static_cast<double>(shape[d]);
      dims << (d ? ", " : "") << shape[d];
    }
    dims << "]";
    detail::fail(op, "could not allocate ", what, " ", dims.str(), " ", dtype_name(dtype), " (",
                 bytes, " bytes) on ", device_str(like), ": out of memory?");
  }
}

inline Tensor empty(const char* op, const Tensor& like, const std::vector<int64_t>& shape,
                    const char* what) {
  return empty(op, like, shape, like.scalar_type(), what);
}

}  // namespace torch_artic
