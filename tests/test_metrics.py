"""hungarian_keypoint_error, mpjpe, procrustes_align, pa_mpjpe, edge_precision_recall."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_artic.metrics import (
    edge_precision_recall,
    hungarian_keypoint_error,
    mpjpe,
    pa_mpjpe,
    procrustes_align,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


def random_rotation(d, seed, proper=True):
    q, r = torch.linalg.qr(rand(d, d, seed=seed))
    q = q * torch.sign(torch.diagonal(r))
    if proper and torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# ------------------------------------------------------------------------------ Hungarian


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 7), extra=st.integers(0, 3))
def test_hungarian_recovers_a_permutation(seed, k, extra):
    target = rand(12, k, 2, seed=seed)
    perm = torch.randperm(k + extra, generator=gen(seed))
    pred = torch.cat((target, 10.0 + rand(12, extra, 2, seed=seed + 1)), 1)[:, perm]
    err = hungarian_keypoint_error(pred, target)
    # pred[:, assignment[j]] is target[:, j]
    assert torch.equal(perm[err.assignment], torch.arange(k))
    assert float(err.mse) == 0 and float(err.distance) == 0
    assert torch.equal(err.aligned, target)
    assert err.per_landmark_mse.shape == (k,) and err.per_landmark_distance.shape == (k,)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_hungarian_is_the_best_batchwise_matching(seed):
    pred, target = rand(5, 4, 3, seed=seed), rand(5, 4, 3, seed=seed + 7)
    err = hungarian_keypoint_error(pred, target)
    best = min(
        float(((pred[:, list(p)] - target) ** 2).mean()) for p in itertools.permutations(range(4))
    )
    assert float(err.mse) == pytest.approx(best, rel=1e-12)
    # the reported numbers are the definitions
    a = pred[:, err.assignment]
    torch.testing.assert_close(err.per_landmark_mse, ((a - target) ** 2).mean((0, 2)))
    torch.testing.assert_close(err.per_landmark_distance, (a - target).norm(dim=-1).mean(0))
    torch.testing.assert_close(err.mse, err.per_landmark_mse.mean())


def test_hungarian_is_one_assignment_for_the_batch():
    """Keypoints that swap halfway through the batch are penalised (per-sample matching
    would report 0)."""
    target = rand(8, 2, 2)
    pred = target.clone()
    pred[4:] = target[4:].flip(1)
    err = hungarian_keypoint_error(pred, target)
    assert err.assignment.shape == (2,)
    assert float(err.mse) > 0.1
    per_sample = [hungarian_keypoint_error(pred[i : i + 1], target[i : i + 1]) for i in range(8)]
    assert max(float(e.mse) for e in per_sample) == 0


def test_hungarian_gradcheck():
    pred = rand(4, 5, 2).requires_grad_()
    target = rand(4, 3, 2, seed=1).requires_grad_()

    def f(p, t):
        e = hungarian_keypoint_error(p, t)
        return e.mse, e.distance, e.per_landmark_mse

    assert torch.autograd.gradcheck(f, (pred, target))


def test_hungarian_nan_in_nan_out():
    pred = rand(3, 4, 2)
    pred[1, 2, 0] = float("nan")
    err = hungarian_keypoint_error(pred, rand(3, 4, 2, seed=1))
    assert err.assignment.tolist() == [-1] * 4
    assert torch.isnan(err.mse) and torch.isnan(err.per_landmark_distance).all()
    assert torch.isnan(err.aligned).all()


def test_hungarian_float32():
    err = hungarian_keypoint_error(rand(4, 3, 2).float(), rand(4, 3, 2, seed=2).float())
    assert err.mse.dtype == torch.float32


@pytest.mark.parametrize(
    "pred, target, exc, match",
    [
        (torch.zeros(4, 3), torch.zeros(4, 3, 2), ValueError, r"pred.*\[B, K, D\].*\[4, 3\]"),
        (torch.zeros(4, 3, 2), torch.zeros(4, 3), ValueError, r"target.*\[B, K, D\]"),
        (torch.zeros(4, 3, 2), torch.zeros(5, 3, 2), ValueError, r"target.*\[4, K_true, 2\]"),
        (torch.zeros(4, 3, 2), torch.zeros(4, 3, 3), ValueError, "target"),
        (torch.zeros(4, 2, 2), torch.zeros(4, 3, 2), ValueError, r"pred.*K_pred >= 3"),
        (torch.zeros(0, 3, 2), torch.zeros(0, 3, 2), ValueError, "target"),
        (torch.zeros(4, 3, 2), torch.zeros(4, 3, 2, dtype=torch.float64), TypeError, "target"),
        (torch.zeros(4, 3, 2, dtype=torch.long), torch.zeros(4, 3, 2), TypeError, "pred"),
        ([[0.0]], torch.zeros(4, 3, 2), TypeError, "pred"),
    ],
)
def test_hungarian_errors(pred, target, exc, match):
    with pytest.raises(exc, match=match):
        hungarian_keypoint_error(pred, target)


# ------------------------------------------------------------------------------ MPJPE


def test_mpjpe_values_and_root():
    target = rand(3, 5, 3)
    shift = torch.tensor([0.3, -0.4, 0.0], dtype=torch.float64)
    assert float(mpjpe(target + shift, target)) == pytest.approx(0.5)
    assert float(mpjpe(target + shift, target, root=0)) == pytest.approx(0.0, abs=1e-12)
    assert float(mpjpe(target + shift, target, root=-1)) == pytest.approx(0.0, abs=1e-12)
    per = mpjpe(target + shift, target, reduction="none")
    assert per.shape == (3, 5) and torch.allclose(per, torch.full((3, 5), 0.5, dtype=per.dtype))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), root=st.integers(0, 5))
def test_mpjpe_root_alignment_ignores_per_sample_translation(seed, root):
    pred, target = rand(4, 6, 3, seed=seed), rand(4, 6, 3, seed=seed + 1)
    t1, t2 = rand(4, 1, 3, seed=seed + 2), rand(4, 1, 3, seed=seed + 3)
    torch.testing.assert_close(
        mpjpe(pred + t1, target + t2, root=root), mpjpe(pred, target, root=root)
    )
    # the root joint itself has error 0 after alignment
    assert float(mpjpe(pred, target, root=root, reduction="none")[:, root].abs().max()) == 0
    # symmetric in its arguments, non-negative
    torch.testing.assert_close(mpjpe(pred, target), mpjpe(target, pred))


def test_mpjpe_gradcheck():
    pred, target = rand(2, 4, 3).requires_grad_(), rand(2, 4, 3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, t: mpjpe(p, t, root=1), (pred, target))


def test_mpjpe_nan():
    p = rand(2, 3, 3)
    p[0, 0, 0] = float("nan")
    assert torch.isnan(mpjpe(p, rand(2, 3, 3)))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(pred=torch.zeros(3)), ValueError, r"pred.*\[\.\.\., K, D\]"),
        (dict(target=torch.zeros(2, 4, 2)), ValueError, r"target.*\[2, 4, 3\]"),
        (dict(root=4), ValueError, "root"),
        (dict(root=1.0), TypeError, "root"),
        (dict(reduction="sum"), ValueError, "reduction"),
        (dict(pred=torch.zeros(2, 4, 3, dtype=torch.float64)), TypeError, "target"),
    ],
)
def test_mpjpe_errors(kwargs, exc, match):
    args = dict(pred=torch.zeros(2, 4, 3), target=torch.zeros(2, 4, 3)) | kwargs
    with pytest.raises(exc, match=match):
        mpjpe(**args)


# ------------------------------------------------------------------------------ Procrustes


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), d=st.integers(2, 3), scale=st.floats(0.2, 5.0))
def test_procrustes_undoes_a_similarity_transform(seed, d, scale):
    target = rand(3, 7, d, seed=seed)
    rot = random_rotation(d, seed + 1)
    pred = scale * target @ rot + rand(3, 1, d, seed=seed + 2)
    torch.testing.assert_close(procrustes_align(pred, target), target)
    assert float(pa_mpjpe(pred, target)) < 1e-9
    # a rigid alignment cannot undo the scale
    if abs(scale - 1) > 0.05:
        assert float(pa_mpjpe(pred, target, scale=False)) > 1e-3


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_procrustes_is_optimal(seed):
    """No other similarity transform (random proper rotation, any scale) fits better."""
    pred, target = rand(1, 8, 3, seed=seed), rand(1, 8, 3, seed=seed + 1)
    best = float(((procrustes_align(pred, target) - target) ** 2).sum())
    x = pred - pred.mean(1, keepdim=True)
    for i in range(5):
        r = random_rotation(3, seed + 10 + i)
        for s in (0.5, 1.0, 2.0):
            other = s * x @ r + target.mean(1, keepdim=True)
            assert best <= float(((other - target) ** 2).sum()) + 1e-9
    # and the proper rotation has det +1: the aligned pose is not mirrored
    aligned = procrustes_align(pred, target)
    xa = aligned - aligned.mean(1, keepdim=True)
    sol = torch.linalg.lstsq(x[0], xa[0]).solution
    assert float(torch.linalg.det(sol)) > 0


def test_procrustes_reflection_flag():
    target = rand(2, 9, 3)
    mirrored = target * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)  # depth flip
    assert float(pa_mpjpe(mirrored, target)) > 1e-2
    assert float(pa_mpjpe(mirrored, target, reflection=True)) < 1e-9


def test_procrustes_single_point_maps_to_centroid():
    pred = torch.zeros(1, 4, 3, dtype=torch.float64)
    target = rand(1, 4, 3)
    out = procrustes_align(pred, target)
    torch.testing.assert_close(out, target.mean(1, keepdim=True).expand_as(target))


def test_procrustes_gradcheck():
    pred, target = rand(2, 5, 3).requires_grad_(), rand(2, 5, 3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, t: pa_mpjpe(p, t), (pred, target))
    assert torch.autograd.gradcheck(
        lambda p, t: procrustes_align(p, t, scale=False), (pred, target)
    )


def test_pa_mpjpe_reduction_and_errors():
    pred, target = rand(2, 5, 3), rand(2, 5, 3, seed=1)
    assert pa_mpjpe(pred, target, reduction="none").shape == (2, 5)
    with pytest.raises(ValueError, match="reduction"):
        pa_mpjpe(pred, target, reduction="max")
    with pytest.raises(ValueError, match=r"target.*\[2, 5, 3\]"):
        procrustes_align(pred, target[:, :4])
    with pytest.raises(ValueError, match="pred"):
        procrustes_align(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="target"):
        procrustes_align(pred, target.float())


# ------------------------------------------------------------------------------ edges


def test_edge_precision_recall_values():
    truth = [(0, 1), (1, 2), (2, 3)]
    r = edge_precision_recall([(1, 0), (1, 2), (0, 3), (1, 2), (3, 3)], truth)
    assert (r.true_positives, r.num_predicted, r.num_true) == (2, 3, 3)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 / 3)
    perfect = edge_precision_recall(truth, torch.tensor(truth))
    assert perfect.precision == perfect.recall == perfect.f1 == 1.0
    empty = edge_precision_recall([], truth)
    assert empty.precision == 0.0 and empty.recall == 0.0 and empty.f1 == 0.0


def test_edge_precision_recall_adjacency_equals_edge_list():
    adj = torch.zeros(4, 4)
    adj[0, 1] = adj[2, 1] = 1.0  # one triangle each: read as undirected
    adj[3, 0] = 0.4  # below 0.5: no edge
    r1 = edge_precision_recall(adj, [(0, 1), (1, 2), (0, 3)])
    r2 = edge_precision_recall([(0, 1), (1, 2)], [(0, 1), (1, 2), (0, 3)])
    assert r1 == r2
    assert edge_precision_recall(adj > 0.5, adj).f1 == 1.0


def test_edge_precision_recall_with_assignment():
    truth = [(0, 1), (1, 2)]
    # predicted keypoint 2 is true 0, 0 is true 1, 1 is true 2; predicted 3 unmatched
    assignment = torch.tensor([2, 0, 1])
    r = edge_precision_recall([(2, 0), (0, 1), (3, 1)], truth, assignment=assignment)
    assert (r.true_positives, r.num_predicted) == (2, 3)
    assert r.recall == 1.0 and r.precision == pytest.approx(2 / 3)
    assert edge_precision_recall([(2, 0)], truth, assignment=[2, 0, 1]).true_positives == 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(2, 8))
def test_edge_precision_recall_is_relabelling_invariant(seed, k):
    """Relabelling the predicted keypoints and passing the matching gives the same result."""
    g = gen(seed)
    truth = [(int(torch.randint(0, c, (1,), generator=g)), c) for c in range(1, k)]
    pred = [(int(torch.randint(0, c, (1,), generator=g)), c) for c in range(1, k)]
    perm = torch.randperm(k, generator=g)  # true keypoint j is predicted keypoint perm[j]
    relabelled = [(int(perm[a]), int(perm[b])) for a, b in pred]
    assert edge_precision_recall(relabelled, truth, assignment=perm) == edge_precision_recall(
        pred, truth
    )


@pytest.mark.parametrize(
    "pred, kwargs, exc, match",
    [
        (torch.zeros(3, 4), {}, ValueError, r"pred.*\[K, K\].*\[3, 4\]"),
        (torch.zeros(3, dtype=torch.long), {}, ValueError, r"pred.*\[E, 2\]"),
        ([(0, -1)], {}, ValueError, "pred"),
        (3, {}, TypeError, "pred"),
        ([(0, 1)], dict(assignment=[0, 0]), ValueError, "assignment"),
        ([(0, 1)], dict(assignment=torch.zeros(2)), TypeError, "assignment"),
        ([(0, 1)], dict(assignment=torch.zeros(2, 1, dtype=torch.long)), ValueError, "assignment"),
        ([(0, 1)], dict(assignment="01"), TypeError, "assignment"),
    ],
)
def test_edge_precision_recall_errors(pred, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        edge_precision_recall(pred, [(0, 1)], **kwargs)
