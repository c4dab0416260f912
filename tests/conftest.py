"""Shared fixtures: every op is tested on every backend it has; examples run as scripts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from torch_artic import _native, force_reference

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

BACKENDS = ["native", "reference"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test once with native kernels and once with the pure-torch references."""
    if request.param == "native":
        if not _native.extension_loaded():
            pytest.skip("native extension not loaded: " + str(_native.backend_info()["reason"]))
        yield "native"
    else:
        with force_reference():
            yield "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


ROOT = Path(__file__).resolve().parents[1]


def _run_example(name: str, *args: str, cwd=ROOT, timeout: float = 600):
    """Run ``examples/<name>.py`` in a subprocess (this checkout first on ``PYTHONPATH``,
    matplotlib headless) and return the finished ``CompletedProcess``; fails the test with
    the tail of stderr if the script exits non-zero."""
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def run_example():
    """``run_example(name, *args, cwd=ROOT, timeout=600) -> CompletedProcess``."""
    return _run_example
