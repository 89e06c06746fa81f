"""Generator / discriminator behaviour: shapes, determinism, truncation, noise, W vs W+, mixing."""

import pytest
import torch

from domrand.config import load_config, preset_names

from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn.networks import (
    Discriminator,
    Generator,
    MinibatchStdLayer,
    mix_styles,
    random_crossover,
)


def _tiny(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(load_config("tiny", GeneratorConfig).network).eval()


@pytest.fixture(scope="module")
def G() -> Generator:
    g = _tiny()
    with torch.no_grad():  # a non-zero w_avg and noise strengths make the checks meaningful
        g.mapping.w_avg.copy_(torch.randn(g.w_dim))
        for name, _ in g.synthesis.noise_layers:
            block, layer = name.split(".")
            getattr(g.synthesis.blocks[block], layer).noise_strength.fill_(0.5)
    return g


@pytest.mark.parametrize("preset", ["tiny", "small64", "base64", "base128"])
def test_output_shapes_for_every_preset(preset):
    assert preset in preset_names("generator")
    cfg = load_config(preset, GeneratorConfig).network
    torch.manual_seed(0)
    G, D = Generator(cfg), Discriminator(cfg)
    z = torch.randn(2, cfg.z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        img = G.synthesis(ws)
        logits, feats = D(img, return_features=True)
    r = cfg.resolution
    assert ws.shape == (2, G.num_ws, cfg.w_dim)
    assert G.num_ws == 2 * len(G.synthesis.block_resolutions)  # one per conv plus the last toRGB
    assert img.shape == (2, 3, r, r) and torch.isfinite(img).all()
    assert logits.shape == (2, 1)
    assert [f.shape[-1] for f in feats] == [r // 2 ** (i + 1) for i in range(len(feats))]


def test_ws_bookkeeping_names_resolution_and_layers():
    cfg = load_config("small64", GeneratorConfig).network
    s = Generator(cfg).synthesis
    assert s.num_ws == 10
    assert s.ws_resolutions == [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]
    assert s.ws_layers[1] == ["b4.torgb", "b8.conv0"]  # toRGB shares its w with the next block's first conv
    assert s.ws_layers[-1] == ["b64.torgb"]
    assert s.num_ws_up_to(16) == 5 and s.num_ws_up_to(4) == 1 and s.num_ws_up_to(64) == 10
    assert s.block_ws_range(16) == (3, 6)
    every_layer = sorted(name for names in s.ws_layers for name in names)
    expected = sorted([f"b{r}.{n}" for r in (8, 16, 32, 64) for n in ("conv0", "conv1", "torgb")] + ["b4.conv1", "b4.torgb"])
    assert every_layer == expected


def test_same_seed_gives_identical_images():
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(7))
    a, b = _tiny(1), _tiny(1)
    with torch.no_grad():
        torch.manual_seed(11)
        img_a = a(z)
        torch.manual_seed(11)
        img_b = b(z)
    assert torch.equal(img_a, img_b)
    with torch.no_grad():
        assert not torch.equal(img_a, _tiny(2)(z, noise_mode="const"))


def test_psi_zero_gives_w_avg_and_cutoff_truncates_only_named_layers(G):
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        ws0 = G.mapping(z, psi=0.0)
        ws_cut = G.mapping(z, psi=0.0, cutoff=2)
        ws_named = G.mapping(z, psi=0.5, cutoff=[1, 4])
    assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
    assert torch.allclose(ws_cut[:, :2], G.mapping.w_avg.expand(4, 2, -1))
    assert torch.equal(ws_cut[:, 2:], ws[:, 2:])
    half = G.mapping.w_avg + 0.5 * (ws - G.mapping.w_avg)
    assert torch.allclose(ws_named[:, [1, 4]], half[:, [1, 4]])
    untouched = [i for i in range(G.num_ws) if i not in (1, 4)]
    assert torch.equal(ws_named[:, untouched], ws[:, untouched])
    with pytest.raises(ValueError, match="out of range"):
        G.mapping(z, psi=0.5, cutoff=[G.num_ws])


def test_w_avg_tracks_the_mean_only_when_asked(G):
    g = _tiny()
    z = torch.randn(64, g.z_dim)
    before = g.mapping.w_avg.clone()
    g.mapping(z)
    assert torch.equal(g.mapping.w_avg, before)
    g.mapping.w_avg_beta = 0.9  # converge quickly; the default 0.995 behaves the same, slower
    for _ in range(300):
        g.mapping(z, update_emas=True)
    with torch.no_grad():
        target = g.mapping(z)[:, 0].mean(0)
    assert torch.allclose(g.mapping.w_avg, target, atol=1e-4)


def test_noise_modes(G):
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    with torch.no_grad():
        const_a = G.synthesis(ws, noise_mode="const")
        const_b = G.synthesis(ws, noise_mode="const")
        rand_a = G.synthesis(ws, noise_mode="random")
        rand_b = G.synthesis(ws, noise_mode="random")
        none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(const_a, const_b)
    assert not torch.equal(rand_a, rand_b)
    assert not torch.equal(none, const_a)
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G.synthesis(ws, noise_mode="fresh")


def test_explicit_noise_can_be_read_out_and_passed_back(G):
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    with torch.no_grad():
        img, extras = G.synthesis(ws, noise_mode="random", return_extras=True)
        again = G.synthesis(ws, noise=extras["noise"])
        partial = {k: v for k, v in list(extras["noise"].items())[:2]}
        mixed = G.synthesis(ws, noise=partial, noise_mode="none")
    assert torch.equal(img, again)
    assert set(extras["noise"]) == {name for name, _ in G.synthesis.noise_layers}
    assert not torch.equal(mixed, img)
    drawn = G.synthesis.sample_noise(2, generator=torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in drawn.values()] == [(2, 1, r, r) for _, r in G.synthesis.noise_layers]
    with pytest.raises(ValueError, match="unknown layer"):
        G.synthesis(ws, noise={"b999.conv0": torch.zeros(1)})


def test_w_and_broadcast_w_plus_agree(G):
    w = G.mapping(torch.randn(3, G.z_dim))[:, 0].detach()
    with torch.no_grad():
        a = G.synthesis(w, noise_mode="const")
        b = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="ws: expected shape"):
        G.synthesis(torch.randn(3, G.num_ws + 1, G.w_dim))


def test_style_mixing_replaces_exactly_the_ws_after_crossover(G):
    a = torch.randn(4, G.num_ws, G.w_dim)
    b = torch.randn(4, G.num_ws, G.w_dim)
    m = mix_styles(a, b, 3)
    assert torch.equal(m[:, :3], a[:, :3]) and torch.equal(m[:, 3:], b[:, 3:])
    per_sample = mix_styles(a, b, torch.tensor([1, 2, G.num_ws, 0]))
    assert torch.equal(per_sample[0, :1], a[0, :1]) and torch.equal(per_sample[0, 1:], b[0, 1:])
    assert torch.equal(per_sample[2], a[2]) and torch.equal(per_sample[3], b[3])
    # the image changes only through the replaced layers: mixing at num_ws is a no-op
    with torch.no_grad():
        assert torch.equal(G.synthesis(mix_styles(a, b, G.num_ws), noise_mode="const"), G.synthesis(a, noise_mode="const"))
    cross = random_crossover(2000, G.num_ws, 0.9, torch.Generator().manual_seed(0))
    share = float((cross < G.num_ws).float().mean())
    assert 0.86 < share < 0.94 and int(cross.min()) >= 1


def test_feature_override_replaces_block_features(G):
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    with torch.no_grad():
        img, extras = G.synthesis(ws, noise_mode="const", return_extras=True)
        same = G.synthesis(ws, noise_mode="const", features={8: extras["features"][8]})
        other = G.synthesis(ws, noise_mode="const", features={8: torch.zeros_like(extras["features"][8])})
    assert torch.allclose(img, same, atol=1e-6)
    assert not torch.allclose(img, other)


def test_progressive_growing_interfaces():
    cfg = load_config("tiny", GeneratorConfig).network
    torch.manual_seed(0)
    G, D = Generator(cfg), Discriminator(cfg, progressive=True)
    ws = G.mapping(torch.randn(4, cfg.z_dim))
    low = G.synthesis(ws, active_resolution=8, alpha=0.3)
    assert low.shape == (4, 3, 8, 8)
    assert D(low, active_resolution=8, alpha=0.3).shape == (4, 1)
    # alpha blends: the newest toRGB contribution is scaled by alpha
    with torch.no_grad():
        a0 = G.synthesis(ws, active_resolution=16, alpha=0.0, noise_mode="const")
        a1 = G.synthesis(ws, active_resolution=16, alpha=1.0, noise_mode="const")
        ah = G.synthesis(ws, active_resolution=16, alpha=0.5, noise_mode="const")
    assert torch.allclose(ah, (a0 + a1) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="no fromRGB"):
        Discriminator(cfg)(low, active_resolution=8)


def test_minibatch_std_layer_measures_spread():
    layer = MinibatchStdLayer(group_size=4, num_channels=1)
    same = torch.ones(8, 4, 4, 4)
    out = layer(same)
    assert out.shape == (8, 5, 4, 4) and torch.allclose(out[:, 4], torch.tensor(1e-4), atol=1e-3)
    spread = layer(torch.randn(8, 4, 4, 4) * 3)
    assert float(spread[:, 4].mean()) > 1.5
    assert layer(torch.randn(6, 4, 4, 4)).shape == (6, 5, 4, 4)  # batch not divisible by 4


def test_discriminator_is_differentiable_twice_for_r1():
    cfg = load_config("tiny", GeneratorConfig).network
    D = Discriminator(cfg)
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(img).sum(), img, create_graph=True)
    penalty = grad.square().sum()
    penalty.backward()
    assert all(p.grad is not None for p in D.parameters() if p.requires_grad and p.ndim > 1)
