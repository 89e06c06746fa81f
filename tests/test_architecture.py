"""The package's layering (docs/architecture.md), read from the source: imports flow one way."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import domrand

ROOT = Path(domrand.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    """``{module: the domrand modules it imports}``, counting imports anywhere in the file (also inside
    functions) except under ``if TYPE_CHECKING:`` (annotations only)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n) for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for n in ast.walk(block)
        }  # fmt: skip
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            targets |= {t for n in names if n.startswith("domrand") and (t := resolve(n)) not in (None, mod)}
        graph[mod] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circle_anywhere_in_the_package():
    assert import_cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_ops_are_a_leaf_and_the_cuda_backend_plugs_into_them():
    graph = import_graph()
    assert graph["domrand.generator.nn.ops"] <= {"domrand.utils"}, graph["domrand.generator.nn.ops"]
    assert "domrand.generator.nn.ops" in graph["domrand.cuda.dispatch"]
    import domrand.cuda.dispatch as dispatch
    import domrand.generator.nn.layers  # noqa: F401  (the networks' import plugs the backend in)
    from domrand.generator.nn import ops

    assert ops._accelerator is dispatch.maybe_cuda


def test_networks_never_import_training_wrappers_benchmarks_or_commands():
    graph = import_graph()
    low = [m for m in graph if m.startswith(("domrand.generator.nn", "domrand.cuda"))]
    assert {"domrand.generator.nn.ops", "domrand.generator.nn.networks", "domrand.generator.nn.inverter"} <= set(low)
    upper = ("domrand.generator.train", "domrand.generator.inverter_eval", "domrand.wrappers", "domrand.transfer",
             "domrand.speed", "domrand.commands", "domrand.cli", "domrand.randomizer", "domrand.bundle")  # fmt: skip
    for mod in low:
        bad = sorted(t for t in graph[mod] if t.startswith(upper))
        assert not bad, f"{mod} imports {bad}"


def test_training_never_imports_wrappers_benchmarks_or_commands():
    graph = import_graph()
    upper = ("domrand.wrappers", "domrand.transfer", "domrand.speed", "domrand.commands", "domrand.cli")
    for mod in [m for m in graph if m.startswith("domrand.generator.train")]:
        bad = sorted(t for t in graph[mod] if t.startswith(upper))
        assert not bad, f"{mod} imports {bad}"


def test_one_file_per_command_in_one_folder_and_argparse_only_there():
    from domrand.cli import COMMANDS

    names = ["demo", "train-generator", "generate", "eval-generator", "train-inverter", "train-pair", "distill",
             "eval-inverter", "eval-bundle", "bundle", "randomize", "collect", "export-frames", "speed", "gpu-check",
             "transfer", "bench", "benchmark"]  # fmt: skip
    assert list(COMMANDS) == names
    aliases = {"bench": "speed", "benchmark": "transfer"}
    files = {p.stem for p in (ROOT / "commands").glob("*.py")} - {"__init__", "cli_args"}
    assert files == {n.replace("-", "_") for n in names if n not in aliases}
    for name, (module, _) in COMMANDS.items():
        assert module == f"domrand.commands.{aliases.get(name, name).replace('-', '_')}", (name, module)
        mod = __import__(module, fromlist=["main"])
        assert callable(mod.add_arguments) and callable(mod.main), name
    with_argparse = sorted(_module_name(p) for p in ROOT.rglob("*.py") if "import argparse" in p.read_text(encoding="utf-8"))
    assert all(m == "domrand.cli" or m.startswith("domrand.commands") for m in with_argparse), with_argparse


def test_the_public_python_names_are_where_users_import_them():
    import domrand.bundle
    import domrand.demo
    import domrand.randomizer
    import domrand.transfer
    import domrand.wrappers

    for module, names in [
        (domrand.wrappers, ["StyleRandomizationObservation", "VectorStyleRandomization", "AugmentationObservation",
                            "VectorAugmentation", "ImageAugmenter", "PixelTransformObservation", "VectorPixelTransform"]),
        (domrand.randomizer, ["StyleRandomizer"]),
        (domrand.bundle, ["load_bundle", "save_bundle", "add_student", "make_bundle", "default_bundle_path"]),
        (domrand.transfer, ["run_benchmark", "load_benchmark_config", "BenchmarkConfig", "make_untrained_bundle", "register"]),
        (domrand.demo, ["run_demo", "record_frames"]),
    ]:  # fmt: skip
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, (module.__name__, missing)


def test_every_package_is_listed_for_the_wheel():
    """pyproject.toml lists packages by hand (envs/ and configs/ are mapped into domrand): a new
    subpackage missing there would be absent from a non-editable install."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p) for p in ROOT.rglob("__init__.py")}
    assert found - listed == set()


def test_wrappers_and_benchmarks_import_nothing_above_them():
    graph = import_graph()
    rules = {
        "domrand.wrappers": ("domrand.transfer", "domrand.speed", "domrand.commands", "domrand.cli"),
        "domrand.transfer": ("domrand.speed", "domrand.commands", "domrand.cli"),
        "domrand.speed": ("domrand.transfer", "domrand.commands", "domrand.cli"),
        "domrand.randomizer": ("domrand.wrappers", "domrand.transfer", "domrand.speed", "domrand.commands", "domrand.cli"),
    }
    for prefix, upper in rules.items():
        for mod in [m for m in graph if m == prefix or m.startswith(prefix + ".")]:
            bad = sorted(t for t in graph[mod] if t.startswith(upper))
            assert not bad, f"{mod} imports {bad}"
