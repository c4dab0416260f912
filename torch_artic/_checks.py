"""Argument validation shared by the public ops.

Every public op validates its inputs here before any computation, so a bad call
raises a ``TypeError`` (wrong kind of object or dtype) or a ``ValueError`` (wrong
shape or value) that names the argument, the expected shape and the received one.
Shape, dtype, device and layout checks look only at metadata. Checks of tensor *values*
go through :func:`check_values`: they raise for CPU tensors, stay in the graph under
``torch.compile`` on CPU, and are skipped where they would need a host-device
synchronisation (CUDA), where the op makes the affected results NaN instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def shape_str(shape) -> str:
    """``[2, 3]`` style rendering of a shape."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_tensor(x, name: str, *, floating: bool = True, data: bool = False) -> torch.Tensor:
    """``x`` must be a dense tensor (of a floating dtype unless ``floating=False``; with
    values, not on the meta device, if ``data``: for ops whose checks read values)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"`{name}` must be a dense (strided) tensor, got layout {x.layout}")
    if data and x.device.type == "meta":
        raise ValueError(f"`{name}` must be a tensor with data, got a tensor on the meta device")
    if floating and x.dtype not in _FLOATING:
        raise TypeError(
            f"`{name}` must have a floating dtype (float16, bfloat16, float32, float64), "
            f"got {x.dtype}"
        )
    return x


def check_shape(x: torch.Tensor, name: str, expected: str, ok: bool) -> None:
    """Raise the library's standard shape error unless ``ok``."""
    if not ok:
        raise ValueError(f"`{name}` must have shape {expected}, got {shape_str(x.shape)}")


def check_points(points, name: str = "points", *, ndim: int | None = None) -> torch.Tensor:
    """``points`` must be a floating ``[..., 2]`` tensor (exactly ``ndim`` dims if given)."""
    check_tensor(points, name)
    if ndim is None:
        check_shape(points, name, "[..., 2]", points.dim() >= 1 and points.shape[-1] == 2)
    else:
        expected = "[" + ", ".join(["B", "K", "N", "M"][: ndim - 1]) + ", 2]"
        check_shape(points, name, expected, points.dim() == ndim and points.shape[-1] == 2)
    return points


def check_size(size, name: str = "size") -> tuple[int, int]:
    """``size`` is an int (square) or a pair ``(H, W)`` of ints, each >= 2."""
    if isinstance(size, torch.Size):
        size = tuple(size)
    if isinstance(size, bool):
        raise TypeError(f"`{name}` must be an int or a pair (H, W) of ints, got bool")
    if isinstance(size, int):
        size = (size, size)
    if not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"`{name}` must be an int or a pair (H, W) of ints, got {size!r}")
    h, w = size
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (h, w)):
        raise TypeError(f"`{name}` must be an int or a pair (H, W) of ints, got {size!r}")
    if h < 2 or w < 2:
        raise ValueError(f"`{name}` must be at least (2, 2) (H, W), got ({h}, {w})")
    return int(h), int(w)


def check_positive(value, name: str) -> float:
    """A real number > 0 (and finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a positive float, got {type(value).__name__}")
    if not (value > 0.0) or value == float("inf"):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value}")
    return float(value)


def check_int(value, name: str, minimum: int) -> int:
    """An int (not a bool) >= ``minimum``: TypeError for another type, ValueError below."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value}")
    return value


def check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """``a`` and ``b`` share device and dtype."""
    check_device(b, name_b, a, name_a)
    if a.dtype != b.dtype:
        raise TypeError(
            f"`{name_b}` must have the same dtype as `{name_a}` ({a.dtype}), got {b.dtype}"
        )


def check_dtype(dtype, name: str = "dtype") -> None:
    """``dtype`` is ``None`` or a floating ``torch.dtype``."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or dtype not in _FLOATING):
        raise TypeError(
            f"`{name}` must be a floating torch.dtype (float16, bfloat16, float32, float64), "
            f"got {dtype!r}"
        )


def check_device(x: torch.Tensor, name: str, like: torch.Tensor, like_name: str) -> None:
    """``x`` is on the device of ``like``."""
    if x.device != like.device:
        raise ValueError(
            f"`{name}` must be on the same device as `{like_name}` ({like.device}), got {x.device}"
        )


def check_values(ok: torch.Tensor, message, *, error: type = ValueError) -> bool:
    """Raise ``error(message)`` unless the bool tensor ``ok`` is all true, where that
    costs no host-device synchronisation. ``message`` is a string, or a callable giving
    it (called only to raise in eager mode, so it may read values).

    - CPU tensors, eager: checked, ``error`` raised;
    - CPU tensors under ``torch.compile``: checked inside the graph
      (``torch._assert_async``), so a ``RuntimeError`` with the same message;
    - elsewhere (CUDA, meta): not checked.

    Returns whether the values were checked. When not, the caller makes the results that
    depend on bad values NaN (``torch.where``), so a bad value never gives a plausible
    number.
    """
    if ok.device.type != "cpu":
        return False
    if torch.compiler.is_compiling():
        static = message if isinstance(message, str) else getattr(message, "static", "")
        torch._assert_async(ok.all(), static)
        return True
    if not bool(ok.all()):
        raise error(message if isinstance(message, str) else message())
    return True
