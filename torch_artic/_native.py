"""The native extension, and the one pattern every native op follows.

``torch_artic._C`` registers the native ops as ``torch.ops.torch_artic.*``; its
``kernels()`` lists every registered kernel with the device and the dtypes it computes
in. On the Python side each op is declared once, as a :class:`NativeOp`: its pure-torch
reference (the fallback, the test oracle and the path of higher-order gradients), its
fake (shapes for ``torch.compile`` and meta tensors) and, if differentiable, its
first-order backward (which calls the op's native backward kernel). The declaration
registers the fake and the autograd formula with ``torch.library``, and calling it runs
the native kernel or the reference by one rule:

- the reference when it is forced: ``TORCH_ARTIC_FORCE_REFERENCE=1`` at import (the
  extension is then not even loaded), or inside :func:`force_reference`;
- the reference when the extension is not built or failed to load (the reason is in
  :func:`backend_info`);
- the native kernel when ``_C.kernels()`` lists one for the op, the device type and the
  dtype of the op's first tensor argument, else the reference.

:func:`backend_info` reads the same table. Nothing else decides whether a kernel runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import torch

ENV_FORCE_REFERENCE = "TORCH_ARTIC_FORCE_REFERENCE"
_FORCED_AT_IMPORT = os.environ.get(ENV_FORCE_REFERENCE, "0") not in ("", "0")

_load_error: str | None = None
_C = None
if not _FORCED_AT_IMPORT:
    import importlib.util

    if importlib.util.find_spec(f"{__package__}._C") is None:
        _load_error = (
            "torch_artic._C is not built (install with `pip install --no-build-isolation -e .`)"
        )
    else:
        try:
            from . import _C  # registers torch.ops.torch_artic.*
        except Exception as exc:  # e.g. an undefined symbol on a torch older than 2.10
            _load_error = f"{type(exc).__name__}: {exc}"


def _kernel_table() -> dict[str, dict[str, tuple[torch.dtype, ...]]]:
    """``{op: {device type: dtypes}}`` from ``_C.kernels()`` (empty when not loaded)."""
    table: dict[str, dict[str, tuple[torch.dtype, ...]]] = {}
    if _C is None:
        return table
    for op, device, dtypes in _C.kernels():
        table.setdefault(op, {})[device] = tuple(getattr(torch, d) for d in dtypes)
    return table


# Read once at import (registrations happen when _C loads), so the dispatch rule is
# plain Python data that torch.compile can trace through.
KERNELS = _kernel_table()

_forced = _FORCED_AT_IMPORT


def extension_loaded() -> bool:
    """Whether ``torch_artic._C`` is loaded."""
    return _C is not None


def reference_forced() -> bool:
    """Whether every op currently runs its pure-torch reference by request."""
    return _forced


@contextlib.contextmanager
def force_reference(*, enabled: bool = True):
    """Run every op's pure-torch reference within this context (the scoped form of
    ``TORCH_ARTIC_FORCE_REFERENCE=1``), e.g. to compare backends. Not thread-safe: it
    switches a process-wide flag.

    Args:
        enabled: force the references (``True``, default) or, nested inside another
            ``force_reference()``, allow the native kernels again (``False``).

    Yields:
        Nothing; the switch holds for the ``with`` block.

    Example:
        >>> import torch, torch_artic as ta
        >>> x = torch.randn(8, 4, 3)
        >>> with ta.force_reference():
        ...     v_reference = ta.pairwise_distance_variance(x)
        >>> torch.allclose(v_reference, ta.pairwise_distance_variance(x), atol=1e-5)
        True
    """
    global _forced
    previous, _forced = _forced, bool(enabled) or _FORCED_AT_IMPORT
    try:
        yield
    finally:
        _forced = previous


Grads = Sequence[torch.Tensor | None]

# Every declared op, by name: what backend_info() lists and the generic tests iterate.
REGISTRY: dict[str, NativeOp] = {}


class NativeOp:
    """One native op, declared once.

    Args:
        name: the op in ``torch.ops.torch_artic`` (its schema is in
            ``csrc/<module>/<module>_schema.cpp``).
        reference: a pure-torch function with the op's exact signature and outputs: the
            fallback, the oracle of the tests and the path of higher-order gradients.
        fake: ``fake(*args)`` -> outputs with the right shapes, dtypes and devices
            (``new_empty``), for ``torch.compile`` and meta tensors.
        backward: ``backward(args, outputs, grads, needs) -> grads of args`` for a
            differentiable op: the first-order gradient through the op's native backward
            kernel, one entry per argument (``None`` where not needed); ``needs`` is
            ``ctx.needs_input_grad``. Higher orders differentiate ``reference`` instead.
        backward_op: the name of the native backward op, with ``backward_fake`` its fake.
        save_outputs: indices of the outputs ``backward`` receives.
        public_outputs: how many leading outputs a call returns (``None``: all); the
            others are state the native forward keeps for its backward (the reference
            returns them empty), not compared by the parity tests.
        samples: ``samples(device, dtype)`` -> argument tuples covering the op's cases;
            the generic tests run opcheck, torch.compile and native-vs-reference parity
            on each.

    Calling the declaration runs the native kernel or the reference (module docstring).
    """

    def __init__(
        self,
        name: str,
        *,
        reference: Callable,
        fake: Callable,
        samples: Callable[[torch.device, torch.dtype], list[tuple]],
        backward: Callable[[tuple, tuple, Grads, Sequence[bool]], Grads] | None = None,
        backward_op: str | None = None,
        backward_fake: Callable | None = None,
        save_outputs: Sequence[int] = (),
        public_outputs: int | None = None,
    ) -> None:
        if name in REGISTRY:
            raise RuntimeError(f"native op {name!r} is declared twice")
        if (backward is None) != (backward_op is None) or (backward_op is None) != (
            backward_fake is None
        ):
            raise TypeError("`backward`, `backward_op` and `backward_fake` go together")
        self.name = name
        self.reference = reference
        self.backward_op = backward_op
        self.samples = samples
        self._fake = fake
        self._backward = backward
        self._backward_fake = backward_fake
        self._save_outputs = tuple(save_outputs)
        self.public_outputs = public_outputs
        self.kernels = KERNELS.get(name, {})
        REGISTRY[name] = self
        if _C is not None and self.kernels:
            self._register()

    # ------------------------------------------------------------------ dispatch
    def native_for(self, tensor: torch.Tensor) -> bool:
        """Whether a call with ``tensor`` as first tensor argument runs natively."""
        if _forced:
            return False
        return tensor.dtype in self.kernels.get(tensor.device.type, ())

    def __call__(self, *args):
        if self.native_for(args[0]):
            out = getattr(torch.ops.torch_artic, self.name).default(*args)
        else:
            out = self.reference(*args)
        return self.public(out)

    def public(self, out):
        """The outputs a caller sees (a tensor when there is one)."""
        if self.public_outputs is None:
            return out
        return out[0] if self.public_outputs == 1 else out[: self.public_outputs]

    # ------------------------------------------------------------------ registration
    def _register(self) -> None:
        qualname = f"torch_artic::{self.name}"
        torch.library.register_fake(qualname)(_same_device(self.name, self._fake))
        if self._backward is None:
            return
        torch.library.register_fake(f"torch_artic::{self.backward_op}")(
            _same_device(self.backward_op, self._backward_fake)
        )
        torch.library.register_autograd(
            qualname, self._autograd_backward, setup_context=self._setup_context
        )

    def _setup_context(self, ctx, inputs, output) -> None:
        outputs = output if isinstance(output, tuple) else (output,)
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        ctx.save_for_backward(*tensors, *(outputs[i] for i in self._save_outputs))
        # where each argument is: an index into the saved tensors, or the value itself
        ctx.layout = [isinstance(x, torch.Tensor) for x in inputs]
        ctx.constants = [None if isinstance(x, torch.Tensor) else x for x in inputs]
        ctx.num_inputs = len(tensors)

    def _autograd_backward(self, ctx, *grads):
        saved = ctx.saved_tensors
        it = iter(saved[: ctx.num_inputs])
        args = tuple(next(it) if is_t else c for is_t, c in zip(ctx.layout, ctx.constants))
        outputs = saved[ctx.num_inputs :]
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the reference (first order is native only)
            result = _reference_vjp(self.reference, args, grads, needs)
        else:
            result = self._backward(args, outputs, grads, needs)
        return tuple(g if n else None for g, n in zip(result, needs))


def _same_device(op: str, fake: Callable) -> Callable:
    """``fake`` behind the device check the kernels make: the fake also runs for calls
    that mix a meta tensor with real ones (the dispatcher picks the meta kernel), where
    it must refuse as the CPU/CUDA kernels do rather than return empty tensors."""
    names = [a.name for a in getattr(torch.ops.torch_artic, op).default._schema.arguments]

    def checked(*args):
        tensors = [(n, a) for n, a in zip(names, args) if isinstance(a, torch.Tensor)]
        first_name, first = tensors[0]
        for name, t in tensors[1:]:
            if t.device != first.device:
                raise RuntimeError(
                    f"torch_artic::{op}: `{name}` must be on the device of `{first_name}` "
                    f"({first.device}), got {t.device}"
                )
        return fake(*args)

    return checked


def _reference_vjp(fn: Callable, args: tuple, grads: Grads, needs: Sequence[bool]) -> list:
    """``d<fn(*args), grads> / d args`` with a graph (for higher-order gradients)."""
    wrt = [
        i
        for i, (a, n) in enumerate(zip(args, needs))
        if n and isinstance(a, torch.Tensor) and a.requires_grad
    ]
    out = [None] * len(args)
    if not wrt:
        return out
    outputs = fn(*args)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
    if not pairs:
        return out
    got = torch.autograd.grad(
        [o for o, _ in pairs],
        [args[i] for i in wrt],
        [g for _, g in pairs],
        create_graph=True,
        allow_unused=True,
    )
    for i, g in zip(wrt, got):
        out[i] = g
    return out


def backend_info() -> dict:
    """What is loaded, for which devices and dtypes, and why not.

    Returns:
        A dict with ``extension`` (``"loaded"``, ``"forced off"`` or ``"not loaded"``),
        ``reason`` (``None`` when loaded), ``torch`` (the running torch version),
        ``cuda_available``, ``reference_forced`` (``True`` inside
        :func:`force_reference` or with ``TORCH_ARTIC_FORCE_REFERENCE=1``) and ``ops``:
        per native op, the device types it has a kernel for and, for each, the dtypes
        that kernel computes in (as the extension reports them; a CPU-only build lists
        no ``cuda``). Anything not listed runs the pure-torch reference.

    Example:
        >>> import torch_artic
        >>> info = torch_artic.backend_info()
        >>> sorted(info)
        ['cuda_available', 'extension', 'ops', 'reason', 'reference_forced', 'torch']
    """
    if _FORCED_AT_IMPORT:
        status, reason = "forced off", f"{ENV_FORCE_REFERENCE}=1"
    elif _C is not None:
        status, reason = "loaded", None
    else:
        status, reason = "not loaded", _load_error
    ops = {
        name: {
            dev: [str(d).replace("torch.", "") for d in dtypes]
            for dev, dtypes in op.kernels.items()
        }
        for name, op in sorted(REGISTRY.items())
    }
    return {
        "extension": status,
        "reason": reason,
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "reference_forced": _forced,
        "ops": ops,
    }
