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
