"""The benchmark commands run and print one row per setting (speed itself is never asserted)."""

import re

import pytest

from domrand.cli import main


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^(tiny|bundle)[\s/]", line)]


def test_bench_generator_prints_a_row_per_batch_and_path(capsys):
    assert main(["bench", "generator", "--preset", "tiny", "--batch", "1,3", "--repeats", "1", "--warmup", "0", "--modconv"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 4  # 2 batches x (fused, nonfused)
    assert all(float(r.split()[5]) > 0 for r in rows)  # img/s column


def test_bench_generator_times_the_reference_beside_the_fast_path(capsys):
    argv = ["bench", "generator", "--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
            "--path", "reference,fast", "--dtype", "float32"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert [r.split()[3] for r in _rows(out)] == ["reference/float32", "fast/float32"]
    ratio = re.search(r"fast / reference img/s, tiny, batch 2: ([0-9.]+)x", out)
    assert ratio and float(ratio.group(1)) > 0


def test_bench_randomizer_prints_a_row_per_batch(capsys):
    assert main(["bench", "randomizer", "--preset", "tiny", "--batch", "1,2", "--repeats", "1", "--warmup", "0"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r.split()[4] for r in rows] == ["1", "2"]


def test_bench_randomizer_times_the_reference_beside_the_fast_path(capsys):
    assert main(["bench", "randomizer", "--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                 "--path", "reference,fast", "--dtype", "bfloat16"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert [r.split()[1:3] for r in _rows(out)] == [["reference", "float32"], ["fast", "bfloat16"]]
    ratio = re.search(r"fast / reference frames/s, tiny/teacher, torch, batch 2: ([0-9.]+)x", out)
    assert ratio and float(ratio.group(1)) > 0


def test_bench_randomizer_times_the_student_beside_the_teacher(capsys):
    assert main(["bench", "randomizer", "--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                 "--model", "teacher,student"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert [r.split()[0] for r in _rows(out)] == ["tiny/teacher", "tiny/student"]
    ratio = re.search(r"student / teacher frames/s, tiny, torch, batch 2: ([0-9.]+)x", out)
    assert ratio and float(ratio.group(1)) > 0


def test_bench_randomizer_cuda_without_a_gpu_is_a_clear_error(capsys):
    assert main(["bench", "randomizer", "--preset", "tiny", "--ops", "cuda"]) == 2
    assert "--ops cuda needs --device cuda" in capsys.readouterr().err


def test_bench_train_prints_a_row_per_batch(capsys):
    argv = ["bench", "train", "--preset", "tiny", "--batch", "2,4", "--steps", "2", "--repeats", "2", "--warmup", "1", "--clock", "cpu"]
    assert main(argv) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r.split()[1] for r in rows] == ["2", "4"]
    for r in rows:
        img_s, ms_step = float(r.split()[2]), float(r.split()[3])
        assert img_s > 0 and abs(ms_step - 1000 * int(r.split()[1]) / img_s) < 0.1 * ms_step


def test_bench_train_rejects_zero_steps(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "train", "--preset", "tiny", "--steps", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "domrand bench train: error: argument --steps: must be an integer >= 1, got 0 (see 'domrand bench train --help')"


def test_bench_lists_and_names_are_parsed(capsys):
    """Comma-separated batches, presets, backends and dtypes reach the benchmark as lists."""
    assert main(["bench", "randomizer", "--preset", "tiny", "--batch", " 2, ,1 ", "--ops", "torch", "--dtype", "fp32",
                 "--repeats", "1", "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "dtype=float32" in out
    assert [r.split()[4] for r in _rows(out)] == ["2", "1"]
