"""Benchmark machinery: interleaved timing, gradient checks, environment record, table.

Imported by ``bench/run.py`` after it has fixed the BLAS thread count, so
importing NumPy here is safe.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ------------------------------------------------------------ descriptions ---


@dataclass
class Impl:
    """One way of computing a workload: ``run()`` is the timed call.

    ``check()`` (default: ``run``) returns what is compared with the
    reference's ``check()``: a pytree of arrays, tensors or scalars.
    """

    name: str
    run: Callable[[], Any]
    check: Callable[[], Any] | None = None
    note: str = ""


@dataclass
class Target:
    """A speed goal from the issues: ``metric`` of ``impl`` must be ``op`` ``bound``."""

    impl: str
    metric: str          # "ratio", "us_per_op", "ms", "us_per_call", "speedup"
    bound: float
    op: str = "<="       # "<=" or ">="
    source: str = ""     # issue the goal comes from

    def met(self, value: float | None) -> bool | None:
        if value is None or not np.isfinite(value):
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def text(self) -> str:
        unit = {"ratio": "x", "us_per_op": " us/op", "ms": " ms", "us_per_call": " us/call",
                "speedup": "x faster than loop"}[self.metric]
        return f"{self.op} {self.bound:g}{unit}"


@dataclass
class Row:
    """A measured result: one implementation on one workload."""

    workload: str
    impl: str
    seconds: float | None            # median time per call
    ratio: float | None = None       # seconds / reference seconds
    per_op_us: float | None = None   # for the chain: microseconds per elementwise op
    extra: dict = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    met: list[bool | None] = field(default_factory=list)   # one verdict per target
    error: str = ""
    samples: dict = field(default_factory=dict)   # {"wall"/"cpu": {"median", "min", "n"}}

    def value(self, metric: str) -> float | None:
        if metric == "ratio":
            return self.ratio
        if metric == "us_per_op":
            return self.per_op_us
        return self.extra.get(metric)

    def judge(self) -> None:
        """Set ``met`` from the targets (a failed implementation misses all of them)."""
        self.met = [False if self.error else t.met(self.value(t.metric)) for t in self.targets]


# ------------------------------------------------------------------ timing ---


def _time_batch(fn: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _time_batch_both(fn: Callable[[], Any], number: int) -> tuple[float, float]:
    """(wall time, process CPU time) per call over ``number`` calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return (t1 - t0) / number, (c1 - c0) / number


def calibrate(fn: Callable[[], Any], batch_seconds: float) -> int:
    """How many calls make one timed batch last about ``batch_seconds``."""
    number = 1
    while True:
        t = _time_batch(fn, number) * number
        if t >= batch_seconds or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * batch_seconds / max(t, 1e-9) * 1.1))


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int,
                     batch_seconds: float) -> dict[str, dict[str, list[float]]]:
    """Per-call times of each function, measured in ``repeats`` interleaved rounds.

    Every round times one batch of every function (the order rotates each
    round), so drifts in machine load hit all candidates alike; the garbage
    collector is off while a batch runs, as in :mod:`timeit`.  Each batch is
    timed by the wall clock and by this process's CPU time (which leaves out
    the time other processes held the core): ``{name: {"wall": [...],
    "cpu": [...]}}``.
    """
    names = list(fns)
    numbers = {n: calibrate(fns[n], batch_seconds) for n in names}
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    gc_was = gc.isenabled()
    try:
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                gc.collect()
                gc.disable()
                try:
                    wall, cpu = _time_batch_both(fns[n], numbers[n])
                    times[n]["wall"].append(wall)
                    times[n]["cpu"].append(cpu)
                finally:
                    if gc_was:
                        gc.enable()
    finally:
        if gc_was:
            gc.enable()
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# ---------------------------------------------------------------- checking ---


def to_numpy_leaves(x: Any) -> list[np.ndarray]:
    """Flatten a result (tuples, lists, dicts; NumPy, JAX or torch arrays) to NumPy arrays."""
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in to_numpy_leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in to_numpy_leaves(v)]
    if hasattr(x, "detach"):            # torch tensor
        x = x.detach().cpu().numpy()
    return [np.asarray(x)]


def tolerance(dtype: np.dtype) -> tuple[float, float]:
    """(rtol, atol scale) for comparing results of ``dtype`` computed in different orders."""
    if dtype == np.float32:
        return 2e-3, 2e-4
    if dtype == np.float16:
        return 2e-2, 2e-2
    return 1e-7, 1e-9


def assert_same(name: str, got: Any, want: Any, check_dtype: bool = True) -> None:
    """Raise AssertionError unless ``got`` equals the reference ``want`` leaf by leaf.

    The absolute tolerance is scaled by the largest magnitude of each reference
    leaf, so tiny components of a large gradient are judged fairly.
    """
    g, w = to_numpy_leaves(got), to_numpy_leaves(want)
    if len(g) != len(w):
        raise AssertionError(f"{name}: {len(g)} result arrays, reference has {len(w)}")
    for i, (a, b) in enumerate(zip(g, w)):
        if a.shape != b.shape:
            raise AssertionError(f"{name}: result {i} has shape {a.shape}, reference {b.shape}")
        if check_dtype and a.dtype != b.dtype:
            raise AssertionError(f"{name}: result {i} has dtype {a.dtype}, reference {b.dtype}")
        rtol, atol = tolerance(b.dtype)
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        if not np.allclose(a, b, rtol=rtol, atol=atol * max(scale, 1.0)):
            err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            raise AssertionError(f"{name}: result {i} (shape {b.shape}) differs from the reference: "
                                 f"max abs error {err:.3g} (reference max |x| {scale:.3g}, "
                                 f"rtol {rtol:g})")


# ------------------------------------------------------------- environment ---


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit(path: str) -> str:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--", "funcgrad"],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def _blas_info() -> dict:
    info: dict[str, Any] = {}
    try:
        cfg = np.show_config(mode="dicts")
        deps = cfg.get("Build Dependencies", {})
        info["numpy_build"] = {k: {kk: vv for kk, vv in v.items()
                                   if kk in ("name", "version", "openblas configuration")}
                               for k, v in deps.items() if k in ("blas", "lapack")}
    except Exception as e:   # older NumPy: no dict mode
        info["numpy_build"] = f"unavailable: {e}"
    try:
        import threadpoolctl
        info["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "version",
                                                      "num_threads", "architecture")}
                               for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def environment(peers: dict[str, str], repo: str) -> dict:
    """What the numbers were measured on."""
    import funcgrad
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_at_start": load,
        "numpy": np.__version__,
        "funcgrad": getattr(funcgrad, "__version__", "?"),
        "funcgrad_commit": _git_commit(repo),
        "thread_env": {k: os.environ.get(k) for k in
                       ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "OPENBLAS_CORETYPE", "XLA_FLAGS")},
        "blas": _blas_info(),
        "peers": peers,
    }


# ------------------------------------------------------------------- table ---


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.2f}{unit}"


def _other(r: Row) -> str:
    """The derived values of a row, in words."""
    e = r.extra
    out = []
    if r.per_op_us is not None:
        out.append(f"{r.per_op_us:.2f} us/op")
    if "ms" in e:
        out.append(f"{_fmt_num(e['ms'])} ms")
    if "steps" in e:
        out.append(f"{_fmt_num(e['steps'])} steps")
    if "overhead_ms" in e:
        out.append(f"{_fmt_num(e['overhead_ms'])} ms over a warm call")
    if "trace_ms" in e:
        out.append(f"trace/opt/compile {e['trace_ms']:.1f}/{e['optimize_ms']:.1f}/"
                   f"{e['compile_ms']:.1f} ms, {e['eqns']:.0f}->{e['eqns_opt']:.0f} eqns")
    if "us_per_call" in e:
        out.append(f"{e['us_per_call']:+.2f} us/call")
    if "speedup" in e:
        out.append(f"{_fmt_num(e['speedup'])}x faster than loop")
    if "note" in e:
        out.append(str(e["note"]))
    if r.error:
        out.append(r.error if len(r.error) < 90 else r.error[:87] + "...")
    return ", ".join(out)


_VERDICT = {True: "yes", False: "NO", None: "?"}


def format_table(rows: list[Row], markdown: bool = False) -> str:
    """The results as a text (or Markdown) table, one line per (workload, impl)."""
    head = ["workload", "impl", "time/call", "ratio", "other", "target", "met"]
    body = []
    for r in rows:
        body.append([r.workload, r.impl, _fmt_time(r.seconds) if not r.error else "error",
                     _fmt_num(r.ratio, "x"), _other(r), "; ".join(t.text() for t in r.targets),
                     ", ".join(_VERDICT[m] for m in r.met)])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    prev = None
    for row in body:
        if prev is not None and row[0] != prev:
            lines.append("")
        prev = row[0]
        lines.append(fmt.format(*row))
    return "\n".join(lines)
