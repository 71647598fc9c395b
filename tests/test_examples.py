"""Smoke tests: every example runs as a script (small step counts) and answers --help.

Optional extras (scikit-learn, matplotlib) are used when installed; the
scripts' skip paths are exercised by hiding those packages from a subprocess.
"""

import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None


def run_script(script, *args, cwd, timeout=120):
    """Run an example as a real script in a fresh interpreter (as the README does)."""
    env = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout.replace("\r", "\n"), res.stderr


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    """Run an example in this process as ``__main__`` (fast), optionally hiding packages."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")

    def _run(script, *args, hide=()):
        for name in hide:                        # as if not installed: imports raise ImportError
            for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.setitem(sys.modules, mod, None)
            monkeypatch.setitem(sys.modules, name, None)
        path = str(EXAMPLES / script)
        monkeypatch.setattr(sys, "argv", [path, *args])
        capsys.readouterr()
        try:
            runpy.run_path(path, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out.replace("\r", "\n"), err
    return _run


def test_all_examples_present():
    assert set(SCRIPTS) >= {"xor.py", "backprop_graph.py", "digits_mlp.py", "per_example_grads.py",
                            "jax_port.py"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, run):
    code, out, err = run(script, "--help")
    assert code == 0, err
    assert out.startswith("usage:") and script in out


def test_xor_as_a_script(tmp_path):
    args = () if HAVE_MPL else ("--no-plot",)
    code, out, err = run_script("xor.py", *args, cwd=tmp_path)
    assert code == 0, out + err
    # 1. the perceptron fails; no hyperplane gets all four
    assert "best of 20000 random hyperplanes: 75%" in out
    # 2. the slide's network reproduces (-1, 1, 1, -1)
    assert re.findall(r"y_hat = ([+-]\d)\s+ok", out) == ["-1", "+1", "+1", "-1"]
    # 3. training reaches 100% sign accuracy
    assert out.rstrip().splitlines()[-1 if not HAVE_MPL else -3].endswith("sign accuracy 100%")
    assert "signs [-1  1  1 -1]" in out
    if HAVE_MPL:
        assert (tmp_path / "xor_decision_boundary.png").stat().st_size > 1000
        assert "Saved the decision boundaries" in out


def test_xor_without_matplotlib(run, tmp_path):
    code, out, err = run("xor.py", "--steps", "300", "--restarts", "3", hide=("matplotlib",))
    assert code == 0, out + err
    assert "matplotlib is not installed" in out
    assert not (tmp_path / "xor_decision_boundary.png").exists()


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn not installed")
def test_digits_reaches_97_percent(run, tmp_path):
    code, out, err = run("digits_mlp.py")
    assert code == 0, out + err
    acc = float(re.search(r"final test accuracy ([\d.]+)%", out).group(1))
    assert acc >= 97.0, out
    assert "train_step traced 1 time(s)" in out            # the jitted step compiled once
    assert "[##############################]" in out       # the progress bar
    if HAVE_MPL:
        assert (tmp_path / "digits_loss.png").exists()


def test_digits_without_sklearn(run):
    code, out, err = run("digits_mlp.py", "--epochs", "1", hide=("sklearn",))
    assert code == 0, out + err
    assert "scikit-learn is not installed" in out and "skipping" in out


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn not installed")
def test_digits_without_matplotlib(run, tmp_path):
    code, out, err = run("digits_mlp.py", "--epochs", "1", hide=("matplotlib",))
    assert code == 0, out + err
    assert "matplotlib is not installed" in out
    assert not (tmp_path / "digits_loss.png").exists()


def test_per_example_grads(run):
    code, out, err = run("per_example_grads.py", "--n", "16")
    assert code == 0, out + err
    assert "W grads (16, 10, 32)" in out
    assert "per-example gradients match the loop" in out


def test_jax_port(run):
    code, out, err = run("jax_port.py", "--steps", "300")
    assert code == 0, out + err
    assert "final training accuracy 1.000" in out
    assert "per-example gradient shapes: [(8, 2, 32), (8, 32, 32), (8, 32, 2)]" in out


def test_jax_port_differs_from_jax_only_in_imports():
    src = (EXAMPLES / "jax_port.py").read_text()
    code = src.split('"""', 2)[2]                      # past the module docstring
    lines = [l for l in code.splitlines() if "funcgrad" in l]
    assert lines == [
        "import funcgrad as jax  # import jax",
        "import funcgrad.numpy as jnp  # import jax.numpy as jnp",
        "from funcgrad.tree_util import tree_map  # from jax.tree_util import tree_map",
    ]
    assert "fnp." not in code and "fg." not in code


def test_backprop_graph(run, tmp_path):
    code, out, err = run("backprop_graph.py", "--outdir", str(tmp_path / "pics"))
    assert code == 0, out + err
    assert re.search(r"q\s+add x y\s+3\.00\s+-4\.00", out)
    assert re.search(r"z\s+input\s+-4\.00\s+3\.00", out)
    assert re.search(r"out \(out\)\s+div 1\.00 l\s+0\.73\s+1\.00", out)
    assert "G.nodes['a']: label='w0' value=2.00 grad=-0.20" in out
    assert "all gradients agree with fg.grad" in out
    assert (tmp_path / "pics" / "f_xyz.dot").exists() and (tmp_path / "pics" / "logistic.dot").exists()
