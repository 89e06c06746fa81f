"""The one seed derivation (``domrand.utils.derive_seed``) gives the seeds the code had before it
replaced four copies: the run streams, ranks, env styles and benchmark frames stay reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from domrand.utils import derive_seed


def _state(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


@pytest.mark.parametrize("entropy", [(0,), (7, 0, 100), (123, 4, 5, 6, 2, 1), (2**62, 3)])
def test_the_seeds_of_the_replaced_helpers(entropy):
    assert derive_seed(*entropy) == _state(*entropy) >> 1  # train/distributed stream seeds, transfer.derive_seed
    assert derive_seed(*entropy, bits=64) == _state(*entropy)  # the randomizer's 64-bit env seeds


def test_range_negative_entropy_and_bad_bits():
    seeds = [derive_seed(s, k) for s in range(20) for k in range(5)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(-1) == derive_seed(2**64 - 1)  # modulo 2**64, as the randomizer took it
    assert 0 <= derive_seed(5, bits=31) < 2**31
    with pytest.raises(ValueError, match="bits must be in 1..64"):
        derive_seed(1, bits=65)
