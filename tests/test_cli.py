"""The command-line front door."""

import subprocess
import sys

import pytest

from domrand.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "domrand", "--version"], capture_output=True, text=True, check=True)
    import domrand

    assert out.stdout.strip() == domrand.__version__


def test_forcing_cuda_ops_without_a_gpu_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("DOMRAND_OPS", "cuda")
    assert main(["bench", "generator", "--preset", "tiny", "--batch", "1", "--repeats", "1", "--warmup", "0"]) == 2
    err = capsys.readouterr().err
    assert "DOMRAND_OPS=cuda but the CUDA kernels are unavailable" in err and "Traceback" not in err


def _exit_code(argv) -> int:
    """``main``'s return value, or the code of the SystemExit argparse raises for a bad argument."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _image(tmp_path):
    import numpy as np
    from PIL import Image

    path = tmp_path / "frame.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    return path


# command, bad arguments, words of the one-line message ({tmp} = the test's folder)
BAD_ARGUMENTS = [
    ("train-generator", ["--out", "{tmp}/o", "--kimg", "-1"], "argument --kimg: must be a number > 0, got -1"),
    ("train-generator", ["--out", "{tmp}/o", "--kimg", "nan"], "argument --kimg: 'nan' is not a finite number"),
    ("train-generator", ["--out", "{tmp}/o", "--batch", "0"], "argument --batch: must be an integer >= 1, got 0"),
    ("train-generator", ["--out", "{tmp}/o", "--threads", "-1"], "argument --threads: must be an integer >= 1, got -1"),
    ("train-generator", ["--out", "{tmp}/o", "--seed", "x"], "argument --seed: 'x' is not an integer"),
    ("train-generator", [], "the following arguments are required: --out"),
    ("train-inverter", ["--generator", "g", "--out", "{tmp}/o", "--kimg", "-2"], "argument --kimg: must be a number > 0"),
    ("train-inverter", ["--generator", "g", "--out", "{tmp}/o", "--threads", "-1"], "argument --threads: must be an integer >= 1"),
    ("train-inverter", ["--generator", "g", "--out", "{tmp}/o", "--max-minutes", "0"], "argument --max-minutes: must be a number > 0"),
    ("eval-generator", ["--run", "{tmp}", "--num-images", "0"], "argument --num-images: must be an integer >= 1, got 0"),
    ("eval-generator", ["--run", "{tmp}", "--batch", "0"], "argument --batch: must be an integer >= 1, got 0"),
    ("eval-inverter", ["--inverter", "{tmp}", "--batch", "0"], "argument --batch: must be an integer >= 1, got 0"),
    ("eval-inverter", ["--inverter", "{tmp}", "--n-gen", "0"], "argument --n-gen: must be an integer >= 1, got 0"),
    ("eval-inverter", ["--inverter", "{tmp}", "--threads", "-1"], "argument --threads: must be an integer >= 1, got -1"),
    ("bundle", ["--generator", "g", "--inverter", "e", "--out", "o", "--keep-resolution", "3"], "argument --keep-resolution: must be a power of two"),
    ("bundle", ["--generator", "g", "--inverter", "e", "--out", "o", "--mix", "2"], "argument --mix: must be a number in [0, 1], got 2"),
    ("bundle", ["--generator", "g", "--inverter", "e", "--out", "o", "--psi", "nan"], "argument --psi: 'nan' is not a finite number"),
    ("randomize", ["--input", "{img}", "--out", "{tmp}/o", "--n", "0"], "argument --n: must be an integer >= 1, got 0"),
    ("randomize", ["--input", "{img}", "--out", "{tmp}/o", "--keep-resolution", "3"], "argument --keep-resolution: must be a power of two"),
    ("randomize", ["--input", "{img}", "--out", "{img}"], "--out: {img} is a file; accepted: a folder"),
    ("randomize", ["--input", "{tmp}/missing", "--out", "{tmp}/o"], "--input: {tmp}/missing does not exist"),
    ("demo", ["--env", "NoSuch-v0"], "argument --env: unknown env 'NoSuch-v0'; accepted: domrand/"),
    ("demo", ["--styles", "0"], "argument --styles: must be an integer >= 1, got 0"),
    ("demo", ["--steps", "1"], "argument --steps: must be an integer >= 2, got 1"),
    ("demo", ["--out", "{img}"], "--out: {img} is a file; accepted: a folder"),
    ("benchmark", ["--seeds", "0"], "argument --seeds: must be an integer >= 1, got 0"),
    ("benchmark", ["--threads", "-1"], "argument --threads: must be an integer >= 0, got -1"),
]


@pytest.mark.parametrize("command, args, words", BAD_ARGUMENTS, ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_and_exit_code_2(tmp_path, capsys, command, args, words):
    img = _image(tmp_path)
    fill = {"{tmp}": str(tmp_path), "{img}": str(img)}

    def sub(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    assert _exit_code([command, *[sub(a) for a in args]]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert sub(words) in err
    assert err.startswith(f"domrand {command}: error: ") and len(err.splitlines()) == 1
    assert "Traceback" not in err + captured.out


def test_a_real_process_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "domrand", "randomize", "--input", str(_image(tmp_path)), "--out", str(tmp_path), "--n", "-3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "domrand randomize: error: argument --n: must be an integer >= 1, got -3 (see 'domrand randomize --help')"
    )


def test_an_unforeseen_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    import domrand.randomize_cli as randomize_cli

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(randomize_cli, "main", boom)
    assert main(["randomize", "--input", "x", "--out", "y"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("domrand randomize: error: KeyError: 'surprise'") and len(err.splitlines()) == 1
    monkeypatch.setenv("DOMRAND_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["randomize", "--input", "x", "--out", "y"])
