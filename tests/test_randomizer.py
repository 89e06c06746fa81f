"""StyleRandomizer mechanics on an untrained tiny generator and a stand-in encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from domrand.config import load_config

from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn.networks import Generator
from domrand.randomizer import StyleRandomizer
from standins import StandInEncoder


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    G = Generator(load_config("tiny", GeneratorConfig).network).eval()
    with torch.no_grad():  # untrained layers ignore noise (strength 0): make it visible
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


@pytest.fixture(scope="module")
def E(G: Generator) -> StandInEncoder:
    torch.manual_seed(1)
    return StandInEncoder.for_generator(G).eval()


def _frames(n: int = 3, h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _rand(G, E, **kw) -> StyleRandomizer:
    kw.setdefault("keep_resolution", 8)
    kw.setdefault("seed", 0)
    return StyleRandomizer(G, E, **kw)


def test_shapes_dtypes_layouts_and_sizes(G, E) -> None:
    r = _rand(G, E)
    f = _frames(3, 40, 56)
    out = r.randomize(f)
    assert out.shape == f.shape and out.dtype == np.uint8
    assert r.randomize(f[0]).shape == (40, 56, 3)
    chw = np.ascontiguousarray(f.transpose(0, 3, 1, 2))
    assert r.randomize(chw).shape == chw.shape
    assert r.randomize(chw[1]).shape == chw[1].shape
    t = torch.from_numpy(f)
    out_t = r.randomize(t)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == t.shape and out_t.dtype == torch.uint8
    assert r.randomize(_frames(2, 16, 16)).shape == (2, 16, 16, 3)  # exactly G's resolution: no resize
    assert r.randomize(_frames(1, 8, 12)).shape == (1, 8, 12, 3)  # smaller than G: upsampled in, down out


def test_coarse_ws_from_frame_fine_ws_from_style(G, E) -> None:
    r = _rand(G, E)
    f = _frames(2)
    a = r.latents(f)
    k = r.num_coarse
    assert k == G.synthesis.num_ws_up_to(8) and r.num_fine == G.num_ws - k > 0
    assert torch.equal(a["ws"][:, :k], a["frame_ws"][:, :k])
    assert not torch.allclose(a["ws"][:, k:], a["frame_ws"][:, k:])
    r.resample([0, 1])
    b = r.latents(f)
    assert torch.equal(b["ws"][:, :k], a["ws"][:, :k])
    assert not torch.allclose(b["ws"][:, k:], a["ws"][:, k:])
    # coarse noise is G's constant noise; fine noise is per environment
    const = G.synthesis.sample_noise(1, noise_mode="const")
    for name, res in G.synthesis.noise_layers:
        if res <= 8:
            assert torch.equal(b["noise"][name].expand(2, -1, -1, -1)[0], const[name][0])
        else:
            assert not torch.equal(b["noise"][name][0], b["noise"][name][1])


def test_mix_and_psi(G, E) -> None:
    f = _frames(2)
    r = _rand(G, E, mix=0.0)
    lat = r.latents(f)
    assert torch.allclose(lat["ws"], lat["frame_ws"])
    r.mix, r.psi = 1.0, 0.0
    lat = r.latents(f)
    w_avg = G.mapping.w_avg.reshape(1, 1, -1)
    assert torch.allclose(lat["ws"][:, r.num_coarse :], w_avg.expand_as(lat["ws"][:, r.num_coarse :]))
    with pytest.raises(ValueError, match="mix"):
        r.mix = 1.5
    with pytest.raises(ValueError, match="noise"):
        r.noise = "sometimes"


def test_per_env_stability_and_independence(G, E) -> None:
    r = _rand(G, E)
    f = np.repeat(_frames(1), 3, axis=0)
    first = r.randomize(f)
    assert np.array_equal(first, r.randomize(f))  # stable between resamples
    assert not np.array_equal(first[0], first[1])  # same frame, different envs -> different worlds
    r.resample([1])
    second = r.randomize(f)
    assert np.array_equal(second[0], first[0]) and np.array_equal(second[2], first[2])
    assert not np.array_equal(second[1], first[1])
    # explicit env ids, grown on demand
    out = r.randomize(f[:2], env_ids=[7, 0])
    assert np.array_equal(out[1], first[0]) and r.num_envs == 8


def test_same_seed_same_frames_and_batch_independence(G, E) -> None:
    f = _frames(4)
    a, b = _rand(G, E, seed=3), _rand(G, E, seed=3)
    assert np.array_equal(a.randomize(f), b.randomize(f))
    a.resample([0, 1, 2, 3], seed=11)
    b.resample([2], seed=11)  # env 2's style depends on (seed, env id), not on the batch
    assert torch.equal(a.styles([2]), b.styles([2]))
    c = _rand(G, E, seed=4)
    assert not np.array_equal(c.randomize(f), _rand(G, E, seed=3).randomize(f))
    a.resample([0, 1], seed=[5, 5])  # per-env seed lists: same seed -> same style
    assert torch.allclose(a.styles([0]), a.styles([1]))


def test_noise_modes(G, E) -> None:
    f = np.repeat(_frames(1), 2, axis=0)
    for mode in ("const", "none"):
        r = _rand(G, E, noise=mode, mix=0.0)  # no sampled styles: envs differ only by noise
        out = r.randomize(f)
        assert np.array_equal(out[0], out[1])
    out = _rand(G, E, noise="random", mix=0.0).randomize(f)
    assert not np.array_equal(out[0], out[1])
    r = _rand(G, E, noise="step")
    assert not np.array_equal(r.randomize(f[:1]), r.randomize(f[:1]))


def test_drift_glides_to_new_style(G, E) -> None:
    r = _rand(G, E, drift_steps=4)
    f = _frames(1)
    r.randomize(f)
    old = r.styles([0]).clone()
    r.resample([0], seed=9, immediate=False)
    target = _rand(G, E)
    target.resample([0], seed=9)
    new = target.styles([0])
    seen = []
    for _ in range(5):
        seen.append(r.styles([0]).clone())
        r.randomize(f)
    assert not torch.allclose(seen[0], old) and not torch.allclose(seen[0], new)
    assert torch.allclose(seen[3], new, atol=1e-5) and torch.allclose(seen[4], new, atol=1e-5)
    d = [float((s - old).norm()) for s in seen[:4]]
    assert d == sorted(d)
    r.resample([0], seed=10, immediate=True)  # immediate switch ignores drift
    target.resample([0], seed=10)
    assert torch.allclose(r.styles([0]), target.styles([0]))


class _NaNEncoder(StandInEncoder):
    def forward(self, images: torch.Tensor) -> dict:
        out = super().forward(images)
        out["ws"] = out["ws"].clone()
        out["ws"][0] = float("nan")
        return out


def test_nan_never_reaches_output(G) -> None:
    r = _rand(G, _NaNEncoder.for_generator(G))
    with pytest.warns(RuntimeWarning, match="NaN"):
        out = r.randomize(_frames(2))
    assert out.dtype == np.uint8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        r.randomize(_frames(2))


def test_bad_input_and_pairing(G, E) -> None:
    r = _rand(G, E)
    with pytest.raises(ValueError, match="uint8"):
        r.randomize(_frames(1).astype(np.float32))
    with pytest.raises(ValueError, match="3 colour channels"):
        r.randomize(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        r.randomize(np.zeros((8, 8), np.uint8))
    other = StandInEncoder.for_generator(G)
    other.generator_hash = "0" * 16
    with pytest.raises(ValueError, match="mismatch"):
        StyleRandomizer(G, other)
    with pytest.raises(ValueError, match="keep_resolution"):
        StyleRandomizer(G, StandInEncoder.for_generator(G, keep_resolution=8), keep_resolution=4)
    with pytest.warns(UserWarning, match="only reconstructed"):
        StyleRandomizer(G, E, keep_resolution=16)


def test_features_refine_microbatch_and_dtype(G) -> None:
    torch.manual_seed(2)
    Ef = StandInEncoder.for_generator(G, features=True)
    f = _frames(5)
    big = _rand(G, Ef, max_batch=64).randomize(f)
    small = _rand(G, Ef, max_batch=2).randomize(f)
    assert np.abs(big.astype(int) - small.astype(int)).max() <= 1
    r = _rand(G, Ef, refine_steps=3)
    r.randomize(f[:1])
    assert Ef.invert_calls == [3]
    out = _rand(G, Ef, dtype="bfloat16").randomize(f[:1])
    assert out.shape == f[:1].shape and out.dtype == np.uint8


# frames, words of the ValueError (the check each row guards: without it these inputs reach
# cv2/torch/numpy and fail there, with another error class or message)
BAD_FRAMES = [
    (np.zeros((0, 0, 3), np.uint8), "empty frame (height 0, width 0) in shape (0, 0, 3)"),
    (np.zeros((2, 0, 8, 3), np.uint8), "empty frame (height 0, width 8) in shape (2, 0, 8, 3)"),
    (np.zeros((2, 8, 0, 3), np.uint8), "empty frame (height 8, width 0) in shape (2, 8, 0, 3)"),
    (np.zeros((2, 3, 0, 8), np.uint8), "empty frame (height 0, width 8) in shape (2, 3, 0, 8)"),
    (np.zeros((0, 8, 8, 3), np.uint8), "empty batch (0 frames) in shape (0, 8, 8, 3)"),
    (torch.zeros((2, 0, 8, 3), dtype=torch.uint8), "empty frame (height 0, width 8) in shape (2, 0, 8, 3)"),
    (torch.zeros((0, 8, 8, 3), dtype=torch.uint8), "empty batch (0 frames) in shape (0, 8, 8, 3)"),
    (np.zeros((8, 8, 1), np.uint8), "expected 3 colour channels on the last axis (or the first, channel-first), got shape (8, 8, 1)"),
    (np.zeros((2, 8, 8, 4), np.uint8), "expected 3 colour channels on the last axis (or the first, channel-first), got shape (2, 8, 8, 4)"),
    (np.zeros((2, 1, 8, 8), np.uint8), "expected 3 colour channels on the last axis (or the first, channel-first), got shape (2, 1, 8, 8)"),
    (np.zeros((8, 8, 3), np.float32), "expected dtype uint8, got float32"),
    (np.zeros((8, 8, 3), np.uint16), "expected dtype uint8, got uint16"),
    (torch.zeros((8, 8, 3)), "expected dtype uint8, got float32"),
    (np.zeros((8, 8), np.uint8), "expected 3 or 4 dims, got 2 (shape (8, 8))"),
    (np.zeros((1, 2, 8, 8, 3), np.uint8), "expected 3 or 4 dims, got 5 (shape (1, 2, 8, 8, 3))"),
    (None, "expected a numpy array or torch tensor, got NoneType"),
]
ACCEPTED = "; accepted: uint8 [N, H, W, 3] or [H, W, 3] (or channel-first [N, 3, H, W] / [3, H, W]) with N, H, W >= 1"


@pytest.mark.parametrize("frames, words", BAD_FRAMES, ids=[w.split(" in shape")[0] for _, w in BAD_FRAMES])
def test_bad_frames_are_a_value_error_naming_the_problem_and_the_accepted_form(G, E, frames, words) -> None:
    r = _rand(G, E)
    for call in (r.randomize, r.latents):
        with pytest.raises(ValueError) as info:
            call(frames)
        assert str(info.value) == f"frames: {words}{ACCEPTED}"


def test_explicit_channel_layout_is_checked(G, E) -> None:
    r = _rand(G, E)
    with pytest.raises(ValueError, match=r"^frames: expected 3 colour channels on the first axis, got 8 in shape \(2, 8, 8, 3\)"):
        r.randomize(_frames(2, 8, 8), channels_first=True)
    with pytest.raises(ValueError, match=r"^frames: empty frame \(height 0, width 8\) in shape \(3, 0, 8\)"):
        r.randomize(np.zeros((3, 0, 8), np.uint8), channels_first=True)
    assert r.randomize(np.zeros((1, 1, 3), np.uint8)).shape == (1, 1, 3)  # the smallest frame is fine


def test_dtype_auto_picks_bfloat16_only_on_a_cpu_with_native_bfloat16(monkeypatch):
    import torch

    from domrand import randomizer

    monkeypatch.setattr(randomizer, "cpu_has_fast_bfloat16", lambda: True)
    assert randomizer.auto_dtype(torch.device("cpu")) == torch.bfloat16
    assert randomizer.auto_dtype(torch.device("cuda")) == torch.float32  # half measured slower at 64x64
    monkeypatch.setattr(randomizer, "cpu_has_fast_bfloat16", lambda: False)
    assert randomizer.auto_dtype(torch.device("cpu")) == torch.float32
