"""Loading of the native extension and the native-vs-fallback dispatch rule.

``torch_artic._C`` registers the native ops as ``torch.ops.torch_artic.*``. Each
public op asks :func:`native_op` for its native kernel for the given tensors; it
gets ``None`` (and then runs the pure-torch reference) when

- ``TORCH_ARTIC_FORCE_FALLBACK=1`` was set when torch_artic was imported,
- the extension is not built or failed to load (the reason is in
  :func:`backend_info`),
- the op has no kernel for the tensor's device (e.g. a CPU-only build on CUDA), or
- the dtype is not supported natively on that device (float32/float64 everywhere;
  float16/bfloat16 on CUDA only).
"""

from __future__ import annotations

import contextlib
import os

import torch

_FORCE_FALLBACK = os.environ.get("TORCH_ARTIC_FORCE_FALLBACK", "0") not in ("", "0")

_load_error: str | None = None
_loaded = False
if not _FORCE_FALLBACK:
    import importlib.util

    if importlib.util.find_spec(f"{__package__}._C") is None:
        _load_error = (
            "torch_artic._C is not built (install with `pip install --no-build-isolation -e .`)"
        )
    else:
        try:
            from . import _C  # noqa: F401  (registers torch.ops.torch_artic.*)

            _loaded = True
        except Exception as exc:  # e.g. an undefined symbol on a torch older than 2.10
            _load_error = f"{type(exc).__name__}: {exc}"

_NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}

# Native ops known to the Python side: name -> schema name in torch.ops.torch_artic.
NATIVE_OPS = ("pairwise_distance_stats", "sketch_render_forward", "mst_prim")


def _has_kernel(op: str, key: str) -> bool:
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_artic::{op}", key))
    except RuntimeError:
        return False


def extension_loaded() -> bool:
    """Whether ``torch_artic._C`` is loaded and in use."""
    return _loaded


def _probe_devices(op: str) -> tuple[str, ...]:
    if not _loaded:
        return ()
    return tuple(dev for dev, key in (("cpu", "CPU"), ("cuda", "CUDA")) if _has_kernel(op, key))


# Probed once at import (registrations happen when _C loads), so the dispatch rule is
# plain Python data that torch.compile can trace through.
_DEVICES = {op: _probe_devices(op) for op in NATIVE_OPS}


def native_devices(op: str) -> list[str]:
    """Device types with a native kernel for ``op`` (empty if none or forced off)."""
    return list(_DEVICES.get(op, ()))


_forced_off = False


@contextlib.contextmanager
def forced_fallback(enabled: bool = True):
    """Within this context every op runs its pure-torch reference (as with
    ``TORCH_ARTIC_FORCE_FALLBACK=1``, but scoped). Used by the tests to run each op on
    every backend; not thread-safe.

    Example:
        >>> with forced_fallback():
        ...     pass  # pure-torch references only
    """
    global _forced_off
    previous, _forced_off = _forced_off, enabled
    try:
        yield
    finally:
        _forced_off = previous


def native_op(op: str, *tensors: torch.Tensor):
    """The ``torch.ops.torch_artic.<op>`` overload to use for ``tensors``, or ``None``."""
    if not _loaded or _forced_off:
        return None
    t = tensors[0]
    dev = t.device.type
    if t.dtype not in _NATIVE_DTYPES.get(dev, ()):
        return None
    if dev not in _DEVICES.get(op, ()):
        return None
    return getattr(torch.ops.torch_artic, op).default


def backend_info() -> dict:
    """What is loaded, for which devices and dtypes, and why not.

    Returns:
        A dict with ``extension`` (``"loaded"``, ``"forced off"`` or ``"not loaded"``),
        ``reason`` (``None`` when loaded), ``torch`` (the running torch version),
        ``cuda_available`` and, per native op, the device types it runs natively on
        and the dtypes per device. Anything not listed runs the pure-torch reference.

    Example:
        >>> import torch_artic
        >>> info = torch_artic.backend_info()
        >>> sorted(info)
        ['cuda_available', 'dtypes', 'extension', 'ops', 'reason', 'torch']
    """
    if _FORCE_FALLBACK:
        status, reason = "forced off", "TORCH_ARTIC_FORCE_FALLBACK=1"
    elif _loaded:
        status, reason = "loaded", None
    else:
        status, reason = "not loaded", _load_error
    ops = {op: native_devices(op) for op in NATIVE_OPS}
    return {
        "extension": status,
        "reason": reason,
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "ops": ops,
        "dtypes": {
            dev: [str(d).replace("torch.", "") for d in ds] for dev, ds in _NATIVE_DTYPES.items()
        },
    }
