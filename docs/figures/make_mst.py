"""Figure for docs/mst.md: a small graph, its MST, and the soft marginals at three
temperatures. Writes docs/_static/mst.png.

    python docs/figures/make_mst.py
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from torch_artic.mst import dmst  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_static", "mst.png")


def main() -> None:
    g = torch.Generator().manual_seed(3)
    k = 9
    pts = torch.rand(k, 2, generator=g, dtype=torch.float64)
    w = torch.cdist(pts, pts)  # edge weight = Euclidean distance
    panels = [("exact MST (mode='hard')", dmst(w, relaxation="hard"))]
    for t in (1.0, 0.1, 0.01):
        panels.append(
            (f"soft marginals, temperature={t:g}", dmst(w, relaxation="soft", temperature=t))
        )

    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    iu, ju = torch.triu_indices(k, k, 1)
    for ax, (title, adj) in zip(axes, panels):
        for i, j in zip(iu.tolist(), ju.tolist()):
            p = float(adj[i, j])
            xs, ys = pts[[i, j], 0], pts[[i, j], 1]
            ax.plot(xs, ys, color="0.85", lw=0.6, zorder=1)
            if p > 1e-3:
                ax.plot(
                    xs,
                    ys,
                    color="tab:blue",
                    lw=0.5 + 4.5 * p,
                    alpha=0.15 + 0.85 * p,
                    zorder=2,
                    solid_capstyle="round",
                )
        ax.scatter(pts[:, 0], pts[:, 1], s=60, color="black", zorder=3)
        for v in range(k):
            ax.annotate(
                str(v), pts[v].tolist(), xytext=(4, 4), textcoords="offset points", fontsize=8
            )
        off = float(adj.triu(1).sum())
        ax.set_title(f"{title}\nsum of marginals = {off:.6f}", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "dmst on 9 points, weights = distances (line width and opacity = P(edge in tree))",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
