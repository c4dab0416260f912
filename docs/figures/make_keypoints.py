"""Figures for docs/keypoints.md: soft-argmax, temperature, covariance, cleaning, concentration.

Writes ``docs/_static/keypoints.png``. Run from the repository root::

    python docs/figures/make_keypoints.py
"""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from torch_artic.heatmaps import concentration_loss, gaussian_heatmaps  # noqa: E402
from torch_artic.soft_argmax import soft_argmax2d  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "_static", "keypoints.png")
H, W = 32, 40
SIGMA = 2.0


def _ellipse(ax, mean, cov, color):
    """The 2-sigma ellipse of a 2 x 2 covariance (pixel units)."""
    evals, evecs = torch.linalg.eigh(cov)
    angle = math.degrees(math.atan2(evecs[1, 1].item(), evecs[0, 1].item()))
    w, h = (4 * evals.clamp_min(0).sqrt()).flip(0).tolist()
    ax.add_patch(Ellipse(mean.tolist(), w, h, angle=angle, fill=False, ec=color, lw=1.5, ls="--"))


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    # an elongated blob plus a weaker second blob plus noise, as a detector might output
    blob = gaussian_heatmaps(torch.tensor([[24.0, 12.0]]), (H, W), 3.0, normalized=False)[0]
    yy, xx = torch.meshgrid(torch.arange(float(H)), torch.arange(float(W)), indexing="ij")
    stretched = torch.exp(-(((xx - 24) * 0.9 + (yy - 12) * 0.4) ** 2) / 40 - ((yy - 12) ** 2) / 8)
    second = 0.6 * gaussian_heatmaps(torch.tensor([[9.0, 24.0]]), (H, W), 2.5, normalized=False)[0]
    heat = 4.0 * (0.5 * blob + 0.5 * stretched) + 4.0 * second
    heat = heat + 0.3 * torch.randn(H, W, generator=gen)

    fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.3), dpi=80)
    ax = axes[0]
    ax.imshow(heat, cmap="magma")
    colors = {20.0: "#9ad0f5", 1.0: "#2ecc71", 0.4: "#f1c40f", 0.02: "#ffffff"}
    for t, col in colors.items():
        m = soft_argmax2d(heat, temperature=t, normalized=False)
        ax.plot(*m.tolist(), "o", ms=7, mec="k", mfc=col, label=f"T = {t:g}")
    r, c = divmod(int(heat.flatten().argmax()), W)
    ax.plot(c, r, "x", ms=9, mew=2, color="#e74c3c", label="arg-max")
    ax.legend(fontsize=7, loc="lower right", framealpha=0.85)
    ax.set_title(
        "soft_argmax2d(h, temperature=T): T -> 0 is the arg-max;\nlarge T drifts to the centre",
        fontsize=9,
    )

    ax = axes[1]
    t = 0.4
    p = torch.softmax(heat.flatten() / t, 0).view(H, W)
    mean, cov = soft_argmax2d(heat, temperature=t, normalized=False, return_covariance=True)
    ax.imshow(p, cmap="viridis")
    ax.plot(*mean.tolist(), "o", ms=6, mec="k", mfc="#f1c40f")
    _ellipse(ax, mean, cov, "#ffffff")
    ax.set_title(f"softmax(h / {t:g}) with its mean and\n2-sigma covariance ellipse", fontsize=9)

    ax = axes[2]
    g = gaussian_heatmaps(mean, (H, W), SIGMA, normalized=False)
    ax.imshow(g, cmap="magma", vmin=0, vmax=1)
    ax.plot(*mean.tolist(), "o", ms=6, mec="k", mfc="#f1c40f")
    ax.set_title(
        f"gaussian_heatmaps(mean, sigma = {SIGMA:g} px):\nthe cleaned heatmap g", fontsize=9
    )

    ax = axes[3]
    hn = heat / heat.max()
    pts = soft_argmax2d(heat, temperature=t)  # normalised, as concentration_loss expects by default
    loss = concentration_loss(hn, SIGMA, points=pts).item()
    resid = (hn - gaussian_heatmaps(pts, (H, W), SIGMA)) ** 2
    ax.imshow(resid, cmap="Greys")
    ax.set_title(f"(h - g)^2 for h / max(h):\nconcentration_loss = {loss:.2f}", fontsize=9)

    for ax in axes:
        ax.set_xticks([0, W - 1])
        ax.set_yticks([0, H - 1])
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    fig.savefig(OUT)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
