"""Smoke test of the benchmark harness: its quickest mode on one workload, no peers.

It checks that bench/run.py runs, that funcgrad (eager and jit) passes the
harness's gradient check against the hand-written NumPy reference, and that the
JSON output records the environment.  Speeds are not asserted here.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_quick_xor(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--no-peers",
         "--only", "xor", "--repeats", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    rows = {r["impl"]: r for r in data["rows"] if r["workload"] == "xor"}
    assert set(rows) == {"numpy", "funcgrad", "funcgrad_jit"}
    for name, r in rows.items():
        assert not r["error"], (name, r["error"])
        assert r["seconds"] > 0 and r["ratio"] > 0
    assert rows["numpy"]["ratio"] == 1.0
    assert [t["text"] for t in rows["funcgrad"]["targets"]] == ["<= 6x"]
    env = data["environment"]
    assert env["thread_env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert env["peers"] == {}
    for key in ("python", "numpy", "cpu", "blas", "date"):
        assert env[key]
    assert "xor" in proc.stdout and "funcgrad_jit" in proc.stdout


def test_bench_rejects_unknown_workload():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--no-peers",
         "--only", "no_such_workload"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "no workload matches" in proc.stderr


def test_outer_kernels_script_agrees_and_times():
    """bench/outer_kernels.py (the floor under per-example gradients) runs, and every
    kernel it times computes the same outer products (it asserts that itself)."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "outer_kernels.py"), "--repeats", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "one np.dot per matrix" in proc.stdout and "fill the result" in proc.stdout
