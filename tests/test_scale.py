"""Scale: long graphs without recursion, memory linear in the graph size, no reference
cycles keeping arrays alive after a transformation returns.

The chain is elementwise (``x <- 0.995 (x + 0.01 tanh(x))``, four equations per step, its
derivative close to 1 so that nothing underflows over thousands of steps) on a short
vector, so its value, gradient and second derivative have exact NumPy references: the
derivative is accumulated forward step by step, and the second derivative (the Hessian
is diagonal) by central differences of that derivative.
"""

from __future__ import annotations

import gc
import inspect
import sys
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import networkx as nx
import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import current_traces

X0 = np.linspace(-1.0, 1.0, 4)


def chain(n_eqns: int) -> Callable:
    """A function whose graph has ``n_eqns`` equations (plus the final sum)."""
    def f(x):
        for _ in range(n_eqns // 4):
            x = (x + fnp.tanh(x) * 0.01) * 0.995
        return fnp.sum(x)
    return f


def chain_reference(x: np.ndarray, n_eqns: int) -> tuple[float, np.ndarray]:
    """(value, gradient) of :func:`chain` by forward accumulation in NumPy."""
    d = np.ones_like(x)
    for _ in range(n_eqns // 4):
        t = np.tanh(x)
        d = d * (1.0 + 0.01 * (1.0 - t * t)) * 0.995
        x = (x + t * 0.01) * 0.995
    return float(np.sum(x)), d


@contextmanager
def low_recursion_limit(headroom: int = 150) -> Iterator[int]:
    """Lower Python's recursion limit to the current depth + ``headroom`` (about 200-250)."""
    old = sys.getrecursionlimit()
    limit = len(inspect.stack(0)) + headroom
    sys.setrecursionlimit(limit)
    try:
        yield limit
    finally:
        sys.setrecursionlimit(old)


N = 10_000


@pytest.fixture(scope="module")
def reference() -> tuple[float, np.ndarray, np.ndarray]:
    value, grad = chain_reference(X0, N)
    h = 1e-5
    second = (chain_reference(X0 + h, N)[1] - chain_reference(X0 - h, N)[1]) / (2 * h)
    return value, grad, second


def test_trace_and_evaluate_a_10000_equation_chain(reference) -> None:
    f = chain(N)
    with low_recursion_limit():
        graph = fg.make_jaxpr(f)(X0)
        text = str(graph)
        out = fg.eval_jaxpr(graph, X0)
    assert len(graph.eqns) == N + 1
    assert text.count("\n") == N + 2
    np.testing.assert_allclose(out, reference[0], rtol=1e-12)


def test_first_and_second_derivatives_of_a_10000_equation_chain(reference) -> None:
    f = chain(N)
    _, grad, second = reference
    with low_recursion_limit():
        g = fg.grad(f)(X0)
        gg = fg.grad(lambda x: fnp.sum(fg.grad(f)(x)))(X0)        # grad of grad
        _, jg = fg.jvp(fg.grad(f), (X0,), (np.ones(4),))           # jvp of grad
        t = fg.jvp(f, (X0,), (np.ones(4),))[1]
    np.testing.assert_allclose(g, grad, rtol=1e-10)
    np.testing.assert_allclose(t, grad.sum(), rtol=1e-10)
    # the Hessian is diagonal: both second-order paths give its diagonal
    np.testing.assert_allclose(gg, second, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(jg, second, rtol=1e-5, atol=1e-9)
    assert current_traces() == []


def test_vmap_of_a_10000_equation_chain(reference) -> None:
    f = chain(N)
    xs = np.stack([X0, X0[::-1]])
    with low_recursion_limit():
        out = fg.vmap(f)(xs)
    np.testing.assert_allclose(out, [reference[0], reference[0]], rtol=1e-12)


def test_jit_of_a_10000_equation_chain(reference) -> None:
    f = chain(N)
    with low_recursion_limit():
        fj = fg.jit(f)
        out = fj(X0)
        again = fj(X0 + 0.0)
    np.testing.assert_allclose(out, reference[0], rtol=1e-12)
    np.testing.assert_allclose(again, reference[0], rtol=1e-12)
    assert fj.trace_count == 1


def test_jit_of_grad_of_a_long_chain() -> None:
    n = 2_000
    with low_recursion_limit():
        g = fg.jit(fg.grad(chain(n)))(X0)
    np.testing.assert_allclose(g, chain_reference(X0, n)[1], rtol=1e-10)


def test_export_a_10000_equation_chain() -> None:
    with low_recursion_limit():
        graph = fg.make_jaxpr(chain(N))(X0)
        G = fg.to_networkx(graph)
        dot = fg.to_dot(graph)
        order = list(nx.topological_sort(G))
    ops = [n for n, a in G.nodes(data=True) if a["kind"] == "op"]
    assert len(ops) == N + 1
    assert len(order) == G.number_of_nodes()
    assert dot.count("->") == G.number_of_edges()


# --------------------------------------------------------------- memory growth ---

def _peak(task: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        task()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


MEMORY_TASKS: dict[str, tuple[Callable[[Callable], object], int]] = {
    # name: (task, smaller graph size); the larger graph is 4x that
    "make_jaxpr": (lambda f: fg.make_jaxpr(f)(X0), 2_000),
    "grad": (lambda f: fg.grad(f)(X0), 2_000),
    "grad-of-grad": (lambda f: fg.grad(lambda x: fnp.sum(fg.grad(f)(x)))(X0), 2_000),
    # these are slow under tracemalloc: a smaller pair of sizes, the same ratio
    "to_networkx": (lambda f: fg.to_networkx(fg.make_jaxpr(f)(X0)), 1_000),
    "jit": (lambda f: fg.jit(f)(X0), 1_000),
}


@pytest.mark.parametrize("name", sorted(MEMORY_TASKS))
def test_memory_grows_linearly_with_the_graph(name: str) -> None:
    """Peak memory for 8,000 equations is about 4x that for 2,000 (not 16x, as a quadratic
    algorithm would give)."""
    task, n = MEMORY_TASKS[name]
    task(chain(40))       # imports and caches outside the measurement
    small = _peak(lambda: task(chain(n)))
    large = _peak(lambda: task(chain(4 * n)))
    ratio = large / small
    assert 2.5 < ratio < 5.5, f"{name}: peak {small} B for {n} equations, {large} B for {4 * n}"


# ------------------------------------------------------ nothing kept alive ---

BIG = 200_000       # elements: 1.6 MB per float64 array


def _loss(x):
    h = x * 2.0
    big = fnp.exp(fnp.tanh(h)) + 1.0
    return fnp.sum(fnp.sin(big) * h)


RELEASE_TASKS: dict[str, Callable[[np.ndarray], object]] = {
    "grad": lambda x: fg.grad(_loss)(x),
    "value_and_grad": lambda x: fg.value_and_grad(_loss)(x),
    "jvp": lambda x: fg.jvp(_loss, (x,), (x,)),
    "vjp": lambda x: fg.vjp(_loss, x)[1](1.0),
    "vmap": lambda x: fg.vmap(_loss)(x.reshape(4, -1)),
    "vmap-of-grad": lambda x: fg.vmap(fg.grad(_loss))(x.reshape(4, -1)),
    "jit": lambda x: fg.jit(_loss)(x),
    "jit-of-grad": lambda x: fg.jit(fg.grad(_loss))(x),
    "grad-of-grad": lambda x: fg.grad(lambda y: fnp.sum(fg.grad(_loss)(y)))(x),
    "make_jaxpr": lambda x: fg.make_jaxpr(fg.grad(_loss))(x),
    "hessian": lambda x: fg.hessian(_loss)(x[:40]),
}


@pytest.mark.parametrize("name", sorted(RELEASE_TASKS))
def test_no_reference_cycle_keeps_arrays_alive(name: str) -> None:
    """With the cycle collector off, everything is freed by reference counting alone.

    The input is reachable through a weak reference only once the caller drops it, and
    the traced memory returns to its level before the call: no tape, tracer or
    intermediate array survives in a reference cycle.
    """
    task = RELEASE_TASKS[name]
    task(np.linspace(0.0, 1.0, 400))       # warm caches (primitive rules, imports)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        x = np.linspace(0.0, 1.0, BIG)
        alive = weakref.ref(x)
        before = tracemalloc.get_traced_memory()[0]
        out = task(x)
        del out, x
        leftover = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert alive() is None, f"{name} keeps its input alive"
    assert leftover < 0.25 * 8 * BIG, f"{name} keeps {leftover / 1e6:.1f} MB alive after returning"


def test_vjp_function_releases_its_tape_when_dropped() -> None:
    gc.collect()
    gc.disable()
    try:
        x = np.linspace(0.0, 1.0, BIG)
        out, pullback = fg.vjp(lambda v: fnp.sin(v) * v, x)
        ref = weakref.ref(x)
        del x
        assert ref() is not None          # the tape needs the input until the pullback dies
        ct = pullback(np.ones(BIG))
        np.testing.assert_allclose(ct[0][:3], np.cos(np.linspace(0.0, 1.0, BIG)[:3])
                                   * np.linspace(0.0, 1.0, BIG)[:3] + np.sin(
                                       np.linspace(0.0, 1.0, BIG)[:3]))
        del pullback
        assert ref() is None
    finally:
        gc.enable()


def test_jit_cache_does_not_keep_arguments_alive() -> None:
    fj = fg.jit(lambda v: fnp.sum(fnp.sin(v) * v))
    gc.collect()
    gc.disable()
    try:
        x = np.linspace(0.0, 1.0, BIG)
        ref = weakref.ref(x)
        fj(x)
        del x
        assert ref() is None
        assert fj.cache_size() == 1
    finally:
        gc.enable()
