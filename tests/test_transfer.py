"""The transfer benchmark (``domrand benchmark``): conditions end to end, the learner, config errors."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest
import torch

from domrand import cli
from domrand.config import ConfigError, load_config
from domrand.transfer import (
    CONDITIONS,
    BenchmarkConfig,
    config_from_dict,
    load_benchmark_config,
    run_benchmark,
)
from domrand.transfer.report import format_table
from domrand.transfer import make_untrained_bundle

torch.set_num_threads(1)

TINY = {  # an even smaller size than the smoke preset
    "image_size": 32,
    "renderer": "tiny",
    "device": "cpu",
    "seeds": 1,
    "localization.train_frames": 48,
    "localization.test_frames": 16,
    "localization.views": 2,
    "localization.epochs": 1,
    "localization.batch_size": 16,
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_untrained_bundle(tmp_path_factory.mktemp("bundle") / "tiny", student=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("frames"))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_all_conditions_end_to_end(tmp_path, bundle, cache, capsys):
    cfg = load_benchmark_config(
        "smoke",
        conditions=CONDITIONS,
        target_presets=("target-a", "target-b"),
        bundle=str(bundle),
        cache_dir=cache,
        **{**TINY, "localization.swd_images": 8},
    )
    out = tmp_path / "run"
    results = run_benchmark(cfg, out, progress=False)
    for name in ("results.json", "results.png", "table.txt", "config.yaml"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    section = data["sections"]["localization"]
    assert section["domains"] == ["sim", "target-a", "target-b"]
    assert set(section["results"]) == set(CONDITIONS)
    for cond in CONDITIONS:
        for dom in section["domains"]:
            stats = section["results"][cond][dom]
            for key in ("error_cm_mean", "error_cm_std", "within_mean", "within_std"):
                assert _finite(stats[key]), (cond, dom, key, stats[key])
            assert 0.0 <= stats["within_mean"] <= 1.0
            assert [row["seed"] for row in stats["per_seed"]] == [0]
    assert _finite(section["baselines"]["predict_mean"]["error_cm"])
    # Every condition's in-domain figure: its model on test states rendered like its training frames.
    assert set(section["in_domain"]) == set(CONDITIONS)
    for cond, stats in section["in_domain"].items():
        assert _finite(stats["error_cm_mean"]) and [row["seed"] for row in stats["per_seed"]] == [0], cond
    assert section["in_domain"]["none"]["error_cm_mean"] == section["results"]["none"]["sim"]["error_cm_mean"]
    oracle_own = np.mean([section["results"]["oracle"][p]["error_cm_mean"] for p in ("target-a", "target-b")])
    assert section["in_domain"]["oracle"]["error_cm_mean"] == pytest.approx(oracle_own)
    assert data["bundle"]["path"] == str(bundle)
    assert set(section["bar"]) == {"target-a", "target-b"}
    assert all(isinstance(v["met"], bool) for v in section["bar"].values())
    diag = section["diagnostics"]
    for name in ("oracle_probe_cm", "swd"):
        assert set(diag[name]["results"]) == set(CONDITIONS)
        assert all(_finite(v) for row in diag[name]["results"].values() for v in row.values())
    table = format_table(results)
    assert "in-domain (own frames)" in table and "sim" in table and "target-a" in table and "target-b" in table
    for cond in CONDITIONS:
        assert cond in table
    # A second run reads every frame set from the cache and gives the same numbers.
    again = run_benchmark(cfg, None, progress=False)
    t = again["sections"]["localization"]["timings_s"]
    assert t["render_train_s"] < 1.0 and t["render_test_s"] < 1.0
    assert again["sections"]["localization"]["results"] == results["sections"]["localization"]["results"]


def test_cli_runs_and_prints_the_table(tmp_path, cache, capsys):
    sets = [f"{k}={v}" for k, v in TINY.items()]
    argv = ["benchmark", "--config", "smoke", "--conditions", "none", "augment", "--targets", "target-a",
            "--cache", cache, "--out", str(tmp_path / "cli"), "--no-progress", "--set", *sets]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "in-domain (own frames)" in out and "target-a" in out and "augment" in out
    data = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert list(data["sections"]["localization"]["results"]) == ["none", "augment"]


def test_localizer_learns_and_oracle_beats_none_on_target(cache):
    cfg = load_benchmark_config(
        "smoke",
        conditions=("none", "oracle"),
        target_presets=("target-a",),
        cache_dir=cache,
        **{**TINY, "localization.train_frames": 256, "localization.test_frames": 64, "localization.views": 1,
           "localization.epochs": 10, "localization.batch_size": 16},
    )
    section = run_benchmark(cfg, None, progress=False)["sections"]["localization"]
    base = section["baselines"]["predict_mean"]["error_cm"]
    res = section["results"]
    # The CNN learns: in-domain error clearly below predicting the training mean.
    assert res["none"]["sim"]["error_cm_mean"] < 0.6 * base, (res["none"]["sim"], base)
    # Sim-only training does not transfer; training on the target domain does better there.
    assert res["oracle"]["target-a"]["error_cm_mean"] < res["none"]["target-a"]["error_cm_mean"]
    assert res["oracle"]["target-a"]["error_cm_mean"] < 0.6 * base


def test_control_ppo_toy_size(tmp_path, bundle):
    pytest.importorskip("stable_baselines3")
    cfg = load_benchmark_config(
        "smoke",
        tasks=("control",),
        conditions=("none", "augment", "stylegan"),
        target_presets=("target-a",),
        bundle=str(bundle),
        image_size=48,
        **{"control.steps": 32, "control.n_steps": 16, "control.batch_size": 16, "control.eval_episodes": 2,
           "control.max_episode_steps": 4},
    )
    results = run_benchmark(cfg, tmp_path, progress=False)
    section = results["sections"]["control/Reach-v0"]
    assert section["metric"] == "success_rate"
    for cond in ("none", "augment", "stylegan"):
        for dom in ("sim", "target-a"):
            rate = section["results"][cond][dom]["success_rate_mean"]
            assert 0.0 <= rate <= 1.0
    assert "control/Reach-v0" in (tmp_path / "table.txt").read_text()
    assert (tmp_path / "results.png").is_file()


def test_bad_config_keys_error_clearly(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nconditons: [none]\n")
    with pytest.raises(ConfigError, match=r"conditons.*valid keys:.*conditions"):
        load_benchmark_config(path)
    path.write_text("name: x\nlocalization:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"localization.*epoch.*valid keys:.*epochs"):
        load_benchmark_config(path)
    path.write_text("name: x\nseeds: three\n")
    with pytest.raises(ConfigError, match="seeds"):
        load_benchmark_config(path)
    with pytest.raises(ConfigError, match="train_frames"):
        config_from_dict({"localization": {"train_frames": 0}, "conditions": ["none"]})
    # "--set bundle_note=a: b" reads as a mapping in YAML: the error says how to quote it.
    with pytest.raises(ConfigError, match="bundle_note: expected a string.*quote it"):
        load_benchmark_config("smoke", bundle_note={"a": "b"})


def test_unknown_condition_names_the_valid_ones(capsys):
    with pytest.raises(ConfigError, match=r"'bogus'.*valid conditions: none, classic, augment, stylegan, stylegan-student, oracle"):
        load_benchmark_config("smoke", conditions=("none", "bogus"))
    with pytest.raises(ConfigError, match="valid tasks: localization, imitation, control"):
        load_benchmark_config("smoke", tasks=("locate",))
    with pytest.raises(ConfigError, match="image_size >= 36"):
        load_benchmark_config("smoke", tasks=("control",), image_size=32)
    with pytest.raises(ConfigError, match="unknown target preset"):
        load_benchmark_config("smoke", target_presets=("target-z",))
    assert cli.main(["benchmark", "--config", "smoke", "--conditions", "none", "bogus", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "valid conditions: none, classic, augment, stylegan, stylegan-student, oracle" in err


def test_stylegan_without_bundle_is_a_clear_error(tmp_path):
    no_bundle = tmp_path / "nobundle.yaml"
    task_a = (resources.files("domrand.configs") / "benchmark" / "taskA.yaml").read_text()
    assert "bundle: bundled" in task_a
    no_bundle.write_text(task_a.replace("bundle: bundled", "bundle: null"))
    with pytest.raises(ConfigError, match=r"stylegan.*needs a bundle.*--bundle"):
        load_benchmark_config(no_bundle)
    cfg = load_benchmark_config(no_bundle, conditions=("none", "classic", "augment", "oracle"))
    assert "stylegan" not in cfg.conditions


def test_bundled_keyword_resolves_to_the_packaged_model(tmp_path):
    from domrand.bundle import default_bundle_path
    from domrand.transfer.bundles import resolve_bundle

    cfg = load_benchmark_config("taskA")
    assert cfg.bundle == "bundled"
    assert resolve_bundle(cfg, tmp_path) == default_bundle_path()


def test_presets_and_dry_run(capsys):
    for name in ("smoke", "taskA", "taskB", "taskB-ppo"):
        cfg = load_config(name, BenchmarkConfig, kind="benchmark")
        assert cfg.name == name
    smoke = load_benchmark_config("smoke")
    assert smoke.tasks == ("localization",) and set(smoke.conditions) == set(CONDITIONS) - {"stylegan-student"}
    full = load_config("taskA", BenchmarkConfig, kind="benchmark")
    assert full.seeds >= 3 and len(full.target_presets) >= 2
    task_b = load_config("taskB", BenchmarkConfig, kind="benchmark")
    assert task_b.tasks == ("imitation",) and task_b.imitation.eval_episodes >= 100 and task_b.seeds >= 3
    assert load_config("taskB-ppo", BenchmarkConfig, kind="benchmark").control.eval_episodes >= 50
    assert cli.main(["benchmark", "--config", "smoke", "--seeds", "2", "--targets", "target-c", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "seeds: 2" in out and "target-c" in out


def test_frame_sets_are_disjoint_and_labelled(cache):
    from domrand.transfer.common import state_seeds
    from domrand.transfer.frames import render_frames

    cfg = load_benchmark_config("smoke", conditions=("none",), cache_dir=cache, **TINY)
    assert not set(state_seeds(cfg, "train", 1000)) & set(state_seeds(cfg, "test", 1000))
    from pathlib import Path

    data = render_frames(cfg, "test", 8, ["sim", "target:target-a"], Path(cache))
    assert data["sim"].shape == (1, 8, 32, 32, 3) and data["sim"].dtype == np.uint8
    assert data["labels"].shape == (8, 2) and np.isfinite(data["labels"]).all()
    assert not np.array_equal(data["sim"], data["target:target-a"])


def test_report_without_matplotlib_writes_everything_but_the_plot(tmp_path, monkeypatch, capsys):
    """A plain install has no matplotlib: the benchmark must still finish and keep its results."""
    import sys

    from domrand.transfer import report as transfer_report

    results = {"name": "t", "sections": {}}
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    files = transfer_report.write_report(results, tmp_path / "r")
    assert "plot" not in files and not (tmp_path / "r" / "results.png").exists()
    assert json.loads((tmp_path / "r" / "results.json").read_text())["name"] == "t"
    assert (tmp_path / "r" / "table.txt").is_file()
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_a_condition_is_one_registered_class(tmp_path, cache, monkeypatch):
    """Adding a condition takes one class: the config accepts it, every task and the report use it."""
    from domrand.transfer import conditions as registry
    from domrand.transfer.conditions import Condition, register

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test

    @register
    class Grey(Condition):
        name = "grey"
        order = 9
        role = "baseline"
        color = "#000000"
        about = "sim frames in grey"

        def training_sets(self, ctx, sources, views, key, salt=0):
            sim = sources["sim"]
            return {"": np.repeat(sim.mean(-1, keepdims=True).astype(np.uint8), 3, axis=-1)}

    assert registry.condition_names()[-1] == "grey" and "grey" in registry.with_role("baseline")
    cfg = load_benchmark_config("smoke", conditions=("none", "grey"), target_presets=("target-a",), cache_dir=cache, **TINY)
    results = run_benchmark(cfg, tmp_path, progress=False)
    section = results["sections"]["localization"]
    assert list(section["results"]) == ["none", "grey"] and "grey" not in section["in_domain"]
    assert "grey" in (tmp_path / "table.txt").read_text()
    with pytest.raises(ConfigError, match="unknown condition.*grey"):
        monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if k != "grey"})
        load_benchmark_config("smoke", conditions=("grey",))


def test_the_transfer_package_has_no_import_circle():
    """Each module of domrand.transfer imports only the layers below it (the order in its docstring)."""
    import ast
    from pathlib import Path

    import domrand.transfer as pkg

    order = ["common", "bundles", "frames", "conditions", "config", "localization", "imitation", "control",
             "report", "merge", "run", "command"]  # fmt: skip
    root = Path(pkg.__file__).parent
    for path in [*root.glob("*.py"), *(root / "conditions").glob("*.py")]:
        mod = "conditions" if path.parent.name == "conditions" else path.stem
        if mod == "__init__":
            continue
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n) for block in ast.walk(tree)
            if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
            for n in ast.walk(block)
        }  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: not a runtime import
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("domrand.transfer."):
                used = node.module.split(".")[2]
                assert order.index(used) <= order.index(mod), f"{path.name} imports {node.module}"


def test_add_to_joins_rows_into_an_earlier_run_and_recomputes_the_bar(tmp_path, bundle, cache, capsys):
    common = ["benchmark", "--config", "smoke", "--targets", "target-a", "--cache", cache, "--no-progress",
              "--set", *[f"{k}={v}" for k, v in TINY.items()]]  # fmt: skip
    assert cli.main([*common, "--conditions", "none", "classic", "augment", "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    assert first["sections"]["localization"]["bar"] == {}  # no stylegan row yet
    add = [*common, "--add-to", str(tmp_path / "a" / "results.json"), "--bundle", str(bundle)]
    assert cli.main([*add, "--conditions", "stylegan", "--out", str(tmp_path / "b")]) == 0
    joined = json.loads((tmp_path / "b" / "results.json").read_text())
    sec = joined["sections"]["localization"]
    assert list(sec["results"]) == ["none", "classic", "augment", "stylegan"]
    assert sec["results"]["none"] == first["sections"]["localization"]["results"]["none"]  # old rows kept as they were
    assert set(sec["bar"]["target-a"]) >= {"met", "at_most_half_of_none", "below_classic", "below_augment"}
    assert [m["conditions"] for m in joined["merged"]] == [["none", "classic", "augment"], ["stylegan"]]
    # A second stylegan row needs a label; a labelled row is shown but does not replace the bar's.
    assert cli.main([*add[:-2], "--add-to", str(tmp_path / "b" / "results.json"), "--bundle", str(bundle),
                     "--conditions", "stylegan", "--out", str(tmp_path / "c")]) == 2  # fmt: skip
    assert "already has a row 'stylegan'" in capsys.readouterr().err
    assert cli.main([*add[:-2], "--add-to", str(tmp_path / "b" / "results.json"), "--bundle", str(bundle),
                     "--conditions", "stylegan", "--label", "stylegan (other bundle)", "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    assert "stylegan (other bundle)" in (tmp_path / "c" / "table.txt").read_text()
    # A run that measures something else cannot join, and is refused before any work.
    from domrand.commands import transfer as command

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command, "run_benchmark", lambda *a, **k: pytest.fail("ran before refusing"))
        assert cli.main([*add, "--conditions", "oracle", "--set", "localization.epochs=2", "--out", str(tmp_path / "d")]) == 2
    assert "config keys ['localization'] differ" in capsys.readouterr().err
