r"""Differentiable sketching: soft straight lines between connected keypoints.

The renderer of thesis §5.5.1-5.5.2 (after Mihai & Hare 2021, "Differentiable drawing and
sketching"): a pixel is bright only near a line between two *connected* keypoints, so a
good reconstruction forces keypoints onto joints and limb ends. With learnable widths and
colours graded along each line as suggested in §6.7.1.2.

**The function.** For points :math:`p \in \mathbb{R}^{B \times K \times 2}` (converted to
pixels with :func:`~torch_artic.coords.denormalize_points` when ``normalized``), every
pair :math:`e = (i, j)`, :math:`i < j`, is a potential line with weight
:math:`w_e = A_{ij}` (only the upper triangle of the adjacency is read), endpoints
:math:`a = p_i`, :math:`b = p_j` and width :math:`\sigma_e` (pixels). For the centre
:math:`u = (x, y)` of pixel (row ``y``, column ``x``)

.. math::

    t_e(u) = \operatorname{clamp}\Big(\frac{(u - a)\cdot(b - a)}{\lVert b - a\rVert^2},
    0, 1\Big) \ (0 \text{ if } a = b), \qquad
    d_e^2(u) = \lVert u - a - t_e (b - a) \rVert^2,

    I_e(u) = \begin{cases} w_e \exp(-d_e^2 / \sigma_e^2) & d_e < R\,\sigma_e \\
    0 & \text{otherwise} \end{cases}, \qquad R = 4 \ (\texttt{CUTOFF}).

With colours (``[C]`` or per keypoint ``[B, K, C]``) the line's colour is interpolated
along it, :math:`c_{e,k}(u) = (1 - t_e) c_{i,k} + t_e c_{j,k}`; without, :math:`C = 1`,
:math:`c = 1`. Each line contributes :math:`v_{e,k} = I_e c_{e,k}` to channel ``k`` and the
channels are composited independently:

- ``"sum_clamp"`` (the thesis's): :math:`\min(1, \sum_e v_{e,k})`; the gradient passes
  where the sum is :math:`\le 1` and is 0 above (the clamp's subgradient, as
  ``torch.clamp``);
- ``"soft_or"`` (DSketch's ``softor``): :math:`1 - \prod_e (1 - v_{e,k})`, smooth
  everywhere;
- ``"max"``: :math:`\max(0, \max_e v_{e,k})`, the gradient going to the first (lowest
  index) maximal line; the black background wins ties, so a line with weight 0 gets no
  gradient under ``max``.

**Cutoff.** Intensities are exactly 0 beyond :math:`R\sigma_e` (``R = CUTOFF = 4``), in
every backend, so the native kernels visit only the pixels of each line's capsule and
compute the same function as the pure-torch reference. The truncation changes values by
at most :math:`e^{-16} w_e \approx 1.1 \cdot 10^{-7} w_e` per line (below float32's
resolution at 1) and makes the function discontinuous by that much on the cutoff circle,
a set of measure zero.

**Kernels.** Native CPU (C++, threads) and CUDA kernels never form a ``[B, E, H, W]``
tensor: each edge with non-zero weight touches only the pixels within its cutoff capsule,
the backward recomputes instead of storing, and lines of weight 0 cost nothing (in the
backward they are visited only when the adjacency needs a gradient). The pure-torch
reference computes the same truncated function chunked over edges (with activation
checkpointing when differentiating), and is the fallback and the test oracle.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from ._checks import (
    check_points,
    check_positive,
    check_same,
    check_size,
    check_tensor,
    check_values,
    shape_str,
)
from ._native import NativeOp
from .coords import denormalize_points

__all__ = ["CUTOFF", "COMPOSITES", "sketch_render"]

CUTOFF = 4.0
"""Lines are cut off at ``CUTOFF * sigma`` pixels from their segment (in every backend)."""

COMPOSITES = ("sum_clamp", "soft_or", "max")
"""The values of :func:`sketch_render`'s ``composite`` (passed to the kernels by name)."""
_LOW_PRECISION = (torch.float16, torch.bfloat16)
# Elements per [B, chunk, C, H, W] tensor of the reference.
_CHUNK_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------- validation
def _square_or_batched(x: torch.Tensor, name: str, b: int, k: int) -> None:
    ok = (x.dim() == 2 and tuple(x.shape) == (k, k)) or (
        x.dim() == 3 and tuple(x.shape) == (b, k, k)
    )
    if not ok:
        raise ValueError(
            f"`{name}` must have shape [K, K] = [{k}, {k}] or [B, K, K] = [{b}, {k}, {k}], "
            f"got {shape_str(x.shape)}"
        )


def _prepare(points, adjacency, size, sigma, colors, composite, normalized):
    """Validate, then build the kernels' inputs (pixel points, per-edge weights/sigma)."""
    check_points(points, "points", ndim=3)
    b, k, _ = points.shape
    if k < 2:
        raise ValueError(
            f"`points` must have K >= 2 keypoints ([B, K, 2]), got {shape_str(points.shape)}"
        )
    height, width = check_size(size)
    check_tensor(adjacency, "adjacency", floating=False)
    if adjacency.dtype == torch.bool or not (
        adjacency.is_floating_point() or adjacency.is_complex()
    ):
        if adjacency.device != points.device:
            raise ValueError(
                f"`adjacency` must be on the same device as `points` ({points.device}), "
                f"got {adjacency.device}"
            )
        adjacency = adjacency.to(points.dtype)  # 0/1 (bool or integer) adjacency
    else:
        check_tensor(adjacency, "adjacency")
        check_same("points", points, "adjacency", adjacency)
    _square_or_batched(adjacency, "adjacency", b, k)
    if not isinstance(composite, str) or composite not in COMPOSITES:
        raise ValueError(f"`composite` must be one of {COMPOSITES}, got {composite!r}")
    if not isinstance(normalized, bool):
        raise TypeError(f"`normalized` must be a bool, got {type(normalized).__name__}")

    iu, ju = torch.triu_indices(k, k, 1, device=points.device)
    e = iu.shape[0]
    w = adjacency[..., iu, ju]
    if w.dim() == 1:
        w = w.unsqueeze(0)
    if isinstance(sigma, torch.Tensor):
        check_tensor(sigma, "sigma")
        check_same("points", points, "sigma", sigma)
        _square_or_batched(sigma, "sigma", b, k)
        s = sigma[..., iu, ju]
        if s.dim() == 1:
            s = s.unsqueeze(0)
        ok = (s > 0) & torch.isfinite(s)
        msg = (
            "`sigma` must be finite and > 0 in every entry i < j (the entries read; use any "
            "positive value for pairs that are not drawn)"
        )
        if not check_values(ok, msg):
            s = torch.where(ok, s, torch.nan)  # (CUDA) a bad width draws a NaN image
    else:
        s = torch.full(
            (1, e), check_positive(sigma, "sigma"), dtype=points.dtype, device=points.device
        )
    cols = None
    if colors is not None:
        check_tensor(colors, "colors")
        check_same("points", points, "colors", colors)
        if colors.dim() == 1 and colors.shape[0] >= 1:
            cols = colors.expand(1, k, colors.shape[0])
        elif colors.dim() == 3 and colors.shape[:2] == (b, k) and colors.shape[2] >= 1:
            cols = colors
        else:
            raise ValueError(
                f"`colors` must have shape [C] or [B, K, C] = [{b}, {k}, C] with C >= 1, "
                f"got {shape_str(colors.shape)}"
            )
        cols = cols.contiguous()
    pts = denormalize_points(points, (height, width)) if normalized else points
    return pts.contiguous(), w.contiguous(), s.contiguous(), cols, height, width, composite


# --------------------------------------------------------------------------- reference
def _chunk(composite: str, cutoff: float, state, pts, w, s, cols, ei, ej, xs, ys):
    """Composite the edges ``ei[c], ej[c]`` (weights ``w [Bw, c]``, ``s [Bs, c]``) into
    ``state`` (``[B, C, H, W]``; ``(M, key)`` for max). Forms ``[B, c, C, H, W]``.

    Every quantity that only matters on one side of a mask (t inside (0, 1), pixels
    inside the cutoff) is computed from masked inputs, so that the masked-off side has
    finite derivatives: a degenerate line (sigma or length near the underflow limit) has
    the kernels' finite gradients here too, not 0 * inf = NaN.
    """
    a = pts[:, ei]  # [B, c, 2]
    bb = pts[:, ej]
    ax, ay = a[..., 0, None, None], a[..., 1, None, None]  # [B, c, 1, 1]
    abx, aby = bb[..., 0, None, None] - ax, bb[..., 1, None, None] - ay
    l2 = abx * abx + aby * aby
    pos = l2 > 0
    l2s = torch.where(pos, l2, torch.ones_like(l2))
    apx = xs - ax  # [B, c, 1, W]
    apy = ys[:, None] - ay  # [B, c, H, 1]
    dot = apx * abx + apy * aby  # [B, c, H, W]
    with torch.no_grad():
        t0 = torch.where(pos, dot / l2s, torch.zeros_like(dot))
        # t's own gradient only strictly inside (0, 1); the clamped ends are constants
        interior = (t0 > 0) & (t0 < 1)
    traw = torch.where(interior, dot, 0.0) / torch.where(interior, l2s, 1.0)
    t = torch.where(interior, traw, t0.clamp(0, 1))
    qx = apx - t * abx
    qy = apy - t * aby
    d2 = qx * qx + qy * qy
    sc = s[:, :, None, None]
    rs = cutoff * sc
    with torch.no_grad():
        inside = ~(d2 >= rs * rs)  # the kernels' test, d2 < (R sigma)^2
    # exp(-d^2 / sigma^2) from the offset in units of sigma (<= R inside): no overflow
    nx = torch.where(inside, qx, 0.0) / sc
    ny = torch.where(inside, qy, 0.0) / sc
    ex = torch.exp(-(nx * nx + ny * ny))
    wc = w[:, :, None, None]
    # a line of strength 0 is never drawn, even with a non-finite geometry
    ex = torch.where((wc != 0) | torch.isfinite(ex), ex, 0.0)
    inten = torch.where(inside, wc * ex, 0.0)  # [B, c, H, W]
    c = None
    if cols is None:
        v = inten.unsqueeze(2)  # [B, c, 1, H, W]
    else:
        ci = cols[:, ei, :, None, None]  # [Bc, c, C, 1, 1]
        cj = cols[:, ej, :, None, None]
        # a line of strength 0 is never drawn: its non-finite colours count as 0
        zero = (w == 0)[:, :, None, None, None]
        ci = torch.where(zero & ~torch.isfinite(ci), 0.0, ci)
        cj = torch.where(zero & ~torch.isfinite(cj), 0.0, cj)
        # (outside the cutoff exactly 0, even for a NaN colour: as in the kernels)
        c = ci + t.unsqueeze(2) * (cj - ci)
        v = torch.where(inside.unsqueeze(2), inten.unsqueeze(2) * c, 0.0)
    if composite == "sum_clamp":
        return state + v.sum(1)
    if composite == "soft_or":
        return state * (1 - v).prod(1)
    m, mkey = state
    key = torch.where(torch.isnan(v), torch.inf, v).detach()
    cm = key.amax(1)
    first = key == cm.unsqueeze(1)
    first = first & (first.cumsum(1) == 1)
    # only the winner's factors carry a gradient (as in the kernels: a NaN colour of a
    # line that does not win a pixel reaches no gradient, not even as 0 * NaN)
    sel = torch.where(first, inten.unsqueeze(2), 0.0)
    if c is not None:
        won = first & inside.unsqueeze(2)
        c_won = torch.where(won, ci, 0.0) + t.unsqueeze(2) * torch.where(won, cj - ci, 0.0)
        sel = sel * c_won
    sel = sel.sum(1)
    up = cm > mkey
    return torch.where(up, sel, m), torch.where(up, cm, mkey)


def _reference(pts, w, s, cols, height, width, composite, cutoff, keep_state=False):
    """Pure-torch sketch (the fallback and the oracle), with the signature and outputs of
    the native op ``sketch_render_forward(points, strength, sigma, colors, height, width,
    composite, cutoff, keep_state) -> (image, state, state_index)``; it keeps no state
    (both empty)."""
    acc = torch.float64 if pts.dtype == torch.float64 else torch.float32
    return (
        _reference_image(pts, w, s, cols, height, width, composite, cutoff),
        pts.new_empty(0, dtype=acc),
        pts.new_empty(0, dtype=torch.int32),
    )


def _reference_image(pts, w, s, cols, height, width, composite, cutoff):
    """The image of :func:`_reference`."""
    out_dtype = pts.dtype
    if out_dtype in _LOW_PRECISION:
        pts, w, s = pts.float(), w.float(), s.float()
        cols = None if cols is None else cols.float()
    b, k, _ = pts.shape
    c = 1 if cols is None else cols.shape[2]
    iu, ju = torch.triu_indices(k, k, 1, device=pts.device)
    e = iu.shape[0]
    xs = torch.arange(width, device=pts.device, dtype=pts.dtype)
    ys = torch.arange(height, device=pts.device, dtype=pts.dtype)
    if composite == "max":
        z = pts.new_zeros(b, c, height, width)
        state = (z, z)
    else:
        state = pts.new_full((b, c, height, width), 1.0 if composite == "soft_or" else 0.0)
    step = max(1, _CHUNK_ELEMENTS // max(1, b * c * height * width))
    tensors = [pts, w, s] + ([] if cols is None else [cols])
    ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    for e0 in range(0, e, step):
        e1 = min(e, e0 + step)
        args = (composite, cutoff, state, pts, w[:, e0:e1], s[:, e0:e1], cols, iu[e0:e1])
        args = (*args, ju[e0:e1], xs, ys)
        if ckpt:
            state = checkpoint(_chunk, *args, use_reentrant=False)
        else:
            state = _chunk(*args)
    if composite == "sum_clamp":
        out = torch.where(state > 1, 1.0, state)
    elif composite == "soft_or":
        out = 1 - state
    else:
        out = state[0]
    return out.to(out_dtype)


# --------------------------------------------------------------------------- native op
def _state_shapes(composite, keep_state, shape):
    """Shapes of the state the native forward keeps (see ``csrc/sketch/sketch.h``)."""
    if not keep_state:
        return (0,), (0,)
    value = {"sum_clamp": shape, "soft_or": (2, *shape), "max": (0,)}[composite]
    return value, ((0,) if composite == "sum_clamp" else shape)


def _fake(points, strength, sigma, colors, height, width, composite, cutoff, keep_state):
    c = 1 if colors is None else colors.shape[2]
    shape = (points.shape[0], c, height, width)
    value, index = _state_shapes(composite, keep_state, shape)
    acc = torch.float64 if points.dtype == torch.float64 else torch.float32
    return (
        points.new_empty(shape),
        points.new_empty(value, dtype=acc),
        points.new_empty(index, dtype=torch.int32),
    )


def _backward_fake(
    grad,
    points,
    strength,
    sigma,
    colors,
    state,
    state_index,
    height,
    width,
    composite,
    cutoff,
    need_strength,
    need_sigma,
    need_colors,
):
    def like(t, need):
        return points.new_empty(t.shape) if need and t is not None else points.new_empty(0)

    return (
        points.new_empty(points.shape),
        like(strength, need_strength),
        like(sigma, need_sigma),
        like(colors, need_colors),
    )


def _backward(args, outputs, grads, needs):
    """First-order gradient through ``sketch_render_backward``, from the state the
    forward kept (gradients of shared ``[1, ...]`` inputs are summed over the batch
    inside the kernel)."""
    points, strength, sigma, colors, height, width, composite, cutoff, _ = args
    state, state_index = outputs
    gp, gw, gs, gc = torch.ops.torch_artic.sketch_render_backward(
        grads[0].contiguous(),
        points,
        strength,
        sigma,
        colors,
        state,
        state_index,
        height,
        width,
        composite,
        cutoff,
        bool(needs[1]),
        bool(needs[2]),
        bool(needs[3]) and colors is not None,
    )
    return gp, gw, gs, (gc if colors is not None else None), None, None, None, None, None


def _samples(device, dtype):
    """Argument tuples of the op for the generic native-op tests (pixel units)."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64).to(device, dtype)

    pts = rand(2, 4, 2) * 10 + 1
    out = []
    for composite in COMPOSITES:
        for keep in (True, False):
            out.append((pts, rand(1, 6), rand(1, 6) + 0.8, None, 12, 13, composite, CUTOFF, keep))
        cols = rand(2, 4, 3)
        out.append((pts, rand(2, 6), rand(2, 6) + 0.8, cols, 9, 11, composite, CUTOFF, True))
    out.append((pts, rand(1, 6), rand(1, 6) + 0.8, rand(1, 4, 1), 8, 8, "sum_clamp", 2.0, True))
    return out


_SKETCH = NativeOp(
    "sketch_render_forward",
    reference=_reference,
    fake=_fake,
    backward=_backward,
    backward_op="sketch_render_backward",
    backward_fake=_backward_fake,
    save_outputs=(1, 2),
    public_outputs=1,
    samples=_samples,
)


# --------------------------------------------------------------------------- public op
def sketch_render(
    points: torch.Tensor,
    adjacency: torch.Tensor,
    size: int | tuple[int, int],
    *,
    sigma: float | torch.Tensor = 1.0,
    colors: torch.Tensor | None = None,
    composite: str = "sum_clamp",
    normalized: bool = True,
) -> torch.Tensor:
    r"""Sketch soft straight lines between connected keypoints (differentiable).

    Pixel ``(y, x)`` of line :math:`e = (i, j)`, :math:`i < j`, has intensity
    :math:`I_e = A_{ij} \exp(-d_e^2 / \sigma_e^2)` where :math:`d_e` is the distance in
    pixels from the pixel centre to the segment :math:`[p_i, p_j]`, and 0 beyond
    ``CUTOFF * sigma`` (= 4 sigma); lines are coloured :math:`(1 - t) c_i + t c_j` along
    their length and composited per channel (see :mod:`torch_artic.sketch` for the exact
    definition and the subgradients).

    Args:
        points: ``[B, K, 2]`` keypoints ``(x, y)``, normalised to ``[-1, 1]`` (default) or
            in pixels with ``normalized=False``; ``K >= 2``.
        adjacency: ``[K, K]`` (shared) or ``[B, K, K]`` line weights, normally in
            ``[0, 1]``: 0/1 (e.g. from ``dmst``; bool or integer tensors are accepted and
            not differentiated) or soft marginals. Only the upper triangle ``i < j`` is
            read, so a symmetric matrix and its upper triangle draw the same sketch (and
            the gradient lands in the upper triangle only). Values are not checked.
        size: output ``(H, W)`` or an int for a square image (each >= 2).
        sigma: line width in pixels, ``> 0``: a float, or per line ``[K, K]`` /
            ``[B, K, K]`` (upper triangle read; differentiable). Tensor values are checked
            on CPU (a ``RuntimeError`` under ``torch.compile``); on CUDA, where that would
            need a host sync, a non-positive or non-finite width makes the image NaN.
            Widths below about ``1e-19`` px (float32; ``1e-154`` float64) draw nothing.
        colors: ``None`` (one channel, colour 1), ``[C]`` (one colour for every line) or
            ``[B, K, C]`` per-keypoint colours graded linearly along each line.
            Differentiable.
        composite: ``"sum_clamp"`` (default; ``min(1, sum)``), ``"soft_or"``
            (``1 - prod(1 - v)``) or ``"max"``, per channel.
        normalized: coordinate convention of ``points`` (see :mod:`torch_artic.coords`).

    Returns:
        ``[B, C, H, W]`` sketch in the dtype of ``points`` (``C = 1`` without colours).
        Differentiable w.r.t. ``points``, ``adjacency``, ``sigma`` and ``colors`` (first
        order through the native kernels, higher orders through the reference).
        NaN in an input makes the affected lines' pixels NaN: a NaN strength or colour
        the pixels that line draws (a line of strength 0 is never drawn), a NaN point or
        width the whole image (its cutoff region is unbounded). Both backends agree on
        values, gradients and which entries are finite (see the behaviour page).

    Raises:
        TypeError: non-tensor or non-floating ``points``/``colors``/``sigma``, mismatched
            dtypes, a bad ``size`` or ``normalized``.
        ValueError: bad shapes, ``K < 2``, ``size`` below 2, non-positive ``sigma``, an
            unknown ``composite``, tensors on different devices.

    Cost: native kernels ``O(B (E + sum over drawn lines of their capsule's pixels))``
    time and ``O(B C H W)`` memory (the output; with a gradient, one more such buffer
    kept for the backward and two or three during it); the reference ``O(B E C H W)``
    time in chunks of about 1M elements.

    Example:
        >>> pts = torch.tensor([[[2.0, 2.0], [12.0, 2.0], [12.0, 9.0]]])
        >>> adj = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
        >>> img = sketch_render(pts, adj, (12, 16), normalized=False)
        >>> img.shape, img[0, 0, 2, 7].item(), img[0, 0, 6, 12].item()
        (torch.Size([1, 1, 12, 16]), 1.0, 1.0)
        >>> img[0, 0, 9, 2].item()  # pixel far from both lines
        0.0
    """
    pts, strength, s, cols, height, width, composite = _prepare(
        points, adjacency, size, sigma, colors, composite, normalized
    )
    # keep the state for the backward only when there will be one
    keep = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (pts, strength, s, cols)
    )
    return _SKETCH(pts, strength, s, cols, height, width, composite, CUTOFF, keep)
