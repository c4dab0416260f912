"""docs/tutorial.md runs as written: its ``python`` blocks, in order, in one namespace.

The tutorial trains for a few hundred steps on 32-pixel figures (about 10 s on one CPU
thread); the test checks what the page promises: the sketch error falls, the recovered
skeleton is a tree of K - 1 limbs, and the keypoints beat the best constant guess.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import torch_artic as ta

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def tutorial_blocks() -> list[str]:
    text = TUTORIAL.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def is_tree(adjacency: torch.Tensor) -> bool:
    """A symmetric 0/1 ``[K, K]`` adjacency with K - 1 edges that connects every node."""
    k = adjacency.shape[0]
    edges = torch.nonzero(torch.triu(adjacency, 1)).tolist()
    parent = list(range(k))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        parent[root(a)] = root(b)
    return len(edges) == k - 1 and len({root(i) for i in range(k)}) == 1


def test_is_tree():
    path = ta.edges_to_adjacency(torch.tensor([[0, 1], [1, 2]]), 3)
    assert is_tree(path)
    assert not is_tree(ta.edges_to_adjacency(torch.tensor([[0, 1]]), 3))


@pytest.fixture(scope="module")
def tutorial():
    blocks = tutorial_blocks()
    assert len(blocks) >= 6, "the tutorial's code blocks are missing"
    namespace = {"__name__": "tutorial"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a batch-64 MLP: fastest and reproducible on one thread
    try:
        exec(compile("\n".join(blocks), str(TUTORIAL), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    return namespace


def test_tutorial_trains(tutorial):
    history = tutorial["history"]
    assert len(history) == tutorial["steps"]
    start, end = sum(history[:20]) / 20, sum(history[-20:]) / 20
    assert end < 0.25 * start, f"the sketch error did not fall: {start:.4f} -> {end:.4f}"


def test_tutorial_recovers_a_tree(tutorial):
    k = tutorial["K"]
    skeleton = tutorial["skeleton"]
    assert skeleton.shape == (k, k)
    assert torch.equal(skeleton, skeleton.T)
    assert is_tree(skeleton), "the recovered skeleton is not a spanning tree"
    assert len(tutorial["limbs"]) == k - 1
    assert tutorial["pr"].num_true == k - 1


def test_tutorial_keypoints_beat_a_constant_guess(tutorial):
    test, pred, err = tutorial["test"], tutorial["pred"], tutorial["err"]
    assert pred.shape == test.keypoints.shape
    assert torch.isfinite(pred).all()
    constant = test.keypoints.mean(0).expand_as(test.keypoints).clone()
    baseline = ta.hungarian_keypoint_error(constant, test.keypoints).mse
    assert float(err.mse) < 0.5 * float(baseline), (float(err.mse), float(baseline))
