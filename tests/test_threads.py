"""Concurrency: every thread has its own trace state, transformations running in many
threads at once give the results they give alone, a tracer handed to another thread is
refused with a clear error (never a wrong answer), and jit caches are shared safely.

Python switches threads every few milliseconds by default; the tests lower the switch
interval so that threads interleave inside single traces and backward passes.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Tracer, current_traces

N_THREADS = 8


@contextmanager
def fine_interleaving(interval: float = 1e-5) -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def loss(w, x):
    """A small model: enough primitives that threads switch in the middle of a trace."""
    h = fnp.tanh(x @ w["W"] + w["b"])
    for _ in range(5):
        h = fnp.sin(h) * 0.9 + h * 0.1
    return fnp.sum(h ** 2) + 0.01 * fnp.sum(w["W"] ** 2)


def params(k: int) -> dict:
    rng = np.random.default_rng(k)
    return {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}


def data(k: int) -> np.ndarray:
    return np.random.default_rng(100 + k).standard_normal((5, 3))


grad_loss = fg.grad(loss)
jit_grad_loss = fg.jit(fg.grad(loss))
per_example = fg.vmap(fg.grad(loss), in_axes=(None, 0))

TASKS: dict[str, Callable[[int], object]] = {
    "grad": lambda k: grad_loss(params(k), data(k)),
    "value_and_grad": lambda k: fg.value_and_grad(loss)(params(k), data(k)),
    "jvp": lambda k: fg.jvp(lambda x: loss(params(k), x), (data(k),), (np.ones((5, 3)),)),
    "vjp": lambda k: fg.vjp(lambda x: fnp.sin(x) * x, data(k))[1](np.ones((5, 3))),
    "vmap": lambda k: fg.vmap(lambda x: loss(params(k), x[None]))(data(k)),
    "vmap-of-grad": lambda k: per_example(params(k), data(k)[:, None, :]),
    "jit": lambda k: fg.jit(loss)(params(k), data(k)),
    "shared-jit-of-grad": lambda k: jit_grad_loss(params(k), data(k)),
    "make_jaxpr": lambda k: fg.eval_jaxpr(fg.make_jaxpr(fg.grad(loss))(params(k), data(k)),
                                          params(k), data(k)),
    "hessian": lambda k: fg.hessian(lambda b: loss({"W": params(k)["W"], "b": b}, data(k)))(
        params(k)["b"]),
    "grad-of-grad": lambda k: fg.grad(lambda x: fnp.sum(fg.grad(lambda y: loss(params(k), y))(x)))(
        data(k)),
}


def assert_tree_close(a, b) -> None:
    la, ta = fg.tree_util.tree_flatten(a)
    lb, tb = fg.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert not isinstance(x, Tracer)
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_transformations_in_a_thread_pool_give_their_sequential_results() -> None:
    jobs = [(name, k) for name in sorted(TASKS) for k in range(4)]
    expected = {job: TASKS[job[0]](job[1]) for job in jobs}
    with fine_interleaving(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        results = list(pool.map(lambda job: (job, TASKS[job[0]](job[1])), jobs * 3))
    for job, got in results:
        assert_tree_close(got, expected[job])
    assert current_traces() == []


def test_trace_stacks_are_per_thread_under_nested_transformations() -> None:
    """Each thread sees only its own traces, levels 1.. from the bottom, all at once."""
    barrier = threading.Barrier(N_THREADS)
    seen: dict[int, list] = {}

    def work(k: int) -> object:
        def inner(x):
            barrier.wait(timeout=30)       # every thread is inside its own stack now
            seen[k] = [(t.level, t.name) for t in current_traces()]
            return fnp.sum(fnp.sin(x) * (k + 1.0))
        depth = k % 3
        f: Callable = inner
        if depth >= 1:
            f = fg.grad(f)
        if depth >= 2:
            f = fg.vmap(f)
        g = fg.jit(lambda x: fnp.sum(f(x))) if k % 2 else (lambda x: fnp.sum(f(x)))
        x = np.linspace(0.0, 1.0, 6).reshape(2, 3) + k
        return g(x) if depth == 2 else g(x[0])

    with fine_interleaving(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        out = list(pool.map(work, range(N_THREADS)))
    for k in range(N_THREADS):
        depth = k % 3
        names = [n for _, n in seen[k]]
        levels = [lv for lv, _ in seen[k]]
        assert levels == list(range(1, len(levels) + 1)), seen[k]
        expect_names = (["jit"] if k % 2 else []) + (["vmap"] if depth >= 2 else []) + \
            (["grad/vjp"] if depth >= 1 else [])
        assert names == expect_names, seen[k]
        x = np.linspace(0.0, 1.0, 6).reshape(2, 3) + k
        want = (k + 1.0) * (np.sum(np.cos(x)) if depth == 2 else
                            np.sum(np.cos(x[0])) if depth == 1 else np.sum(np.sin(x[0])))
        np.testing.assert_allclose(out[k], want, rtol=1e-12)


def test_a_thread_started_inside_a_transformation_starts_with_an_empty_stack() -> None:
    inside: dict[str, object] = {}

    def f(x):
        def other() -> None:
            inside["traces"] = current_traces()
            inside["grad"] = fg.grad(lambda y: fnp.sum(y ** 3))(np.arange(3.0))
        t = threading.Thread(target=other)
        t.start()
        t.join()
        return fnp.sum(x * x)

    g = fg.jit(fg.grad(f))(np.ones(3))
    np.testing.assert_allclose(g, 2.0)
    assert inside["traces"] == []
    np.testing.assert_allclose(inside["grad"], 3 * np.arange(3.0) ** 2)


# -------------------------------------------------- tracers crossing threads ---

def _run_with_tracer_in_other_thread(kind: str, use: Callable[[Tracer], object]) -> tuple:
    """Thread A runs transformation ``kind``; while it is still running, thread B gets one
    of its tracers and calls ``use`` on it.  Returns (A's result, B's outcome)."""
    handed: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()

    def f(x):
        handed.put(x * 2.0)
        done.get(timeout=30)            # keep A's transformation alive while B works
        return fnp.sum(fnp.sin(x))

    x = np.linspace(0.0, 1.0, 3)
    runs = {
        "grad": lambda: fg.grad(f)(x), "jvp": lambda: fg.jvp(f, (x,), (np.ones(3),))[1],
        "vjp": lambda: fg.vjp(f, x)[1](1.0)[0], "vmap": lambda: fg.vmap(f)(np.stack([x, x])),
        "jit": lambda: fg.jit(f)(x), "make_jaxpr": lambda: fg.eval_jaxpr(fg.make_jaxpr(f)(x), x),
        "vmap-of-grad": lambda: fg.vmap(fg.grad(f))(np.stack([x, x])),
    }
    outcome: dict[str, object] = {}

    def other() -> None:
        t = handed.get(timeout=30)
        try:
            outcome["value"] = use(t)
        except Exception as e:  # noqa: BLE001  (inspected by the test)
            outcome["error"] = e
        finally:
            done.put(True)

    b = threading.Thread(target=other)
    b.start()
    result = runs[kind]()
    b.join()
    return result, outcome


CROSS_USES: dict[str, Callable[[Tracer], object]] = {
    "arithmetic": lambda t: t + 1.0,
    "fnp": lambda t: fnp.sum(fnp.exp(t)),
    "ufunc": lambda t: np.sin(t),
    "index": lambda t: t[0],
    "method": lambda t: t.sum(),
    "float": lambda t: float(t[0]),
    "asarray": lambda t: np.asarray(t),
    "own-grad": lambda t: fg.grad(lambda y: fnp.sum(y * t))(np.ones(3)),
    "own-jit": lambda t: fg.jit(lambda y: y * t)(np.ones(3)),
    "own-vmap": lambda t: fg.vmap(lambda y: y * t)(np.ones((2, 3))),
    "own-make_jaxpr": lambda t: fg.make_jaxpr(lambda y: y + t)(np.ones(3)),
    "own-jvp": lambda t: fg.jvp(lambda y: y * t, (np.ones(3),), (np.ones(3),)),
}
EXPECTED_A = {
    "grad": np.cos(np.linspace(0.0, 1.0, 3)), "jvp": np.sum(np.cos(np.linspace(0.0, 1.0, 3))),
    "vjp": np.cos(np.linspace(0.0, 1.0, 3)),
    "vmap": np.full(2, np.sum(np.sin(np.linspace(0.0, 1.0, 3)))),
    "jit": np.sum(np.sin(np.linspace(0.0, 1.0, 3))),
    "make_jaxpr": np.sum(np.sin(np.linspace(0.0, 1.0, 3))),
    "vmap-of-grad": np.stack([np.cos(np.linspace(0.0, 1.0, 3))] * 2),
}


@pytest.mark.parametrize("use", sorted(CROSS_USES))
@pytest.mark.parametrize("kind", sorted(EXPECTED_A))
def test_a_tracer_used_in_another_thread_is_refused(kind: str, use: str) -> None:
    result, outcome = _run_with_tracer_in_other_thread(kind, CROSS_USES[use])
    assert "value" not in outcome, f"thread B got {outcome['value']!r} from another thread's tracer"
    err = outcome["error"]
    assert isinstance(err, fg.LeakedTracerError), repr(err)
    assert "another thread" in str(err) and "per thread" in str(err), str(err)
    # thread A's transformation is not disturbed
    np.testing.assert_allclose(result, EXPECTED_A[kind], rtol=1e-12)
    assert current_traces() == []


# ---------------------------------------------------------- shared jit caches ---

def test_one_jitted_function_shared_by_many_threads() -> None:
    """Concurrent calls with a mix of signatures: right answers, one cache entry each."""
    calls = 0
    lock = threading.Lock()

    def f(x, scale):
        nonlocal calls
        with lock:
            calls += 1
        y = x
        for _ in range(20):
            y = fnp.tanh(y * scale + 0.1)
        return fnp.sum(y, axis=-1)

    fj = fg.jit(f, static_argnums=1)
    shapes = [(3,), (2, 3), (4,), (2, 4), (5,)]
    scales = [0.5, 1.5]
    jobs = [(s, c, k) for s in shapes for c in scales for k in range(4)] * 2

    def reference(s, c, k):
        y = np.random.default_rng(k).standard_normal(s)
        for _ in range(20):
            y = np.tanh(y * c + 0.1)
        return np.sum(y, axis=-1)

    def run(job):
        s, c, k = job
        x = np.random.default_rng(k).standard_normal(s)
        return job, fj(x, c), fg.grad(lambda v: fnp.sum(fj(v, c)))(x)

    with fine_interleaving(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        results = list(pool.map(run, jobs))
    for (s, c, k), out, g in results:
        np.testing.assert_allclose(out, reference(s, c, k), rtol=1e-12)
        x = np.random.default_rng(k).standard_normal(s)
        h = 1e-6
        fd = np.array([(np.sum(reference_at(x + h * e, c)) - np.sum(reference_at(x - h * e, c)))
                       / (2 * h) for e in np.eye(x.size).reshape((x.size,) + s)]).reshape(s)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    distinct = len(shapes) * len(scales)
    assert fj.cache_size() == distinct
    # two threads may trace the same new signature at once, but never more than once each
    assert distinct <= fj.trace_count <= distinct * N_THREADS


def reference_at(x: np.ndarray, c: float) -> np.ndarray:
    y = x
    for _ in range(20):
        y = np.tanh(y * c + 0.1)
    return np.sum(y, axis=-1)


def test_jit_traced_in_one_thread_runs_in_others() -> None:
    fj = fg.jit(lambda x: fnp.sum(fnp.exp(x) * x))
    x0 = np.linspace(-1.0, 1.0, 7)
    fj(x0)                                      # traced here, in the main thread
    with fine_interleaving(), ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        outs = list(pool.map(lambda k: fj(x0 * k), range(32)))
    for k, out in enumerate(outs):
        np.testing.assert_allclose(out, np.sum(np.exp(x0 * k) * x0 * k), rtol=1e-12)
    assert fj.trace_count == 1
