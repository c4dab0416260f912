"""examples/keypoints_mtl.py --quick: it must finish and clear its metric bars.

The bars sit well inside what seeds 0-4 give at the quick budget (250 steps; see the
comments), so they test that the self-supervised tasks learn and that the keypoints carry
the digit's shape (``--data digits``) or the stick figures' joints (``--data stickman``,
the linear landmark probe), not one lucky run.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "keypoints_mtl.py"
PREDICTORS = {"trained", "untrained", "mean_pose", "pixels"}


def test_help(run_example):
    out = run_example("keypoints_mtl", "--help").stdout
    for flag in ("--quick", "--seed", "--out", "--steps", "--single-steps", "--mtl", "--data"):
        assert flag in out
    assert "(default: 0.001)" in out and "minutes" in out  # defaults and the budget's time


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


# ----------------------------------------------------------------------------- stick figures
@pytest.fixture(scope="module")
def stick(tmp_path_factory, run_example):
    """One ``--quick --data stickman`` run (seed 0) for the tests below: (metrics, png)."""
    tmp = tmp_path_factory.mktemp("keypoints_mtl_stickman")
    proc = run_example(
        "keypoints_mtl", "--quick", "--data", "stickman", "--seed", "0", "--out", "kp.png", cwd=tmp
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) > 3, "expected progress lines before the metrics"
    return json.loads(lines[-1]), tmp / "kp.png"


def test_stickman_reports_the_landmark_probe(stick):
    m, png = stick
    assert m["data"] == "stickman" and m["steps"] == 250 and m["single_vs_multi"] == {}
    assert "keypoint_clf_acc" not in m  # no digit labels here
    for k in PREDICTORS:
        assert m[f"landmark_err_{k}"] > 0
        # % of the 16-px image side (the thesis's unit, Table 4.16)
        assert m["landmark_err_pct"][k] == pytest.approx(100 * m[f"landmark_err_{k}"] / 16)
        per_joint = m["landmark_err_per_joint"][k]
        assert len(per_joint) == 7
        assert sum(per_joint) / 7 == pytest.approx(m[f"landmark_err_{k}"], rel=1e-5)
    assert set(m["landmark_err_per_joint"]) == PREDICTORS
    assert set(m["hungarian_mse"]) == {"trained", "untrained"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stickman_probe_separates_trained_from_untrained(stick):
    m, _ = stick
    # held-out mean joint error, quick seeds 0-4: trained 0.21-0.27 px, untrained
    # 0.62-0.76 px (trained / untrained 0.27-0.44), the mean training pose 1.88 px
    assert m["landmark_err_trained"] < 0.7 * m["landmark_err_untrained"], m
    assert m["landmark_err_trained"] < 0.3 * m["landmark_err_mean_pose"], m
    # the same linear probe on the raw pixels works (0.39 px), so the data and probe are sound
    assert m["landmark_err_pixels"] < 0.5 * m["landmark_err_mean_pose"], m
    # thesis Table 5.8's measure (keypoints matched to joints, no regression), seeds 0-4:
    # trained 0.031-0.075, untrained 0.157-0.168
    hung = m["hungarian_mse"]
    assert hung["trained"] < 0.7 * hung["untrained"], m
    # the tasks are learnt on stick figures too (seeds 0-4: distractor 0.995-1.000, middle
    # frame 0.972-0.988; chance 0.5 and 1/3), reconstruction 0.29-0.41 of the mean image's MSE
    assert m["distractor_acc"] >= 0.85 and m["middle_acc"] >= 0.8, m
    assert m["recon_mse"] < 0.85 * m["recon_mse_mean_image"], m


def _example():
    spec = importlib.util.spec_from_file_location("keypoints_mtl", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fit_linear_recovers_a_linear_map_on_held_out_data():
    fit_linear = _example().fit_linear
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(5, 3, generator=g), torch.randn(3, generator=g)
    f = torch.randn(400, 5, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0]) + 2
    fit = fit_linear(f[:300], f[:300] @ w + b, ridge=0.0)
    assert torch.allclose(fit(f[300:]), f[300:] @ w + b, atol=1e-4)
    # a constant feature (a blank border pixel) is harmless; the default ridge (1e-3 N on
    # standardised features) shrinks the fit towards the training mean by about 0.1%
    fit = fit_linear(torch.cat([f, torch.zeros(400, 1)], 1)[:300], f[:300] @ w + b)
    truth = f[300:] @ w + b
    err = (fit(torch.cat([f, torch.zeros(400, 1)], 1)[300:]) - truth).abs().max()
    assert err < 0.01 * truth.std()
    # a huge ridge leaves the bias only: the training mean of the targets
    t = f[:300] @ w + b
    flat = fit_linear(f[:300], t, ridge=1e6)(f[300:])
    assert torch.allclose(flat, t.mean(0).expand_as(flat), atol=1e-3)


def test_joint_errors_are_in_pixels():
    joint_errors = _example().joint_errors
    truth = torch.zeros(4, 7, 2)
    pred = truth.clone()
    pred[..., 0] += 2 / 15  # one pixel to the right in a 16-px image (x = -1 .. 1 over 15 px)
    assert torch.allclose(joint_errors(pred, truth, 16), torch.ones(7))
