"""``examples/pipeline3d.py`` end to end: the ``--quick`` budget (seed 0), in a subprocess.

Images of 3D stick figures in, 3D skeletons out, with no labels. The issue's targets are
NOT met (docs/examples.md, section *pipeline3d*): the detector finds the torso and roughly
where the limbs are, but not every limb's joints, so lifting its keypoints is no better than
zero depth. The bar is what the quick budget reliably shows (quick seeds 0-4): the pipeline
runs end to end in both variants with its interface (progress, one JSON line, the figure);
the detector learns (its keypoints are much closer to the joints than an untrained
detector's, and, left/right reading free, than the best constant pose; the tree of the
better variant holds at least 3 of the 15 bones); and the lifter recipe, fed true 2D
keypoints, lifts.
"""

from __future__ import annotations

import json
import math

import pytest


@pytest.fixture(scope="module")
def quick(tmp_path_factory, run_example):
    tmp = tmp_path_factory.mktemp("pipeline3d")  # also checks that --out is cwd-relative
    run = run_example("pipeline3d", "--quick", "--out", "quick.png", cwd=tmp, timeout=900)
    lines = run.stdout.strip().splitlines()
    return json.loads(lines[-1]), lines, tmp


def test_help(run_example):
    run = run_example("pipeline3d", "--help", timeout=120)
    for flag in ("--quick", "--seed", "--out", "--threads", "--variants"):
        assert flag in run.stdout
    assert "minutes" in run.stdout  # the full budget's time


def test_quick_prints_progress_then_one_json_object(quick):
    metrics, lines, _ = quick
    assert metrics["budget"] == "quick" and metrics["seed"] == 0 and metrics["threads"] == 1
    assert any("[split] step" in line for line in lines[:-1])
    assert any("[end-to-end] step" in line for line in lines[:-1])


def test_quick_learns_keypoints(quick):
    metrics, _, _ = quick
    # quick seed 0: untrained detector 9.6e-2, best constant pose 2.7e-2, trained 2.4e-2
    # (split) and 2.7e-2 (end to end); left/right ambiguity floor 1.25e-2
    assert 0.01 < metrics["lr_floor_mse_2d"] < 0.015, metrics
    for variant in ("split", "end_to_end"):
        assert metrics[f"{variant}_mse_2d"] < 0.7 * metrics["untrained_mse_2d"], metrics
        assert metrics[f"{variant}_mse_2d_sym"] <= metrics[f"{variant}_mse_2d"]
        assert 0.0 <= metrics[f"{variant}_edge_recall"] <= 1.0
        for key in ("mpjpe_mm", "pa_mpjpe_mm", "mpjpe_sym_mm", "zero_depth_mpjpe_mm"):
            assert math.isfinite(metrics[f"{variant}_{key}"]), metrics
    # the better variant, each image read either way: 0.35-0.77 of the best constant pose
    # over quick seeds 0-4 (split alone: 0.35-0.64, but 1.08 on seed 3, where its detector
    # missed most limbs), and its tree holds at least 3 of the 15 bones (a random spanning
    # tree: 1.9 on average; split: 6-9 of 15 on seeds 0-2 and 4, 3 on seed 3)
    best_sym = min(metrics["split_mse_2d_sym"], metrics["end_to_end_mse_2d_sym"])
    assert best_sym < 0.85 * metrics["mean_pose_mse_2d"], metrics
    best_recall = max(metrics["split_edge_recall"], metrics["end_to_end_edge_recall"])
    assert best_recall >= 0.2 - 1e-6, metrics


def test_quick_references_lift(quick):
    metrics, _, _ = quick
    # the lifter recipe on true 2D keypoints: 0.71-0.75 of zero depth's MPJPE (quick seeds
    # 0-4); the supervised lifter 0.64-0.66 of it
    assert metrics["true_2d_mpjpe_mm"] < 0.85 * metrics["zero_depth_true_2d_mpjpe_mm"]
    assert metrics["supervised_mpjpe_mm"] < metrics["true_2d_mpjpe_mm"]


def test_quick_writes_the_figure(quick):
    metrics, _, tmp = quick
    data = (tmp / metrics["figure"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 400_000
