r"""Skeleton discovery and rigidity losses (thesis §5.3–5.4, §6.5.1.3).

Keypoints joined by a rigid limb keep their distance in every pose. The
*limb-variance minimum spanning tree* (LVMST) therefore connects the keypoints along
the minimum spanning tree of the batch variance of pairwise distances, and the
*limb-variance loss* — the summed variance of the selected limbs — trains keypoints
(or depths) to make those limbs rigid:

.. math::

    V = \operatorname{Var}_b\big(\lVert p_{bi} - p_{bj}\rVert\big)_{ij},\qquad
    A = \operatorname{dmst}(V),\qquad
    \mathcal{L} = \sum_{i<j} A_{ij} V_{ij}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ._checks import check_device, check_positive, check_shape, check_tensor, shape_str
from .mst import _StraightThrough, dmst
from .pairwise_distance_variance import (
    _non_negative,
    _stats_reference,
    _validate,
    gather_stats,
    pairwise_distance_stats,
    pairwise_distance_variance,
    variance_from_stats,
)

__all__ = ["LVMSTResult", "limb_variance_loss", "lvmst", "self_consistency_loss"]

_LOSS_GRADIENTS = ("product", "envelope")  # the values of lvmst's ``loss_gradient``


class LVMSTResult(NamedTuple):
    """What :func:`lvmst` returns.

    ``adjacency`` ``[K, K]`` (the tree, or its relaxation), ``variance`` ``[K, K]`` (the
    statistic the tree was built on) and ``loss`` (a scalar: the variance summed over
    the tree's edges, each edge once).

    Example:
        >>> r = lvmst(torch.randn(16, 4, 3))
        >>> r.adjacency.shape, r.variance.shape, r.loss.shape
        (torch.Size([4, 4]), torch.Size([4, 4]), torch.Size([]))
    """

    adjacency: torch.Tensor
    variance: torch.Tensor
    loss: torch.Tensor


def _edge_sum(adjacency: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} A_ij V_ij`` for symmetric ``A`` and ``V`` with zero diagonals."""
    return torch.triu(adjacency * variance, diagonal=1).sum((-1, -2))


def lvmst(
    points: torch.Tensor,
    *,
    relaxation: str = "ste",
    temperature: float = 0.1,
    unbiased: bool = True,
    scale_invariant: bool = False,
    confidence: torch.Tensor | None = None,
    group=None,
    eps: float = 1e-6,
    num_samples: int = 32,
    noise_scale: float = 0.1,
    generator: torch.Generator | None = None,
    loss_gradient: str = "product",
) -> LVMSTResult:
    r"""Limb-variance minimum spanning tree: which keypoints are joined by rigid limbs.

    ``variance = pairwise_distance_variance(points)`` (or, with
    ``scale_invariant=True``, the variance of log-distances
    :math:`\log\sqrt{d^2 + \epsilon^2}`), ``adjacency = dmst(variance,
    relaxation=relaxation, temperature=temperature)`` and
    ``loss = sum_{i<j} adjacency_ij * variance_ij``.

    With ``scale_invariant=True`` a per-sample global scale :math:`s_b` (camera distance,
    thesis §5.6.1) adds the same :math:`\operatorname{Var}(\log s)` to every pair (plus a
    covariance with the pose that vanishes when scale and pose are independent), so
    rigid limbs keep the smallest variance and the tree is unchanged.

    Args:
        points: ``[B, K, D]`` keypoints (D = 2 or 3 in practice; any D >= 1), B >= 2,
            K >= 2.
        relaxation: the :func:`torch_artic.dmst` relaxation: ``"ste"`` (default: exact
            tree, gradient of the matrix-tree relaxation), ``"hard"``, ``"soft"`` or
            ``"perturbed"``.
        temperature: relative temperature of the relaxation (see :func:`dmst`).
        unbiased: Bessel-corrected variance (default).
        scale_invariant: use the variance of log-distances.
        confidence: optional ``[B, K]`` per-sample, per-keypoint visibility/confidence
            (thesis §6.7.1.1): a pair's weight is the product; occluded keypoints
            (confidence 0) do not count.
        group: ``torch.distributed`` process group: the variance covers the global
            batch (values equal the single-process result on the concatenated batch;
            see :func:`torch_artic.pairwise_distance_variance`).
        eps: the :math:`\epsilon` of the log-distance, in the units of ``points``.
        num_samples, noise_scale, generator: for ``relaxation="perturbed"``, as in
            :func:`torch_artic.dmst`.
        loss_gradient: how ``loss`` is differentiated (its value is the same either way).
            ``"product"`` (default): the product rule through both factors of
            :math:`\sum A_{ij} V_{ij}`, including the relaxed tree's own gradient
            :math:`\sum_{ij} V_{ij}\,\partial A_{ij} / \partial V` for ``"ste"``,
            ``"soft"`` and ``"perturbed"``. That term rewards *raising* the variance of
            pairs off the tree (it makes the tree more certain): it is
            :math:`-\operatorname{Cov}_T(w(T), [kl \in T]) / \tau` under the Gibbs
            distribution of ``"soft"``, negative for a costly pair, so gradient descent
            spreads non-limb distances apart (a depth network trained this way diverges,
            ``docs/examples.md``, *lift3d*). ``"envelope"``: :math:`\partial
            \mathcal{L} / \partial V_{ij}` is the relaxed tree itself, held constant —
            the soft marginals :math:`\mu_{ij}` of ``dmst(variance,
            relaxation="soft")`` for ``"ste"`` and ``"soft"``, the perturbed frequencies
            for ``"perturbed"`` — i.e. the gradient of the smoothed minimum tree weight
            :math:`-\tau \log \sum_T e^{-w(T)/\tau}` (envelope theorem): it is
            :math:`\ge 0` for every pair, so no variance is pushed up, and each pair is
            made rigid in proportion to its probability of being a limb. With
            ``"hard"`` both are the tree's edges. ``adjacency`` keeps its own gradient
            either way.

    Returns:
        :class:`LVMSTResult` ``(adjacency [K, K], variance [K, K], loss [])``.

    Cost: the variance is :math:`O(BK^2D)` (native kernels when built); the exact tree
    :math:`O(K^2)`; the relaxation's gradient :math:`O(K^4)`.

    Example:
        >>> x = torch.randn(64, 5, 3, requires_grad=True)
        >>> adjacency, variance, loss = lvmst(x)
        >>> loss.backward()
        >>> int(adjacency.triu(1).sum())
        4
    """
    _validate(points, confidence, unbiased=unbiased, group=group)
    eps = check_positive(eps, "eps")
    if not isinstance(loss_gradient, str) or loss_gradient not in _LOSS_GRADIENTS:
        raise ValueError(
            f"`loss_gradient` must be one of {', '.join(map(repr, _LOSS_GRADIENTS))}, "
            f"got {loss_gradient!r}"
        )
    if scale_invariant:
        conf = None if confidence is None else _non_negative(confidence)
        st = _stats_reference(points, conf, log_eps=eps)
    else:
        st = pairwise_distance_stats(points, confidence=confidence)
    if group is not None:
        st = gather_stats(st, group)
    variance = variance_from_stats(st, unbiased=unbiased)
    envelope = (
        loss_gradient == "envelope"
        and relaxation != "hard"
        and torch.is_grad_enabled()
        and variance.requires_grad
    )
    if envelope and relaxation == "ste":
        # the straight-through tree from its two halves, so that the soft tree behind its
        # gradient (the envelope weights) is computed once
        weights = dmst(variance, relaxation="soft", temperature=temperature)
        hard = dmst(variance.detach(), relaxation="hard")
        adjacency = _StraightThrough.apply(hard, weights)
        weights = weights.detach()
    else:
        adjacency = dmst(
            variance,
            relaxation=relaxation,
            temperature=temperature,
            num_samples=num_samples,
            noise_scale=noise_scale,
            generator=generator,
        )
        weights = adjacency.detach()  # "soft" / "perturbed": the relaxed adjacency itself
    if envelope:
        fixed = variance.detach()
        loss = _edge_sum(adjacency.detach(), fixed) + _edge_sum(weights, variance - fixed)
        return LVMSTResult(adjacency, variance, loss)
    return LVMSTResult(adjacency, variance, _edge_sum(adjacency, variance))


def limb_variance_loss(
    points: torch.Tensor,
    adjacency: torch.Tensor,
    *,
    unbiased: bool = True,
    confidence: torch.Tensor | None = None,
    group=None,
) -> torch.Tensor:
    r"""The summed batch variance of the lengths of the limbs in ``adjacency``.

    .. math:: \mathcal{L} = \sum_{i<j} A_{ij}\,\operatorname{Var}_b \lVert p_{bi}-p_{bj}\rVert

    (thesis §5.4.1): zero exactly when every selected limb is rigid.

    Args:
        points: ``[B, K, D]`` keypoints.
        adjacency: ``[K, K]`` symmetric limb weights (0/1 or soft); only ``i < j`` is
            read.
        unbiased, confidence, group: as in
            :func:`torch_artic.pairwise_distance_variance`.

    Returns:
        A scalar.

    Example:
        >>> adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> float(limb_variance_loss(torch.randn(8, 2, 3), adj)) > 0
        True
    """
    _validate(points, confidence, unbiased=unbiased, group=group)
    check_tensor(adjacency, "adjacency")
    k = points.shape[1]
    check_shape(adjacency, "adjacency", f"[K, K] = [{k}, {k}]", tuple(adjacency.shape) == (k, k))
    check_device(adjacency, "adjacency", points, "points")
    var = pairwise_distance_variance(points, unbiased=unbiased, confidence=confidence, group=group)
    return _edge_sum(adjacency.to(var.dtype), var)


def self_consistency_loss(
    depth_fn: Callable[[torch.Tensor], torch.Tensor],
    points: torch.Tensor,
    *,
    depth: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Self-consistency of a depth (lifting) network (thesis §5.4.2).

    A network that infers depth ``z = depth_fn(points)`` from 2D points ``(x, y)`` has
    learnt a consistent 3D shape if, shown the side view ``(z, y)`` (the pose turned 90°
    about the vertical axis), it infers the depth ``-x``:

    .. math:: \mathcal{L} = \operatorname{mean}\big(\mathrm{net}([z, y]) + x\big)^2 .

    Args:
        depth_fn: maps ``[B, K, 2]`` ``(x, y)`` keypoints to ``[B, K]`` depths.
        points: ``[B, K, 2]`` 2D keypoints ``(x, y)``.
        depth: ``depth_fn(points)`` if already computed (saves a forward pass).

    Returns:
        The mean squared error, a scalar.

    Example:
        >>> net = lambda p: -p[..., 0] * 0  # a network that predicts zero depth
        >>> float(self_consistency_loss(net, torch.zeros(4, 3, 2)))
        0.0
    """
    check_tensor(points, "points")
    check_shape(points, "points", "[B, K, 2]", points.dim() == 3 and points.shape[-1] == 2)
    if depth is None:
        z = _depths(depth_fn(points), points, "depth_fn")
    else:
        z = _depths(depth, points, "depth")
    zy = torch.stack((z, points[..., 1]), dim=-1)
    x_pred = _depths(depth_fn(zy), points, "depth_fn")  # the side view's depths
    return ((x_pred + points[..., 0]) ** 2).mean()


def _depths(z, points: torch.Tensor, name: str) -> torch.Tensor:
    """``z`` must be ``[B, K]`` depths for ``points [B, K, 2]``, on their device."""
    want = shape_str(points.shape[:2])
    if not isinstance(z, torch.Tensor):
        got = type(z).__name__
        raise TypeError(f"`{name}` must give a torch.Tensor of depths {want}, got {got}")
    what = "map [B, K, 2] points to depths" if name == "depth_fn" else "hold depths"
    if tuple(z.shape) != tuple(points.shape[:2]):
        raise ValueError(f"`{name}` must {what} [B, K] = {want}, got {shape_str(z.shape)}")
    check_device(z, name, points, "points")
    return z
