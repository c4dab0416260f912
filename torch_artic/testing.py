"""Testing tools for projects built on torch-artic (and for torch-artic's own tests).

Hypothesis strategies for the library's input kinds, all in the library's coordinate
convention, and a gradient-property helper. Requires the ``hypothesis`` package (the
``test`` extra): ``pip install "torch-artic[test]"``.

Example (in your own test suite)::

    from hypothesis import given
    from torch_artic.testing import keypoints, assert_gradients

    @given(keypoints(batch_size=4, num_keypoints=7))
    def test_my_loss_is_smooth(points):
        assert_gradients(my_loss, (points,))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "torch_artic.testing needs hypothesis: pip install 'torch-artic[test]'"
    ) from exc

__all__ = [
    "assert_gradients",
    "heatmaps",
    "keypoints",
    "random_trees",
    "symmetric_costs",
]


def _tensor_from_seed(seed: int, shape, dtype, fn):
    g = torch.Generator().manual_seed(seed)
    return fn(shape, g).to(dtype)


@st.composite
def keypoints(
    draw,
    *,
    batch_size: int | tuple[int, int] = (1, 8),
    num_keypoints: int | tuple[int, int] = (2, 8),
    dim: int = 2,
    normalized: bool = True,
    size: tuple[int, int] = (64, 64),
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A hypothesis strategy of ``[B, K, dim]`` keypoints; in ``[-1, 1]`` when
    ``normalized``, else pixels of an image of ``size = (H, W)`` (x in ``[0, W-1]``, y in
    ``[0, H-1]``). ``batch_size`` and ``num_keypoints`` are ints or inclusive
    ``(min, max)`` ranges.

    Returns:
        A strategy drawing ``[B, K, dim]`` tensors of ``dtype``.

    Example:
        >>> from hypothesis import find
        >>> find(keypoints(batch_size=4, num_keypoints=7), lambda p: True).shape
        torch.Size([4, 7, 2])
    """
    b = batch_size if isinstance(batch_size, int) else draw(st.integers(*batch_size))
    k = num_keypoints if isinstance(num_keypoints, int) else draw(st.integers(*num_keypoints))
    seed = draw(st.integers(0, 2**31 - 1))
    u = _tensor_from_seed(seed, (b, k, dim), torch.float64, lambda s, g: torch.rand(s, generator=g))
    pts = u * 2 - 1
    if not normalized and dim == 2:
        h, w = size
        pts = (pts + 1) * torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
    return pts.to(dtype)


@st.composite
def heatmaps(
    draw,
    *,
    leading: Sequence[int] = (2, 3),
    size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A hypothesis strategy of ``[*leading, H, W]`` heatmaps (standard-normal logits);
    H, W in ``[2, 24]`` unless ``size`` is given.

    Returns:
        A strategy drawing heatmap tensors of ``dtype``.

    Example:
        >>> from hypothesis import find
        >>> find(heatmaps(leading=(2,), size=(5, 6)), lambda h: True).shape
        torch.Size([2, 5, 6])
    """
    if size is None:
        size = (draw(st.integers(2, 24)), draw(st.integers(2, 24)))
    seed = draw(st.integers(0, 2**31 - 1))
    return _tensor_from_seed(
        seed,
        (*leading, *size),
        dtype,
        lambda s, g: torch.randn(s, generator=g, dtype=torch.float64),
    )


@st.composite
def symmetric_costs(
    draw,
    *,
    num_nodes: int | tuple[int, int] = (1, 12),
    leading: Sequence[int] = (),
    integer: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A hypothesis strategy of ``[*leading, K, K]`` symmetric edge costs (for
    :func:`~torch_artic.dmst`) with a zero diagonal: uniform in ``(0, 1)``, or small
    integers in ``[0, 3]`` (many ties) when ``integer``.

    Returns:
        A strategy drawing cost tensors of ``dtype``.

    Example:
        >>> from hypothesis import find
        >>> w = find(symmetric_costs(num_nodes=4), lambda w: True)
        >>> w.shape, bool((w == w.mT).all())
        (torch.Size([4, 4]), True)
    """
    k = num_nodes if isinstance(num_nodes, int) else draw(st.integers(*num_nodes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    shape = (*leading, k, k)
    if integer:
        w = torch.randint(0, 4, shape, generator=g).to(torch.float64)
    else:
        w = torch.rand(shape, generator=g, dtype=torch.float64)
    w = torch.triu(w, diagonal=1)
    return (w + w.transpose(-1, -2)).to(dtype)


@st.composite
def random_trees(draw, *, num_nodes: int | tuple[int, int] = (2, 12)) -> torch.Tensor:
    """A hypothesis strategy of ``[K, K]`` 0/1 symmetric adjacencies of uniformly random
    labelled trees (decoded from a random Prüfer sequence).

    Returns:
        A strategy drawing float64 ``[K, K]`` tensors with ``K - 1`` edges.

    Example:
        >>> from hypothesis import find
        >>> adj = find(random_trees(num_nodes=5), lambda a: True)
        >>> int(adj.triu(1).sum())
        4
    """
    k = num_nodes if isinstance(num_nodes, int) else draw(st.integers(*num_nodes))
    adj = torch.zeros(k, k, dtype=torch.float64)
    if k < 2:
        return adj
    if k == 2:
        adj[0, 1] = adj[1, 0] = 1
        return adj
    seq = draw(st.lists(st.integers(0, k - 1), min_size=k - 2, max_size=k - 2))
    degree = [1] * k
    for v in seq:
        degree[v] += 1
    for v in seq:
        leaf = min(i for i in range(k) if degree[i] == 1)
        adj[leaf, v] = adj[v, leaf] = 1
        degree[leaf] -= 1
        degree[v] -= 1
    u, v = (i for i in range(k) if degree[i] == 1)
    adj[u, v] = adj[v, u] = 1
    return adj


def assert_gradients(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    *,
    second_order: bool = False,
    atol: float = 1e-6,
    rtol: float = 1e-4,
) -> None:
    """Check ``fn``'s gradients w.r.t. every floating input, in float64.

    Asserts that the outputs and gradients are finite and that
    ``torch.autograd.gradcheck`` (and ``gradgradcheck`` when ``second_order``) pass.
    Inputs are cast to float64 copies that require grad; non-floating inputs pass
    through unchanged.

    Args:
        fn: the function under test, of tensors, returning a tensor or a tuple of them.
        inputs: its arguments (floating ones are checked).
        second_order: also check second derivatives.
        atol, rtol: tolerances of the checks.

    Returns:
        ``None``; raises ``AssertionError`` (or gradcheck's error) when a check fails.

    Example:
        >>> import torch_artic as ta
        >>> assert_gradients(lambda p: ta.pairwise_distance_variance(p), [torch.rand(6, 3, 2)])
    """
    ins = tuple(
        x.detach().to(torch.float64).requires_grad_()
        if isinstance(x, torch.Tensor) and x.is_floating_point()
        else x
        for x in inputs
    )
    out = fn(*ins)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    assert outs, "fn's output does not depend on any floating input"
    for o in outs:
        assert torch.isfinite(o).all(), "non-finite output"
    diff = [x for x in ins if isinstance(x, torch.Tensor) and x.requires_grad]
    grads = torch.autograd.grad(sum(o.sum() for o in outs), diff, allow_unused=True)
    for g in grads:
        assert g is None or torch.isfinite(g).all(), "non-finite gradient"
    assert torch.autograd.gradcheck(fn, ins, atol=atol, rtol=rtol)
    if second_order:
        assert torch.autograd.gradgradcheck(fn, ins, atol=atol, rtol=rtol)
