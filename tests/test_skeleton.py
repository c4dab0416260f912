"""lvmst, limb_variance_loss, self_consistency_loss; the global batch under torch.distributed."""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import torch_artic
from torch_artic.mst import dmst
from torch_artic.pairwise_distance_variance import pairwise_distance_variance
from torch_artic.skeleton import limb_variance_loss, lvmst, self_consistency_loss

# A 7-joint 2D stick figure (thesis §5.5.3.1): parent, child, bone length.
BONES_2D = [(0, 1, 0.25), (0, 2, 0.5), (0, 3, 0.45), (0, 4, 0.45), (2, 5, 0.55), (2, 6, 0.55)]


def stick_figures(n, bones, dim, generator, noise=0.0):
    k = 1 + max(c for _, c, _ in bones)
    pts = torch.zeros(n, k, dim, dtype=torch.float64)
    pts[:, 0] = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    for parent, child, length in bones:
        u = torch.randn(n, dim, generator=generator, dtype=torch.float64)
        u = u / u.norm(dim=-1, keepdim=True)
        pts[:, child] = pts[:, parent] + length * u
    return pts + noise * torch.randn(pts.shape, generator=generator, dtype=torch.float64)


def random_bones(k, generator):
    """A random tree on k nodes with lengths in [0.3, 1.2]."""
    bones = []
    for c in range(1, k):
        p = int(torch.randint(0, c, (1,), generator=generator))
        bones.append((p, c, 0.3 + 0.9 * float(torch.rand(1, generator=generator))))
    return bones


def edges_of(adjacency):
    a = adjacency.detach()
    return {(i, j) for i in range(a.shape[0]) for j in range(i + 1, a.shape[0]) if a[i, j] > 0.5}


def true_edges(bones):
    return {(min(p, c), max(p, c)) for p, c, _ in bones}


@pytest.mark.parametrize("noise", [0.0, 0.01])
@pytest.mark.parametrize("dim", [2, 3])
def test_recovers_bones(backend, dim, noise):
    g = torch.Generator().manual_seed(dim)
    for trial in range(5):
        bones = BONES_2D if trial == 0 else random_bones(6 + 3 * trial, g)
        pts = stick_figures(128, bones, dim, g, noise=noise)
        res = lvmst(pts)
        assert edges_of(res.adjacency) == true_edges(bones)


def test_loss_is_tree_variance_and_differentiable(backend):
    g = torch.Generator().manual_seed(1)
    pts = stick_figures(64, BONES_2D, 2, g, noise=0.05).requires_grad_()
    res = lvmst(pts)
    var = pairwise_distance_variance(pts)
    torch.testing.assert_close(res.variance, var)
    expect = sum(var[i, j] for i, j in true_edges(BONES_2D))
    torch.testing.assert_close(res.loss, expect)
    torch.testing.assert_close(limb_variance_loss(pts, res.adjacency), expect)
    (grad,) = torch.autograd.grad(res.loss, pts)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_ste_gradient_is_soft_gradient():
    """The adjacency's backward under "ste" is the "soft" relaxation's."""
    g = torch.Generator().manual_seed(2)
    pts = stick_figures(32, BONES_2D, 2, g, noise=0.05)
    coef = torch.randn(7, 7, dtype=torch.float64)
    grads = []
    for mode in ("ste", "soft"):
        x = pts.clone().requires_grad_()
        var = pairwise_distance_variance(x)
        adj = dmst(var, relaxation=mode, temperature=0.2)
        (gx,) = torch.autograd.grad((adj * coef).sum(), x)
        grads.append(gx)
    torch.testing.assert_close(grads[0], grads[1])


def _variance_gradient(pts, **kwargs):
    """``(result, dL/dV)`` of ``lvmst(pts, **kwargs).loss``, the gradient as one number per
    pair (both halves of the symmetric variance summed, upper triangle)."""
    res = lvmst(pts.clone().requires_grad_(), **kwargs)
    (gv,) = torch.autograd.grad(res.loss, res.variance)
    return res, (gv + gv.T).triu(1)


def test_ste_product_gradient_raises_off_tree_variances():
    """The issue behind ``loss_gradient="envelope"``: under "ste" the product rule's
    gradient w.r.t. the variance is negative on costly pairs off the tree (descent raises
    their variance; the tree's limbs get more than 1 instead)."""
    g = torch.Generator().manual_seed(8)
    pts = stick_figures(64, BONES_2D, 3, g, noise=0.05)
    res, grad = _variance_gradient(pts, relaxation="ste", temperature=0.3)
    tree = res.adjacency.detach().triu(1) > 0.5
    off = ~tree & torch.ones_like(tree).triu(1)
    assert (grad[off] < -1e-3).sum() >= 5, grad
    assert grad[tree].min() > 1.0


@pytest.mark.parametrize("relaxation", ["ste", "soft", "perturbed"])
def test_envelope_gradient_is_the_relaxed_tree(relaxation):
    """``loss_gradient="envelope"``: same loss value, and dL/dV is the relaxed tree (soft
    marginals for "ste" and "soft", the perturbed frequencies), >= 0 everywhere: no
    variance is pushed up, and the points' gradient shrinks only relaxed-tree pairs."""
    g = torch.Generator().manual_seed(9)
    pts = stick_figures(64, BONES_2D, 3, g, noise=0.05)
    kw = dict(relaxation=relaxation, temperature=0.3)
    if relaxation == "perturbed":
        kw["generator"] = torch.Generator().manual_seed(0)
    product, _ = _variance_gradient(pts, **kw)
    if relaxation == "perturbed":
        kw["generator"] = torch.Generator().manual_seed(0)
    env, grad = _variance_gradient(pts, loss_gradient="envelope", **kw)
    torch.testing.assert_close(env.loss, product.loss)
    torch.testing.assert_close(env.adjacency, product.adjacency)
    if relaxation == "perturbed":
        relaxed = env.adjacency.detach()
    else:
        relaxed = dmst(env.variance.detach(), relaxation="soft", temperature=0.3)
    torch.testing.assert_close(grad, relaxed.triu(1))
    assert grad.min() >= 0
    # the same through the points: the gradient of sum_ij mu_ij V_ij with mu held fixed
    if relaxation == "perturbed":
        kw["generator"] = torch.Generator().manual_seed(0)
    x = pts.clone().requires_grad_()
    (gx,) = torch.autograd.grad(lvmst(x, loss_gradient="envelope", **kw).loss, x)
    y = pts.clone().requires_grad_()
    (gy,) = torch.autograd.grad(limb_variance_loss(y, relaxed), y)
    torch.testing.assert_close(gx, gy)


@pytest.mark.parametrize("relaxation", ["ste", "soft"])
def test_envelope_gradient_native_matches_reference(relaxation):
    """The envelope path composes native ops: forcing the references gives the same
    loss and the same gradient through the points (float64)."""
    g = torch.Generator().manual_seed(11)
    pts = stick_figures(48, BONES_2D, 3, g, noise=0.05).double()
    grads, losses = [], []
    for forced in (False, True):
        with torch_artic.force_reference(enabled=forced):
            x = pts.clone().requires_grad_()
            res = lvmst(x, relaxation=relaxation, temperature=0.3, loss_gradient="envelope")
            (gx,) = torch.autograd.grad(res.loss, x)
        grads.append(gx)
        losses.append(res.loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_envelope_gradient_hard_is_unchanged():
    g = torch.Generator().manual_seed(10)
    pts = stick_figures(32, BONES_2D, 2, g, noise=0.05)
    _, a = _variance_gradient(pts, relaxation="hard")
    _, b = _variance_gradient(pts, relaxation="hard", loss_gradient="envelope")
    torch.testing.assert_close(a, b)
    # no gradient needed: the plain result, no relaxation computed
    with torch.no_grad():
        r = lvmst(pts, loss_gradient="envelope")
    torch.testing.assert_close(r.loss, lvmst(pts).loss)


def posed_figures(n, generator, spread=0.35):
    """2D figures whose limbs swing by +-spread rad about a rest pose (as people do)."""
    rest = {1: -math.pi / 2, 2: math.pi / 2, 3: 0.3, 4: math.pi - 0.3, 5: 1.3, 6: math.pi - 1.3}
    pts = torch.zeros(n, 7, 2, dtype=torch.float64)
    for parent, child, length in BONES_2D:
        a = rest[child] + spread * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
        pts[:, child] = pts[:, parent] + length * torch.stack((a.cos(), a.sin()), -1)
    return pts


def test_scale_invariant_recovers_skeleton_under_random_scale():
    g = torch.Generator().manual_seed(3)
    pts = posed_figures(256, g)  # root at the origin: scaling is about the root
    scale = 0.5 + 1.5 * torch.rand(256, 1, 1, generator=g, dtype=torch.float64)
    scaled = pts * scale
    assert edges_of(lvmst(pts).adjacency) == true_edges(BONES_2D)
    assert edges_of(lvmst(scaled).adjacency) != true_edges(BONES_2D)  # plain: wrong limbs
    assert edges_of(lvmst(scaled, scale_invariant=True).adjacency) == true_edges(BONES_2D)


def test_weights_ignore_occluded_keypoints():
    g = torch.Generator().manual_seed(4)
    pts = stick_figures(200, BONES_2D, 2, g)
    w = torch.ones(200, 7, dtype=torch.float64)
    # keypoint 5 is occluded in half of the samples, where it is garbage
    w[::2, 5] = 0
    pts[::2, 5] = 10 * torch.randn(100, 2, generator=g, dtype=torch.float64)
    assert edges_of(lvmst(pts).adjacency) != true_edges(BONES_2D)
    assert edges_of(lvmst(pts, confidence=w).adjacency) == true_edges(BONES_2D)


def test_rigid_figures_have_zero_loss():
    g = torch.Generator().manual_seed(5)
    pts = stick_figures(64, BONES_2D, 3, g)
    assert float(lvmst(pts).loss) < 1e-20


def test_modes_pass_through():
    g = torch.Generator().manual_seed(6)
    pts = stick_figures(64, BONES_2D, 2, g, noise=0.05)
    soft = lvmst(pts, relaxation="soft", temperature=1.0).adjacency
    assert torch.all((soft > 0) & (soft < 1) | torch.eye(7, dtype=torch.bool))
    torch.testing.assert_close(soft.triu(1).sum(), torch.tensor(6.0, dtype=torch.float64))
    pert = lvmst(pts, relaxation="perturbed", generator=torch.Generator().manual_seed(0)).adjacency
    torch.testing.assert_close(pert.triu(1).sum(), torch.tensor(6.0, dtype=torch.float64))


def test_self_consistency_loss():
    net = torch.nn.Linear(2, 1, dtype=torch.float64)

    def depth_fn(p):
        return net(p).squeeze(-1)

    xy = torch.randn(8, 5, 2, dtype=torch.float64)
    loss = self_consistency_loss(depth_fn, xy)
    z = depth_fn(xy)
    x_pred = depth_fn(torch.stack((z, xy[..., 1]), -1))
    torch.testing.assert_close(loss, ((x_pred + xy[..., 0]) ** 2).mean())
    torch.testing.assert_close(self_consistency_loss(depth_fn, xy, depth=z), loss)
    loss.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    # a "network" that rotates the view consistently: depth of (x, y) = x -> depth of (z, y) = z
    # is not consistent (should be -x); the loss sees it
    assert float(self_consistency_loss(lambda p: p[..., 0], xy)) > 0


def test_errors():
    pts = torch.randn(8, 4, 2)
    with pytest.raises(ValueError, match="points"):
        lvmst(torch.randn(8, 4))
    with pytest.raises(ValueError, match="B >= 2"):
        lvmst(torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match="relaxation"):
        lvmst(pts, relaxation="fuzzy")
    with pytest.raises(ValueError, match="temperature"):
        lvmst(pts, temperature=0.0)
    with pytest.raises(ValueError, match="loss_gradient"):
        lvmst(pts, loss_gradient="straight")
    with pytest.raises(ValueError, match="eps"):
        lvmst(pts, scale_invariant=True, eps=0.0)
    with pytest.raises(ValueError, match=r"confidence.*\[8, 4\]"):
        lvmst(pts, confidence=torch.ones(8, 3))
    with pytest.raises(ValueError, match=r"adjacency.*\[4, 4\].*\[3, 3\]"):
        limb_variance_loss(pts, torch.ones(3, 3))
    with pytest.raises(TypeError, match="adjacency"):
        limb_variance_loss(pts, [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"points.*\[B, K, 2\]"):
        self_consistency_loss(lambda p: p[..., 0], torch.randn(8, 4, 3))
    with pytest.raises(ValueError, match=r"depth_fn.*\[8, 4\]"):
        self_consistency_loss(lambda p: p, pts)
    with pytest.raises(ValueError, match="distributed is not initialized"):
        lvmst(pts, group=object())


# ------------------------------------------------------------------ torch.distributed


def _ddp_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(0)
        full = stick_figures(12, BONES_2D, 3, g, noise=0.05)
        w = torch.rand(12, 7, generator=g, dtype=torch.float64) + 0.2
        coef = torch.randn(7, 7, generator=g, dtype=torch.float64)
        lo, hi = (0, 5) if rank == 0 else (5, 12)  # unequal local batches
        local = full[lo:hi].clone().requires_grad_()
        v = pairwise_distance_variance(local, confidence=w[lo:hi], group=dist.group.WORLD)
        (gv,) = torch.autograd.grad((v * coef).sum(), local)
        x2 = full[lo:hi].clone().requires_grad_()
        res = lvmst(x2, group=dist.group.WORLD, scale_invariant=rank >= 0)
        (gl,) = torch.autograd.grad(res.loss, x2)
        torch.save(
            {
                "v": v.detach(),
                "gv": gv,
                "adj": res.adjacency.detach(),
                "loss": res.loss.detach(),
                "gl": gl,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_distributed_equals_concatenated_batch(tmp_path):
    world = 2
    mp.spawn(
        _ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True
    )
    g = torch.Generator().manual_seed(0)
    full = stick_figures(12, BONES_2D, 3, g, noise=0.05).requires_grad_()
    w = torch.rand(12, 7, generator=g, dtype=torch.float64) + 0.2
    coef = torch.randn(7, 7, generator=g, dtype=torch.float64)
    v = pairwise_distance_variance(full, confidence=w)
    (gv,) = torch.autograd.grad((v * coef).sum(), full)
    res = lvmst(full, scale_invariant=True)
    (gl,) = torch.autograd.grad(res.loss, full)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for r, (lo, hi) in enumerate([(0, 5), (5, 12)]):
        p = parts[r]
        torch.testing.assert_close(p["v"], v.detach())
        torch.testing.assert_close(p["adj"], res.adjacency.detach())
        torch.testing.assert_close(p["loss"], res.loss.detach())
        # all_gather's convention: each rank's local gradient sums the (identical) losses
        # of all ranks, so DDP's average over ranks is the exact global-batch gradient.
        torch.testing.assert_close(p["gv"] / world, gv[lo:hi])
        torch.testing.assert_close(p["gl"] / world, gl[lo:hi])


def test_limb_length_scale():
    """Sanity of the generator used above: bones are rigid."""
    g = torch.Generator().manual_seed(7)
    pts = stick_figures(16, BONES_2D, 2, g)
    for p, c, length in BONES_2D:
        torch.testing.assert_close(
            (pts[:, p] - pts[:, c]).norm(dim=-1), torch.full((16,), length, dtype=torch.float64)
        )
    assert math.isclose(length, 0.55)
