"""Figure for docs/tutorial.md: runs the tutorial's own code (its ``python`` blocks, in
order, one torch thread), then draws held-out figures, their sketches from the learnt
keypoints, the keypoints against the truth, the recovered tree and the sketch error over
training. Writes ``docs/_static/tutorial.png``. Run from the repository root::

    python docs/figures/make_tutorial.py
"""

from __future__ import annotations

import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

import torch_artic as ta  # noqa: E402

TUTORIAL = os.path.join(HERE, "..", "tutorial.md")
OUT = os.path.join(HERE, "..", "_static", "tutorial.png")
N = 4  # held-out figures shown


def run_tutorial() -> dict:
    """Execute the tutorial's python blocks; return their namespace."""
    with open(TUTORIAL, encoding="utf-8") as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
    namespace: dict = {"__name__": "tutorial"}
    exec(compile("\n".join(blocks), TUTORIAL, "exec"), namespace)
    return namespace


def main() -> None:
    torch.set_num_threads(1)
    ns = run_tutorial()
    test, pred, skeleton, err = ns["test"], ns["pred"], ns["skeleton"], ns["err"]
    size, joint, names = ns["size"], ns["joint"], ns["STICKMAN2D_JOINTS"]
    with torch.no_grad():
        sketch = ta.sketch_render(pred[:N], skeleton, size)
    pix = (pred + 1) * (size - 1) / 2
    true = (test.keypoints + 1) * (size - 1) / 2
    edges = torch.nonzero(torch.triu(skeleton, 1)).tolist()
    colors = plt.cm.tab10(range(len(names)))

    fig = plt.figure(figsize=(1.8 * N + 3.0, 5.6))
    grid = fig.add_gridspec(3, N + 1, width_ratios=[1] * N + [1.6])
    axes = [[fig.add_subplot(grid[r, c]) for c in range(N)] for r in range(3)]
    for c in range(N):
        axes[0][c].imshow(test.images[c, 0], cmap="gray", vmin=0, vmax=1)
        axes[1][c].imshow(sketch[c, 0], cmap="gray", vmin=0, vmax=1)
        ax = axes[2][c]
        ax.imshow(0.35 * test.images[c, 0], cmap="gray", vmin=0, vmax=1)
        for a, b in edges:
            ax.plot(pix[c, [a, b], 0], pix[c, [a, b], 1], "-", color="w", lw=1)
        for i, j in joint.items():
            ax.plot(true[c, j, 0], true[c, j, 1], "+", color=colors[j], ms=8, mew=1)
            ax.plot(pix[c, i, 0], pix[c, i, 1], "o", color=colors[j], ms=3)
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for row, title in zip(axes, ("input", "sketch", "keypoints (+ truth)"), strict=True):
        row[0].set_ylabel(title, fontsize=8)

    # the recovered tree, drawn on the true pose of a held-out figure with both hands
    # raised (so that no two labels overlap), named by the matched joints
    ax = fig.add_subplot(grid[0:2, N])
    kp = test.keypoints[:64]
    raised = torch.minimum(kp[:, 0, 1] - kp[:, 3, 1], kp[:, 0, 1] - kp[:, 4, 1])
    pose = kp[int(raised.argmax())]
    pose = pose - pose[:1]
    for a, b in edges:
        ja, jb = joint[a], joint[b]
        ax.plot(pose[[ja, jb], 0], pose[[ja, jb], 1], "-", color="k", lw=1.5)
    for j, name in enumerate(names):
        x, y = float(pose[j, 0]), float(pose[j, 1])
        ax.plot(x, y, "o", color=colors[j], ms=5)
        left = x < -0.05
        ax.text(
            x + (-0.07 if left else 0.07),
            y,
            name.replace("_", " "),
            fontsize=7,
            va="center",
            ha="right" if left else "left",
        )
    ax.set_title(f"recovered tree: {ns['pr'].true_positives} of 6 limbs", fontsize=8)
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(1.2, -0.6)
    ax.set_aspect("equal")
    ax.axis("off")

    ax = fig.add_subplot(grid[2, N])
    ax.semilogy(ns["history"], lw=0.8)
    ax.set_title(f"sketch error; held-out\nkeypoint MSE {err.mse.item():.1e}", fontsize=8)
    ax.set_xlabel("training step", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(OUT, dpi=90)
    plt.close(fig)
    print(f"wrote {OUT}: MSE {err.mse.item():.2e}, limbs {ns['limbs']}")


if __name__ == "__main__":
    main()
