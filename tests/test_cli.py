"""The command-line front door."""

import subprocess
import sys

import pytest

from domrand.commands.speed import TARGETS as BENCH_TARGETS
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
    ("bench", ["generator", "--batch", "0"], "argument --batch: must be integers >= 1, comma-separated (e.g. 1,16,64), got 0"),
    ("bench", ["generator", "--batch", "1,x"], "argument --batch: 'x' is not an integer; accepted: integers >= 1"),
    ("bench", ["generator", "--batch", ","], "argument --batch: expected a comma-separated list, got ','"),
    ("bench", ["generator", "--repeats", "0"], "argument --repeats: must be an integer >= 1, got 0"),
    ("bench", ["generator", "--warmup", "-1"], "argument --warmup: must be an integer >= 0, got -1"),
    ("bench", ["generator", "--threads", "-1"], "argument --threads: must be an integer >= 1, got -1"),
    ("bench", ["generator", "--preset", "tiny,nosuch"], "argument --preset: unknown generator preset 'nosuch'; accepted: base128, base64"),
    ("bench", ["generator", "--device", "tpu"], "argument --device: unknown device 'tpu'; accepted: auto, cpu, cuda, cuda:N"),
    ("bench", ["generator", "--repeats", "x"], "argument --repeats: 'x' is not an integer"),
    ("bench", ["generator", "--nosuch"], "unrecognized arguments: --nosuch"),
    ("bench", ["env", "--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    ("bench", ["env", "--warmup", "-5"], "argument --warmup: must be an integer >= 0, got -5"),
    ("bench", ["env", "--image-size", "4"], "argument --image-size: must be an integer in [8, 2048], got 4"),
    ("bench", ["env", "--envs", "NoSuch-v0"], "argument --envs: unknown env 'NoSuch-v0'; accepted: domrand/"),
    ("bench", ["env", "--randomize-every", "0"], "argument --randomize-every: must be an integer >= 1, got 0"),
    ("bench", ["env", "--out", "{tmp}"], "argument --out: {tmp} is a folder; accepted: a file path"),
    ("bench", ["env", "--out", "{tmp}/no/t.md"], "argument --out: the folder of {tmp}/no/t.md does not exist"),
    ("bench", ["wrapper", "--num-envs", "0"], "argument --num-envs: must be an integer >= 1, got 0"),
    ("bench", ["wrapper", "--vector-steps", "0"], "argument --vector-steps: must be an integer >= 1, got 0"),
    ("bench", ["wrapper", "--threads", "0"], "argument --threads: must be an integer >= 1, got 0"),
    ("bench", ["wrapper", "--dtype", "int8"], "argument --dtype: unknown dtype 'int8'; accepted: auto, float32, bfloat16, float16"),
    ("bench", ["wrapper", "--inverter", "nosuch"], "argument --inverter: unknown inverter preset 'nosuch'; accepted: small64, tiny or a .yaml file"),
    ("bench", ["wrapper", "--env", "NoSuch-v0"], "argument --env: unknown env 'NoSuch-v0'; accepted: domrand/"),
    ("bench", ["randomizer", "--batch", "1,0"], "argument --batch: must be integers >= 1, comma-separated (e.g. 1,16,64), got 0"),
    ("bench", ["randomizer", "--ops", "torch,triton"], "argument --ops: unknown ops backend 'triton'; accepted: torch, cuda"),
    ("bench", ["randomizer", "--dtype", "f8"], "argument --dtype: unknown dtype 'f8'; accepted: auto, float32, bfloat16, float16"),
    ("bench", ["randomizer", "--bundle", "{tmp}/missing"], "argument --bundle: {tmp}/missing does not exist"),
    ("bench", ["randomizer", "--repeats", "-1"], "argument --repeats: must be an integer >= 1, got -1"),
    ("bench", ["vector", "--workers", "1", "0"], "argument --workers: must be an integer >= 1, got 0"),
    ("bench", ["vector", "--threads", "-1"], "argument --threads: must be an integer >= 1, got -1"),
    ("bench", ["vector", "--max-steps", "0"], "argument --max-steps: must be an integer >= 1, got 0"),
    ("bench", ["vector", "--generator", "nosuch"], "argument --generator: unknown generator preset 'nosuch'"),
    ("bench", ["vector", "--kinds", "threads"], "argument --kinds: invalid choice: 'threads'"),
    ("bench", ["train", "--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    ("bench", ["train", "--batch", "-4"], "argument --batch: must be integers >= 1, comma-separated (e.g. 1,16,64), got -4"),
    ("bench", ["train", "--data", "{tmp}/missing"], "argument --data: {tmp}/missing does not exist"),
    ("bench", ["train", "--threads", "0"], "argument --threads: must be an integer >= 1, got 0"),
    ("bench", ["precision", "--batch", "0"], "argument --batch: must be an integer >= 1, got 0"),
    ("bench", ["precision", "--dtypes", "float32,f8"], "argument --dtypes: unknown dtype 'f8'; accepted: float32, bfloat16, float16"),
    ("bench", ["precision", "--warmup", "-1"], "argument --warmup: must be an integer >= 0, got -1"),
    ("bench", ["precision", "--frames", "{tmp}/missing"], "argument --frames: {tmp}/missing does not exist"),
    ("bench", ["precision", "--json", "{tmp}"], "argument --json: {tmp} is a folder; accepted: a file path"),
    ("bench", ["nosuch"], "argument target: invalid choice: 'nosuch'"),
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
    prog = f"domrand bench {args[0]}" if command == "bench" and args[0] in BENCH_TARGETS else f"domrand {command}"
    assert err.startswith(f"{prog}: error: ") and len(err.splitlines()) == 1
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


def test_every_bench_target_has_bad_argument_cases():
    covered = {args[0] for command, args, _ in BAD_ARGUMENTS if command == "bench"}
    assert set(BENCH_TARGETS) <= covered


def test_bench_in_a_real_process_exits_2_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "domrand", "bench", "generator", "--batch", "0"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "domrand bench generator: error: argument --batch: must be integers >= 1, comma-separated (e.g. 1,16,64), "
        "got 0 (see 'domrand bench generator --help')"
    )


def test_an_unforeseen_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    import domrand.commands.randomize as randomize_cli

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(randomize_cli, "main", boom)
    assert main(["randomize", "--input", "x", "--out", "y"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("domrand randomize: error: KeyError: 'surprise'") and len(err.splitlines()) == 1
    monkeypatch.setenv("DOMRAND_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["randomize", "--input", "x", "--out", "y"])


def test_train_generator_shortcuts_set_mirror_gamma_and_augmentation(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "d.npy", np.zeros((16, 16, 16, 3), np.uint8))
    argv = ["train-generator", "--data", str(tmp_path / "d.npy"), "--out", str(tmp_path / "r"), "--config", "tiny",
            "--set", "training.r1_gamma=5", "--mirror", "1", "--gamma", "0.3", "--aug", "noaug", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "xflip: true" in out and "r1_gamma: 0.3" in out and "ada: false" in out  # the shortcuts win over --set


def test_speed_and_transfer_are_the_unambiguous_names_of_bench_and_benchmark(capsys):
    assert main(["transfer", "--config", "smoke", "--seeds", "2", "--dry-run"]) == 0
    assert "seeds: 2" in capsys.readouterr().out
    assert main(["benchmark", "--config", "smoke", "--seeds", "2", "--dry-run"]) == 0  # the old name still works
    assert "seeds: 2" in capsys.readouterr().out
    assert _exit_code(["speed", "generator", "--batch", "0"]) == 2
    assert capsys.readouterr().err.startswith("domrand speed generator: error: ")

