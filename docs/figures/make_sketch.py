"""Figure for docs/sketch.md: one stick figure sketched with the three composites, with
soft line weights, with per-keypoint colours graded along the lines, and with learnable
per-line widths. Writes docs/_static/sketch.png.

    python docs/figures/make_sketch.py
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from torch_artic.sketch import sketch_render  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_static", "sketch.png")
SIZE = 96

# a 7-joint stick figure in pixels (x right, y down): head, neck, hip, two hands, two feet
POINTS = torch.tensor(
    [[48, 14], [48, 30], [50, 58], [22, 42], [78, 24], [30, 86], [70, 84]], dtype=torch.float64
)
EDGES = [(0, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6)]


def adjacency(weights=None) -> torch.Tensor:
    a = torch.zeros(7, 7, dtype=torch.float64)
    for n, (i, j) in enumerate(EDGES):
        w = 1.0 if weights is None else weights[n]
        a[i, j] = a[j, i] = w
    return a


def main() -> None:
    pts = POINTS[None]
    adj = adjacency()
    kw = dict(normalized=False)
    panels = [
        ("sum_clamp, sigma=2", sketch_render(pts, adj, SIZE, sigma=2.0, **kw)),
        ("soft_or, sigma=2", sketch_render(pts, adj, SIZE, sigma=2.0, composite="soft_or", **kw)),
        ("max, sigma=2", sketch_render(pts, adj, SIZE, sigma=2.0, composite="max", **kw)),
        (
            "soft weights (marginals)",
            sketch_render(pts, adjacency([1.0, 0.9, 0.6, 0.35, 0.8, 0.2]), SIZE, sigma=2.0, **kw),
        ),
    ]
    colours = torch.tensor(
        [
            [1.0, 0.85, 0.6],
            [0.9, 0.2, 0.2],
            [0.2, 0.3, 0.9],
            [1.0, 0.85, 0.6],
            [1.0, 0.85, 0.6],
            [0.1, 0.1, 0.1],
            [0.1, 0.1, 0.1],
        ],
        dtype=torch.float64,
    )
    panels.append(
        (
            "per-keypoint colours",
            sketch_render(pts, adj, SIZE, sigma=2.5, colors=colours[None], **kw),
        )
    )
    # per-line widths; any positive value for the pairs that are not drawn
    widths = adjacency([4.0, 2.0, 0.8, 0.8, 1.5, 1.5]) + (adj == 0).double()
    panels.append(("per-line widths", sketch_render(pts, adj, SIZE, sigma=widths, **kw)))

    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.5))
    for ax, (title, img) in zip(axes, panels):
        im = img[0].permute(1, 2, 0).clamp(0, 1).numpy()
        if im.shape[-1] == 1:
            ax.imshow(im[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(im)
        ax.scatter(POINTS[:, 0], POINTS[:, 1], s=6, c="tab:orange", zorder=3)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
