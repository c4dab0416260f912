"""Build of the native extension ``torch_artic._C``.

Every ``csrc/<op>/*.cpp`` is compiled always (CPU kernels, op schemas); every
``csrc/<op>/*.cu`` is added when a CUDA toolkit and a CUDA build of torch are
present, or when ``FORCE_CUDA=1``. ``TORCH_ARTIC_NO_EXT=1`` skips the extension
altogether (pure-torch fallbacks only).

The kernels use LibTorch's stable ABI only (``torch/csrc/stable``), are built with
``py_limited_api`` and target torch 2.10 (``TORCH_TARGET_VERSION``), so one abi3
wheel serves every torch >= 2.10 and every CPython >= 3.10. The architecture is in
``docs/native.md``; adding an op, in ``docs/adding-a-native-op.md``.
"""

import glob
import os

from setuptools import setup

# Stable-ABI floor: the oldest torch the binary may load into (docs/native.md).
TORCH_TARGET_VERSION = "0x020a000000000000"  # torch 2.10


def _extensions():
    if os.environ.get("TORCH_ARTIC_NO_EXT", "0") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import (
        CUDA_HOME,
        BuildExtension,
        CppExtension,
        CUDAExtension,
    )

    here = os.path.dirname(os.path.abspath(__file__))
    cpp = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cu = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    # A CUDA torch and a toolkit alone do not ask for CUDA kernels: under pip's build
    # isolation this torch is PyPI's CUDA build whatever torch the user runs, and with
    # no GPU and no TORCH_CUDA_ARCH_LIST torch has no architecture to compile for.
    cuda_target = bool(os.environ.get("TORCH_CUDA_ARCH_LIST")) or torch.cuda.is_available()
    use_cuda = bool(cu) and (
        force_cuda
        or (torch.version.cuda is not None and CUDA_HOME is not None and cuda_target)
    )
    debug = os.environ.get("TORCH_ARTIC_DEBUG", "0") == "1"
    defines = [
        f"-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}",
    ]
    # No absolute path of this machine in the binary (assert / __FILE__ strings): the
    # sources and torch's headers are named relative to their roots.
    torch_include = os.path.join(os.path.dirname(torch.__file__), "include")
    prefix_maps = [f"-ffile-prefix-map={here}/=", f"-ffile-prefix-map={torch_include}/=torch/"]
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    # Parallelism comes from torch's own thread pool (torch::stable::parallel_for,
    # itself OpenMP in the CPU wheels), so torch.set_num_threads governs it and no
    # second OpenMP runtime is loaded; -fopenmp-simd enables `#pragma omp simd`.
    # No errno from sqrt and no trapping-math assumptions: lets the selects around
    # divisions in the inner loops vectorise. Results stay IEEE (no -ffast-math), and no
    # a * b + c is contracted into an FMA: a kernel compiled for several instruction sets
    # (tps_inverse's evaluation) gives bitwise the same values in each.
    cxx += ["-std=c++20", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
    cxx += ["-ffp-contract=off", *defines]
    cxx += prefix_maps
    kwargs = dict(
        name="torch_artic._C",
        include_dirs=[os.path.join(here, "csrc")],
        py_limited_api=True,
    )
    if use_cuda:
        nvcc = ["-O3", "-std=c++20", "-DUSE_CUDA", "--expt-relaxed-constexpr", *defines]
        nvcc += [f"-Xcompiler={m}" for m in prefix_maps]
        ext = CUDAExtension(
            sources=cpp + cu,
            extra_compile_args={"cxx": [*cxx, "-DUSE_CUDA"], "nvcc": nvcc},
            **kwargs,
        )
    else:
        ext = CppExtension(sources=cpp, extra_compile_args={"cxx": cxx}, **kwargs)
    cmd = {"build_ext": BuildExtension}
    return [ext], cmd


ext_modules, cmdclass = _extensions()

setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)
