"""``domrand transfer``: does StyleGAN randomization transfer better than the baselines?

One model, one budget and one set of seeds per *condition*; every trained model is tested in the
target visual domain(s) (the envs' target presets stand in for real camera imagery). Conditions are
registered by name in ``conditions/`` (one file each): ``none`` (plain sim frames), ``classic`` (the
envs' classic randomization, Tobin et al. 2017), ``augment`` (image augmentation, RAD/DrQ/DrAC),
``stylegan`` (``StyleRandomizer`` with a bundle trained on target imagery disjoint from the test
frames) and ``oracle`` (target frames directly, one model per preset; the ceiling).

Tasks: ``localization`` (Task A, ``localization.py``: a small CNN regresses the red cube's table
position; error in cm), ``imitation`` (Task B on CPU, ``imitation.py``: behaviour cloning of the
scripted expert from pixels + proprioception; closed-loop success rate) and ``control`` (Task B with
PPO, ``control.py``; GPU-sized).

The package's layers (each imports only those above it): ``common`` -> ``bundles`` -> ``frames`` ->
``conditions`` -> ``config`` -> ``localization`` / ``imitation`` / ``control`` -> ``report`` ->
``merge`` (``--add-to``: rows joined to an earlier run) -> ``run`` -> ``command`` (the CLI).

Usage::

    domrand transfer --config smoke                    # bundled preset (configs/benchmark/smoke.yaml)
    domrand transfer --config taskA --bundle runs/bundle --out runs/bench
    domrand transfer --config taskB --conditions none classic stylegan oracle

Writes ``OUT/results.json``, ``OUT/results.png``, ``OUT/table.txt`` and ``OUT/config.yaml`` and
prints the table. In Python: ``run_benchmark(load_benchmark_config("taskA"), out)``.
"""

from domrand.transfer.bundles import BUNDLED, UNTRAINED_BUNDLE, make_untrained_bundle
from domrand.transfer.conditions import Condition, condition_names, get_condition, register
from domrand.transfer.config import (
    CONDITIONS,
    TASKS,
    AugmentConfig,
    BenchmarkConfig,
    ControlConfig,
    ImitationConfig,
    LocalizationConfig,
    StyleConfig,
    config_from_dict,
    load_benchmark_config,
    validate,
)
from domrand.transfer.run import dumps, machine_info, run_benchmark

__all__ = [
    "BUNDLED", "UNTRAINED_BUNDLE", "CONDITIONS", "TASKS", "AugmentConfig", "BenchmarkConfig", "Condition",
    "ControlConfig", "ImitationConfig", "LocalizationConfig", "StyleConfig", "condition_names",
    "config_from_dict", "dumps", "get_condition", "load_benchmark_config", "machine_info",
    "make_untrained_bundle", "register", "run_benchmark", "validate",
]  # fmt: skip
