"""The examples' --quick runs: each must finish and clear its metric bar (its last stdout
line is one JSON object of metrics)."""

import json
import math


def test_lift3d_quick(tmp_path, run_example):
    out = tmp_path / "lift3d.png"
    lines = run_example("lift3d", "--quick", "--out", str(out)).stdout.strip().splitlines()
    assert lines, "no output"
    m = json.loads(lines[-1])
    for key in ("zero_depth", "lvmst", "supervised", "adversarial"):
        assert math.isfinite(m[f"{key}_mpjpe_mm"]) and m[f"{key}_sign"] in (1, -1)
    # the rigidity prior lifts: clearly better than no depth at all (0.80-0.89 of it
    # over seeds 0-5 at this budget), in MPJPE and in PA-MPJPE ...
    assert m["lvmst_mpjpe_mm"] < 0.95 * m["zero_depth_mpjpe_mm"]
    assert m["lvmst_pa_mpjpe_mm"] < 0.95 * m["zero_depth_pa_mpjpe_mm"]
    # ... and the supervised upper bound really is above it
    assert m["supervised_mpjpe_mm"] < m["lvmst_mpjpe_mm"]
    # the tree of the lifted points finds most of the 15 bones (12-13 of them here)
    assert m["lvmst_edge_recall"] >= 0.6
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
