#!/usr/bin/env bash
# Compile-check every CUDA source in csrc/ without a GPU and without installing a
# CUDA build of torch.
#
# It fetches the wheel of a CUDA build of torch (TORCH_CUDA_HEADERS, default 2.14.1)
# into a cache folder, unzips only torch/include/*, and runs `nvcc -std=c++20 -c` on
# every csrc/**/*.cu against those headers, with the same stable-ABI target version
# as setup.py (TORCH_TARGET_VERSION = torch 2.10) so only APIs of the floor are used.
# When a torch is importable it also compiles against that torch's headers.
#
# The nvidia-* header wheels (cusparse, cublas, ...) are not fetched: the kernels
# include only LibTorch's stable headers and <cuda_runtime.h>, which nvcc's own
# toolkit provides. Set CHECK_CUDA_NVIDIA_WHEELS=1 to fetch and add them anyway.
#
# Exit status: 0 when every file compiles or when nvcc is absent (it says SKIP).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if ! command -v nvcc >/dev/null 2>&1; then
  echo "check_cuda: SKIP (nvcc not found); CUDA sources were NOT compile-checked"
  exit 0
fi
python=${PYTHON:-python}
version=${TORCH_CUDA_HEADERS:-2.14.1}
cache=${CHECK_CUDA_CACHE:-$here/.cache/cuda-headers}
inc="$cache/torch-$version"
mkdir -p "$cache/wheels"
if [ ! -d "$inc/torch/include" ]; then
  echo "check_cuda: fetching headers of torch $version (CUDA build) into $cache"
  "$python" -m pip download --quiet --no-deps "torch==$version" -d "$cache/wheels"
  whl=$(ls "$cache"/wheels/torch-"$version"-*.whl | head -n 1)
  rm -rf "$inc.tmp" && mkdir -p "$inc.tmp"
  "$python" - "$whl" "$inc.tmp" <<'PY'
import sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith("torch/include/")]
    z.extractall(dest, names)
print(f"check_cuda: extracted {len(names)} header files")
PY
  mv "$inc.tmp" "$inc"
fi
extra=()
if [ "${CHECK_CUDA_NVIDIA_WHEELS:-0}" = "1" ]; then
  for pkg in nvidia-cusparse nvidia-cublas nvidia-cusolver nvidia-cufft nvidia-curand; do
    "$python" -m pip download --quiet --no-deps "$pkg" -d "$cache/wheels" || true
  done
  for whl in "$cache"/wheels/nvidia_*.whl; do
    [ -e "$whl" ] || continue
    "$python" - "$whl" "$cache/nvidia" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if "/include/" in n])
PY
  done
  while IFS= read -r d; do extra+=(-I "$d"); done < <(find "$cache/nvidia" -type d -name include)
fi
roots=("$inc/torch/include")
if local_inc=$("$python" -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'include'))" 2>/dev/null); then
  roots+=("$local_inc")
fi
target=$(sed -n 's/^TORCH_TARGET_VERSION = "\(0x[0-9a-f]*\)".*/\1/p' setup.py)
mapfile -t sources < <(find csrc -name '*.cu' | sort)
if [ ${#sources[@]} -eq 0 ]; then
  echo "check_cuda: no .cu sources"
  exit 0
fi
status=0
for root in "${roots[@]}"; do
  for src in "${sources[@]}"; do
    if nvcc -std=c++20 -c "$src" -o /dev/null -DUSE_CUDA -DTORCH_TARGET_VERSION="$target" \
        --expt-relaxed-constexpr -gencode arch=compute_90,code=sm_90 \
        -I csrc -I "$root" "${extra[@]}"; then
      echo "check_cuda: OK   $src  (headers: $root)"
    else
      echo "check_cuda: FAIL $src  (headers: $root)"
      status=1
    fi
  done
done
exit $status
