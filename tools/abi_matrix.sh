#!/usr/bin/env bash
# One wheel, many torches: prove the cp310-abi3 wheel on every supported torch.
#
#   tools/abi_matrix.sh [WHEEL | SDIST]        (run from the repository root)
#
# WHEEL: a torch_artic-*-cp310-abi3-manylinux_2_28_x86_64.whl; without an argument the
# wheel is built once by tools/build_wheels.sh into a temporary folder. Then, for each
# "python:torch" entry of MATRIX (default below), one at a time:
#
#   - a fresh venv under $TMPDIR with torch==<torch> numpy scipy pytest hypothesis, and
#     the wheel installed with --no-deps (the venv is deleted afterwards: a CUDA build
#     of torch from PyPI is about 3 GB with its nvidia-* wheels; pip's cache is off).
#     Given an SDIST (torch_artic-*.tar.gz) instead, it is installed with
#     --no-build-isolation --no-deps, i.e. compiled against that venv's torch;
#   - the smoke test of tools/build_wheels.sh (--smoke): the extension loaded with a
#     CPU kernel for every native op; pairwise_distance_variance vs
#     torch.cdist(x, x).var(0) with a backward; a kernel's C++ exception arriving as
#     RuntimeError; every unversioned undefined symbol of _C.abi3.so defined by CPython
#     or by THIS torch's libraries (so it resolves even where the system libstdc++ is
#     older than the build machine's);
#   - the native-vs-reference tests, in full: tests/test_native.py (where it exists),
#     tests/test_pairwise_distance_variance.py, tests/test_sketch.py, tests/test_mst.py
#     (their tests run on both the `native` and the `reference` backend, compare a
#     native kernel with its pure-torch reference, or opcheck / torch.compile a native
#     op; a few check argument errors), with CI=true (hypothesis derandomised), from a copy of
#     tests/ and pyproject.toml in a temporary folder, so that the installed package,
#     not the source tree, is imported.
#
# It prints a markdown table (torch, Python, result, passed/failed/skipped, seconds for
# install and tests) and writes it to MATRIX_OUT (default .cache/abi-matrix.md). Exit
# status 1 when any entry failed.
#
# Environment: MATRIX (default "3.11:2.10.0 3.11:2.11.0 3.11:2.12.0 3.11:2.13.0
# 3.11:2.14.1 3.10:2.10.0 3.13:2.14.1"; the Python is found as pythonX.Y on PATH or in
# pyenv); TORCH_PIP_ARGS (extra pip arguments for torch); PYTEST_ARGS (replaces the
# test selection). Time: 3-4 minutes per entry on 2 cores (install 40-130 s, about
# 3 GB per CUDA build of torch; tests 50-160 s), about 25 minutes for the default.
set -euo pipefail

root=$(pwd)
if [ ! -f "$root/setup.py" ] || [ ! -d "$root/tests" ]; then
  echo "abi_matrix: run from the repository root" >&2
  exit 2
fi
matrix=${MATRIX:-"3.11:2.10.0 3.11:2.11.0 3.11:2.12.0 3.11:2.13.0 3.11:2.14.1 3.10:2.10.0 3.13:2.14.1"}
read -r -a torch_pip_args <<<"${TORCH_PIP_ARGS:-}"
default_tests=()
for f in tests/test_native.py tests/test_pairwise_distance_variance.py tests/test_sketch.py tests/test_mst.py; do
  [ -f "$root/$f" ] && default_tests+=("$f")
done
read -r -a pytest_args <<<"${PYTEST_ARGS:-${default_tests[*]}}"
md=${MATRIX_OUT:-$root/.cache/abi-matrix.md}
mkdir -p "$(dirname "$md")"
scratch=$(mktemp -d)
venv=""
trap 'rm -rf "$scratch" ${venv:+"$venv"}' EXIT
say() { printf 'abi_matrix: %s\n' "$*"; }

wheel=${1:-}
if [ -z "$wheel" ]; then
  say "building the wheel once: tools/build_wheels.sh $scratch/dist"
  bash "$root/tools/build_wheels.sh" "$scratch/dist"
  wheel=$(ls "$scratch"/dist/torch_artic-*-cp310-abi3-manylinux_2_28_x86_64.whl)
fi
wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")
[ -f "$wheel" ] || { echo "abi_matrix: no wheel at $wheel" >&2; exit 2; }
install_args=(--no-deps "$wheel")
case "$wheel" in
  *.whl) ;;
  *.tar.gz) install_args=(--no-build-isolation --no-deps "$wheel") ;;
  *) echo "abi_matrix: $wheel is neither a wheel nor an sdist" >&2; exit 2 ;;
esac
say "wheel: $(basename "$wheel") ($(sha256sum "$wheel" | cut -c1-12))"

# tests and their pytest configuration, outside the repository
mkdir -p "$scratch/t"
cp -r "$root/tests" "$scratch/t/"
cp "$root/pyproject.toml" "$scratch/t/"
find "$scratch/t" -name __pycache__ -prune -exec rm -rf {} +

find_python() {  # find_python X.Y
  local p
  for p in "$(command -v "python$1" 2>/dev/null || true)" "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$1"*/bin/python"$1"; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c "import sys, venv" >/dev/null 2>&1; then
      echo "$p"
      return
    fi
  done
  return 1
}

rows=()
failed=0
for entry in $matrix; do
  py=${entry%%:*}
  tv=${entry#*:}
  say "=== torch $tv on Python $py"
  res="FAIL" passed=0 nfail=0 skipped=0 t_inst=0 t_test=0
  if ! python=$(find_python "$py"); then
    rows+=("| $tv | $py | no Python $py here | - | - | - | - |")
    failed=1
    continue
  fi
  venv=$(mktemp -d "${TMPDIR:-/tmp}/abi-venv.XXXXXX")
  log="$scratch/$py-$tv.log"
  t=$SECONDS
  if "$python" -m venv "$venv" >"$log" 2>&1 &&
    "$venv/bin/pip" install --no-cache-dir --no-compile -q -U pip >>"$log" 2>&1 &&
    "$venv/bin/pip" install --no-cache-dir --no-compile "torch==$tv" "${torch_pip_args[@]}" >>"$log" 2>&1 &&
    "$venv/bin/pip" install --no-cache-dir --no-compile numpy scipy pytest hypothesis "setuptools>=77" wheel >>"$log" 2>&1 &&
    "$venv/bin/pip" install --no-cache-dir --no-compile "${install_args[@]}" >>"$log" 2>&1; then
    t_inst=$((SECONDS - t))
    pyv=$("$venv/bin/python" -c "import platform; print(platform.python_version())")
    tvr=$("$venv/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null | tail -n 1)
    say "installed in ${t_inst}s: Python $pyv, torch $tvr"
    t=$SECONDS
    ok=1
    bash "$root/tools/build_wheels.sh" --smoke "$venv/bin/python" || ok=0
    if [ $ok = 1 ]; then
      (cd "$scratch/t" && CI=true "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        --junitxml="$scratch/junit.xml" "${pytest_args[@]}") >"$scratch/pytest.log" 2>&1 || ok=0
      tail -n 3 "$scratch/pytest.log"
      if [ -f "$scratch/junit.xml" ]; then
        read -r passed nfail skipped < <("$venv/bin/python" - "$scratch/junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(n - f - e - k, f + e, k)
PY
        )
        rm -f "$scratch/junit.xml"
      fi
      [ "$passed" -gt 0 ] || ok=0
    fi
    t_test=$((SECONDS - t))
    [ $ok = 1 ] && res="pass"
    rows+=("| $tvr | $pyv | $res | $passed | $nfail | $skipped | $t_inst + $t_test |")
  else
    tail -n 5 "$log"
    rows+=("| $tv | $py | install failed | - | - | - | $((SECONDS - t)) |")
  fi
  [ "$res" = "pass" ] || failed=1
  rm -rf "$venv"
  venv=""
done

{
  echo "torch-artic ABI matrix: $(basename "$wheel"), $(date -u +%Y-%m-%d), $(uname -m), CPU only"
  echo
  echo "| torch | Python | result | passed | failed | skipped | seconds (install + tests) |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Tests: ${pytest_args[*]} (skipped = CUDA-only tests; no GPU here)."
} | tee "$md"
say "table written to $md"
exit $failed
