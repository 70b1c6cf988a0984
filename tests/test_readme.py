"""README.md is executed: its demo command, every Python block, and its test command is the one CI runs.

A README that cannot run cannot land: the demo runs as written (in a subprocess, with short ``--epochs`` and
``--mc-samples``), the Python blocks run in order in one namespace (with ``tl.fit`` shortened), and every shell
command is one of the two the README documents, which ``.ci/run`` and this file execute.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from _readme import README, blocks, command

import aestetik as ae

ROOT = Path(__file__).parents[1]
SHORT = {"max_epochs": 2, "n_mc_samples": 5}
PNG = b"\x89PNG\r\n\x1a\n"


def _steps(line: str) -> list[str]:
    return [step.strip() for step in line.split("&&")]


def _demo_argv(line: str) -> list[str]:
    """The ``python -m aestetik demo ...`` step of the demo command, run by this interpreter."""
    (step,) = [s for s in _steps(line) if re.match(r"python3? -m aestetik demo\b", s)]
    return [sys.executable, *shlex.split(step)[1:]]


def test_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert not re.search(r"\bissues? \d+", text, re.I), "internal issue numbers mean nothing to a user"
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", text):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_every_shell_block_is_a_documented_command():
    """Each shell block is the demo or the test command; a new one needs a test here before it can land."""
    shell = [code.strip() for _, lang, code in blocks() if lang in ("bash", "sh", "shell", "console")]
    assert sorted(shell) == sorted([command("Run the demo"), command("Run the tests")])
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for line in shell:
        for step in _steps(line):
            for extra in re.findall(r"\.\[([\w,-]+)\]", step):
                assert set(extra.split(",")) <= set(extras), f"{step}: unknown extra"
    assert "pip install torch==2.13.0" in _steps(command("Run the demo")), "pin the CPU build (see .ci/run)"


def test_ci_runs_the_readme_commands():
    """``.ci/run`` takes both commands from README.md instead of keeping copies that could drift."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'tests/_readme.py "Run the demo"' in ci
    assert 'tests/_readme.py "Run the tests"' in ci
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_readme.py"), "Run the tests"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == command("Run the tests")
    assert _steps(out.stdout)[-1].startswith("python -m pytest")


@pytest.mark.slow
def test_demo_runs_as_written(tmp_path):
    """The README's demo command: exit status 0, the ``ARI = ...`` line, both figures and the ARI file."""
    argv = [*_demo_argv(command("Run the demo")), "--epochs", "2", "--mc-samples", "5", "--quiet"]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / (argv[argv.index("--out") + 1] if "--out" in argv else "aestetik_demo")
    (line,) = [s for s in run.stdout.splitlines() if s.startswith("ARI = ")]
    ari = float(re.match(r"ARI = (-?[0-9.]+) ", line).group(1))
    assert 0.2 < ari <= 1.0  # two epochs already find layers: the pseudo-labels guide the embedding
    assert "7 domains" in line
    assert float((out / "ari.txt").read_text()) == pytest.approx(ari, abs=5e-4)
    for name in ("aestetik_dlpfc_151676.png", "aestetik_loss.png"):
        figure = out / name
        assert figure.read_bytes()[:8] == PNG, f"{name} is not a PNG"
        assert figure.stat().st_size > 10_000
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
def test_python_blocks_run(tmp_path, monkeypatch):
    """Every Python block, in order, in one namespace; ``tl.fit`` trains for 2 epochs and 5 passes."""
    code = [code for _, lang, code in blocks() if lang in ("python", "py")]
    assert code, "README.md has no Python block"
    fit = ae.tl.fit

    @functools.wraps(fit)
    def short_fit(*args, **kwargs):
        return fit(*args, **{**SHORT, "show_progress_bar": False, **kwargs})

    monkeypatch.setattr(ae.tl, "fit", short_fit)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, source in enumerate(code):
        exec(compile(source, f"README.md python block {i + 1}", "exec"), namespace)
    plt.close("all")
    adata = namespace["adata"]
    assert adata.obsm["X_aestetik"].shape[0] == adata.n_obs
    assert adata.obs["aestetik"].cat.categories.size == 7
    assert "neighbors" in adata.uns  # chained with scanpy
    assert not list(tmp_path.iterdir()), "the quick start wrote files"
