r"""Self-supervised keypoints on digits by multi-task learning (thesis chapter 4).

A keypoint detector (an hourglass, thesis Table 4.3 / Fig. 4.3) turns each image into K = 7
heatmaps; ``torch_artic.soft_argmax2d`` turns them into (x, y) keypoints and
``torch_artic.gaussian_heatmaps`` redraws each keypoint as a Gaussian blob on a blank map
("heatmap cleaning", §4.5.3), so the tasks see *only the locations*. No labels are used:

- reconstruction (§4.5.5.1, Fig. 4.4): ``sigmoid(H(g) + up2(L(g)))`` rebuilds the image from
  the cleaned heatmaps ``g``; H is 3x3 convolutions (Table 4.4), L is 5x5 convolutions with
  one 2x2 max-pool, upsampled bilinearly (Table 4.5). Loss: per-pixel binary KL divergence
  (cross-entropy minus the image's entropy) summed over the pixels, averaged over the batch.
- distractor (§4.5.5.2, Table 4.7): which of two images (the true one and another digit of
  the batch, in random order) made these keypoints? Multi-margin loss.
- middle frame (§4.5.5.3, Table 4.8): a random thin-plate-spline warp (``random_tps``) and
  its half (``scale_tps``) give three frames, original / half / whole (``tps_warp``); an MLP
  sees the three keypoint sets, shuffled, and names the middle one. Cross-entropy.
- the concentration constraint (eq. 4.2, §4.5.6, ``concentration_loss``): each raw heatmap
  should be a unit Gaussian around its own keypoint.

``torch_artic.BalancedMTL`` combines the four losses with the thesis's exponential mapping
``sum_t exp(l_t / 50)`` (§4.4.2.2, §4.6.1); all networks train together with Adam (lr 1e-3,
divided by 10 for the last 20% of the steps).

Data: the 1797 8x8 digits that scikit-learn ships (``sklearn.datasets.load_digits``, nothing
is downloaded), upsampled bilinearly to 12x12 and padded to 16x16 with a black 2-pixel border
(like MNIST's 20x20 digits in 28x28 frames); a fixed split of 1347 training and 450 held-out
digits. ``--seed`` changes the initialisation, batches, pairs and warps, not the split.

Evaluation, on the held-out digits:

- the task scores of thesis Table 4.19: distractor accuracy (chance 50%), reconstruction
  error (per-pixel MSE, pixels in [0, 1]; beside it the MSE of the mean training image),
  middle-frame accuracy (chance 33%), on fixed test pairs and warps;
- §4.6.3.3: a small MLP (14 -> 128 -> 128 -> 10) trained with labels on the *keypoints only*
  of the training digits and tested on those of the held-out digits; the same classifier on
  the keypoints of the untrained detector (its initial weights: random convolutional features
  already carry some shape), and on the 256 raw pixels (a reference, not a bound);
- Table 4.10: each task trained alone (with the concentration constraint) against all tasks
  together, the same number of steps for every variant.

Deviations from the thesis, to run on a 2-core CPU in minutes:

- images: 16x16 sklearn digits, 1347 for training (thesis: 28x28 MNIST, 60000);
- widths: hourglass 8, 16, 24 (thesis 20, 48, 64); H 16, 24, 24, 16 (thesis 20, 48, 64, 32);
  L as in the thesis (5, 10, 12, 12, 12, 5); one image channel, not 3. The hourglass's
  "UnPool" is a nearest-neighbour upsampling, and the skip branches 4b and 6b are taken
  before each max-pool and added after the matching upsampling (our reading of Fig. 4.3);
- reconstruction loss: binary KL instead of squared error through the sigmoid, whose
  gradient vanishes once the sigmoid saturates: with squared error one seed of three
  collapsed to a black reconstruction within 50 steps;
- distractor network: each candidate image is scored by one shared network from the K
  cleaned heatmaps stacked with that image (K + 1 channels; convolutions 8, 16, 8, 4;
  linear 128 -> 1); the thesis stacks all d candidates (k + 3d channels; convolutions 64,
  128, 32, 4; linear 4096, 256 -> d). The stacked version stayed at chance for 300 steps;
- middle-frame MLP 6K -> 128, 256, 128 -> 3 (thesis 512, 1024, 2048, 512), fed with the
  keypoints minus their mean over the three frames, divided by the warp scale (with raw
  coordinates it stayed at chance for 300 steps); triplets for 16 images of each batch;
- soft-argmax temperature 0.1 (thesis beta = 1, i.e. temperature 1): the concentration
  constraint pulls the heatmaps towards unit-peak Gaussians on a zero background, and at
  temperature 1 the softmax of such a map over 256 pixels is nearly flat (e^1 at the peak
  against e^0 elsewhere), so its mean would sit near the image centre;
- Gaussian sigma 0.9 px as in the thesis for MNIST; TPS warps on a 3x3 control grid with
  displacement std 0.2 (normalised units, 1.5 px; the thesis does not state its warp size);
- batch 32 and 1500 steps (thesis: batch 64, 15 epochs of MNIST, about 14000 steps), lr
  divided by 10 once, at 80% (thesis: every 5 epochs); ``--quick``: 250 steps and no
  single-task variants.

Stick figures and the landmark probe (``--data stickman``): the same model, tasks and
budgets on the 2D stick figures of ``torch_artic.data.stickman2d`` (7 joints, rigid limbs at
random angles, random position), rendered at 16x16 (the digits' size, so a step costs the
same) with lines of width ``sigma = 0.7`` px (at 1 px the arms blur into the torso at this
size); a fixed set of 2048 training figures (generator seed 0) and 1024 held-out figures
(generator seed 777). The digit classifier has no labels to use here; in its place the
field's standard probe (thesis §4.6.4.3, Table 4.16; Thewlis et al. 2017, Zhang et al.
2018): a *linear* map (least squares with a bias, on the features standardised over the
training figures, ridge penalty ``1e-3 N`` on the weights) from the ``2K`` keypoint
coordinates to the ``2 x 7`` true joint coordinates, fitted on the training figures and
scored on the held-out ones. The error is the mean Euclidean distance between predicted and
true joints, in pixels and as % of the image side (the thesis's unit, "% of image size",
Tables 4.16-4.17; inter-ocular distance is a face unit; the torso, shoulder to hip, is a
constant 3.75 px here, so % of torso length would be pixels times 26.7), for the trained
detector, the untrained one (its initial weights), the mean training pose (a constant), and
the same linear map from the 256 raw pixels. The task scores are reported as for the digits.
Also thesis Table 5.8's measure, which uses no regression: the mean squared error
(normalised units) between the keypoints themselves and the joints after one Hungarian
matching of the 7 keypoints to the 7 joints over all held-out figures (``hungarian_mse``).

Prints progress, writes a PNG (keypoints on held-out digits, coloured blue -> red by index
as in the thesis; reconstructions; single-task keypoints; with ``--data stickman``, held-out
figures with the keypoints and the probe's joints against the truth, untrained against
trained, and a bar chart of each joint's held-out error) and, as the last line of stdout,
one JSON object of metrics.

    python examples/keypoints_mtl.py [--quick] [--seed 0] [--out keypoints_mtl.png]
        [--mtl {exp,log,uncertainty,fixed,dwa,mgda_ub,pcgrad}] [--data {digits,stickman}]

``--mtl`` chooses the loss balancing (thesis §4.4.2.2, §4.6.1): ``exp`` (the default, the
thesis's ``e^{l/50}``), ``log``, ``uncertainty``, ``fixed`` (plain sum), ``dwa``, or the
gradient-based ``mgda_ub`` / ``pcgrad``, which balance the tasks' gradients at the
detector's heatmaps (the representation every task and the constraint are computed from).
The JSON also reports the training wall time per step and the final training losses;
with ``--data stickman`` the landmark errors (``landmark_err_trained``,
``landmark_err_untrained``, ``landmark_err_mean_pose``, ``landmark_err_pixels``, in pixels;
``landmark_err_pct``, the same as % of the image side; ``landmark_err_per_joint``, each
joint's error per predictor) in place of the classifier's accuracies, and each variant of
the single/multi comparison reports ``landmark_err`` in place of ``keypoint_clf_acc``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

import torch_artic as ta
from torch_artic.metrics import hungarian_keypoint_error

K = 7  # keypoints (thesis §4.6.3.3: 7 on MNIST)
TASKS = ("recon", "distractor", "middle")
SCORE = {"recon": "recon_mse", "distractor": "distractor_acc", "middle": "middle_acc"}
BUDGETS = {  # multi-task steps, steps of every variant of the single/multi comparison
    "quick": dict(steps=250, single_steps=0),
    "full": dict(steps=1500, single_steps=1500),
}
N_TRAIN = 1347  # the rest (450) is held out
# stick figures (--data stickman): fixed training and held-out sets, line width (px)
STICK_TRAIN, STICK_TEST, STICK_SEEDS, STICK_SIGMA = 2048, 1024, (0, 777), 0.7
PROBE_RIDGE = 1e-3  # the landmark probe's ridge penalty (x N, on standardised features)


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- data
def load_digits_upsampled(size: int = 16, margin: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 8x8 digits that scikit-learn ships, as ``[N, 1, size, size]`` in [0, 1].

    Each digit is upsampled bilinearly to ``size - 2 margin`` pixels and padded with a black
    border of ``margin`` pixels, so that warps do not push strokes out of the frame.
    Returns ``(images, labels [N])``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    inner = size - 2 * margin
    x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False)
    x = F.pad(x.clamp(0.0, 1.0), (margin, margin, margin, margin))
    return x, torch.tensor(d.target, dtype=torch.long)


def load_stickman(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``STICK_TRAIN`` training then ``STICK_TEST`` held-out stick figures
    (``torch_artic.data.stickman2d``, generator seeds ``STICK_SEEDS``, line width
    ``STICK_SIGMA`` px), as ``(images [N, 1, size, size] in [0, 1], joints [N, 7, 2])``,
    the joints normalised ``(x, y)``."""
    from torch_artic.data import stickman2d

    parts = [
        stickman2d(n, size=size, sigma=STICK_SIGMA, generator=torch.Generator().manual_seed(s))
        for n, s in zip((STICK_TRAIN, STICK_TEST), STICK_SEEDS)
    ]
    return torch.cat([p.images for p in parts]), torch.cat([p.keypoints for p in parts])


# ----------------------------------------------------------------------------- models
def conv(cin: int, cout: int, k: int = 3, act: nn.Module | None = None) -> nn.Sequential:
    """Same-padded ``k x k`` convolution followed by ``act`` (default LeakyReLU(0.1))."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2), nn.LeakyReLU(0.1) if act is None else act
    )


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Hourglass(nn.Module):
    """Keypoint regressor, thesis Table 4.3 / Fig. 4.3, with widths ``(c1, c2, c3)``.

    ``[B, 1, S, S] -> [B, K, S, S]`` heatmaps (``S`` divisible by 4). Layers 4b and 6b are
    the skip branches, added after the matching upsampling (layers 9 and 7).
    """

    def __init__(self, k: int = K, widths: tuple[int, int, int] = (8, 16, 24)):
        super().__init__()
        c1, c2, c3 = widths
        self.l1, self.l2 = conv(1, c1), conv(c1, c2)
        self.l4, self.l4b = conv(c2, c3), conv(c2, c2)
        self.l6, self.l6b = conv(c3, c3), conv(c3, c3)
        self.l8, self.l10 = conv(c3, c2), conv(c2, c1)
        self.l11 = nn.Conv2d(c1, k, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.l2(self.l1(x))  # full resolution
        skip2 = self.l4b(x2)
        x4 = self.l4(F.max_pool2d(x2, 2))  # 1/2
        skip4 = self.l6b(x4)
        x6 = self.l6(F.max_pool2d(x4, 2))  # 1/4
        u = self.l8(F.interpolate(x6, scale_factor=2.0) + skip4)  # 1/2
        u = self.l10(F.interpolate(u, scale_factor=2.0) + skip2)  # full
        return self.l11(u)


class Reconstructor(nn.Module):
    """Cleaned heatmaps ``[B, K, S, S]`` -> image ``[B, 1, S, S]`` (thesis Fig. 4.4).

    ``sigmoid(H(g) + up2(L(g)))``: H, 3x3 convolutions at full resolution (Table 4.4); L, 5x5
    convolutions with one 2x2 max-pool (Table 4.5), upsampled bilinearly.
    """

    def __init__(self, k: int = K, high=(16, 24, 24, 16), low=(5, 10, 12, 12, 12, 5)):
        super().__init__()
        h = [k, *high]
        self.high = nn.Sequential(
            *[conv(a, b) for a, b in zip(h[:-1], h[1:])], nn.Conv2d(h[-1], 1, 3, padding=1)
        )
        lo = [k, *low]
        self.low = nn.Sequential(
            *[conv(a, b, 5) for a, b in zip(lo[:-2], lo[1:-1])],
            nn.MaxPool2d(2),
            conv(lo[-2], lo[-1], 5),
            nn.Conv2d(lo[-1], 1, 5, padding=2),
        )

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        """The logits ``H(g) + up2(L(g))``; the image is their sigmoid."""
        low = F.interpolate(self.low(g), size=g.shape[-2:], mode="bilinear", align_corners=False)
        return self.high(g) + low


def recon_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary KL divergence of ``sigmoid(logits)`` from the image, summed over the pixels.

    Cross-entropy minus the image's own entropy: zero for a perfect reconstruction, with the
    gradient ``sigmoid(logits) - x`` per pixel, which does not vanish when the sigmoid
    saturates (squared error through the sigmoid does).
    """
    entropy = -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return (bce - entropy).sum((1, 2, 3)).mean()


class DistractorNet(nn.Module):
    """Scores candidate images for a set of keypoints (thesis Table 4.7, scaled down).

    Each candidate is scored by the same network from the ``K`` cleaned heatmaps stacked
    with that image (``K + 1`` channels -> 4 convolutions -> linear -> one score).
    ``heatmaps [B, K, S, S]``, ``images [B, d, S, S]`` -> scores ``[B, d]``.
    """

    def __init__(self, k: int, size: int, width: int = 8, hidden: int = 128):
        super().__init__()
        relu = nn.ReLU()
        self.score = nn.Sequential(
            conv(k + 1, width, act=relu),
            conv(width, 2 * width, act=relu),
            conv(2 * width, width, act=relu),
            conv(width, 4, act=relu),
            nn.Flatten(),
            nn.Linear(4 * size * size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, heatmaps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        b, d = images.shape[:2]
        hm = heatmaps.unsqueeze(1).expand(-1, d, -1, -1, -1)
        both = torch.cat((hm, images.unsqueeze(2)), dim=2)  # [B, d, K + 1, S, S]
        return self.score(both.flatten(0, 1)).view(b, d)


class Model(nn.Module):
    """The detector and the three task heads, trained together."""

    def __init__(self, args):
        super().__init__()
        self.detector = Hourglass(K, tuple(args.widths))
        self.recon = Reconstructor(K)
        self.distractor = DistractorNet(K, args.size)
        self.middle = mlp([6 * K, 128, 256, 128, 3])


# ----------------------------------------------------------------------------- tasks
def keypoints(model: Model, x: torch.Tensor, args) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps ``[B, K, S, S]`` and keypoints ``[B, K, 2]`` (normalised (x, y))."""
    h = model.detector(x)
    return h, ta.soft_argmax2d(h, temperature=args.temperature)


def warp_triplet(x: torch.Tensor, args, g: torch.Generator) -> torch.Tensor:
    """``[3, B, 1, S, S]``: each image, its half warp and its whole warp (§4.5.5.3)."""
    src, dst = ta.random_tps(x.shape[0], grid=args.grid, noise_scale=args.warp, generator=g)
    _, half = ta.scale_tps(src, dst, 0.5)
    both = ta.tps_warp(torch.cat((src, src)), torch.cat((half, dst)), image=x.repeat(2, 1, 1, 1))
    return torch.stack((x, *both.image.chunk(2)))


def distractor_scores(model: Model, g0: torch.Tensor, x: torch.Tensor, g: torch.Generator):
    """Pair each image with another of the batch, in random order -> (scores, target)."""
    b = x.shape[0]
    other = x[(torch.arange(b) + torch.randint(1, b, (b,), generator=g)) % b]
    target = torch.randint(0, 2, (b,), generator=g)
    true_first = (target == 0)[:, None, None, None]
    pair = torch.cat((torch.where(true_first, x, other), torch.where(true_first, other, x)), 1)
    return model.distractor(g0, pair), target


def middle_logits(model: Model, kp3: torch.Tensor, scale: float, g: torch.Generator):
    """Shuffle the three keypoint sets ``[3, B, K, 2]`` -> (logits, slot of the middle frame)."""
    b = kp3.shape[1]
    order = torch.argsort(torch.rand(b, 3, generator=g), dim=1)  # order[i, j]: frame in slot j
    shuffled = kp3.transpose(0, 1)[torch.arange(b)[:, None], order]  # [B, 3, K, 2]
    target = (order == 1).long().argmax(1)
    rel = (shuffled - shuffled.mean(1, keepdim=True)) / scale  # relative, in warp units
    return model.middle(rel.flatten(1)), target


def task_losses(model: Model, x: torch.Tensor, tasks, args, g: torch.Generator):
    """The losses of ``tasks`` and of the concentration constraint on a batch ``x``, and the
    detector's heatmaps ``[B', K, S, S]`` they all come from (the shared representation that
    the gradient-based balancing strategies balance at)."""
    b, size = x.shape[0], x.shape[-1]
    m = min(b, args.middle_batch)  # the middle-frame task uses the first m images
    xs = torch.cat((x, warp_triplet(x[:m], args, g)[1:].flatten(0, 1))) if "middle" in tasks else x
    h, kp = keypoints(model, xs, args)
    losses = {"concentration": ta.concentration_loss(h, args.sigma, points=kp)}
    g0 = ta.gaussian_heatmaps(kp[:b], size, args.sigma)  # heatmap cleaning (§4.5.3)
    if "recon" in tasks:
        losses["recon"] = recon_loss(model.recon(g0), x)
    if "distractor" in tasks:
        scores, target = distractor_scores(model, g0, x, g)
        losses["distractor"] = F.multi_margin_loss(scores, target)
    if "middle" in tasks:
        kp3 = torch.cat((kp[None, :m], kp[b:].view(2, m, K, 2)))
        logits, target = middle_logits(model, kp3, args.warp, g)
        losses["middle"] = F.cross_entropy(logits, target)
    return losses, h


def train(model: Model, x_train: torch.Tensor, tasks, steps: int, args, tag: str) -> dict:
    """Train ``model`` on ``tasks`` (+ concentration), balanced by ``args.mtl``.

    Returns ``{"seconds_per_step", "train_losses"}``: the training wall time per step and
    each task's raw training loss averaged over the last 10% of the steps (thesis Fig. 4.5
    compares training losses)."""
    mtl = ta.BalancedMTL([*tasks, "concentration"], strategy=args.mtl)  # default e^{l/50}
    # "uncertainty" learns log-variances: they train with the model
    opt = torch.optim.Adam([*model.parameters(), *mtl.parameters()], lr=args.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.8 * steps)], 0.1)
    g = torch.Generator().manual_seed(args.seed + 1)
    order = torch.Generator().manual_seed(args.seed + 2)  # PCGrad's task order (own stream)
    tail = max(1, steps // 10)
    sums: dict[str, float] = {}
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, x_train.shape[0], (args.batch,), generator=g)
        losses, h = task_losses(model, x_train[idx], tasks, args, g)
        opt.zero_grad()
        # mtl(losses).backward() for the loss-based strategies; "mgda_ub" and "pcgrad"
        # balance the task gradients at the detector's heatmaps h
        mtl.backward(losses, shared=h, generator=order)
        opt.step()
        sched.step()
        if step > steps - tail:
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item() / tail
        if step % max(1, steps // 5) == 0 or step == 1:
            parts = "  ".join(f"{k} {v.item():.3f}" for k, v in losses.items())
            log(f"  [{tag}] step {step}/{steps}  {parts}  ({time.time() - t0:.0f}s)")
    return {"seconds_per_step": (time.time() - t0) / steps, "train_losses": sums}


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def detect(model: Model, x: torch.Tensor, args) -> torch.Tensor:
    return torch.cat([keypoints(model, c, args)[1] for c in x.split(512)])


@torch.no_grad()
def task_scores(model: Model, x: torch.Tensor, args) -> dict:
    """Thesis Table 4.19 columns on held-out images ``x``, fixed pairs and warps."""
    g = torch.Generator().manual_seed(1234)
    kp = detect(model, x, args)
    g0 = ta.gaussian_heatmaps(kp, x.shape[-1], args.sigma)
    mse = (model.recon(g0).sigmoid() - x).square().mean().item()
    scores, target = distractor_scores(model, g0, x, g)
    kp3 = torch.stack([detect(model, t, args) for t in warp_triplet(x, args, g)])
    logits, mtarget = middle_logits(model, kp3, args.warp, g)
    return {
        "distractor_acc": (scores.argmax(1) == target).float().mean().item(),
        "recon_mse": mse,
        "middle_acc": (logits.argmax(1) == mtarget).float().mean().item(),
    }


def classify(f_train, y_train, f_test, y_test, seed: int, steps: int = 300) -> float:
    """Held-out accuracy of a small MLP trained (full batch) on standardised features."""
    torch.manual_seed(seed)
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    a, b = (f_train - mean) / std, (f_test - mean) / std
    net = mlp([a.shape[1], 128, 128, 10])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.cross_entropy(net(a), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (net(b).argmax(1) == y_test).float().mean().item()


def keypoint_accuracy(model: Model, x, y, tr, te, args) -> float:
    """Thesis §4.6.3.3: classify digits from their 7 keypoints only."""
    kp_tr, kp_te = detect(model, x[tr], args), detect(model, x[te], args)
    return classify(kp_tr.flatten(1), y[tr], kp_te.flatten(1), y[te], args.seed)


def fit_linear(f_train: torch.Tensor, t_train: torch.Tensor, ridge: float = PROBE_RIDGE):
    """Fit ``t = W f + b`` by ridge least squares; returns the map ``f -> t``.

    The features ``f_train [N, F]`` are standardised with their training mean and std (so the
    penalty treats keypoints and pixels alike); the targets ``t_train [N, T]`` are centred, so
    the bias (the training mean) is not penalised; ``W`` minimises
    ``|A W - (t - mean t)|^2 + ridge N |W|^2``. Solved in float64.
    """
    f, t = f_train.double(), t_train.double()
    mean, std = f.mean(0), f.std(0) + 1e-6
    a = (f - mean) / std
    t_mean = t.mean(0)
    gram = a.T @ a + ridge * a.shape[0] * torch.eye(a.shape[1], dtype=a.dtype)
    w = torch.linalg.solve(gram, a.T @ (t - t_mean))
    return lambda g: (((g.double() - mean) / std) @ w + t_mean).to(g.dtype)


def joint_errors(pred: torch.Tensor, truth: torch.Tensor, size: int) -> torch.Tensor:
    """``[J]`` mean Euclidean error of each joint in pixels, from normalised ``[N, J, 2]``."""
    return ((pred - truth).norm(dim=-1) * (size - 1) / 2).mean(0)


def landmark_probe(kp_train, kp_test, joints_train) -> torch.Tensor:
    """Thesis §4.6.4.3: the held-out joints ``[N', J, 2]`` predicted linearly from the
    keypoints ``[N', K, 2]``, the map fitted on ``kp_train`` -> ``joints_train``."""
    probe = fit_linear(kp_train.flatten(1), joints_train.flatten(1))
    return probe(kp_test.flatten(1)).view(kp_test.shape[0], -1, 2)


def landmark_error(model: Model, x, joints, tr, te, args) -> tuple[float, torch.Tensor]:
    """Mean held-out joint error (px) of the landmark probe on ``model``'s keypoints, and the
    probe's held-out joints ``[N', 7, 2]``."""
    pred = landmark_probe(detect(model, x[tr], args), detect(model, x[te], args), joints[tr])
    return joint_errors(pred, joints[te], args.size).mean().item(), pred


# ----------------------------------------------------------------------------- figure
def figure(path: str, x, y, held_out, rows: dict, recon: torch.Tensor) -> None:
    """One held-out digit of each class per column; keypoint rows, then reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [int(held_out[y[held_out] == c][0]) for c in range(10)]
    size = x.shape[-1]
    colors = plt.cm.coolwarm(torch.linspace(0, 1, K).numpy())  # index 0 blue -> K-1 red
    names = list(rows) + ["multi-task recon."]
    fig, axes = plt.subplots(len(names), 10, figsize=(8.0, 0.7 * len(names) + 0.1))
    for r, name in enumerate(names):
        for c, i in enumerate(cols):
            ax = axes[r, c]
            img = recon[i, 0] if name == "multi-task recon." else x[i, 0]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            if name in rows:
                px = (rows[name][i] + 1) * (size - 1) / 2  # normalised -> pixel centres
                ax.scatter(px[:, 0], px[:, 1], c=colors, s=14, edgecolors="white", lw=0.4)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=0.16, right=0.995, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def figure_stickman(path: str, x, joints, held_out, rows, probes, recon, per_joint) -> None:
    """The first 8 held-out stick figures ``x[held_out[:8]]`` (``x [N, 1, S, S]``, true joints
    ``joints [N, 7, 2]`` normalised), one per column. For each detector in ``probes`` (name ->
    (held-out probe joints ``[N', 7, 2]``, mean error in px)): a row with its keypoints (from
    ``rows``, name -> ``[N, K, 2]``), then a row with the probe's joints (dashed) over the true
    skeleton (solid); then the keypoints of the other detectors in ``rows``; then the
    reconstructions ``recon [N, 1, S, S]``. Below, a bar chart of ``per_joint`` (name ->
    ``[7]`` mean held-out error in px of each joint) over all ``N'`` held-out figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from torch_artic.data import STICKMAN2D_EDGES, STICKMAN2D_JOINTS

    n, size = 8, x.shape[-1]
    cols = [int(i) for i in held_out[:n]]
    colors = plt.cm.coolwarm(torch.linspace(0, 1, K).numpy())  # index 0 blue -> K-1 red

    def px(p):  # normalised -> pixel centres
        return ((p + 1) * (size - 1) / 2).numpy()

    def skeleton(ax, p, **kw):
        for i, j in STICKMAN2D_EDGES:
            ax.plot(px(p[[i, j], 0]), px(p[[i, j], 1]), **kw)

    panels = []  # (row label, kind, detector name)
    for name, (_, err) in probes.items():
        panels += [
            (f"{name}\nkeypoints", "kp", name),
            (f"{name}\nlinear probe\n{err:.2f} px", "probe", name),
        ]
    panels += [(f"{name}\nkeypoints", "kp", name) for name in rows if name not in probes]
    panels.append(("multi-task\nreconstruction", "recon", None))
    nr = len(panels)
    fig = plt.figure(figsize=(1.0 * n + 1.3, 1.0 * nr + 3.2))
    grid = fig.add_gridspec(nr + 2, n, height_ratios=[1] * nr + [0.45, 2.1])
    truth_style = dict(color="limegreen", lw=1.6)
    probe_style = dict(color="orange", lw=1.4, ls="--")
    for r, (label, kind, name) in enumerate(panels):
        for c, i in enumerate(cols):
            ax = fig.add_subplot(grid[r, c])
            if kind == "recon":
                ax.imshow(recon[i, 0], cmap="gray", vmin=0, vmax=1)
            elif kind == "kp":
                ax.imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
                p = px(rows[name][i])
                ax.scatter(p[:, 0], p[:, 1], c=colors, s=18, edgecolors="white", lw=0.5)
            else:
                ax.imshow(x[i, 0], cmap="gray", vmin=0, vmax=2.5)  # dimmed under the lines
                k = int((held_out == i).nonzero()[0, 0])
                pred = probes[name][0][k]
                skeleton(ax, joints[i], **truth_style)
                skeleton(ax, pred, **probe_style)
                e = joint_errors(pred[None], joints[i][None], size).mean().item()
                ax.text(0.5, 0.5, f"{e:.1f}", color="white", fontsize=6, va="top")
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    handles = [
        Line2D([], [], **truth_style, label="true joints"),
        Line2D([], [], **probe_style, label="linear probe from the keypoints (held out)"),
        Line2D([], [], ls="", marker="o", color=colors[0], label="keypoint 0 (blue) ... "),
        Line2D([], [], ls="", marker="o", color=colors[-1], label=f"keypoint {K - 1} (red)"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=7, frameon=False)

    # per-joint bar chart over all held-out figures
    ax = fig.add_subplot(grid[nr + 1, 1:])
    bars = {  # name in per_joint -> (label, colour)
        "untrained": ("keypoints, untrained detector", "tab:gray"),
        "trained": ("keypoints, multi-task detector", "tab:blue"),
        "pixels": ("raw pixels (256 values)", "tab:olive"),
    }
    names = [*STICKMAN2D_JOINTS, "mean"]
    width = 0.8 / len(bars)
    for b, (key, (label, color)) in enumerate(bars.items()):
        v = per_joint[key].tolist()
        v.append(sum(v) / len(v))
        pos = [j + (b - (len(bars) - 1) / 2) * width for j in range(len(names))]
        ax.bar(pos, v, width, color=color, label=f"{label}: {v[-1]:.2f} px")
    mean_pose = per_joint["mean_pose"].mean().item()
    ax.set_xticks(range(len(names)), [nm.replace("_", " ") for nm in names], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("held-out error (px)", fontsize=7)
    ax.set_title(
        f"linear probe to the true joints, mean over {len(held_out)} held-out figures "
        f"(predicting the mean training pose: {mean_pose:.2f} px)",
        fontsize=8,
    )
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.text(
        0.995,
        0.003,
        "number in a probe panel: that figure's mean joint error (px)",
        fontsize=6,
        ha="right",
        va="bottom",
    )
    top = 1 - 0.35 / fig.get_figheight()
    fig.subplots_adjust(left=0.14, right=0.995, top=top, bottom=0.06, wspace=0.05, hspace=0.08)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def make_parser() -> argparse.ArgumentParser:
    """The command line (``make_parser().parse_args([])``: the defaults, e.g. for
    ``benchmarks/bench_mtl.py``)."""
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Full budget: about 5 minutes of CPU (8-11 min of wall time on a shared "
        "2-core CPU; --single-steps 0: about a quarter of that); --quick: about 35 s.",
    )
    ap.add_argument("--quick", action="store_true", help="the small CI budget (~35 s)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (weights and batches)")
    ap.add_argument("--out", default="keypoints_mtl.png", help="where to write the figure")
    ap.add_argument("--steps", type=int, help="multi-task training steps (full 1500, quick 250)")
    ap.add_argument(
        "--single-steps",
        type=int,
        help="steps of each variant of the single/multi comparison "
        "(full: as --steps, quick: 0 = skip it)",
    )
    ap.add_argument("--batch", type=int, default=32, help="images per training step")
    ap.add_argument("--middle-batch", type=int, default=16, help="middle-frame triplets/step")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (/10 at 80%%)")
    ap.add_argument("--size", type=int, default=16, help="image side (a multiple of 4)")
    ap.add_argument("--widths", type=int, nargs=3, default=[8, 16, 24], help="hourglass widths")
    ap.add_argument("--sigma", type=float, default=0.9, help="Gaussian std of the heatmaps (px)")
    ap.add_argument("--temperature", type=float, default=0.1, help="soft-argmax temperature")
    ap.add_argument("--grid", type=int, default=3, help="TPS control points per side")
    ap.add_argument("--warp", type=float, default=0.2, help="TPS displacement std (normalised)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument(
        "--data",
        default="digits",
        choices=["digits", "stickman"],
        help="digits (scikit-learn; keypoint classifier probe) or stickman (stickman2d "
        "figures; linear landmark-regression probe)",
    )
    ap.add_argument(
        "--mtl",
        default="exp",
        choices=["exp", "log", "uncertainty", "fixed", "dwa", "mgda_ub", "pcgrad"],
        help="loss balancing (BalancedMTL strategy; exp: the thesis's e^{l/50}; fixed: plain sum)",
    )
    return ap


def main(argv=None) -> dict:
    ap = make_parser()
    args = ap.parse_args(argv)
    budget = BUDGETS["quick" if args.quick else "full"]
    if args.steps is None:
        args.steps = budget["steps"]
    if args.single_steps is None:
        args.single_steps = budget["single_steps"] if args.quick else args.steps
    if args.size % 4:
        ap.error(f"--size must be a multiple of 4, got {args.size}")
    torch.set_num_threads(args.threads)
    t0 = time.time()

    stick = args.data == "stickman"
    if stick:
        x, joints = load_stickman(args.size)
        tr, te = torch.arange(STICK_TRAIN), torch.arange(STICK_TRAIN, STICK_TRAIN + STICK_TEST)
        log(
            f"stick figures: {len(tr)} train / {len(te)} held out, {args.size}x{args.size}, K = {K}"
        )
    else:
        x, y = load_digits_upsampled(args.size)
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
        tr, te = perm[:N_TRAIN], perm[N_TRAIN:]
        log(f"digits: {len(tr)} train / {len(te)} held out, {args.size}x{args.size}, K = {K}")

    torch.manual_seed(args.seed)
    model = Model(args)
    untrained = Model(args)
    untrained.load_state_dict(model.state_dict())
    log(f"multi-task training: {args.steps} steps of batch {args.batch}, balancing {args.mtl}")
    run = train(model, x[tr], TASKS, args.steps, args, "multi")
    scores = task_scores(model, x[te], args)
    mean_mse = (x[te] - x[tr].mean(0)).square().mean().item()
    log(
        f"held out: distractor {scores['distractor_acc']:.3f}  recon MSE "
        f"{scores['recon_mse']:.4f} (mean image {mean_mse:.4f})  middle {scores['middle_acc']:.3f}"
    )
    if stick:
        err, pred = landmark_error(model, x, joints, tr, te, args)
        uerr, upred = landmark_error(untrained, x, joints, tr, te, args)
        ppred = fit_linear(x[tr].flatten(1), joints[tr].flatten(1))(x[te].flatten(1))
        preds = {  # held-out joints [N', 7, 2] from each predictor
            "trained": pred,
            "untrained": upred,
            "mean_pose": joints[tr].mean(0).expand(len(te), -1, -1),
            "pixels": ppred.view(len(te), -1, 2),
        }
        per_joint = {k: joint_errors(v, joints[te], args.size) for k, v in preds.items()}
        landmarks = {k: v.mean().item() for k, v in per_joint.items()}
        pct = {k: 100 * v / args.size for k, v in landmarks.items()}
        log(
            "landmark probe, mean held-out joint error (px; % of the image side): "
            + "  ".join(f"{k} {v:.3f} ({pct[k]:.1f}%)" for k, v in landmarks.items())
        )
        metrics = {f"landmark_err_{k}": v for k, v in landmarks.items()}
        metrics |= {
            "landmark_err_pct": pct,
            "landmark_err_per_joint": {k: v.tolist() for k, v in per_joint.items()},
        }
        # thesis Table 5.8: the keypoints themselves, no regression, after one Hungarian
        # matching of keypoints to joints for all held-out figures (MSE, normalised units)
        hung = {
            name: hungarian_keypoint_error(detect(m, x[te], args), joints[te]).mse.item()
            for name, m in (("trained", model), ("untrained", untrained))
        }
        log(f"Hungarian-matched keypoint MSE (Table 5.8): {hung}")
        metrics |= {"hungarian_mse": hung}

        def probe(m):
            return {"landmark_err": landmark_error(m, x, joints, tr, te, args)[0]}

        own_probe = {"landmark_err": err}
    else:
        acc = keypoint_accuracy(model, x, y, tr, te, args)
        uacc = keypoint_accuracy(untrained, x, y, tr, te, args)
        pacc = classify(x[tr].flatten(1), y[tr], x[te].flatten(1), y[te], args.seed)
        log(
            f"keypoint classifier: trained {acc:.3f}  untrained {uacc:.3f}  (raw pixels {pacc:.3f})"
        )
        metrics = {
            "keypoint_clf_acc": acc,
            "keypoint_clf_acc_untrained": uacc,
            "pixel_clf_acc": pacc,
        }

        def probe(m):
            return {"keypoint_clf_acc": keypoint_accuracy(m, x, y, tr, te, args)}

        own_probe = {"keypoint_clf_acc": acc}

    rows = {"untrained": detect(untrained, x, args), "multi-task": detect(model, x, args)}
    comparison = {}
    if args.single_steps > 0:
        log(f"single vs multi task (Table 4.10): {args.single_steps} steps per variant")
        variants = [(t,) for t in TASKS] + [TASKS]
        for tasks in variants:
            name = "+".join(tasks) if len(tasks) > 1 else tasks[0]
            if tasks == TASKS and args.single_steps == args.steps:
                s, a = scores, own_probe  # the model above
            else:
                torch.manual_seed(args.seed)
                m = Model(args)
                train(m, x[tr], tasks, args.single_steps, args, name)
                s, a = task_scores(m, x[te], args), probe(m)
                if len(tasks) == 1:
                    rows[f"{name} only"] = detect(m, x, args)
            comparison[name] = {SCORE[t]: s[SCORE[t]] for t in tasks} | a
            log(f"  {name}: {comparison[name]}")

    with torch.no_grad():
        recon = model.recon(
            ta.gaussian_heatmaps(rows["multi-task"], args.size, args.sigma)
        ).sigmoid()
    if stick:
        probes = {"untrained": (upred, uerr), "multi-task": (pred, err)}
        figure_stickman(args.out, x, joints, te, rows, probes, recon, per_joint)
    else:
        figure(args.out, x, y, te, rows, recon)
    log(f"figure: {args.out}")
    metrics |= {
        **scores,
        "recon_mse_mean_image": mean_mse,
        "single_vs_multi": comparison,
        "mtl": args.mtl,
        "data": args.data,
        "seconds_per_step": run["seconds_per_step"],
        "train_losses": run["train_losses"],
        "steps": args.steps,
        "single_steps": args.single_steps,
        "seed": args.seed,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
