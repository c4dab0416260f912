r"""Synthetic stick-figure data with ground truth (thesis §5.5.3.1, §5.5.3.3, §5.4).

Two generators, both seeded by an optional ``torch.Generator`` and drawn on the CPU in
float64 (so a seed gives the same data on every device), then cast and moved:

- :func:`stickman2d`: the thesis's 2D stick figures: 7 joints, rigid limbs at random
  angles, sketched into ``[n, 1, size, size]`` images with
  :func:`torch_artic.sketch.sketch_render`;
- :func:`stickman3d`: a 16-joint human-like 3D skeleton (the joints of the usual
  Human3.6M subset) with rigid bones and sampled joint angles, turned about the
  vertical axis and projected orthographically; optionally sketched and blurred.

Both follow the library's coordinate convention (:mod:`torch_artic.coords`): ``x``
runs along image columns (right), ``y`` along image rows (**down**); 2D image keypoints
are normalised to ``[-1, 1]`` with pixel centres at the ends. Edges are returned as a
``[E, 2]`` ``torch.long`` tensor of undirected pairs ``(parent, child)``;
:func:`edges_to_adjacency` turns them into the ``[K, K]`` 0/1 matrix the other ops use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from ._checks import check_dtype, check_int, check_positive, check_size, shape_str

__all__ = [
    "STICKMAN2D_EDGES",
    "STICKMAN2D_JOINTS",
    "STICKMAN3D_EDGES",
    "STICKMAN3D_JOINTS",
    "Stickman2dResult",
    "Stickman3dResult",
    "edges_to_adjacency",
    "stickman2d",
    "stickman3d",
]

# ------------------------------------------------------------------------------ helpers


def _as_edges(edges, name: str = "edges") -> torch.Tensor:
    """A ``[E, 2]`` long tensor from a tensor or a sequence of pairs (validated)."""
    if isinstance(edges, torch.Tensor):
        if edges.dtype.is_floating_point or edges.dtype.is_complex or edges.dtype == torch.bool:
            raise TypeError(f"`{name}` must be an integer tensor of pairs, got {edges.dtype}")
        if edges.dim() != 2 or edges.shape[1] != 2:
            raise ValueError(f"`{name}` must have shape [E, 2], got {shape_str(edges.shape)}")
        return edges.long()
    if not isinstance(edges, Sequence) or isinstance(edges, (str, bytes)):
        raise TypeError(
            f"`{name}` must be a [E, 2] integer tensor or a sequence of pairs, "
            f"got {type(edges).__name__}"
        )
    pairs = []
    for e in edges:
        if (
            not isinstance(e, Sequence)
            or len(e) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in e)
        ):
            raise ValueError(f"`{name}` must be a sequence of (i, j) int pairs, got {e!r}")
        pairs.append((int(e[0]), int(e[1])))
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {type(generator)}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"`generator` must be a CPU generator (data are drawn on the CPU), got "
            f"{generator.device}"
        )


def _check_batch_size(n) -> int:
    return check_int(n, "batch_size", 1)


def _uniform(n: int, lo: float, hi: float, generator) -> torch.Tensor:
    """``[n]`` float64 uniform in ``[lo, hi)`` (degrees are converted by the caller)."""
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def edges_to_adjacency(
    edges,
    num_keypoints: int,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The ``[K, K]`` symmetric 0/1 adjacency of an undirected edge list.

    :math:`A_{ij} = A_{ji} = 1` iff ``(i, j)`` or ``(j, i)`` is in ``edges``; the diagonal
    is 0 (self-loops are ignored); repeated edges count once.

    Args:
        edges: ``[E, 2]`` integer tensor or a sequence of ``(i, j)`` int pairs, indices in
            ``[0, K)`` (checked when ``edges`` is on the CPU or a sequence; on CUDA an
            out-of-range index fails in the indexing kernel, not here).
        num_keypoints: ``K >= 1``.
        dtype: floating dtype of the result (default: ``torch.get_default_dtype()``).
        device: device of the result (default: that of ``edges`` if a tensor, else CPU).

    Returns:
        ``[K, K]`` tensor of 0 and 1.

    Example:
        >>> edges_to_adjacency([(0, 1), (1, 2)], 3).tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    e = _as_edges(edges)
    if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int):
        raise TypeError(f"`num_keypoints` must be an int, got {type(num_keypoints).__name__}")
    if num_keypoints < 1:
        raise ValueError(f"`num_keypoints` must be >= 1, got {num_keypoints}")
    if e.device.type == "cpu" and e.numel() and (int(e.min()) < 0 or int(e.max()) >= num_keypoints):
        raise ValueError(
            f"`edges` must hold indices in [0, {num_keypoints}) (num_keypoints), got "
            f"values in [{int(e.min())}, {int(e.max())}]"
        )
    check_dtype(dtype)
    dtype = dtype or torch.get_default_dtype()
    device = device if device is not None else e.device
    e = e.to(device)
    a = torch.zeros(num_keypoints, num_keypoints, dtype=dtype, device=device)
    a[e[:, 0], e[:, 1]] = 1.0
    a[e[:, 1], e[:, 0]] = 1.0
    a.fill_diagonal_(0.0)
    return a


# ------------------------------------------------------------------------------ 2D

STICKMAN2D_JOINTS = (
    "mid_shoulder",
    "mid_hip",
    "head",
    "left_hand",
    "right_hand",
    "left_foot",
    "right_foot",
)
"""Names of the 7 joints of :func:`stickman2d`, in keypoint order (thesis Table 5.8)."""

STICKMAN2D_EDGES = ((0, 1), (0, 2), (0, 3), (0, 4), (1, 5), (1, 6))
"""The 6 rigid limbs of :func:`stickman2d` as ``(parent, child)`` pairs."""

# Lengths in normalised units (the image spans [-1, 1]): torso, neck+head, arm, leg.
_TORSO, _HEAD, _ARM, _LEG = 0.5, 0.25, 0.45, 0.55
# Angle ranges (degrees) measured from straight down (+y), outwards on each limb's side.
_ARM_RANGE, _LEG_RANGE = (20.0, 160.0), (5.0, 60.0)


class Stickman2dResult(NamedTuple):
    """Result of :func:`stickman2d`.

    ``images`` ``[n, 1, size, size]`` (``None`` with ``render=False``), ``keypoints``
    ``[n, 7, 2]`` normalised ``(x, y)`` in ``[-1, 1]``, ``edges`` ``[6, 2]`` long.

    Example:
        >>> images, keypoints, edges = stickman2d(2, size=16, generator=torch.Generator())
        >>> images.shape, keypoints.shape, edges.shape
        (torch.Size([2, 1, 16, 16]), torch.Size([2, 7, 2]), torch.Size([6, 2]))
    """

    images: torch.Tensor | None
    keypoints: torch.Tensor
    edges: torch.Tensor


def stickman2d(
    batch_size: int,
    *,
    size: int = 64,
    sigma: float = 1.0,
    render: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Stickman2dResult:
    r"""Synthetic 2D stick figures with rigid limbs (thesis §5.5.3.1, Table 5.7).

    Seven joints (:data:`STICKMAN2D_JOINTS`): 0 mid-shoulder (the root), 1 mid-hip,
    2 head, 3/4 left/right hand, 5/6 left/right foot, joined by the six limbs of
    :data:`STICKMAN2D_EDGES`. In normalised units (the image spans ``[-1, 1]``):

    - the mid-hip is ``0.5`` directly below the root (``+y``, down the rows) and the head
      ``0.25`` directly above it;
    - each arm (length ``0.45``, from the root) makes an angle
      :math:`\alpha \sim U[20°, 160°]` with the downward vertical, each leg (length
      ``0.55``, from the mid-hip) an angle :math:`\beta \sim U[5°, 60°]`, outwards on its
      own side: ``hand = shoulder + 0.45 (∓ sin α, cos α)``, "left" limbs on the image's
      left (``x < 0``) side;
    - the root is uniform over the positions that keep the whole figure (its
      keypoints) at least ``2 sigma + 1`` pixels inside the image (clamped to 0.25 in
      normalised units for tiny images: the figure is at most 1.48 tall and 0.96 wide, so it
      always fits).

    Head, mid-shoulder and mid-hip are rigidly collinear, so the head–hip distance is
    constant too: the rigid pairs are the six limbs *and* ``(1, 2)``, and a limb-variance
    tree may pick ``(1, 2)`` in place of ``(0, 1)`` or ``(0, 2)`` (a tie at zero variance).

    The thesis gives no numeric ranges; these are ours. The image is
    ``sketch_render(keypoints, edges_to_adjacency(edges, 7), size, sigma=sigma)``
    (``sum_clamp`` composite, values in ``[0, 1]``).

    Args:
        batch_size: number of figures ``n``, >= 1.
        size: image height and width in pixels (>= 2).
        sigma: line width of the sketch in pixels (> 0).
        render: draw the images (else ``images`` is ``None``; keypoints are unchanged).
        generator: a CPU ``torch.Generator`` for reproducible data (``None``: the global
            RNG).
        dtype: floating dtype of the outputs (default ``torch.get_default_dtype()``).
        device: device of the outputs (default CPU); rendering happens there.

    Returns:
        :class:`Stickman2dResult` ``(images [n, 1, size, size] | None, keypoints [n, 7, 2],
        edges [6, 2] long)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> data = stickman2d(8, size=32, generator=g)
        >>> data.images.shape, data.keypoints.shape, data.edges.shape
        (torch.Size([8, 1, 32, 32]), torch.Size([8, 7, 2]), torch.Size([6, 2]))
        >>> bool(data.keypoints.abs().max() < 1)
        True
    """
    n = _check_batch_size(batch_size)
    size = check_size(size)[0]
    sigma = check_positive(sigma, "sigma")
    _check_generator(generator)
    check_dtype(dtype)
    dtype = dtype or torch.get_default_dtype()

    alpha = torch.deg2rad(_uniform(2 * n, *_ARM_RANGE, generator)).view(2, n)
    beta = torch.deg2rad(_uniform(2 * n, *_LEG_RANGE, generator)).view(2, n)
    side = torch.tensor([-1.0, 1.0], dtype=torch.float64).view(2, 1)  # left, right

    rel = torch.zeros(n, 7, 2, dtype=torch.float64)  # relative to the root
    rel[:, 1, 1] = _TORSO
    rel[:, 2, 1] = -_HEAD
    hands = torch.stack((side * alpha.sin(), alpha.cos()), -1) * _ARM  # [2, n, 2]
    feet = torch.stack((side * beta.sin(), beta.cos()), -1) * _LEG
    rel[:, 3:5] = hands.transpose(0, 1)
    rel[:, 5:7] = rel[:, 1:2] + feet.transpose(0, 1)

    margin = min((2.0 * sigma + 1.0) * 2.0 / (size - 1), 0.25)
    lo = -1.0 + margin - rel.amin(1)  # [n, 2]
    hi = 1.0 - margin - rel.amax(1)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    root = torch.where(hi >= lo, lo + u * (hi - lo), (lo + hi) / 2)
    keypoints = (rel + root[:, None]).to(device=device, dtype=dtype)
    edges = torch.tensor(STICKMAN2D_EDGES, dtype=torch.long, device=keypoints.device)

    images = None
    if render:
        from .sketch import sketch_render

        adjacency = edges_to_adjacency(edges, 7, dtype=dtype, device=keypoints.device)
        images = sketch_render(keypoints, adjacency, size, sigma=sigma)
    return Stickman2dResult(images, keypoints, edges)


# ------------------------------------------------------------------------------ 3D

STICKMAN3D_JOINTS = (
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "spine",
    "thorax",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
)
"""Names of the 16 joints of :func:`stickman3d` (the usual Human3.6M 16-joint subset)."""

# parent of each joint (-1: root) and its rest offset from the parent in metres, in the
# body frame: x = the subject's left, y = down, z = the subject's back (the subject
# faces -z, i.e. the camera, at yaw 0).
_PARENTS3D = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 8, 10, 11, 8, 13, 14)
_OFFSETS3D = (
    (0.0, 0.0, 0.0),
    (-0.13, 0.0, 0.0),
    (0.0, 0.45, 0.0),
    (0.0, 0.45, 0.0),
    (0.13, 0.0, 0.0),
    (0.0, 0.45, 0.0),
    (0.0, 0.45, 0.0),
    (0.0, -0.23, 0.0),
    (0.0, -0.25, 0.0),
    (0.0, -0.25, 0.0),
    (0.16, 0.0, 0.0),
    (0.0, 0.28, 0.0),
    (0.0, 0.25, 0.0),
    (-0.16, 0.0, 0.0),
    (0.0, 0.28, 0.0),
    (0.0, 0.25, 0.0),
)
STICKMAN3D_EDGES = tuple((p, c) for c, p in enumerate(_PARENTS3D) if p >= 0)
"""The 15 rigid bones of :func:`stickman3d` as ``(parent, child)`` pairs."""

# Radius (metres) that every joint stays within around the pelvis: the longest chain
# pelvis-spine-thorax-shoulder-elbow-wrist is 1.17 m. Images map [-1.25, 1.25] m to
# [-1, 1], so every joint is drawn inside the image.
_IMAGE_HALF_EXTENT = 1.25


def _rot(axis: str, angle: torch.Tensor) -> torch.Tensor:
    """``[n, 3, 3]`` rotations by ``angle`` [n] (radians) about ``axis`` (right-handed)."""
    c, s = angle.cos(), angle.sin()
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m = torch.zeros(angle.shape[0], 3, 3, dtype=angle.dtype)
    m[:, 3 - i - j, 3 - i - j] = 1.0
    m[:, i, i] = c
    m[:, j, j] = c
    m[:, i, j] = -s
    m[:, j, i] = s
    return m


def _deg(n: int, lo: float, hi: float, generator) -> torch.Tensor:
    return torch.deg2rad(_uniform(n, lo, hi, generator))


def _local_rotations(n: int, generator) -> list[torch.Tensor]:
    """Per-joint local rotations ``[n, 3, 3]`` from sampled joint angles (degrees)."""
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    r = [eye] * 16

    def u(lo, hi):
        return _deg(n, lo, hi, generator)

    # pelvis: lean forward/back and sideways
    r[0] = _rot("x", u(-10, 15)) @ _rot("z", u(-10, 10))
    # thighs (rotation of the hip->knee bone): flexion brings the knee forward (-z),
    # abduction outwards, a twist about the bone sets the knee's bending plane
    for knee, side in ((2, -1.0), (5, 1.0)):
        r[knee] = _rot("x", -u(-20, 90)) @ _rot("z", -side * u(-5, 40)) @ _rot("y", u(-20, 20))
    # shins: the knee bends backwards (+z)
    for ankle in (3, 6):
        r[ankle] = _rot("x", u(0, 130))
    # spine, thorax, head: bend (forward = -z), side bend, twist
    r[7] = _rot("x", u(-10, 40)) @ _rot("z", u(-15, 15)) @ _rot("y", u(-30, 30))
    r[8] = _rot("x", u(-5, 20)) @ _rot("y", u(-20, 20))
    r[9] = _rot("x", u(-20, 30)) @ _rot("z", u(-20, 20))
    # upper arms: raised sideways by an elevation, swung forwards by an azimuth about
    # the vertical, twisted about the bone (the elbow's plane)
    for elbow, side in ((11, 1.0), (14, -1.0)):
        r[elbow] = (
            _rot("y", side * u(-30, 120)) @ _rot("z", -side * u(0, 150)) @ _rot("y", u(-60, 60))
        )
    # forearms: the elbow flexes forwards (-z in the upper arm's frame)
    for wrist in (12, 15):
        r[wrist] = _rot("x", -u(0, 145))
    return r


class Stickman3dResult(NamedTuple):
    """Result of :func:`stickman3d`.

    ``joints3d`` ``[n, 16, 3]`` (metres, pelvis at the origin, camera frame: x right,
    y down, z away from the camera), ``keypoints`` ``[n, 16, 2]`` (their orthographic
    projection ``joints3d[..., :2]``, metres), ``images`` ``[n, 1, size, size]`` or
    ``None``, ``edges`` ``[15, 2]`` long, ``image_keypoints`` ``[n, 16, 2]`` (the
    normalised ``[-1, 1]`` points drawn in ``images``) or ``None``, ``yaw`` ``[n]`` (the
    view rotation about the vertical axis, radians).

    Example:
        >>> d = stickman3d(3, render=False, generator=torch.Generator())
        >>> d.joints3d.shape, d.edges.shape, d.images is None, d.yaw.shape
        (torch.Size([3, 16, 3]), torch.Size([15, 2]), True, torch.Size([3]))
    """

    joints3d: torch.Tensor
    keypoints: torch.Tensor
    images: torch.Tensor | None
    edges: torch.Tensor
    image_keypoints: torch.Tensor | None
    yaw: torch.Tensor


def _gaussian_blur(images: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` (std in pixels, zero padding)."""
    radius = max(1, int(math.ceil(3.0 * std)))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    kx = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    out = torch.nn.functional.conv2d(images, kx, padding=(0, radius), groups=c)
    return torch.nn.functional.conv2d(out, ky, padding=(radius, 0), groups=c)


def stickman3d(
    batch_size: int,
    *,
    render: bool = True,
    size: int = 72,
    sigma: float = 1.0,
    blur: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Stickman3dResult:
    r"""A 16-joint human-like 3D skeleton: rigid bones, sampled joint angles, random
    views (thesis §5.4, §5.5.3.3).

    The skeleton (:data:`STICKMAN3D_JOINTS`, :data:`STICKMAN3D_EDGES`) has the joints of
    the 16-joint Human3.6M subset and fixed bone lengths in metres (hips 0.13 from the
    pelvis, thigh and shin 0.45, spine 0.23, thorax 0.25, head 0.25, shoulders 0.16
    from the thorax, upper arm 0.28, forearm 0.25; 1.63 m from ankle to head standing).
    Joint angles are drawn uniformly per sample, forward kinematics places the joints:
    pelvis lean (-10..15° forward, ±10° sideways), hip flexion -20..90°, abduction
    -5..40°, thigh twist ±20°, knee flexion 0..130°, spine bend -10..40°, side bend ±15°,
    twist ±30°, thorax bend -5..20° and twist ±20°, head nod -20..30° and tilt ±20°,
    upper-arm elevation 0..150° swung -30..120° forwards with a ±60° twist, elbow
    flexion 0..145°.

    **Axes.** Camera frame, right-handed: ``x`` right (image columns), ``y`` **down**
    (image rows: the vertical axis; the head has negative ``y``), ``z`` away from the
    camera (depth). The pose is turned by a uniform yaw :math:`\psi \in [0, 2\pi)` about
    the vertical ``y`` axis through the pelvis, then projected orthographically:
    ``keypoints = joints3d[..., :2]``. The pelvis (joint 0) is at the origin.

    **Images** (``render=True``): the projection, scaled by ``1 / 1.25 m`` into
    normalised coordinates (``image_keypoints``; every joint lies within 1.17 m of the
    pelvis, so inside the image), sketched with ``sketch_render(..., sigma=sigma)`` and
    Gaussian-blurred with standard deviation ``blur`` pixels (``blur=0``: no blur), as
    the thesis blurs its Human3.6M stick figures (§5.5.3.3). With ``render=False``
    nothing is drawn and the call is cheap (for lifting, only the points are needed).

    Args:
        batch_size: number of poses ``n``, >= 1.
        render: draw images (default) or not.
        size: image height and width in pixels (>= 2; 72 as in thesis Table 5.6).
        sigma: sketch line width in pixels (> 0).
        blur: Gaussian blur std in pixels (>= 0).
        generator: a CPU ``torch.Generator`` (``None``: the global RNG).
        dtype: floating dtype of the outputs (default ``torch.get_default_dtype()``).
        device: device of the outputs (default CPU).

    Returns:
        :class:`Stickman3dResult` ``(joints3d [n, 16, 3], keypoints [n, 16, 2], images
        [n, 1, size, size] | None, edges [15, 2] long, image_keypoints [n, 16, 2] | None,
        yaw [n])``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> d = stickman3d(4, render=False, generator=g)
        >>> d.joints3d.shape, d.keypoints.shape, d.images
        (torch.Size([4, 16, 3]), torch.Size([4, 16, 2]), None)
        >>> bone = d.joints3d[:, 2] - d.joints3d[:, 1]  # right thigh: always 0.45 m
        >>> torch.allclose(bone.norm(dim=-1), torch.full((4,), 0.45))
        True
    """
    n = _check_batch_size(batch_size)
    size = check_size(size)[0]
    sigma = check_positive(sigma, "sigma")
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not blur >= 0:
        raise ValueError(f"`blur` must be a float >= 0, got {blur!r}")
    _check_generator(generator)
    check_dtype(dtype)
    dtype = dtype or torch.get_default_dtype()

    local = _local_rotations(n, generator)
    yaw = _uniform(n, 0.0, 2.0 * math.pi, generator)
    offsets = torch.tensor(_OFFSETS3D, dtype=torch.float64)
    world = [None] * 16
    pos = [None] * 16
    world[0] = _rot("y", yaw) @ local[0]
    pos[0] = torch.zeros(n, 3, dtype=torch.float64)
    for c in range(1, 16):
        p = _PARENTS3D[c]
        world[c] = world[p] @ local[c]
        pos[c] = pos[p] + world[c] @ offsets[c]
    joints = torch.stack(pos, 1)

    joints3d = joints.to(device=device, dtype=dtype)
    keypoints = joints3d[..., :2].clone()
    edges = torch.tensor(STICKMAN3D_EDGES, dtype=torch.long, device=joints3d.device)
    images = image_keypoints = None
    if render:
        from .sketch import sketch_render

        image_keypoints = keypoints / _IMAGE_HALF_EXTENT
        adjacency = edges_to_adjacency(edges, 16, dtype=dtype, device=joints3d.device)
        images = sketch_render(image_keypoints, adjacency, size, sigma=sigma)
        if blur > 0:
            images = _gaussian_blur(images, float(blur))
    return Stickman3dResult(
        joints3d, keypoints, images, edges, image_keypoints, yaw.to(device=device, dtype=dtype)
    )
