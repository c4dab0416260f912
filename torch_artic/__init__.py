"""torch-artic: differentiable primitives for self-supervised articulated-pose learning.

The public API (the guide and API reference are the Sphinx docs in ``docs/``):

- keypoints from heatmaps: :func:`soft_argmax2d`, :func:`gaussian_heatmaps`,
  :func:`concentration_loss`
- skeleton discovery: :func:`pairwise_distance_variance` (native kernels),
  :func:`dmst`, :func:`lvmst`, :func:`limb_variance_loss`, :func:`self_consistency_loss`
- sketching: :func:`sketch_render` (native kernels)
- warps: :func:`tps_warp`, :func:`random_tps`, :func:`scale_tps`
- loss balancing: :class:`BalancedMTL`
- data and metrics: :func:`stickman2d`, :func:`stickman3d`,
  :func:`hungarian_keypoint_error`, :func:`mpjpe`, :func:`pa_mpjpe`, ...
- :func:`backend_info`: which native kernels are in use, and why not
"""

from ._native import backend_info
from ._version import __version__
from .coords import denormalize_points, normalize_points, pixel_grid
from .data import edges_to_adjacency, stickman2d, stickman3d
from .heatmaps import concentration_loss, gaussian_heatmaps
from .metrics import (
    edge_precision_recall,
    hungarian_keypoint_error,
    mpjpe,
    pa_mpjpe,
    procrustes_align,
)
from .mst import dmst
from .mtl import BalancedMTL
from .pairwise_distance_variance import (
    PairwiseDistanceStats,
    pairwise_distance_stats,
    pairwise_distance_variance,
)
from .skeleton import LVMST, limb_variance_loss, lvmst, self_consistency_loss
from .sketch import sketch_render
from .soft_argmax import SoftArgmaxResult, soft_argmax2d
from .tps import TPSWarp, random_tps, scale_tps, tps_warp

__all__ = [
    "__version__",
    "backend_info",
    "BalancedMTL",
    "concentration_loss",
    "dmst",
    "edge_precision_recall",
    "edges_to_adjacency",
    "hungarian_keypoint_error",
    "limb_variance_loss",
    "lvmst",
    "LVMST",
    "self_consistency_loss",
    "sketch_render",
    "gaussian_heatmaps",
    "denormalize_points",
    "mpjpe",
    "normalize_points",
    "pa_mpjpe",
    "procrustes_align",
    "pairwise_distance_stats",
    "pairwise_distance_variance",
    "PairwiseDistanceStats",
    "pixel_grid",
    "soft_argmax2d",
    "SoftArgmaxResult",
    "stickman2d",
    "stickman3d",
    "random_tps",
    "scale_tps",
    "tps_warp",
    "TPSWarp",
]
