"""examples/keypoints_mtl.py --quick: it must finish and clear its metric bars.

The bars sit well inside what seeds 0-4 give at the quick budget (250 steps; see the
comments), so they test that the self-supervised tasks learn and that the keypoints carry
the digit's shape, not one lucky run.
"""

import json


def test_help(run_example):
    out = run_example("keypoints_mtl", "--help").stdout
    for flag in ("--quick", "--seed", "--out", "--steps", "--single-steps", "--mtl"):
        assert flag in out


def test_quick_run_clears_the_bars(tmp_path, run_example):
    png = tmp_path / "kp.png"
    proc = run_example("keypoints_mtl", "--quick", "--seed", "0", "--out", str(png))
    lines = proc.stdout.strip().splitlines()
    assert len(lines) > 3, "expected progress lines before the metrics"
    m = json.loads(lines[-1])
    assert m["steps"] == 250 and m["single_vs_multi"] == {}

    # §4.6.3.3: a classifier that sees only the 7 keypoints. Chance is 10%; the same classifier
    # on the untrained detector's keypoints gets 0.88-0.93 (random convolutional features
    # already carry some shape), on the trained ones 0.94-0.96 (3-8 points more), seeds 0-4.
    assert m["keypoint_clf_acc"] >= 0.85
    assert m["keypoint_clf_acc"] > m["keypoint_clf_acc_untrained"] + 0.01
    # Table 4.19's tasks on held-out digits, seeds 0-4: distractor (chance 0.5; 0.98-1.00),
    # middle frame (chance 1/3; 0.97-0.99), reconstruction clearly better than the mean
    # training image (0.51-0.68 of its MSE)
    assert m["distractor_acc"] >= 0.85
    assert m["middle_acc"] >= 0.8
    assert m["recon_mse"] < 0.85 * m["recon_mse_mean_image"]
    # the raw-pixel reference classifier works, so the data and labels are sound
    assert m["pixel_clf_acc"] >= 0.9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
