"""Behaviour of the ADA augmentation pipe and its p controller."""

from __future__ import annotations

import math

import pytest
import torch

from domrand.generator.train.augment import TRANSFORMS, AdaController, AugmentPipe


def _images(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_p_zero_is_exact_identity_and_p_is_in_state_dict() -> None:
    x = _images()
    pipe = AugmentPipe(0.0)
    assert torch.equal(pipe(x, _gen()), x)
    pipe.set_p(0.3)
    state = pipe.state_dict()
    assert "p" in state and float(state["p"]) == pytest.approx(0.3)
    other = AugmentPipe()
    other.load_state_dict(state)
    assert float(other.p) == pytest.approx(0.3)
    pipe.set_p(7)
    assert float(pipe.p) == 1.0


def test_p_one_changes_every_image_and_is_deterministic_per_generator() -> None:
    x = _images(16)
    pipe = AugmentPipe(1.0)
    y = pipe(x, _gen(1))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert ((y - x).abs().amax(dim=(1, 2, 3)) > 0.1).all()
    assert torch.equal(y, pipe(x, _gen(1)))
    assert not torch.equal(y, pipe(x, _gen(2)))


def test_probability_controls_the_fraction_of_changed_samples() -> None:
    x = _images(400, size=8)
    y = AugmentPipe.only("xflip", p=0.3)(x, _gen(3))
    changed = (y - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert 0.2 < changed.float().mean() < 0.4


def test_gradients_flow_through_every_transform() -> None:
    x = _images(6).requires_grad_(True)
    weights = torch.randn(x.shape, generator=_gen(5))
    for name in TRANSFORMS:
        x.grad = None
        (AugmentPipe.only(name)(x, _gen(0)) * weights).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name
    x.grad = None
    out = AugmentPipe(1.0)(x, _gen(0))
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_xflip_alone_equals_torch_flip() -> None:
    x = _images()
    y = AugmentPipe.only("xflip")(x, _gen())
    torch.testing.assert_close(y, torch.flip(x, dims=[3]), atol=1e-5, rtol=0)


def test_rotate90_alone_is_a_quarter_turn_and_uses_all_of_them() -> None:
    x = _images(32)
    y = AugmentPipe.only("rotate90")(x, _gen(2))
    used = set()
    for i in range(len(x)):
        errs = [(y[i] - torch.rot90(x[i], k, dims=(1, 2))).abs().max().item() for k in range(4)]
        k = min(range(4), key=errs.__getitem__)
        assert errs[k] < 1e-5
        used.add(k)
    assert used == {0, 1, 2, 3}


def test_integer_translation_moves_by_whole_pixels() -> None:
    x = _images(16, size=16)
    y = AugmentPipe.only("xint")(x, _gen(4))
    shifted = 0
    for i in range(len(x)):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                # Compare the interior, away from the reflected border.
                a = y[i, :, 4:12, 4:12]
                b = x[i, :, 4 - dy : 12 - dy, 4 - dx : 12 - dx]
                if (a - b).abs().max() < 1e-5:
                    found = True
                    shifted += (dx, dy) != (0, 0)
        assert found, i
    assert shifted > 8


def test_scale_and_rotation_keep_the_centre_and_mean() -> None:
    # A smooth radial image: scaling and rotation about the centre keep the centre value.
    size = 32
    c = (torch.arange(size) + 0.5 - size / 2) / size
    r2 = c[None, :] ** 2 + c[:, None] ** 2
    x = torch.cos(r2 * 6).expand(8, 3, size, size).contiguous()
    for name in ("scale", "rotate"):
        y = AugmentPipe.only(name)(x, _gen(6))
        centre = slice(size // 2 - 1, size // 2 + 1)
        torch.testing.assert_close(y[:, :, centre, centre], x[:, :, centre, centre], atol=0.02, rtol=0)
        assert (y - x).abs().max() > 1e-3 or name == "rotate"  # rotation of a radial image ~ itself
    y = AugmentPipe.only("rotate")(x, _gen(6))
    assert (y - x)[:, :, 8:24, 8:24].abs().max() < 0.05


def test_colour_transforms() -> None:
    x = _images(64) * 0.5
    y = AugmentPipe.only("brightness")(x, _gen(7))
    shift = (y - x).mean(dim=(1, 2, 3))
    torch.testing.assert_close(y - x, shift[:, None, None, None].expand_as(x), atol=1e-5, rtol=0)
    assert shift.std() > 0.1

    y = AugmentPipe.only("contrast")(x, _gen(8))
    ratio = (y.flatten(1) / x.flatten(1)).median(dim=1).values
    torch.testing.assert_close(y, x * ratio[:, None, None, None], atol=1e-5, rtol=1e-4)
    assert ratio.log2().std() > 0.25

    # Hue rotation and saturation keep luma (the channel mean) and only change chroma.
    for name in ("hue", "saturation"):
        y = AugmentPipe.only(name)(x, _gen(9))
        torch.testing.assert_close(y.mean(dim=1), x.mean(dim=1), atol=1e-5, rtol=0)
        assert (y - x).abs().max() > 0.05
    chroma = lambda t: (t - t.mean(dim=1, keepdim=True)).norm(dim=1)  # noqa: E731
    y = AugmentPipe.only("hue")(x, _gen(9))
    torch.testing.assert_close(chroma(y), chroma(x), atol=1e-5, rtol=1e-5)  # a rotation keeps chroma size
    gray = torch.zeros(4, 3, 8, 8) + 0.3
    assert torch.allclose(AugmentPipe.only("saturation")(gray, _gen()), gray, atol=1e-6)


def test_cutout_zeroes_one_square_per_image() -> None:
    x = torch.ones(16, 3, 16, 16)
    y = AugmentPipe.only("cutout")(x, _gen(10))
    zeroed = (y == 0).all(dim=1)  # [N, H, W]
    for i in range(len(x)):
        rows = zeroed[i].any(dim=1).nonzero().flatten()
        cols = zeroed[i].any(dim=0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert zeroed[i].sum() == len(rows) * len(cols)  # one rectangle
    assert ((y == 0) | (y == 1)).all()


def test_unknown_transform_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown transform"):
        AugmentPipe.only("sharpen")


def test_ada_controller_raises_p_when_d_is_overconfident_and_lowers_it_otherwise() -> None:
    pipe = AugmentPipe(0.0)
    ada = AdaController(target=0.6, interval=4, speed_kimg=1, batch=50)
    results = []
    for _ in range(4):
        ada.accumulate(torch.ones(50, 1))
        results.append(ada.update(pipe))
    assert results[:3] == [None, None, None]
    assert results[3] == pytest.approx(0.2) and float(pipe.p) == pytest.approx(0.2)
    assert ada.r_t == 1.0
    for _ in range(4):
        ada.accumulate(-torch.ones(50, 1))
        ada.update(pipe)
    assert float(pipe.p) == 0.0 and ada.r_t == -1.0  # lowered and clamped at 0
    for _ in range(40):
        ada.accumulate(torch.ones(50))
        ada.update(pipe)
    assert float(pipe.p) == 1.0  # clamped at 1


def test_ada_controller_state_round_trip_and_reduce_hook() -> None:
    pipe_a, pipe_b = AugmentPipe(0.5), AugmentPipe(0.5)
    ada = AdaController(interval=3, speed_kimg=10, batch=8)
    logits = torch.randn(40, 8, 1, generator=_gen(11))
    for i in range(5):
        ada.accumulate(logits[i])
        ada.update(pipe_a)
    clone = AdaController(batch=1)
    clone.load_state_dict(ada.state_dict())
    pipe_b.load_state_dict(pipe_a.state_dict())
    for i in range(5, 40):
        for c, pipe in ((ada, pipe_a), (clone, pipe_b)):
            c.accumulate(logits[i])
            c.update(pipe)
        assert float(pipe_a.p) == float(pipe_b.p) and ada.r_t == clone.r_t

    # The reduce hook sees [sum, count]; here it pretends other ranks saw only negatives.
    seen = []

    def fake_all_reduce(stats: torch.Tensor) -> torch.Tensor:
        seen.append(stats.clone())
        return stats + torch.tensor([-30.0, 30.0], dtype=stats.dtype)

    pipe = AugmentPipe(0.5)
    ada = AdaController(interval=1, speed_kimg=1, batch=10)
    ada.accumulate(torch.ones(10))
    assert ada.update(pipe, reduce=fake_all_reduce) == pytest.approx(0.49)
    assert seen[0].tolist() == [10.0, 10.0] and ada.r_t == pytest.approx(-0.5)
    assert math.isclose(ada.step_size, 0.01)


def test_grid_sample_reflect_matches_torch_and_is_twice_differentiable():
    """The warp's sampler equals F.grid_sample and has a checked double backward (R1 through ADA
    needs it; PyTorch's CUDA grid sampler has none)."""
    from torch.nn import functional as F

    from domrand.generator.train.augment import grid_sample_reflect

    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[[0.9, 0.2, 0.1], [-0.3, 1.1, -0.2]], [[1.2, 0.0, 0.3], [0.1, -0.8, 0.0]]], dtype=torch.float64)
    grid = F.affine_grid(theta, [2, 3, 6, 5], align_corners=False)
    want = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    torch.testing.assert_close(grid_sample_reflect(x, grid), want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: grid_sample_reflect(t, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda t: grid_sample_reflect(t, grid), (x,))
    with pytest.raises(ValueError, match="must not require grad"):
        grid_sample_reflect(x, grid.clone().requires_grad_())
