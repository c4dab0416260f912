"""Draw the coordinate convention: a 5 x 7 image with every pixel centre labelled.

Writes ``docs/_static/convention.png``. Run from the repository root::

    python docs/figures/make_convention.py
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from torch_artic.coords import pixel_coordinates  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "_static", "convention.png")
H, W = 5, 7


def main() -> None:
    xs_n, ys_n = pixel_coordinates((H, W))  # normalised centres, from the library itself
    fig, ax = plt.subplots(figsize=(8.4, 6.2), dpi=90)
    for r in range(H):
        for c in range(W):
            shade = "#eef3fb" if (r + c) % 2 == 0 else "#ffffff"
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fc=shade, ec="#9aa7b8", lw=0.8))
            ax.plot(c, r, "o", ms=3.5, color="#c0392b")
            ax.text(c, r - 0.2, f"px ({c}, {r})", ha="center", va="center", fontsize=7.5)
            ax.text(
                c,
                r + 0.22,
                f"({xs_n[c].item():+.2f}, {ys_n[r].item():+.2f})",
                ha="center",
                va="center",
                fontsize=7.5,
                color="#1f4e99",
            )
    # axes: x to the right (columns), y down (rows), both starting at the top-left centre
    ax.add_patch(
        FancyArrowPatch((-0.9, -0.9), (1.6, -0.9), arrowstyle="-|>", mutation_scale=14, lw=1.6)
    )
    ax.text(1.7, -0.9, "x  (columns, width W)", va="center", fontsize=9)
    ax.add_patch(
        FancyArrowPatch((-0.9, -0.9), (-0.9, 1.6), arrowstyle="-|>", mutation_scale=14, lw=1.6)
    )
    ax.text(-0.9, 1.75, "y\n(rows,\nheight H)", ha="center", va="top", fontsize=9)
    ax.set_xlim(-1.6, W - 0.3)
    ax.set_ylim(H - 0.2, -1.25)  # y grows downwards, as in the image
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(
        f"H = {H}, W = {W}: the centre of pixel heatmap[..., r, c], as (x, y)\n"
        "black: in pixels, (c, r) (normalized=False);   "
        "blue: normalised, (-1 + 2c/(W-1), -1 + 2r/(H-1))\n"
        "pixel centres at the ends, like grid_sample(align_corners=True)",
        fontsize=9,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    fig.savefig(OUT)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
