"""Fuzz: >= 100 corrupted or tampered variants of a tiny bundle and a tiny training run.

Every variant must end in ``CheckpointError`` (asserted apart from) naming the changed file; none
may load altered weights or settings; no pickle payload may run; no config bomb may build its
network; no load may allocate beyond a bound. The corpus lives in ``tests/fuzz_corpus.py``
(``python tests/fuzz_corpus.py`` prints the counts; docs/integrity.md).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import fuzz_corpus as fc
from domrand import bundle as bundle_mod
from domrand import checkpoint
from domrand.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[fc.Outcome]]:
    root = tmp_path_factory.mktemp("fuzz")
    fc.make_originals(root / "orig")
    outcomes = [fc.run_variant(root / "orig", root / "work", v) for v in fc.variants(root / "orig")]
    return root, outcomes


def _names(outcomes: list[fc.Outcome]) -> list[str]:
    return [f"{o.variant.name}: {type(o.error).__name__}: {str(o.error)[:160]}" for o in outcomes]


def test_the_corpus_is_large_and_covers_every_kind(corpus) -> None:
    _, outcomes = corpus
    names = [o.variant.name for o in outcomes]
    assert len(outcomes) >= 100
    for words in ("header byte flip", "body byte flip", "truncated", "header length 2**63", "(re-signed)", "bomb",
                  "pickle with a payload", "torch.save zip with a payload", "bundle.json: a list", "one weight changed"):
        assert any(words in n for n in names), words
    for target in ("bundle/generator.safetensors", "bundle/inverter.safetensors", "single.safetensors",
                   "G.safetensors", "D.safetensors", "train_state.safetensors", "bundle.json"):
        assert any(o.variant.target.endswith(target) for o in outcomes), target


def test_the_originals_load(corpus) -> None:
    root, _ = corpus
    orig = root / "orig"
    assert bundle_mod.load_bundle(orig / "bundle", device="cpu").options == {"psi": 0.6}
    assert bundle_mod.load_bundle(orig / "single.safetensors", device="cpu").options == {"psi": 0.6}
    ckpt = fc.run_checkpoint(orig)
    for name in fc.RUN_FILES:
        checkpoint.load_tensors(ckpt / name)


def test_every_variant_ends_in_a_checkpoint_error(corpus) -> None:
    _, outcomes = corpus
    wrong = [o for o in outcomes if not isinstance(o.error, CheckpointError)]
    assert not wrong, _names(wrong)


def test_every_error_names_the_changed_file(corpus) -> None:
    _, outcomes = corpus
    unnamed = [o for o in outcomes if Path(o.variant.target).name not in str(o.error)]
    assert not unnamed, _names(unnamed)


def test_every_error_is_one_line(corpus) -> None:
    _, outcomes = corpus
    multi = [o for o in outcomes if "\n" in str(o.error)]
    assert not multi, _names(multi)


def test_no_payload_runs(corpus) -> None:
    _, outcomes = corpus
    assert not [o.variant.name for o in outcomes if o.payload_ran]


def test_the_payloads_are_real(tmp_path) -> None:
    """Unpickling the corpus's payload does create the marker: the no-payload test is meaningful."""
    path = tmp_path / "x.safetensors"
    pickle.loads(fc._pickle_payload(path))
    assert (tmp_path / fc.MARKER).exists()


def test_config_bombs_never_build_their_network(corpus) -> None:
    _, outcomes = corpus
    bombs = [o for o in outcomes if o.variant.bomb]
    assert len(bombs) >= 20
    built = [o.variant.name for o in bombs if o.variant.bomb in o.built]
    assert not built


def test_no_load_allocates_beyond_the_bound(corpus) -> None:
    _, outcomes = corpus
    over = [(o.variant.name, o.peak_bytes) for o in outcomes if o.peak_bytes > fc.PEAK_LIMIT]
    assert not over


def test_the_fuzz_fails_when_the_checksum_check_is_removed(corpus, tmp_path, monkeypatch) -> None:
    """With checksum verification disabled, tampered weights load: the corpus guards that check."""
    root, _ = corpus
    monkeypatch.setattr(checkpoint, "_verify_checksum", lambda *a: None)
    tampered = [v for v in fc.variants(root / "orig") if v.name.endswith("one weight changed") and v.load == "network"]
    outcomes = [fc.run_variant(root / "orig", tmp_path / "work", v) for v in tampered]
    assert outcomes and all(o.error is None for o in outcomes)
