r"""Evaluation metrics for keypoints and skeletons (thesis §5.5.3.2, §5.4.4).

- :func:`hungarian_keypoint_error`: self-supervised keypoints come in an arbitrary
  order, so predicted and true keypoints are matched by the Hungarian algorithm, **once
  for the whole batch** (thesis §5.5.3.2: matching per example would hide keypoints that
  are inconsistent from one image to the next), then the per-landmark error is read off.
- :func:`mpjpe` (mean per-joint position error, optionally after aligning a root joint),
  :func:`procrustes_align` and :func:`pa_mpjpe` (after a per-sample similarity
  Procrustes alignment): the usual 3D pose errors.
- :func:`edge_precision_recall`: how many true limbs a recovered skeleton has.

The errors are differentiable functions of the prediction (the Hungarian assignment is
a constant of the batch; Procrustes goes through an SVD); all take any floating dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ._checks import check_same, check_shape, check_tensor, shape_str

__all__ = [
    "EdgePrecisionRecallResult",
    "HungarianKeypointErrorResult",
    "edge_precision_recall",
    "hungarian_keypoint_error",
    "mpjpe",
    "pa_mpjpe",
    "procrustes_align",
]


class HungarianKeypointErrorResult(NamedTuple):
    """Result of :func:`hungarian_keypoint_error`.

    ``assignment`` ``[K_true]`` long: ``pred[:, assignment[j]]`` is matched to
    ``target[:, j]`` (``-1`` everywhere if the cost was not finite);
    ``per_landmark_mse`` ``[K_true]``; ``mse`` scalar (their mean);
    ``per_landmark_distance`` ``[K_true]`` mean Euclidean distance; ``distance`` scalar;
    ``aligned`` ``[B, K_true, D]`` = ``pred[:, assignment]``.

    Example:
        >>> target = torch.rand(8, 3, 2)
        >>> err = hungarian_keypoint_error(target[:, [2, 0, 1]], target)
        >>> err.assignment.tolist(), float(err.mse)
        ([1, 2, 0], 0.0)
    """

    assignment: torch.Tensor
    per_landmark_mse: torch.Tensor
    mse: torch.Tensor
    per_landmark_distance: torch.Tensor
    distance: torch.Tensor
    aligned: torch.Tensor


def _check_pair(pred, target, same_k: bool) -> None:
    check_tensor(pred, "pred")
    check_tensor(target, "target")
    check_same("pred", pred, "target", target)
    check_shape(pred, "pred", "[B, K, D]", pred.dim() == 3)
    check_shape(target, "target", "[B, K, D]", target.dim() == 3)
    b, k, d = pred.shape
    expected = f"[{b}, {k}, {d}] (as `pred`)" if same_k else f"[{b}, K_true, {d}] (B, D of `pred`)"
    ok = target.shape[0] == b and target.shape[2] == d and (not same_k or target.shape[1] == k)
    check_shape(target, "target", expected, ok)


def hungarian_keypoint_error(
    pred: torch.Tensor, target: torch.Tensor
) -> HungarianKeypointErrorResult:
    r"""Keypoint error after one Hungarian matching for the whole batch (thesis §5.5.3.2).

    The cost of matching predicted keypoint ``i`` to true keypoint ``j`` is their mean
    squared distance over the batch,

    .. math:: C_{ij} = \frac1B \sum_b \lVert \hat p_{bi} - p_{bj} \rVert^2 ,

    and ``scipy.optimize.linear_sum_assignment`` finds the one-to-one matching
    :math:`\pi` (each true keypoint gets a distinct predicted one) of least total cost.
    With :math:`a_{bj} = \hat p_{b\pi(j)}`:

    .. math::

        \mathrm{MSE}_j = \frac{1}{BD}\sum_{b,d} (a_{bjd} - p_{bjd})^2, \qquad
        \mathrm{dist}_j = \frac1B \sum_b \lVert a_{bj} - p_{bj} \rVert,

    (MSE as ``torch.nn.functional.mse_loss``: the mean over coordinates too) and their
    means over ``j``. The matching is the same for every sample, so a keypoint that
    jumps between limbs from image to image is penalised.

    The matching reads values (it runs on the CPU: a host sync on CUDA). The errors are
    differentiable w.r.t. ``pred`` and ``target`` (the matching is held fixed). If the
    cost has a NaN or an infinity, the assignment is all ``-1`` and every error and
    ``aligned`` is NaN (NaN in, NaN out).

    Args:
        pred: ``[B, K_pred, D]`` predicted keypoints, ``K_pred >= K_true``.
        target: ``[B, K_true, D]`` true keypoints (same B, D, dtype and device).

    Returns:
        :class:`HungarianKeypointErrorResult` ``(assignment [K_true],
        per_landmark_mse [K_true], mse [], per_landmark_distance [K_true], distance [],
        aligned [B, K_true, D])``.

    Cost: :math:`O(B K_{pred} K_{true} D)` for the cost matrix and
    :math:`O(K^3)` for the matching.

    Example:
        >>> target = torch.rand(16, 4, 2)
        >>> pred = target[:, [2, 0, 3, 1]]  # the right points, in another order
        >>> err = hungarian_keypoint_error(pred, target)
        >>> err.assignment.tolist(), float(err.mse)
        ([1, 3, 0, 2], 0.0)
    """
    from scipy.optimize import linear_sum_assignment

    _check_pair(pred, target, same_k=False)
    b, kp, d = pred.shape
    kt = target.shape[1]
    if kp < kt:
        raise ValueError(
            f"`pred` must have at least as many keypoints as `target` "
            f"([B, K_pred >= {kt}, D]), got {shape_str(pred.shape)}"
        )
    if b < 1 or kt < 1 or d < 1:
        raise ValueError(
            f"`target` must have shape [B, K, D] with B, K, D >= 1, got {shape_str(target.shape)}"
        )
    with torch.no_grad():
        p = pred.detach().double()
        t = target.detach().double()
        cost = ((p[:, :, None] - t[:, None]) ** 2).sum(-1).mean(0)  # [K_pred, K_true]
        finite = bool(torch.isfinite(cost).all())
    if finite:
        rows, cols = linear_sum_assignment(cost.T.cpu().numpy())
        order = torch.as_tensor(rows).argsort()
        assignment = torch.as_tensor(cols)[order].long().to(pred.device)
        aligned = pred[:, assignment]
    else:
        assignment = torch.full((kt,), -1, dtype=torch.long, device=pred.device)
        aligned = torch.full_like(target, float("nan")) + 0.0 * pred[:, :kt]
    diff = aligned - target
    per_mse = (diff**2).mean((0, 2))
    per_dist = diff.norm(dim=-1).mean(0)
    return HungarianKeypointErrorResult(
        assignment, per_mse, per_mse.mean(), per_dist, per_dist.mean(), aligned
    )


def _check_poses(pred, target) -> None:
    """``pred`` and ``target``: tensors of the same shape ``[..., K, D]``, dtype and device."""
    check_tensor(pred, "pred")
    check_tensor(target, "target")
    check_same("pred", pred, "target", target)
    check_shape(pred, "pred", "[..., K, D]", pred.dim() >= 2)
    check_shape(
        target, "target", f"{shape_str(pred.shape)} (as `pred`)", target.shape == pred.shape
    )


def _check_root(root, k: int):
    if root is None:
        return None
    if isinstance(root, bool) or not isinstance(root, int):
        raise TypeError(f"`root` must be an int joint index or None, got {type(root).__name__}")
    if not -k <= root < k:
        raise ValueError(f"`root` must be a joint index in [{-k}, {k}), got {root}")
    return root % k


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"`reduction` must be 'mean' or 'none', got {reduction!r}")


def mpjpe(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    root: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Mean per-joint position error (MPJPE).

    .. math:: \mathrm{MPJPE} = \frac{1}{NK}\sum_{n,k}
        \big\lVert (\hat p_{nk} - \hat p_{nr}) - (p_{nk} - p_{nr}) \big\rVert

    with root-joint alignment (``root = r``: both poses translated so that joint ``r`` is
    at the origin) or without (``root=None``: the :math:`p_{nr}` terms dropped). In the
    units of the inputs.

    Args:
        pred: ``[..., K, D]`` predicted joints.
        target: ``[..., K, D]`` true joints (same shape, dtype and device).
        root: index of the root joint to align, or ``None``.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (the ``[..., K]`` distances).

    Returns:
        A scalar, or ``[..., K]``. Differentiable; NaN in, NaN out.

    Example:
        >>> target = torch.zeros(2, 3, 3)
        >>> float(mpjpe(target + torch.tensor([0.0, 0.0, 1.0]), target))
        1.0
        >>> float(mpjpe(target + torch.tensor([0.0, 0.0, 1.0]), target, root=0))
        0.0
    """
    _check_poses(pred, target)
    _check_reduction(reduction)
    root = _check_root(root, pred.shape[-2])
    if root is not None:
        pred = pred - pred[..., root : root + 1, :]
        target = target - target[..., root : root + 1, :]
    err = (pred - target).norm(dim=-1)
    return err.mean() if reduction == "mean" else err


def procrustes_align(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    scale: bool = True,
    reflection: bool = False,
) -> torch.Tensor:
    r"""Per-sample similarity Procrustes alignment of ``pred`` onto ``target``.

    For each sample, with centred :math:`X = \hat P - \bar{\hat P}`,
    :math:`Y = P - \bar P` (``[K, D]``, rows are joints) find the rotation :math:`R`,
    scale :math:`s` and translation minimising
    :math:`\lVert s X R + \bar P - P \rVert_F^2` (Umeyama 1991):
    :math:`X^\top Y = U \Sigma V^\top`, :math:`R = U\,\mathrm{diag}(1, \dots, 1, d)\,V^\top`,
    :math:`s = \operatorname{tr}(\Sigma\,\mathrm{diag}(1, \dots, 1, d)) / \lVert X \rVert_F^2`,
    where :math:`d = \operatorname{sign}\det(U V^\top)` keeps :math:`R` a **proper
    rotation** (det +1; the default, as in the usual PA-MPJPE) or :math:`d = 1` with
    ``reflection=True`` (the best orthogonal map, mirror images allowed). Note that with
    proper rotations a depth-flipped (mirrored) pose stays wrong, while
    ``reflection=True`` would hide a depth-sign error.

    Args:
        pred: ``[..., K, D]`` poses to move (``K >= 1``; ``D >= 1``).
        target: ``[..., K, D]`` reference poses (same shape, dtype, device).
        scale: fit the scale :math:`s` (else :math:`s = 1`: a rigid alignment).
        reflection: allow improper rotations (det -1).

    Returns:
        ``[..., K, D]`` aligned ``pred``: :math:`s X R + \bar P`, in the dtype of ``pred``
        (float16/bfloat16 are computed in float32). A sample whose ``pred`` is a single
        point (:math:`X = 0`) maps to the target's centroid; a sample with a non-finite
        entry is NaN (the others are unaffected). Differentiable through
        ``torch.linalg.svd`` (its gradient is unstable when singular values of
        :math:`X^\top Y` coincide, e.g. for degenerate, collinear poses).

    Example:
        >>> target = torch.randn(4, 5, 3, dtype=torch.float64)
        >>> q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
        >>> q = q * torch.linalg.det(q)  # a proper rotation
        >>> pred = 2.0 * target @ q + 1.0
        >>> torch.allclose(procrustes_align(pred, target), target)
        True
    """
    _check_poses(pred, target)
    out_dtype = pred.dtype
    work = torch.promote_types(out_dtype, torch.float32)  # svd has no float16/bfloat16
    pred, target = pred.to(work), target.to(work)
    mu_p = pred.mean(-2, keepdim=True)
    mu_t = target.mean(-2, keepdim=True)
    x = pred - mu_p
    y = target - mu_t
    h = x.transpose(-1, -2) @ y  # [..., D, D]
    # a sample with a non-finite entry would make the batched svd fail for all: it gets
    # the identity there and NaN in the result
    bad = ~torch.isfinite(h).all(-1).all(-1)
    eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    u, sv, vh = torch.linalg.svd(torch.where(bad[..., None, None], eye, h))
    if reflection:
        signs = torch.ones_like(sv)
    else:
        det = torch.linalg.det(u @ vh)
        d = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
        signs = torch.cat((torch.ones_like(sv[..., :-1]), d[..., None]), -1)
    rot = (u * signs[..., None, :]) @ vh
    if scale:
        norm2 = (x**2).sum((-1, -2))
        s = (sv * signs).sum(-1) / torch.where(norm2 > 0, norm2, torch.ones_like(norm2))
        s = s[..., None, None]
    else:
        s = 1.0
    out = torch.where(bad[..., None, None], torch.nan, s * (x @ rot) + mu_t)
    return out.to(out_dtype)


def pa_mpjpe(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    scale: bool = True,
    reflection: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Procrustes-aligned MPJPE: :func:`mpjpe` after :func:`procrustes_align`.

    .. math:: \mathrm{PA\text{-}MPJPE} = \frac{1}{NK}\sum_{n,k}
        \lVert (s_n \hat P_n R_n + t_n)_k - P_{nk} \rVert

    with the per-sample similarity transform of :func:`procrustes_align` (proper
    rotation unless ``reflection=True``; scale unless ``scale=False``).

    Args:
        pred, target: ``[..., K, D]`` poses.
        scale, reflection: as in :func:`procrustes_align`.
        reduction: ``"mean"`` or ``"none"`` (``[..., K]``).

    Returns:
        A scalar or ``[..., K]`` distances, in the units of ``target``.

    Example:
        >>> target = torch.randn(8, 16, 3)
        >>> float(pa_mpjpe(3.0 * target + 2.0, target)) < 1e-4
        True
    """
    _check_reduction(reduction)
    aligned = procrustes_align(pred, target, scale=scale, reflection=reflection)
    return mpjpe(aligned, target, reduction=reduction)


class EdgePrecisionRecallResult(NamedTuple):
    """Result of :func:`edge_precision_recall` (plain Python numbers).

    Example:
        >>> r = edge_precision_recall([[0, 1], [1, 2]], [[0, 1], [0, 2]])
        >>> r.precision, r.recall, r.true_positives
        (0.5, 0.5, 1)
    """

    precision: float
    recall: float
    f1: float
    true_positives: int
    num_predicted: int
    num_true: int


def _edge_set(edges, name: str) -> tuple[set[tuple[int, int]], int | None]:
    """Undirected edges ``{(i, j): i < j}`` of an adjacency or an edge list, and K if known."""
    if isinstance(edges, torch.Tensor) and (
        edges.dtype.is_floating_point or edges.dtype == torch.bool
    ):
        if edges.dim() != 2 or edges.shape[0] != edges.shape[1]:
            raise ValueError(
                f"`{name}` must have shape [K, K] (an adjacency) or [E, 2] (an integer edge "
                f"list), got {shape_str(edges.shape)}"
            )
        a = edges.detach().cpu()
        a = (a.double() > 0.5) if a.dtype != torch.bool else a
        a = a | a.T
        i, j = torch.nonzero(torch.triu(a, diagonal=1), as_tuple=True)
        return set(zip(i.tolist(), j.tolist(), strict=True)), int(edges.shape[0])
    from .data import _as_edges

    e = _as_edges(edges, name).cpu()
    if e.numel() and int(e.min()) < 0:
        raise ValueError(f"`{name}` must hold non-negative keypoint indices, got {int(e.min())}")
    out = {(min(a, b), max(a, b)) for a, b in e.tolist() if a != b}
    return out, None


def edge_precision_recall(
    pred,
    target,
    *,
    assignment: torch.Tensor | Sequence[int] | None = None,
) -> EdgePrecisionRecallResult:
    r"""Precision and recall of recovered skeleton edges (undirected).

    .. math:: \mathrm{precision} = \frac{|\hat E \cap E|}{|\hat E|},\quad
        \mathrm{recall} = \frac{|\hat E \cap E|}{|E|},\quad
        F_1 = \frac{2 PR}{P + R}

    (0 when the denominator is 0). Edges are unordered pairs; self-loops and repeats are
    ignored.

    Args:
        pred: predicted skeleton: a floating or bool ``[K, K]`` adjacency (an edge where
            ``A_ij > 0.5`` or ``A_ji > 0.5``; e.g. from :func:`torch_artic.lvmst`), or an
            integer ``[E, 2]`` tensor / a sequence of ``(i, j)`` pairs.
        target: true skeleton, in the same forms (e.g. ``stickman2d(...).edges``).
        assignment: optional ``[K_true]`` map from true to predicted keypoint indices
            (``pred`` keypoint ``assignment[j]`` is true keypoint ``j``, as returned by
            :func:`hungarian_keypoint_error`); predicted edges are relabelled with it,
            and an edge touching an unmatched predicted keypoint is a false positive.

    Returns:
        :class:`EdgePrecisionRecallResult` ``(precision, recall, f1, true_positives,
        num_predicted, num_true)``. Not differentiable (reads values).

    Example:
        >>> truth = [(0, 1), (1, 2), (2, 3)]
        >>> r = edge_precision_recall([(1, 0), (1, 2), (0, 3)], truth)
        >>> r.precision, r.recall, r.true_positives
        (0.6666666666666666, 0.6666666666666666, 2)
    """
    pred_set, _ = _edge_set(pred, "pred")
    true_set, _ = _edge_set(target, "target")
    if assignment is not None:
        assign = _as_assignment(assignment)
        inverse = {p: j for j, p in enumerate(assign)}
        pred_set = {
            (min(inverse[a], inverse[b]), max(inverse[a], inverse[b]))
            if a in inverse and b in inverse
            else (-1 - a, -1 - b)  # unmatched: cannot equal a true edge
            for a, b in pred_set
        }
    tp = len(pred_set & true_set)
    precision = tp / len(pred_set) if pred_set else 0.0
    recall = tp / len(true_set) if true_set else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return EdgePrecisionRecallResult(precision, recall, f1, tp, len(pred_set), len(true_set))


def _as_assignment(assignment) -> list[int]:
    if isinstance(assignment, torch.Tensor):
        if assignment.dtype.is_floating_point or assignment.dtype == torch.bool:
            raise TypeError(f"`assignment` must be an integer tensor, got {assignment.dtype}")
        check_shape(assignment, "assignment", "[K_true]", assignment.dim() == 1)
        values = assignment.tolist()
    elif isinstance(assignment, Sequence) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in assignment
    ):
        values = list(assignment)
    else:
        raise TypeError(
            f"`assignment` must be a [K_true] integer tensor or a list of ints, "
            f"got {type(assignment).__name__}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"`assignment` must not repeat a predicted keypoint, got {values}")
    return values
