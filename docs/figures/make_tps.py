"""Figure for docs/tps.md: a random 5x5 thin-plate-spline warp of an image with dots, and
where the dots' points go (exact inverse vs the forward-fit shortcut).

    python docs/figures/make_tps.py   # writes docs/_static/tps_warp.png
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

from torch_artic.coords import denormalize_points, pixel_grid  # noqa: E402
from torch_artic.soft_argmax import soft_argmax2d  # noqa: E402
from torch_artic.tps import random_tps, tps_warp  # noqa: E402

SIZE = 96


def main() -> None:
    gen = torch.Generator().manual_seed(3)
    src, dst = random_tps(1, grid=5, noise_scale=0.08, generator=gen)
    # dots on a 7x7 lattice, one channel each (so each can be located), plus a checkerboard
    ticks = torch.linspace(-0.75, 0.75, 7)
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    p = torch.stack((gx, gy), -1).reshape(1, -1, 2)
    p_px = denormalize_points(p, SIZE)
    grid_px = pixel_grid((SIZE, SIZE), normalized=False)
    d2 = ((grid_px[None, None] - p_px[:, :, None, None]) ** 2).sum(-1)
    dots = torch.exp(-d2 / (2 * 1.5**2))
    g = pixel_grid((SIZE, SIZE))
    checker = (((g[..., 0] * 4).floor() + (g[..., 1] * 4).floor()) % 2)[None, None] * 0.25
    image = torch.cat((checker, dots), dim=1)

    out = tps_warp(src, dst, image=image, points=p)
    fit = tps_warp(src, dst, points=p, inverse="fit").points
    heat = torch.log(out.image[:, 1:].clamp_min(1e-30))
    found = soft_argmax2d(heat, temperature=0.25, normalized=False)
    newton_px = denormalize_points(out.points, SIZE)[0]
    fit_px = denormalize_points(fit, SIZE)[0]
    err_newton = (found[0] - newton_px).norm(dim=-1)
    err_fit = (found[0] - fit_px).norm(dim=-1)

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), dpi=80)
    shown_in = image[0, 0] + image[0, 1:].amax(0)
    shown_out = out.image[0, 0] + out.image[0, 1:].amax(0)
    s_px, d_px = denormalize_points(src, SIZE)[0], denormalize_points(dst, SIZE)[0]
    ax = axes[0]
    ax.imshow(shown_in, cmap="gray", vmin=0, vmax=1.25)
    ax.quiver(
        s_px[:, 0],
        s_px[:, 1],
        d_px[:, 0] - s_px[:, 0],
        d_px[:, 1] - s_px[:, 1],
        color="tab:orange",
        angles="xy",
        scale_units="xy",
        scale=1,
        width=0.008,
    )
    ax.set_title("input; control points src -> dst")
    ax = axes[1]
    ax.imshow(shown_out, cmap="gray", vmin=0, vmax=1.25)
    ax.scatter(fit_px[:, 0], fit_px[:, 1], s=28, marker="x", c="tab:red", label="forward fit")
    ax.scatter(
        newton_px[:, 0],
        newton_px[:, 1],
        s=40,
        facecolors="none",
        edgecolors="tab:green",
        label="exact inverse",
    )
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_title("warped image and warped points")
    for a in axes[:2]:
        a.set_xticks([])
        a.set_yticks([])
    ax = axes[2]
    bins = torch.linspace(0, max(float(err_fit.max()), 0.5), 25)
    ax.hist(err_fit.numpy(), bins=bins.numpy(), color="tab:red", alpha=0.6, label="forward fit")
    ax.hist(
        err_newton.numpy(), bins=bins.numpy(), color="tab:green", alpha=0.8, label="exact inverse"
    )
    ax.set_xlabel("|dot soft-argmax - warped point| (px)")
    ax.set_ylabel("dots")
    ax.legend(fontsize=8)
    ax.set_title(f"mean {err_newton.mean():.2f} px vs {err_fit.mean():.2f} px")
    fig.tight_layout()
    path = os.path.join(ROOT, "docs", "_static", "tps_warp.png")
    fig.savefig(path)
    print(
        f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB); "
        f"mean error exact {err_newton.mean():.3f} px, forward fit {err_fit.mean():.3f} px"
    )


if __name__ == "__main__":
    main()
