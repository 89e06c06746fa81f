"""Suite-wide settings and the fixtures many test files share.

Every test network is tiny: one intra-op thread is faster than two and keeps the suite from
oversubscribing CI's two cores (OpenMP threads waiting on each other made some tests 3-10x slower).
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """An untrained 16x16 bundle (tiny generator + tiny inverter), built once per test session.
    Read it, do not change it: tests that alter a bundle make their own."""
    from domrand.transfer import make_untrained_bundle

    return make_untrained_bundle(tmp_path_factory.mktemp("shared_bundle") / "tiny")
