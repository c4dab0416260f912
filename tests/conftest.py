"""Shared fixtures: every op is tested on every backend it has."""

import os

import pytest
import torch
from hypothesis import settings

from torch_artic import _native

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
        with _native.forced_fallback():
            yield "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
