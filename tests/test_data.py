"""stickman2d, stickman3d, edges_to_adjacency: geometry, conventions, determinism, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_artic.data import (
    _OFFSETS3D,
    STICKMAN2D_EDGES,
    STICKMAN2D_JOINTS,
    STICKMAN3D_EDGES,
    STICKMAN3D_JOINTS,
    edges_to_adjacency,
    stickman2d,
    stickman3d,
)
from torch_artic.skeleton import lvmst


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def tree_edges(adjacency):
    a = adjacency.detach()
    k = a.shape[0]
    return {(i, j) for i in range(k) for j in range(i + 1, k) if a[i, j] > 0.5}


def sorted_edges(edges):
    return {tuple(sorted(e)) for e in edges}


# ------------------------------------------------------------------------------ edges


def test_edges_to_adjacency_symmetric_and_equal_for_list_and_tensor():
    a = edges_to_adjacency(STICKMAN2D_EDGES, 7)
    b = edges_to_adjacency(torch.tensor(STICKMAN2D_EDGES), 7, dtype=torch.float64)
    assert a.dtype == torch.get_default_dtype() and b.dtype == torch.float64
    assert torch.equal(a, a.T) and torch.equal(a.double(), b)
    assert a.diagonal().abs().sum() == 0
    assert int(a.triu(1).sum()) == len(STICKMAN2D_EDGES)
    assert tree_edges(a) == sorted_edges(STICKMAN2D_EDGES)


def test_edges_to_adjacency_ignores_self_loops_and_repeats():
    a = edges_to_adjacency([(0, 1), (1, 0), (2, 2)], 3)
    assert a.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]


def test_edges_to_adjacency_empty():
    assert edges_to_adjacency(torch.zeros(0, 2, dtype=torch.long), 4).sum() == 0


@pytest.mark.parametrize(
    "edges, k, exc, match",
    [
        (torch.tensor([[0.0, 1.0]]), 3, TypeError, "edges"),
        (torch.tensor([0, 1, 2]), 3, ValueError, r"edges.*\[E, 2\].*\[3\]"),
        ([(0, 1, 2)], 3, ValueError, "edges"),
        ([(0, 1.5)], 3, ValueError, "edges"),
        ("01", 3, TypeError, "edges"),
        (5, 3, TypeError, "edges"),
        ([(0, 3)], 3, ValueError, r"edges.*\[0, 3\)"),
        ([(-1, 0)], 3, ValueError, "edges"),
        ([(0, 1)], 0, ValueError, "num_keypoints"),
        ([(0, 1)], 2.0, TypeError, "num_keypoints"),
    ],
)
def test_edges_to_adjacency_errors(edges, k, exc, match):
    with pytest.raises(exc, match=match):
        edges_to_adjacency(edges, k)


# ------------------------------------------------------------------------------ 2D


def test_stickman2d_shapes_and_constants():
    d = stickman2d(5, size=40, generator=gen())
    assert d.images.shape == (5, 1, 40, 40)
    assert d.keypoints.shape == (5, 7, 2)
    assert d.edges.dtype == torch.long and d.edges.tolist() == [list(e) for e in STICKMAN2D_EDGES]
    assert len(STICKMAN2D_JOINTS) == 7
    assert 0 <= float(d.images.min()) and float(d.images.max()) <= 1


def test_stickman2d_reproducible_and_seed_dependent():
    a = stickman2d(6, generator=gen(3))
    b = stickman2d(6, generator=gen(3), render=False)
    c = stickman2d(6, generator=gen(4))
    assert torch.equal(a.keypoints, b.keypoints) and b.images is None
    assert not torch.equal(a.keypoints, c.keypoints)


def test_stickman2d_dtype():
    d = stickman2d(3, size=16, generator=gen(), dtype=torch.float64)
    assert d.keypoints.dtype == torch.float64 and d.images.dtype == torch.float64


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.integers(8, 96), sigma=st.floats(0.3, 3.0))
def test_stickman2d_geometry(seed, size, sigma):
    k = stickman2d(64, size=size, sigma=sigma, render=False, generator=gen(seed)).keypoints
    k = k.double()
    # always inside the image; inside the margin when it fits
    assert float(k.abs().max()) < 1
    margin = min((2 * sigma + 1) * 2 / (size - 1), 0.25)
    assert float(k.abs().max()) <= 1 - margin + 1e-6
    shoulder, hip, head = k[:, 0], k[:, 1], k[:, 2]
    # hip straight below (+y: down the rows), head straight above
    torch.testing.assert_close(hip - shoulder, torch.tensor([0.0, 0.5]).expand(64, 2).double())
    torch.testing.assert_close(head - shoulder, torch.tensor([0.0, -0.25]).expand(64, 2).double())
    for limb, root, length, (lo, hi), side in (
        (3, 0, 0.45, (20, 160), -1),
        (4, 0, 0.45, (20, 160), 1),
        (5, 1, 0.55, (5, 60), -1),
        (6, 1, 0.55, (5, 60), 1),
    ):
        v = k[:, limb] - k[:, root]
        torch.testing.assert_close(v.norm(dim=-1), torch.full((64,), length).double())
        angle = torch.rad2deg(torch.atan2(side * v[:, 0], v[:, 1]))  # from straight down
        assert float(angle.min()) >= lo - 1e-6 and float(angle.max()) <= hi + 1e-6


def test_stickman2d_images_draw_the_limbs():
    d = stickman2d(16, size=48, sigma=1.0, generator=gen(1))
    px = ((d.keypoints + 1) * 47 / 2).round().long()  # nearest pixel of each joint
    for b in range(16):
        for i, j in STICKMAN2D_EDGES:
            mid = ((px[b, i] + px[b, j]).float() / 2).round().long()
            assert d.images[b, 0, px[b, i, 1], px[b, i, 0]] > 0.5
            assert d.images[b, 0, mid[1], mid[0]] > 0.3
    # a pixel far from the figure is dark: the image corner diagonal to the figure
    assert d.images.mean() < 0.2


def test_stickman2d_lvmst_recovers_the_limbs():
    k = stickman2d(256, render=False, generator=gen(2)).keypoints
    tree = tree_edges(lvmst(k).adjacency)
    # head, shoulder and hip are rigidly collinear: (1, 2) is rigid too, a tie
    rigid = sorted_edges(STICKMAN2D_EDGES) | {(1, 2)}
    assert tree <= rigid and {(0, 3), (0, 4), (1, 5), (1, 6)} <= tree


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=0), ValueError, "`batch_size`"),
        (dict(batch_size=2.0), TypeError, "`batch_size`"),
        (dict(batch_size=True), TypeError, "`batch_size`"),
        (dict(batch_size=2, size=1), ValueError, "size"),
        (dict(batch_size=2, size=(8, 9, 3)), TypeError, "size"),
        (dict(batch_size=2, sigma=0.0), ValueError, "sigma"),
        (dict(batch_size=2, generator=0), TypeError, "generator"),
    ],
)
def test_stickman2d_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        stickman2d(**kwargs)


# ------------------------------------------------------------------------------ 3D


def test_stickman3d_shapes():
    d = stickman3d(4, size=40, generator=gen())
    assert d.joints3d.shape == (4, 16, 3) and d.keypoints.shape == (4, 16, 2)
    assert d.images.shape == (4, 1, 40, 40) and d.image_keypoints.shape == (4, 16, 2)
    assert d.edges.tolist() == [list(e) for e in STICKMAN3D_EDGES] and len(STICKMAN3D_EDGES) == 15
    assert d.yaw.shape == (4,) and len(STICKMAN3D_JOINTS) == 16
    # a tree: 15 edges on 16 joints, all connected
    assert sorted({v for e in STICKMAN3D_EDGES for v in e}) == list(range(16))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_stickman3d_rigid_bones_projection_and_root(seed):
    d = stickman3d(128, render=False, generator=gen(seed), dtype=torch.float64)
    j = d.joints3d
    assert torch.equal(d.keypoints, j[..., :2])
    assert float(j[:, 0].abs().max()) == 0  # pelvis at the origin
    for p, c in STICKMAN3D_EDGES:
        length = math.dist(_OFFSETS3D[c], (0, 0, 0))
        torch.testing.assert_close(
            (j[:, c] - j[:, p]).norm(dim=-1), torch.full((128,), length, dtype=torch.float64)
        )
    assert float(d.yaw.min()) >= 0 and float(d.yaw.max()) < 2 * math.pi
    assert float(j.norm(dim=-1).max()) <= 1.17 + 1e-9


def test_stickman3d_axes_vertical_is_y_down_and_yaw_about_it():
    d = stickman3d(256, render=False, generator=gen(5), dtype=torch.float64)
    j, yaw = d.joints3d, d.yaw
    # the head is up (negative y), the ankles down, in every view
    assert bool((j[:, 9, 1] < -0.3).all()) and float(j[:, [3, 6], 1].mean()) > 0.5
    assert bool((j[:, 9, 1] < j[:, [3, 6], 1].amin(1)).all())
    # undo the yaw (rotation about y): the left hip lies on +x, nearly in the x-y plane
    c, s = yaw.cos(), yaw.sin()
    hip = j[:, 4] - j[:, 0]
    x = c * hip[:, 0] - s * hip[:, 2]
    z = s * hip[:, 0] + c * hip[:, 2]
    assert bool((x > 0.12).all()) and float(z.abs().max()) < 0.01
    # the yaw is uniform: the hip direction covers every quadrant
    angle = torch.atan2(hip[:, 2], hip[:, 0])
    assert torch.histc(angle, bins=4, min=-math.pi, max=math.pi).min() > 30


def test_stickman3d_reproducible():
    a = stickman3d(8, render=False, generator=gen(7))
    b = stickman3d(8, size=24, generator=gen(7))
    assert torch.equal(a.joints3d, b.joints3d) and a.images is None and a.image_keypoints is None


def test_stickman3d_images_inside_and_blurred():
    sharp = stickman3d(6, size=48, blur=0.0, generator=gen(1))
    blurred = stickman3d(6, size=48, blur=1.5, generator=gen(1))
    assert float(sharp.image_keypoints.abs().max()) < 1
    torch.testing.assert_close(sharp.image_keypoints, sharp.keypoints / 1.25)
    # the blur is a normalised Gaussian: same total ink (the figure is away from the
    # border), lower peaks, wider support
    torch.testing.assert_close(
        blurred.images.sum((1, 2, 3)), sharp.images.sum((1, 2, 3)), rtol=1e-4, atol=1e-3
    )
    assert float(blurred.images.amax((1, 2, 3)).max()) < float(sharp.images.amax((1, 2, 3)).min())
    assert int((blurred.images > 1e-3).sum()) > int((sharp.images > 1e-3).sum())


def test_stickman3d_lvmst_recovers_the_bones():
    j = stickman3d(256, render=False, generator=gen(3)).joints3d
    assert tree_edges(lvmst(j).adjacency) == sorted_edges(STICKMAN3D_EDGES)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=0), ValueError, "`batch_size`"),
        (dict(batch_size=1.0), TypeError, "`batch_size`"),
        (dict(batch_size=2, size=1), ValueError, "size"),
        (dict(batch_size=2, sigma=-1.0), ValueError, "sigma"),
        (dict(batch_size=2, blur=-1.0), ValueError, "blur"),
        (dict(batch_size=2, blur="x"), ValueError, "blur"),
        (dict(batch_size=2, generator="seed"), TypeError, "generator"),
    ],
)
def test_stickman3d_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        stickman3d(**kwargs)
