"""torch-artic: differentiable primitives for self-supervised articulated-pose learning.

The public API (the guide, the API conventions and the API reference are the Sphinx
docs in ``docs/``):

- keypoints from heatmaps: :func:`soft_argmax2d`, :func:`gaussian_heatmaps`,
  :func:`concentration_loss`
- skeleton discovery: :func:`pairwise_distance_variance`, :func:`pairwise_distance_stats`
  (native kernels), :func:`dmst`, :func:`lvmst`, :func:`limb_variance_loss`,
  :func:`self_consistency_loss`
- sketching: :func:`sketch_render` (native kernels)
- warps: :func:`tps_warp`, :func:`random_tps`, :func:`scale_tps`
- loss balancing: :class:`BalancedMTL`
- coordinates: :func:`normalize_points`, :func:`denormalize_points`, :func:`pixel_grid`
- data and metrics: :func:`stickman2d`, :func:`stickman3d`, :func:`edges_to_adjacency`,
  :func:`hungarian_keypoint_error`, :func:`mpjpe`, :func:`pa_mpjpe`,
  :func:`procrustes_align`, :func:`edge_precision_recall`
- backends: :func:`backend_info` (which native kernels are in use, and why not),
  :func:`force_reference` (run the pure-torch references)

Functions that return several tensors return a NamedTuple named after the function
(``soft_argmax2d`` -> :class:`SoftArgmax2dResult`).
"""

from ._native import backend_info, force_reference
from ._version import __version__
from .coords import denormalize_points, normalize_points, pixel_grid
from .data import Stickman2dResult, Stickman3dResult, edges_to_adjacency, stickman2d, stickman3d
from .heatmaps import concentration_loss, gaussian_heatmaps
from .metrics import (
    EdgePrecisionRecallResult,
    HungarianKeypointErrorResult,
    edge_precision_recall,
    hungarian_keypoint_error,
    mpjpe,
    pa_mpjpe,
    procrustes_align,
)
from .mst import dmst
from .mtl import BalancedMTL
from .pairwise_distance_variance import (
    PairwiseDistanceStatsResult,
    pairwise_distance_stats,
    pairwise_distance_variance,
)
from .skeleton import LVMSTResult, limb_variance_loss, lvmst, self_consistency_loss
from .sketch import sketch_render
from .soft_argmax import SoftArgmax2dResult, soft_argmax2d
from .tps import RandomTPSResult, ScaleTPSResult, TPSWarpResult, random_tps, scale_tps, tps_warp

__all__ = [
    "__version__",
    "BalancedMTL",
    "EdgePrecisionRecallResult",
    "HungarianKeypointErrorResult",
    "LVMSTResult",
    "PairwiseDistanceStatsResult",
    "RandomTPSResult",
    "ScaleTPSResult",
    "SoftArgmax2dResult",
    "Stickman2dResult",
    "Stickman3dResult",
    "TPSWarpResult",
    "backend_info",
    "concentration_loss",
    "denormalize_points",
    "dmst",
    "edge_precision_recall",
    "edges_to_adjacency",
    "force_reference",
    "gaussian_heatmaps",
    "hungarian_keypoint_error",
    "limb_variance_loss",
    "lvmst",
    "mpjpe",
    "normalize_points",
    "pa_mpjpe",
    "pairwise_distance_stats",
    "pairwise_distance_variance",
    "pixel_grid",
    "procrustes_align",
    "random_tps",
    "scale_tps",
    "self_consistency_loss",
    "sketch_render",
    "soft_argmax2d",
    "stickman2d",
    "stickman3d",
    "tps_warp",
]
