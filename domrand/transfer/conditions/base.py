"""What a benchmark condition is: how it makes its training frames, its in-domain test frames and
its control envs. One subclass per condition, one file each in this folder, registered by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from domrand.randomizer import StyleRandomizer
from domrand.transfer.frames import style_options

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig


@dataclass
class FrameContext:
    """What a condition may use to make frames: the config, the cache folder, the stylegan bundle."""

    cfg: "BenchmarkConfig"
    cache: Path
    bundle: Path | None = None
    progress: bool = False
    shared: dict[str, Any] = field(default_factory=dict)  # objects made once per run (the style randomizer)

    def randomizer(self, model: str = "teacher"):
        """The ``StyleRandomizer`` of ``bundle`` running ``model`` (teacher | student; made once per
        model, shared by every use in the run)."""
        if self.bundle is None:
            raise ValueError("the stylegan conditions need a bundle (config 'bundle:' or --bundle)")
        name = "randomizer" if model == "teacher" else f"randomizer-{model}"
        if name not in self.shared:
            self.shared[name] = StyleRandomizer.from_bundle(self.bundle, device=self.cfg.device, model=model, **style_options(self.cfg, model))
        return self.shared[name]


class Condition:
    """A way of making training frames. Subclasses set the class attributes and override the hooks.

    Frame arrays are uint8: a *source* is ``[V, N, H, W, 3]`` (``V`` renderings of ``N`` states), a
    training set the same, a test set ``[N, H, W, 3]``. Sources are named ``"sim"``,
    ``"randomized"`` (classic draws) and ``"target:<preset>"`` (``target-lab``: its training half).
    """

    name: ClassVar[str]
    order: ClassVar[int]  # position in tables and plots
    role: ClassVar[str]  # "reference" (none), "baseline", "candidate" (stylegan), "variant" (a stand-in for
    #                      the candidate, compared with it but not part of the bars), "ceiling" (oracle)
    color: ClassVar[str]  # plot colour
    about: ClassVar[str]  # one line: what its training frames are
    visual_domain: ClassVar[str] = "sim"  # the env domain it renders (control envs, frame sources)

    def sources(self, presets: tuple[str, ...]) -> list[str]:
        """The rendered sources its training frames are made from."""
        return ["sim"]

    def training_sets(
        self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0
    ) -> dict[str, np.ndarray]:
        """``{model key: [V, N, H, W, 3]}``: one model per key ("" = one model; oracle: one per preset).

        ``views``: transforms per state (augment, stylegan; classic's draws are in its source);
        ``key`` identifies the source frames (part of the cache key of transformed frames); ``salt``
        picks the parameter stream of transforms (tasks use different ones)."""
        raise NotImplementedError

    def in_domain_test(self, ctx: FrameContext, sim_test: np.ndarray, key: str) -> np.ndarray | None:
        """Held-out states ``[N, H, W, 3]`` made the way its training frames are (None: not defined)."""
        return None

    def control_transform(self, ctx: FrameContext, seed: int) -> Any:
        """The frame transform its control envs are wrapped with (None: no wrapper)."""
        return None

    def wrap_control_env(self, env: Any, transform: Any) -> Any:
        """A control env (made in ``visual_domain``) wrapped for this condition."""
        return env
