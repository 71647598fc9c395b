"""Where eager funcgrad time goes: cProfile of the eager XOR step and the eager chain.

    python bench/profile_eager.py [--calls N] [--top K]

Own time (cProfile ``tottime``) of every function is grouped into buckets:
dispatch (``bind`` and the traces' ``process_primitive``), the forward
implementations and the backward rules of the primitives, the backward pass
loop, the ``funcgrad.numpy`` facade and Tracer operators, pytree handling,
and time inside NumPy itself (C functions and NumPy's own Python wrappers).
The numbers are per call of the workload and per primitive recorded on the
tape.  cProfile inflates Python-call-heavy code, so read them as shares.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

BUCKETS = [  # (bucket, predicate on (file, function name)); first match wins
    ("dispatch: core.bind", lambda f, n: f.endswith("funcgrad/core.py") and n == "bind"),
    ("dispatch: VJPTrace.process_primitive + tracer creation",
     lambda f, n: f.endswith("funcgrad/ad.py") and n in ("process_primitive", "__init__", "_eval")),
    ("backward_pass loop", lambda f, n: f.endswith("funcgrad/ad.py") and n == "backward_pass"),
    ("grad/vjp setup (ad.py other)", lambda f, n: f.endswith("funcgrad/ad.py")),
    ("rules: _base (vjp terms, unbroadcast)", lambda f, n: "funcgrad/primitives/_base.py" in f),
    ("primitives: impl + rule bodies", lambda f, n: "funcgrad/primitives/" in f),
    ("facade: funcgrad.numpy + Tracer operators",
     lambda f, n: f.endswith("funcgrad/numpy.py") or f.endswith("funcgrad/core.py")),
    ("pytrees", lambda f, n: f.endswith("funcgrad/tree_util.py")),
    ("other funcgrad", lambda f, n: "/funcgrad/" in f),
    ("NumPy (C functions, ufuncs, wrappers)",
     lambda f, n: f == "~" or "/numpy/" in f),
    ("benchmark code and the rest", lambda f, n: True),
]


def profile(fn, calls: int) -> pstats.Stats:
    fn()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    return pstats.Stats(pr)


def buckets(st: pstats.Stats) -> dict[str, float]:
    out = {b: 0.0 for b, _ in BUCKETS}
    for (f, _line, n), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
        for b, pred in BUCKETS:
            if pred(f, n):
                out[b] += tt
                break
    return out


def report(title: str, fn, calls: int, n_prims: int, top: int) -> None:
    st = profile(fn, calls)
    total = sum(v for v in buckets(st).values())
    print(f"\n== {title}: {calls} calls, {n_prims} primitives on the tape per call, "
          f"{total / calls * 1e6:.0f} us/call under cProfile ==")
    print(f"  {'bucket (own time)':62s} {'share':>6s} {'us/call':>8s} {'us/prim':>8s}")
    for b, v in sorted(buckets(st).items(), key=lambda kv: -kv[1]):
        if v:
            print(f"  {b:62s} {100 * v / total:5.1f}% {v / calls * 1e6:8.1f} "
                  f"{v / calls / n_prims * 1e6:8.2f}")
    counts = impl_counts(fn)
    print(f"  NumPy-level primitive executions per call: {sum(counts.values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))})")
    print(f"  top {top} functions by own time:")
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    for (f, line, n), (_cc, nc, tt, _ct, _c) in rows:
        loc = "~" if f == "~" else f"{os.path.relpath(f, os.path.dirname(HERE))}:{line}"
        print(f"    {100 * tt / total:5.1f}%  {nc // calls:5d}/call  {n}  ({loc})")


def impl_counts(fn) -> dict[str, int]:
    """How often each primitive's NumPy implementation runs in one call of ``fn``."""
    from funcgrad.primitives._base import registry
    counts: dict[str, int] = {}
    saved = {}
    for name, prim in registry.items():
        saved[name] = prim.impl

        def counted(*a, _impl=prim.impl, _name=name, **k):
            counts[_name] = counts.get(_name, 0) + 1
            return _impl(*a, **k)
        prim.impl = counted
    try:
        fn()
    finally:
        for name, prim in registry.items():
            prim.impl = saved[name]
    return counts


def tape_length(fn_loss, *args) -> int:
    """How many primitives the VJP tape records for ``fn_loss(*args)``."""
    from funcgrad import ad
    from funcgrad.core import new_trace
    from funcgrad.tree_util import tree_flatten, tree_unflatten
    flat, tree = tree_flatten(args)
    with new_trace(ad.VJPTrace) as trace:
        ins = [ad.VJPTracer(trace, x, None, -1 - i) if ad.is_float(x) else x
               for i, x in enumerate(flat)]
        fn_loss(*tree_unflatten(tree, ins))
        return len(trace.tape)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    import numpy as np

    import funcgrad as fg
    import funcgrad.numpy as fnp

    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([-1.0, 1.0, 1.0, -1.0])
    rng = np.random.default_rng(0)
    params = (rng.standard_normal((2, 2)), 0.1 + 0.1 * rng.standard_normal(2),
              rng.standard_normal(2), np.float64(0.1))

    def xor_loss(params, X, y):
        U, c, w, b = params
        h = fnp.maximum(X @ U + c, 0.0)
        r = h @ w + b - y
        return fnp.mean(r * r)
    g = fg.grad(xor_loss)

    def xor_step():
        return tuple(p - 0.1 * q for p, q in zip(params, g(params, X, y)))
    report("eager XOR step", xor_step, a.calls, tape_length(xor_loss, params, X, y), a.top)

    x0 = rng.standard_normal(16)
    ca, cb = 0.5 + 0.5 * rng.random(16), 0.2 * rng.standard_normal(16)

    def chain(x):
        for _ in range(60):
            x = fnp.tanh(fnp.exp(fnp.sin(x) * ca + cb))
        return fnp.sum(x)
    gc_ = fg.grad(chain)
    report("eager 300-op chain grad", lambda: gc_(x0), max(1, a.calls // 10),
           tape_length(chain, x0), a.top)


if __name__ == "__main__":
    main()
