"""Lift 2D poses to 3D with the rigid-bone prior, no 3D supervision (thesis §5.4, Table 5.3).

A depth MLP (2K -> 256 -> 128 -> 64 -> K, thesis Table 5.2) sees the 2D projection of a
16-joint skeleton (``torch_artic.data.stickman3d``, random yaw about the vertical axis)
and predicts each joint's depth z. No 3D data is used. Its losses (each one switched off
by a flag; the ablation is in ``docs/examples.md``, section *lift3d*):

1. **limb variance** over the LVMST of the lifted 3D points (``lvmst``: the batch variance
   of 3D pairwise distances, summed over its minimum spanning tree), weight
   ``--limb-weight``; the tree is rediscovered every step. With ``--relaxation ste
   --loss-gradient envelope`` (the default) the loss's gradient is the soft tree's edge
   marginals: every pair that may be a limb is made rigid in proportion to its
   probability, none is pushed apart (``--relaxation hard``: the exact tree's edges only;
   ``--loss-gradient product``: the plain straight-through gradient, which diverges);
2. **self-consistency at random angles** (``--rotation-weight``; §5.4.2 generalised): the
   lifted pose turned by a uniform random angle about the vertical axis and projected is
   a new input whose depths must be the turned pose's. The thesis's version is the single
   angle 90° (``self_consistency_loss``; ``--consistency``, off by default);
3. **rotation-invariant batch moments** (``--moments``): the yaw of the data is uniform,
   so over the batch the lifted depths must have the statistics of the horizontal
   coordinates: Cov(z) = Cov(x) and Cov(x, z) antisymmetric (the pseudo-covariance of
   x + iz vanishes). This removes the degenerate minimum of the limb variance (joints
   pushed far apart in depth make every distance nearly constant).

It is compared, on the same held-out poses, with: zero depth (the lower bound), the same
MLP trained on true depths for as many steps (the upper bound), and the thesis's own
earlier adversarial lifter (§3.4, Appendix A.2: mean shape + bottlenecked pose residual +
rotation, and a discriminator on projections from random angles).

MPJPE is in millimetres (the skeleton's bones are in metres, ~1.63 m tall standing),
after aligning the pelvis (the root, joint 0) and choosing one global depth sign per
method (z -> -z for the whole eval set if that lowers MPJPE: the depth sign is not
identifiable from 2D). The skeleton found is the LVMST of the lifted held-out poses,
scored against the 15 bones. Prints progress, writes a PNG figure and prints, as the
last line of stdout, one JSON object of metrics.

    python examples/lift3d.py [--quick] [--seed 0] [--out lift3d.png] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn

from torch_artic.data import STICKMAN3D_EDGES, stickman3d
from torch_artic.metrics import edge_precision_recall, mpjpe, pa_mpjpe
from torch_artic.skeleton import lvmst, self_consistency_loss

K = 16  # joints
ROOT = 0  # the pelvis
BUDGETS = {  # train poses, steps per depth MLP, adversarial steps, eval poses
    "quick": dict(train=8192, steps=1500, adv_steps=100, eval=1024),
    "full": dict(train=32768, steps=8000, adv_steps=2000, eval=4096),
}


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- models
def mlp(sizes: list[int], last=None) -> nn.Sequential:
    """Linear layers with ReLU between them (and ``last`` after the final one)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


def relative(v: torch.Tensor, root: int | None = ROOT) -> torch.Tensor:
    """``[B, K]`` values relative to joint ``root``'s, or to their mean if ``root`` is None
    (keypoints of unknown identity, as a self-supervised detector's)."""
    ref = v.mean(1, keepdim=True) if root is None else v[:, root : root + 1]
    return v - ref


class DepthNet(nn.Module):
    """Thesis Table 5.2: ``[B, K, 2]`` (x, y) -> ``[B, K]`` depths relative to the root
    joint (``root=None``: to their mean)."""

    def __init__(self, k: int = K, root: int | None = ROOT):
        super().__init__()
        self.net = mlp([2 * k, 256, 128, 64, k])
        self.root = root

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        return relative(self.net(xy.flatten(1)), self.root)


def rotation_consistency(
    net: nn.Module,
    xy: torch.Tensor,
    z: torch.Tensor,
    generator: torch.Generator,
    root: int | None = ROOT,
) -> torch.Tensor:
    """Self-consistency at a uniform random angle per pose (thesis §5.4.2 at 90° only):
    turn the lifted pose ``(x, y, z)`` by ``phi`` about the vertical axis through the root,
    and ask the network, shown the new projection ``(x', y)``, for the new depths ``z'``
    (both sides differentiable, as in ``self_consistency_loss``)."""
    phi = (2 * torch.rand(len(xy), 1, generator=generator) - 1) * math.pi
    c, s = phi.cos(), phi.sin()
    x = relative(xy[..., 0], root)
    x_new, z_new = c * x + s * z, -s * x + c * z  # z is root-relative already
    return ((net(torch.stack((x_new, xy[..., 1]), -1)) - z_new) ** 2).mean()


def rotation_moments(xy: torch.Tensor, z: torch.Tensor, root: int | None = ROOT) -> torch.Tensor:
    """Rotation invariance of the batch's second moments: with uniform yaw, the root-relative
    ``(x, z)`` of every joint are distributed alike in every direction, so
    ``Cov(z) = Cov(x)`` and ``Cov(x, z) = -Cov(x, z)^T`` (``[K, K]`` each, over the batch)."""
    x = relative(xy[..., 0], root)
    x, z = x - x.mean(0), z - z.mean(0)
    n = len(x)
    cxx, czz, cxz = x.T @ x / n, z.T @ z / n, x.T @ z / n
    return ((czz - cxx) ** 2).sum() + ((cxz + cxz.T) ** 2).sum()


def rot_y(points: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate ``[B, K, 3]`` points by ``angle`` [B] about the vertical y axis."""
    c, s = angle.cos()[:, None], angle.sin()[:, None]
    x, y, z = points.unbind(-1)
    return torch.stack((c * x + s * z, y, -s * x + c * z), -1)


class AdversarialLifter(nn.Module):
    """Thesis §3.4.2.1 / Appendix A: mean shape + pose residual, then a predicted rotation.

    mean shape: 2k -> 25k -> 1 -> 25k -> 3k (tanh); pose residual: 2k -> 25k -> 50k -> 25k
    -> lambda_p (tanh) -> 25k -> 3k (tanh), lambda_p = 7; rotation: 2k -> 25k -> 25k -> 1,
    the angle pi * tanh(.) about the vertical axis.
    """

    def __init__(self, k: int = K, latent: int = 7):
        super().__init__()
        self.mean = mlp([2 * k, 25 * k, 1], nn.ReLU())
        self.mean_out = mlp([1, 25 * k, 3 * k], nn.Tanh())
        self.pose = mlp([2 * k, 25 * k, 50 * k, 25 * k, latent], nn.Tanh())
        self.pose_out = mlp([latent, 25 * k, 3 * k], nn.Tanh())
        self.angle = mlp([2 * k, 25 * k, 25 * k, 1])

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        """``[B, K, 2]`` -> ``[B, K, 3]`` in the camera frame, pelvis at the origin."""
        flat = xy.flatten(1)
        shape = self.mean_out(self.mean(flat)) + self.pose_out(self.pose(flat))
        shape = shape.view(-1, xy.shape[1], 3)
        shape = shape - shape[:, ROOT : ROOT + 1]
        return rot_y(shape, math.pi * torch.tanh(self.angle(flat)[:, 0]))


def discriminator(k: int = K) -> nn.Sequential:
    """2k -> 50k -> 25k -> 5k -> 2 (logits of real / fake; softmax in the loss)."""
    return mlp([2 * k, 50 * k, 25 * k, 5 * k, 2])


# ----------------------------------------------------------------------------- training
def batches(n: int, batch: int, steps: int, generator: torch.Generator):
    """Indices of ``steps`` minibatches, reshuffling every epoch."""
    done = 0
    while True:
        for idx in torch.randperm(n, generator=generator).split(batch):
            if len(idx) < batch:
                continue
            if done == steps:
                return
            done += 1
            yield done, idx


def train_lvmst(xy: torch.Tensor, args, g: torch.Generator) -> tuple[DepthNet, torch.Tensor]:
    """The self-supervised lifter (losses 1-3 of the module docstring, and the thesis's
    90° self-consistency if ``--consistency`` > 0). Returns the network and the last
    batch's LVMST adjacency ``[K, K]``."""
    net = DepthNet()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0 = time.perf_counter()
    for step, idx in batches(len(xy), args.batch, args.steps, g):
        p = xy[idx]
        z = net(p)
        tree = lvmst(
            torch.cat((p, z[..., None]), -1),
            relaxation=args.relaxation,
            temperature=args.temperature,
            loss_gradient=args.loss_gradient,
            scale_invariant=args.scale_invariant,
        )
        terms = {"limb variance": args.limb_weight * tree.loss}
        if args.rotation_weight > 0:
            terms["rotations"] = args.rotation_weight * rotation_consistency(net, p, z, g)
        if args.moments > 0:
            terms["moments"] = args.moments * rotation_moments(p, z)
        if args.consistency > 0:
            terms["90°"] = args.consistency * self_consistency_loss(net, p, depth=z)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps:
            parts = "  ".join(f"{k} {v.item():.2e}" for k, v in terms.items())
            log(f"  [lvmst] step {step}/{args.steps}  {parts}  ({time.perf_counter() - t0:.0f}s)")
    return net, tree.adjacency.detach()


def train_supervised(xy: torch.Tensor, z_true: torch.Tensor, args, g) -> DepthNet:
    """The upper bound: the same MLP regressing the true root-relative depth."""
    net = DepthNet()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.sup_steps)
    for step, idx in batches(len(xy), args.batch, args.sup_steps, g):
        loss = ((net(xy[idx]) - z_true[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, args.sup_steps // 5) == 0 or step == args.sup_steps:
            log(f"  [supervised] step {step}/{args.sup_steps}  mse {loss.item():.2e}")
    return net


def train_adversarial(xy: torch.Tensor, args, g: torch.Generator) -> AdversarialLifter:
    """Thesis §3.4: reconstruction + fool a discriminator on projections from random
    angles. Adam for both (Table A.1's 1e-5 / 1e-6 need 1500 epochs; at our budget the
    discriminator at lr / 10 never leaves chance, so both use ``--adv-lr`` by default)."""
    gen, disc = AdversarialLifter(), discriminator()
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.adv_lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(
        disc.parameters(), lr=args.adv_lr * args.adv_d_ratio, betas=(0.5, 0.999)
    )
    ce = nn.functional.cross_entropy
    for step, idx in batches(len(xy), args.batch, args.adv_steps, g):
        real = xy[idx]
        b = len(idx)
        lifted = gen(real)
        phi = 2 * math.pi * torch.rand(b, generator=g)
        fake = rot_y(lifted, phi)[..., :2]
        ones, zeros = torch.ones(b, dtype=torch.long), torch.zeros(b, dtype=torch.long)
        # discriminator: class 1 = real, class 0 = fake
        d_loss = ce(disc(real.flatten(1)), ones) + ce(disc(fake.detach().flatten(1)), zeros)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # lifter: reconstruct the input view, and make the new views look real
        recon = ((lifted[..., :2] - real) ** 2).mean()
        g_loss = args.adv_recon * recon + ce(disc(fake.flatten(1)), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if step % max(1, args.adv_steps // 5) == 0 or step == args.adv_steps:
            log(
                f"  [adversarial] step {step}/{args.adv_steps}  recon {recon.item():.2e}  "
                f"D {d_loss.item():.3f}  G-adv {(g_loss - args.adv_recon * recon).item():.3f}"
            )
    return gen


# ----------------------------------------------------------------------------- evaluation
def signed_mpjpe(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float, int]:
    """(MPJPE mm, PA-MPJPE mm, sign) after the pelvis alignment and the one global depth
    sign (+1 or -1 for the whole set) that gives the lower MPJPE."""
    flip = pred * torch.tensor([1.0, 1.0, -1.0])
    e_pos, e_neg = mpjpe(pred, true, root=ROOT).item(), mpjpe(flip, true, root=ROOT).item()
    sign = 1 if e_pos <= e_neg else -1
    best = pred if sign == 1 else flip
    return 1000 * min(e_pos, e_neg), 1000 * pa_mpjpe(best, true).item(), sign


def figure(path: str, true: torch.Tensor, preds: dict[str, torch.Tensor]) -> None:
    """Rows: held-out poses. Columns: the input's front view, then each lifter's side
    view (and the adversarial lifter's own front view), prediction over truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("truth", "front (x, y)", 0)]
    panels += [(name, "side (z, y)", 2) for name in ("lvmst", "supervised", "adversarial")]
    panels += [("adversarial", "front (x, y)", 0)]
    panels = [p for p in panels if p[0] == "truth" or p[0] in preds]
    rows = 3
    fig, axes = plt.subplots(rows, len(panels), figsize=(1.9 * len(panels), 1.9 * rows))
    for r in range(rows):
        for c, (name, view, axis) in enumerate(panels):
            ax = axes[r, c]
            drawn = [(true[r], "0.65", 4.0)]
            if name != "truth":
                drawn.append((preds[name][r], "tab:red", 1.5))
            for pts, color, lw in drawn:
                for i, j in STICKMAN3D_EDGES:
                    ax.plot(pts[[i, j], axis], pts[[i, j], 1], "-", color=color, lw=lw)
            ax.set_aspect("equal")
            ax.set_xlim(-1.1, 1.1)
            ax.set_ylim(1.1, -1.1)  # y points down
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{name}\n{view}", fontsize=8)
    fig.suptitle("held-out poses: truth (grey), prediction (red, after the sign flip)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Full budget: 1-2 minutes on a 2-core CPU (1 thread), 4-5 minutes with the "
        "adversarial lifter (--adv-steps 0 skips it); --quick: about 20-30 s.",
    )
    ap.add_argument("--quick", action="store_true", help="the small CI budget (~20-30 s)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (weights and data)")
    ap.add_argument("--out", default="lift3d.png", help="where to write the figure")
    ap.add_argument("--steps", type=int, help="steps of the LVMST lifter (default: budget's)")
    ap.add_argument(
        "--sup-steps", type=int, help="steps of the supervised MLP (default: --steps; 0: skip)"
    )
    ap.add_argument(
        "--adv-steps", type=int, help="adversarial lifter steps (default: budget's; 0: skip)"
    )
    ap.add_argument("--batch", type=int, default=256, help="poses per step")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam lr of the depth MLPs")
    ap.add_argument("--limb-weight", type=float, default=10.0, help="limb-variance weight")
    ap.add_argument(
        "--relaxation",
        default="ste",
        choices=("hard", "ste", "soft"),
        help="dmst relaxation of the LVMST",
    )
    ap.add_argument(
        "--loss-gradient",
        default="envelope",
        choices=("envelope", "product"),
        help="lvmst(loss_gradient=...): 'envelope' differentiates the limb variance as the "
        "smoothed minimum tree weight (soft edge marginals); 'product' is the plain "
        "straight-through gradient",
    )
    ap.add_argument(
        "--temperature", type=float, default=0.3, help="relative temperature of the soft tree"
    )
    ap.add_argument(
        "--rotation-weight",
        type=float,
        default=10.0,
        help="weight of the self-consistency at random angles (0: off)",
    )
    ap.add_argument(
        "--moments",
        type=float,
        default=10.0,
        help="weight of the rotation-invariant batch moments (0: off)",
    )
    ap.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        help="weight of the thesis's 90-degree self-consistency (self_consistency_loss)",
    )
    ap.add_argument(
        "--scale-invariant",
        action="store_true",
        help="LVMST on the variance of log-distances (lvmst(scale_invariant=True))",
    )
    ap.add_argument("--adv-lr", type=float, default=2e-4, help="adversarial lifter lr")
    ap.add_argument("--adv-recon", type=float, default=10.0, help="reconstruction weight")
    ap.add_argument("--adv-d-ratio", type=float, default=1.0, help="discriminator lr / lifter lr")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (small MLPs: 1 is fastest)"
    )
    args = ap.parse_args(argv)
    budget = BUDGETS["quick" if args.quick else "full"]
    args.steps = args.steps or budget["steps"]
    args.sup_steps = args.steps if args.sup_steps is None else args.sup_steps
    args.adv_steps = args.adv_steps if args.adv_steps is not None else budget["adv_steps"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    t_start = time.perf_counter()

    train = stickman3d(budget["train"], render=False, generator=g)
    test = stickman3d(budget["eval"], render=False, generator=g)
    xy, xy_test, true = train.keypoints, test.keypoints, test.joints3d
    log(
        f"{len(xy)} training / {len(xy_test)} held-out 2D poses of {K} joints "
        f"({args.threads} thread(s))"
    )

    results, preds = {}, {}

    def evaluate(name: str, pred3d: torch.Tensor) -> None:
        err, pa, sign = signed_mpjpe(pred3d, true)
        results[name] = dict(mpjpe_mm=round(err, 1), pa_mpjpe_mm=round(pa, 1), sign=sign)
        preds[name] = pred3d * torch.tensor([1.0, 1.0, float(sign)])
        log(f"{name:>24}: MPJPE {err:6.1f} mm  PA-MPJPE {pa:6.1f} mm  (sign {sign:+d})")

    with torch.no_grad():
        evaluate("zero_depth", torch.cat((xy_test, torch.zeros_like(xy_test[..., :1])), -1))

    log("training the LVMST lifter (no 3D data) ...")
    t0 = time.perf_counter()
    net, _ = train_lvmst(xy, args, g)
    t_lvmst = time.perf_counter() - t0
    with torch.no_grad():
        lifted = torch.cat((xy_test, net(xy_test)[..., None]), -1)
        evaluate("lvmst", lifted)
        tree = lvmst(lifted, relaxation="hard").adjacency
    pr = edge_precision_recall(tree, STICKMAN3D_EDGES)
    found = sorted(tuple(e) for e in torch.nonzero(torch.triu(tree, 1)).tolist())
    missed = sorted(set(STICKMAN3D_EDGES) - set(found))
    log(
        f"  the LVMST of the lifted held-out poses holds {pr.true_positives} of the "
        f"{len(STICKMAN3D_EDGES)} bones" + (f" (missing {missed})" if missed else "")
    )

    if args.sup_steps > 0:
        log("training the supervised MLP (true depths) ...")
        z_train = train.joints3d[..., 2] - train.joints3d[:, ROOT : ROOT + 1, 2]
        sup = train_supervised(xy, z_train, args, g)
        with torch.no_grad():
            evaluate("supervised", torch.cat((xy_test, sup(xy_test)[..., None]), -1))

    if args.adv_steps > 0:
        log("training the adversarial lifter (thesis §3.4) ...")
        adv = train_adversarial(xy, args, g)
        with torch.no_grad():
            lifted = adv(xy_test)
            evaluate("adversarial", lifted)
            evaluate("adversarial_input_xy", torch.cat((xy_test, lifted[..., 2:]), -1))

    metrics = {
        "budget": "quick" if args.quick else "full",
        "seed": args.seed,
        "steps": args.steps,
        "sup_steps": args.sup_steps,
        "adv_steps": args.adv_steps,
        "threads": args.threads,
        **{f"{name}_{key}": value for name, r in results.items() for key, value in r.items()},
        "lvmst_edge_recall": pr.recall,
        "lvmst_edge_precision": pr.precision,
        "lvmst_tree": [list(e) for e in found],
        "lvmst_over_zero_depth": round(
            results["lvmst"]["mpjpe_mm"] / results["zero_depth"]["mpjpe_mm"], 3
        ),
    }
    if "supervised" in results:
        metrics["lvmst_over_supervised"] = round(
            results["lvmst"]["mpjpe_mm"] / results["supervised"]["mpjpe_mm"], 3
        )
    metrics["seconds_lvmst"] = round(t_lvmst, 1)
    try:
        figure(args.out, true, preds)
        metrics["figure"] = args.out
        log(f"figure written to {args.out}")
    except ImportError:
        log("matplotlib not installed: no figure (pip install 'torch-artic[examples]')")
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
