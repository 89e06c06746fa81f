"""Suite-wide settings.

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
