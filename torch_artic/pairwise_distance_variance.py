r"""Variance over a batch of the distance between every pair of keypoints.

The rigidity signal of the thesis (§5.3.1): two keypoints joined by a rigid limb keep
their distance in every sample, so the variance of that distance over the batch is
small. For points :math:`p \in \mathbb{R}^{B \times K \times D}` and an optional per-sample,
per-keypoint ``confidence`` :math:`c \in \mathbb{R}_{\ge 0}^{B \times K}` (visibility; a
pair's weight is the product :math:`w_{bij} = c_{bi} c_{bj}`; all ones when absent),

.. math::

    d_{bij} = \lVert p_{bi} - p_{bj} \rVert, \quad
    W_{ij} = \sum_b w_{bij}, \quad V_{ij} = \sum_b w_{bij}^2, \quad
    \mu_{ij} = \frac{1}{W_{ij}} \sum_b w_{bij} d_{bij}, \quad
    M_{ij} = \sum_b w_{bij} (d_{bij} - \mu_{ij})^2,

    \operatorname{Var}_{ij} = \frac{M_{ij}}{W_{ij} - V_{ij} / W_{ij}} \ \text{(unbiased)}
    \quad\text{or}\quad \frac{M_{ij}}{W_{ij}} \ \text{(biased)}.

Unweighted, the unbiased denominator is :math:`B - 1`, as in ``torch.var``. The
weighted unbiased form is the one for *reliability* weights.

The native kernels (CPU: C++ on torch's thread pool; CUDA; the same math,
``csrc/pairwise_distance_variance/``) compute the sufficient statistics
``(W, V, mu, M)`` in one pass about a per-pair shift, with float64 (CPU) or
float32-or-better (CUDA) accumulation, and their backward, in ``O(B K^2 D)`` time and
``O(K^2)`` extra memory, for any D: no ``[B, K, K]`` tensor is ever formed. The
pure-torch reference builds ``[B, K, K, D]`` differences; it is the fallback and the test
oracle.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._checks import check_same, check_shape, check_tensor, check_values, shape_str
from ._native import NativeOp

__all__ = [
    "PairwiseDistanceStatsResult",
    "gather_stats",
    "merge_stats",
    "pairwise_distance_stats",
    "pairwise_distance_variance",
    "variance_from_stats",
]


class PairwiseDistanceStatsResult(NamedTuple):
    """What :func:`pairwise_distance_stats` (and :func:`merge_stats`,
    :func:`gather_stats`) return: sufficient statistics of the pairwise distances, each
    ``[K, K]``, symmetric.

    ``wsum`` = W (total pair weight, ``B`` without ``confidence``), ``w2sum`` = V (sum of
    squared pair weights), ``mean`` = mu (weighted mean distance, 0 where W = 0),
    ``m2`` = M (weighted sum of squared deviations from ``mean``). Two sets of these
    statistics merge exactly (Chan et al.), which is how the distributed variance is
    combined across ranks.

    Example:
        >>> st = pairwise_distance_stats(torch.randn(5, 3, 2))
        >>> st.wsum[0, 1].item(), st.mean.shape
        (5.0, torch.Size([3, 3]))
    """

    wsum: torch.Tensor
    w2sum: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor


def _safe_norm(diff: torch.Tensor) -> torch.Tensor:
    """``||diff||`` over the last dim with gradient 0 (not NaN) where ``diff == 0``."""
    sq = (diff * diff).sum(-1)
    zero = sq == 0  # (NaN stays NaN)
    return torch.where(zero, 0.0, torch.sqrt(torch.where(zero, torch.ones_like(sq), sq)))


def _log_norm(diff: torch.Tensor, eps: float) -> torch.Tensor:
    """``log sqrt(||diff||^2 + eps^2)``: finite value and gradient at ``diff == 0`` (eps^2
    is floored at the dtype's smallest normal number, so a tiny eps cannot underflow to
    log 0)."""
    eps2 = max(eps * eps, torch.finfo(diff.dtype).tiny)
    return 0.5 * torch.log((diff * diff).sum(-1) + eps2)


def _stats_reference(
    points: torch.Tensor, confidence: torch.Tensor | None, *, log_eps: float | None = None
) -> PairwiseDistanceStatsResult:
    """Pure-torch statistics (forms ``[B, K, K, D]``): the fallback and the oracle, with
    the signature of the native op.

    With ``log_eps`` the statistics are those of ``log sqrt(d^2 + log_eps^2)`` instead
    of ``d`` (the scale-invariant variant of :func:`torch_artic.lvmst`; diagonal 0).
    """
    acc = torch.float64 if points.dtype == torch.float64 else torch.float32
    p = points.to(acc)
    diff = p[:, :, None, :] - p[:, None, :, :]
    if log_eps is None:
        d = _safe_norm(diff)  # [B, K, K]
    else:
        eye = torch.eye(diff.shape[1], dtype=torch.bool, device=diff.device)
        d = _log_norm(diff, log_eps).masked_fill(eye, 0.0)
    if confidence is None:
        b = p.shape[0]
        wsum = torch.full(d.shape[1:], float(b), dtype=acc, device=p.device)
        w2sum = wsum.clone()
        mean = d.sum(0) / max(b, 1)  # 0 for an empty batch
        m2 = ((d - mean) ** 2).sum(0)
    else:
        c = confidence.to(acc)
        wp = c[:, :, None] * c[:, None, :]
        wsum = wp.sum(0)
        w2sum = (wp * wp).sum(0)
        safe = torch.where(wsum > 0, wsum, torch.ones_like(wsum))
        mean = torch.where(wsum > 0, (wp * d).sum(0) / safe, 0.0)
        m2 = (wp * (d - mean) ** 2).sum(0)
    return PairwiseDistanceStatsResult(*(t.to(points.dtype) for t in (wsum, w2sum, mean, m2)))


def _stats_fake(points, confidence):
    k = points.shape[1]
    return tuple(points.new_empty(k, k) for _ in range(4))


def _stats_backward_fake(points, confidence, mean, coef_m2, coef_mean, coef_wsum, coef_w2sum):
    gc = points.new_empty(confidence.shape) if confidence is not None else points.new_empty(0)
    return points.new_empty(points.shape), gc


def _stats_backward(args, outputs, grads, needs):
    """First-order gradient through ``pairwise_distance_stats_backward``."""
    points, confidence = args
    wsum, mean = outputs
    g_wsum, g_w2sum, g_mean, g_m2 = grads

    def sym(g):
        return torch.zeros_like(mean) if g is None else (g + g.mT).contiguous()

    safe = torch.where(wsum > 0, wsum, torch.ones_like(wsum))
    coef_mean = torch.where(wsum > 0, sym(g_mean) / safe, 0.0).contiguous()
    gp, gc = torch.ops.torch_artic.pairwise_distance_stats_backward(
        points, confidence, mean, sym(g_m2), coef_mean, sym(g_wsum), sym(g_w2sum)
    )
    return gp, (gc if confidence is not None else None)


def _stats_samples(device, dtype):
    """Argument tuples of the op for the generic native-op tests."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64).to(device, dtype)

    return [
        (rand(6, 5, 2), None),
        (rand(9, 4, 3), rand(9, 4) + 0.5),
        (rand(5, 3, 7), None),  # any D
        (rand(1, 2, 1), rand(1, 2)),
        (rand(0, 3, 2), None),  # empty batch
    ]


_STATS = NativeOp(
    "pairwise_distance_stats",
    reference=_stats_reference,
    fake=_stats_fake,
    backward=_stats_backward,
    backward_op="pairwise_distance_stats_backward",
    backward_fake=_stats_backward_fake,
    save_outputs=(0, 2),
    samples=_stats_samples,
)


def merge_stats(parts) -> PairwiseDistanceStatsResult:
    r"""Merge the statistics of disjoint batches exactly (Chan et al.'s parallel update).

    .. math::

        W = \sum_r W_r,\quad \mu = \frac{\sum_r W_r \mu_r}{W},\quad
        M = \sum_r \big(M_r + W_r (\mu_r - \mu)^2\big),\quad V = \sum_r V_r

    No sum of squares is formed, so the merge is as stable as the parts.
    Differentiable.

    Args:
        parts: a sequence of :class:`PairwiseDistanceStatsResult` (each ``[K, K]``).

    Returns:
        The :class:`PairwiseDistanceStatsResult` of the union of the batches.

    Example:
        >>> x = torch.randn(10, 4, 3, dtype=torch.float64)
        >>> parts = [pairwise_distance_stats(x[:3]), pairwise_distance_stats(x[3:])]
        >>> m = merge_stats(parts)
        >>> torch.allclose(m.m2, pairwise_distance_stats(x).m2)
        True
    """
    parts = [PairwiseDistanceStatsResult(*p) for p in parts]
    wsum = torch.stack([p.wsum for p in parts]).sum(0)
    w2sum = torch.stack([p.w2sum for p in parts]).sum(0)
    safe = torch.where(wsum > 0, wsum, torch.ones_like(wsum))
    mean = torch.stack([p.wsum * p.mean for p in parts]).sum(0) / safe
    mean = torch.where(wsum > 0, mean, 0.0)
    m2 = torch.stack([p.m2 + p.wsum * (p.mean - mean) ** 2 for p in parts]).sum(0)
    return PairwiseDistanceStatsResult(wsum, w2sum, mean, m2)


def gather_stats(stats: PairwiseDistanceStatsResult, group) -> PairwiseDistanceStatsResult:
    """The statistics of the global batch across the ranks of ``group``.

    All-gathers every rank's ``(W, V, mu, M)`` with the differentiable
    ``torch.distributed.nn.functional.all_gather`` and merges them with
    :func:`merge_stats`. Values equal the single-process result on the concatenated
    batch. Gradients follow ``all_gather``'s convention: a rank's local gradient is the
    sum over ranks of their losses' gradients, so that DDP's averaging over ranks gives
    exactly the gradient of the global-batch loss (for a loss computed identically on
    every rank, each rank's local gradient is world_size times the single-process one).

    Args:
        stats: this rank's :class:`PairwiseDistanceStatsResult`.
        group: a ``torch.distributed`` process group (``torch.distributed.group.WORLD``
            for all ranks).

    Returns:
        The merged :class:`PairwiseDistanceStatsResult`, identical on every rank.
    """
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("`group` was given but torch.distributed is not initialized")
    stacked = torch.stack(tuple(stats)).contiguous()  # [4, K, K]
    parts = all_gather(stacked, group=group)
    return merge_stats([PairwiseDistanceStatsResult(*t.unbind(0)) for t in parts])


def _validate(points, confidence, *, unbiased: bool | None = None, group=None) -> None:
    """Shapes and dtypes; with ``unbiased`` given (a variance is wanted), also the batch
    size the variance needs (a distributed batch is checked once merged)."""
    check_tensor(points, "points")
    check_shape(points, "points", "[B, K, D]", points.dim() == 3 and points.shape[-1] >= 1)
    b, k, _ = points.shape
    if k < 2:
        raise ValueError(
            f"`points` must have K >= 2 keypoints ([B, K, D]), got {shape_str(points.shape)}"
        )
    if confidence is not None:
        check_tensor(confidence, "confidence")
        check_shape(
            confidence, "confidence", f"[B, K] = [{b}, {k}]", tuple(confidence.shape) == (b, k)
        )
        check_same("points", points, "confidence", confidence)
    if unbiased is not None and group is None and b < (2 if unbiased else 1):
        raise ValueError(
            f"`points` needs a batch of B >= 2 samples for the unbiased variance (B >= 1 for "
            f"the biased one), got {shape_str(points.shape)}"
        )


def pairwise_distance_stats(
    points: torch.Tensor, *, confidence: torch.Tensor | None = None
) -> PairwiseDistanceStatsResult:
    """Sufficient statistics ``(W, V, mu, M)`` of every pairwise distance over the batch.

    Args:
        points: ``[B, K, D]`` keypoints (any D >= 1, any B >= 0: an empty batch has
            W = V = mu = M = 0).
        confidence: optional ``[B, K]`` non-negative per-sample, per-keypoint weights
            (visibility); a pair's weight is the product of its two.

    Returns:
        :class:`PairwiseDistanceStatsResult` of four symmetric ``[K, K]`` tensors (see the
        module docstring for the formulas). Differentiable w.r.t. ``points`` and
        ``confidence`` (first and higher order).

    Example:
        >>> st = pairwise_distance_stats(torch.randn(8, 5, 3))
        >>> st.mean.shape, float(st.wsum[0, 1])
        (torch.Size([5, 5]), 8.0)
    """
    _validate(points, confidence)
    conf = None if confidence is None else _non_negative(confidence).contiguous()
    return PairwiseDistanceStatsResult(*_STATS(points.contiguous(), conf))


def _non_negative(confidence: torch.Tensor) -> torch.Tensor:
    """``confidence`` checked >= 0 (CPU: ValueError; CUDA: negative entries become NaN,
    so every statistic they touch is NaN). NaN entries are NaN in, NaN out."""
    ok = ~(confidence < 0)
    msg = "`confidence` must be >= 0 everywhere (a weight per keypoint and sample)"
    if check_values(ok, msg):
        return confidence
    return torch.where(ok, confidence, torch.nan)


def pairwise_distance_variance(
    points: torch.Tensor,
    *,
    unbiased: bool = True,
    confidence: torch.Tensor | None = None,
    group=None,
) -> torch.Tensor:
    r"""Variance over the batch of the distance between every pair of keypoints.

    .. math::

        \operatorname{Var}_{ij} = \frac{\sum_b w_{bij} (d_{bij} - \mu_{ij})^2}
        {W_{ij} - V_{ij}/W_{ij}}, \qquad d_{bij} = \lVert p_{bi} - p_{bj} \rVert

    (denominator ``W`` when ``unbiased=False``; ``B - 1`` resp. ``B`` unweighted).

    Args:
        points: ``[B, K, D]`` keypoints, B >= 2 (>= 1 if ``unbiased=False`` or with a
            ``group``), K >= 2.
        unbiased: Bessel-corrected (default) or population variance.
        confidence: optional ``[B, K]`` non-negative per-keypoint weights (visibility);
            a pair's weight is the product of its two keypoints' confidences.
        group: a ``torch.distributed`` process group: the variance then covers the
            global batch of all its ranks (see :func:`gather_stats` for the gradient
            convention). ``None`` (default): this process's batch only.

    Returns:
        ``[K, K]`` symmetric, non-negative, zero diagonal, in the dtype of ``points``.
        The gradient at coincident points is finite (zero from that pair's distance).

    Raises:
        ValueError: bad shapes; ``B < 2`` for the unbiased form; and, for CPU tensors,
            confidences that leave a pair without enough total weight for the chosen
            denominator. (On CUDA that check would need a host sync: such pairs are
            NaN instead.)

    Cost: ``O(B K^2 D)`` time, ``O(K^2)`` extra memory with the native kernels.

    Example:
        >>> x = torch.randn(16, 4, 3)
        >>> v = pairwise_distance_variance(x)
        >>> torch.allclose(v, torch.cdist(x, x).var(0), atol=1e-5)
        True
    """
    _validate(points, confidence, unbiased=unbiased, group=group)
    st = pairwise_distance_stats(points, confidence=confidence)
    if group is not None:
        st = gather_stats(st, group)
    return variance_from_stats(st, unbiased=unbiased)


def variance_from_stats(st: PairwiseDistanceStatsResult, *, unbiased: bool = True) -> torch.Tensor:
    """``[K, K]`` variance from (merged) statistics, with a zero diagonal.

    ``M / (W - V / W)`` (unbiased, reliability weights) or ``M / W``. A pair whose
    denominator is not positive (too little weight: fewer than two samples with non-zero
    weight for the unbiased form, none for the biased) is a ``ValueError`` for CPU
    tensors (a ``RuntimeError`` under ``torch.compile``) and NaN on CUDA (no host sync
    for validation).

    Args:
        st: :class:`PairwiseDistanceStatsResult` of ``[K, K]`` tensors.
        unbiased: the denominator, as in :func:`pairwise_distance_variance`.

    Returns:
        ``[K, K]`` variance.
    """
    k = st.m2.shape[-1]
    eye = torch.eye(k, dtype=torch.bool, device=st.m2.device)
    safe = torch.where(st.wsum > 0, st.wsum, torch.ones_like(st.wsum))
    denom = st.wsum - st.w2sum / safe if unbiased else st.wsum
    ok = ~(denom <= 0) | eye  # (NaN statistics: NaN in, NaN out, not an error)
    form = "unbiased" if unbiased else "biased"
    need = "two samples" if unbiased else "one sample"

    def message():
        bad = int((~ok).sum()) // 2
        return (
            f"{bad} keypoint pair(s) have too little total weight for the {form} variance: "
            f"each pair needs non-zero weight (`confidence`) in at least {need}"
        )

    message.static = f"keypoint pairs with too little total weight for the {form} variance"
    check_values(ok, message)
    return torch.where(ok, st.m2 / torch.where(ok, denom, 1.0), torch.nan).masked_fill(eye, 0.0)
