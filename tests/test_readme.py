"""Every command the README shows runs: the wrapper example, the train-your-own pipeline, the
command table's subcommands, and the two set-up lines (their pip halves are what `.ci/run` runs;
their `domrand demo` half is tests/test_demo.py)."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from domrand.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"

# Size overrides appended to each README command of "Train your own" (argparse keeps the last
# value of a repeated option), so the test runs exactly the README's commands at toy size.
TOY = {
    "export-frames": ["--n", "24", "--no-progress"],
    "train-generator": ["--config", "tiny", "--kimg", "0.016", "--threads", "1", "--no-progress"],
    "train-inverter": ["--config", "tiny", "--kimg", "0.016", "--threads", "1", "--no-progress",
                       "--set", "training.min_images=8", "--set", "training.holdout_images=4",
                       "--set", "training.eval_images=4"],
    "train-pair": ["--config", "tiny", "--kimg", "0.016", "--threads", "1", "--no-progress",
                   "--set", "training.min_images=8", "--set", "training.holdout_images=4"],
    "bundle": [],
    "randomize": ["--n", "2"],
}


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _commands(block: str) -> list[list[str]]:
    """Shell lines of a bash block (comments dropped, backslash continuations joined) as argv lists."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [ln.split("#", 1)[0].strip() for ln in joined.splitlines()]
    return [shlex.split(ln) for ln in lines if ln]


def test_setup_commands_are_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    commands = [c for b in _blocks(_section("Quick start"), "bash") for c in b.strip().splitlines()]
    assert len(commands) == 2
    demo, tests = commands
    assert tests in ci, "the README's test command must be the line .ci/run runs"
    assert demo.startswith("pip install torch==2.13.0 && pip install -e . && domrand demo")


def test_wrapper_example_runs_with_the_bundled_model():
    (code,) = _blocks(_section("Use it"), "python")
    assert len(code.strip().splitlines()) == 3
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    env = namespace["env"]
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert env.observation_space.contains(obs)
        obs2, *_ = env.step(env.action_space.sample())
        assert obs2.shape == obs.shape
    finally:
        env.close()


def test_train_your_own_commands_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = _blocks(_section("Train your own"), "bash")[0]  # the second block (own env) is tests/test_own_env.py
    commands = _commands(block)
    names = [c[1] for c in commands]
    assert names == ["export-frames", "export-frames", "train-pair", "bundle", "randomize"]
    for argv in commands:
        assert argv[0] == "domrand"
        assert main(argv[1:] + TOY[argv[1]]) == 0, " ".join(argv)
    out = sorted(Path("randomized").glob("*.png"))
    assert len(out) == 2 * 24  # every sim frame, --n 2 randomizations each
    assert (Path("my_bundle") / "bundle.json").is_file()


def test_command_table_names_real_subcommands(capsys):
    table = _section("Commands")
    names = sorted(set(re.findall(r"^\| `domrand ([a-z-]+)", table, flags=re.M)))
    assert len(names) >= 8
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name
        assert f"domrand {name}" in capsys.readouterr().out
