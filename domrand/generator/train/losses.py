"""GAN losses and regularizers for StyleGAN2 training.

* ``d_logistic_loss`` / ``g_nonsaturating_loss``: the logistic GAN loss, non-saturating for G.
* ``r1_penalty``: squared gradient norm of D on real images (lazy R1: call every N steps and
  scale by N, see ``lazy_scale``).
* ``path_length_lengths`` / ``PathLengthRegularizer``: StyleGAN2 path-length regularization on G.
* ``mixed_ws``: ws with style-mixing regularization (a second latent takes over after a random
  crossover layer).
* ``coarse_feature_loss``: fine-tuning term keeping G's coarse synthesis features close to those
  of the frozen start generator for the same ws and noise (FixNoise-style, issue 16).
* ``auto_r1_gamma`` and ``lazy_adam_hparams``: the usual heuristics for R1 weight and for Adam
  under lazy regularization.

Every function works on any device; per-sample results are ``[N]`` tensors so callers can reduce
across ranks before averaging.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from domrand.generator.nn.networks import mix_styles, random_crossover
from domrand.utils import assert_shape

Reduce = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Logistic loss


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean(softplus(-D(G(z))))`` (= ``-log sigmoid``), a scalar."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator logistic loss terms ``(mean softplus(D(fake)), mean softplus(-D(real)))``.

    Their sum is the discriminator loss; they are returned apart for logging.
    """
    return F.softplus(fake_logits).mean(), F.softplus(-real_logits).mean()


# --------------------------------------------------------------------------------------------
# R1


def auto_r1_gamma(resolution: int, batch: int) -> float:
    """R1 weight heuristic of StyleGAN2-ADA: ``0.0002 * resolution**2 / batch``."""
    return 0.0002 * float(resolution) ** 2 / float(batch)


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||grad_x D(x)||^2`` over real images: ``[N]``.

    ``real_images`` ``[N, C, H, W]`` must require grad and ``real_logits`` ``[N, 1]`` must come
    from them. The graph is kept (``create_graph``) so the penalty can be back-propagated into D.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: real_images must require grad (call .requires_grad_(True) before D)")
    (grad,) = torch.autograd.grad(outputs=real_logits.sum(), inputs=real_images, create_graph=True, only_inputs=True)
    return grad.square().sum(dim=[1, 2, 3])


# --------------------------------------------------------------------------------------------
# Path length


def path_length_lengths(
    images: torch.Tensor, ws: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample path lengths ``||J_w^T y||`` for random image-space ``y``: ``[N]``.

    ``images`` ``[N, C, H, W]`` rendered from ``ws`` ``[N, num_ws, w_dim]`` (which must be in the
    graph). ``y`` is unit Gaussian noise scaled by ``1/sqrt(H*W)`` drawn from ``generator`` (on
    the CPU when given, then moved), so the length does not depend on resolution. The graph is
    kept so the penalty can be back-propagated into G.
    """
    assert_shape("ws", ws, [images.shape[0], None, None])
    h, w = images.shape[2], images.shape[3]
    if generator is not None:
        noise = torch.randn(images.shape, generator=generator, device=generator.device, dtype=torch.float32)
        noise = noise.to(images.device, images.dtype)
    else:
        noise = torch.randn_like(images)
    noise = noise / math.sqrt(h * w)
    (grad,) = torch.autograd.grad(outputs=(images * noise).sum(), inputs=ws, create_graph=True, only_inputs=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


class PathLengthRegularizer:
    """Tracks ``pl_mean`` (an EMA of path lengths) and turns lengths into a penalty.

    ``penalty(lengths)`` returns per-sample ``(lengths - pl_mean)^2`` and moves ``pl_mean`` toward
    the mean length (reduced over ranks with ``reduce`` if given, a sum divided by ``world_size``).
    """

    def __init__(
        self,
        decay: float = 0.01,  # EMA step of pl_mean toward the batch mean length
        device: torch.device | str = "cpu",  # where pl_mean lives
        reduce: Reduce | None = None,  # sum over ranks (None: single process)
        world_size: int = 1,  # number of ranks that ``reduce`` sums over
    ):
        self.decay = float(decay)
        self.pl_mean = torch.zeros([], dtype=torch.float32, device=device)
        self.reduce, self.world_size = reduce, int(world_size)

    def penalty(self, lengths: torch.Tensor) -> torch.Tensor:
        mean = lengths.detach().mean().to(torch.float32)
        if self.reduce is not None:
            mean = self.reduce(mean) / self.world_size
        new_mean = self.pl_mean.lerp(mean, self.decay)
        self.pl_mean.copy_(new_mean)
        return (lengths - new_mean).square()


# --------------------------------------------------------------------------------------------
# Style mixing


def mixed_ws(
    G: torch.nn.Module,
    z: torch.Tensor,
    z2: torch.Tensor,
    prob: float,
    generator: torch.Generator | None = None,
    update_emas: bool = False,
) -> torch.Tensor:
    """ws ``[N, num_ws, w_dim]`` with style-mixing regularization.

    ``G.mapping(z)`` (moving ``w_avg`` when ``update_emas``); with probability ``prob`` per sample
    the layers from a random crossover on come from ``G.mapping(z2)`` instead. Crossover points
    come from ``generator`` (CPU).
    """
    ws = G.mapping(z, update_emas=update_emas)
    if prob <= 0:
        return ws
    cross = random_crossover(z.shape[0], G.num_ws, prob, generator=generator, device=ws.device)
    if bool((cross < G.num_ws).any()):
        ws2 = G.mapping(z2, update_emas=False)
        ws = mix_styles(ws, ws2, cross)
    return ws


# --------------------------------------------------------------------------------------------
# Fine-tuning: coarse features of the start generator


def coarse_feature_loss(features: dict[int, torch.Tensor], reference: dict[int, torch.Tensor], keep_resolution: int) -> torch.Tensor:
    """Mean over synthesis blocks ``r <= keep_resolution`` of the MSE between ``features[r]`` and
    ``reference[r]`` (both ``[N, C_r, r, r]``, as ``SynthesisNetwork(return_extras=True)`` gives
    them, rendered from the same ws and noise); a scalar. ``reference`` should carry no graph."""
    keys = sorted(r for r in features if r <= keep_resolution)
    if not keys:
        raise ValueError(f"coarse_feature_loss: no feature map at or below resolution {keep_resolution} (have {sorted(features)})")
    terms = []
    for r in keys:
        if r not in reference:
            raise ValueError(f"coarse_feature_loss: the reference has no features at resolution {r}")
        assert_shape(f"reference[{r}]", reference[r], list(features[r].shape))
        terms.append(F.mse_loss(features[r].float(), reference[r].detach().float()))
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------------------------
# Lazy regularization


def lazy_adam_hparams(lr: float, betas: tuple[float, float], interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam lr and betas for a network regularized every ``interval`` steps (StyleGAN2 trick).

    With ``c = interval / (interval + 1)``: ``lr * c`` and ``(beta1 ** c, beta2 ** c)``, so the
    extra regularization steps do not change the effective optimizer speed. ``interval`` None or
    0 returns the inputs unchanged.
    """
    if not interval:
        return float(lr), (float(betas[0]), float(betas[1]))
    c = interval / (interval + 1)
    return float(lr) * c, (float(betas[0]) ** c, float(betas[1]) ** c)
