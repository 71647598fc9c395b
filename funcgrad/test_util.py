"""Testing helpers: :func:`check_grads` compares derivatives with finite differences.

``check_grads(f, args)`` checks, like ``jax.test_util.check_grads``:

- forward mode: ``jvp(f, args, v)`` against the central difference
  ``(f(x + eps v) - f(x - eps v)) / (2 eps)`` along a random direction ``v``;
- reverse mode: ``<vjp(u), v>`` against ``<u, finite difference along v>`` for a
  random cotangent ``u``;
- consistency: ``<vjp(u), v> == <u, jvp(v)>`` (both modes are exact, so this
  pins down rules that are wrong by the same amount in both directions only if
  finite differences disagree too, and catches rules that disagree with each other);
- higher orders, recursively: the same checks applied to the function
  ``(x, v) -> jvp(f, x, v)`` (forward) and ``x -> vjp(f, x)(f(x))`` (reverse),
  so ``order=2`` tests the derivatives of the derivative rules.

Tolerances and the finite-difference step follow the least precise
floating-point dtype among the inputs and outputs (float32 is looser).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcgrad.ad import jvp, vjp
from funcgrad.tree_util import tree_flatten, tree_unflatten

__all__ = ["check_grads", "default_tolerance", "numerical_jvp"]

# (finite-difference step, atol, rtol) per dtype: central differences have a
# truncation error ~ eps**2 and a rounding error ~ machine_eps / eps.
_DEFAULTS: dict[np.dtype, tuple[float, float, float]] = {
    np.dtype(np.float64): (1e-4, 1e-5, 1e-5),
    np.dtype(np.float32): (3e-3, 2e-2, 2e-2),
    np.dtype(np.float16): (3e-2, 1e-1, 1e-1),
}


def _is_float_leaf(x: Any) -> bool:
    return np.asarray(x).dtype.kind == "f"


def _prepare(x: Any) -> Any:
    """Python numbers become 0-d NumPy arrays so that ``x + eps * v`` keeps one dtype."""
    if isinstance(x, (bool, int, float)):
        return np.asarray(x)
    return x


def default_tolerance(*trees: Any) -> tuple[float, float, float]:
    """``(eps, atol, rtol)`` for the least precise float dtype among the leaves of ``trees``."""
    best = _DEFAULTS[np.dtype(np.float64)]
    for tree in trees:
        for leaf in tree_flatten(tree)[0]:
            dt = np.asarray(leaf).dtype
            if dt.kind == "f":
                d = _DEFAULTS.get(dt, _DEFAULTS[np.dtype(np.float16)])
                if d[0] > best[0]:
                    best = d
    return best


def _random_like(tree: Any, rng: np.random.Generator) -> Any:
    """A random direction with ``tree``'s structure: normal for floats, zeros elsewhere."""
    leaves, treedef = tree_flatten(tree)
    out = []
    for x in leaves:
        a = np.asarray(x)
        if a.dtype.kind == "f":
            out.append(rng.standard_normal(a.shape).astype(a.dtype))
        else:
            out.append(np.zeros(a.shape, a.dtype))
    return tree_unflatten(treedef, out)


def _axpy(a: float, x: Any, y: Any) -> Any:
    """``y + a * x`` leafwise on the float leaves (other leaves of ``y`` pass through)."""
    xs, treedef = tree_flatten(x)
    ys = tree_flatten(y)[0]
    out = []
    for xi, yi in zip(xs, ys):
        yi_a = np.asarray(yi)
        if yi_a.dtype.kind == "f":
            out.append((yi_a + np.asarray(a, yi_a.dtype) * np.asarray(xi, yi_a.dtype))
                       .astype(yi_a.dtype))
        else:
            out.append(yi)
    return tree_unflatten(treedef, out)


def numerical_jvp(f: Callable, args: tuple, tangents: tuple, eps: float) -> Any:
    """Central finite difference of ``f`` at ``args`` along ``tangents`` (float leaves only)."""
    plus = f(*_axpy(eps, tangents, args))
    minus = f(*_axpy(-eps, tangents, args))
    p_leaves, treedef = tree_flatten(plus)
    m_leaves = tree_flatten(minus)[0]
    out = []
    for p, m in zip(p_leaves, m_leaves):
        p, m = np.asarray(p), np.asarray(m)
        if p.dtype.kind == "f":
            d = (p.astype(np.float64) - m.astype(np.float64)) / (2 * eps)
            out.append(d.astype(p.dtype))
        else:
            out.append(np.zeros(p.shape, p.dtype))
    return tree_unflatten(treedef, out)


def _inner(x: Any, y: Any) -> tuple[float, float]:
    """``(<x, y>, sum |x * y|)`` over the float leaves, in float64."""
    total, scale = 0.0, 0.0
    for a, b in zip(tree_flatten(x)[0], tree_flatten(y)[0]):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind != "f" or b.dtype.kind != "f":
            continue
        prod = a.astype(np.float64) * b.astype(np.float64)
        total += float(np.sum(prod))
        scale += float(np.sum(np.abs(prod)))
    return total, scale


def _fail(what: str, mode: str, order: int, chain: str, detail: str) -> AssertionError:
    return AssertionError(
        f"check_grads: {what} mismatch in {mode} mode at order {order}"
        f"{f' (derivative of: {chain})' if chain else ''}: {detail}")


def _check_close(actual: Any, expected: Any, atol: float, rtol: float, what: str, mode: str,
                 order: int, chain: str) -> None:
    a_leaves, a_tree = tree_flatten(actual)
    e_leaves, e_tree = tree_flatten(expected)
    if a_tree != e_tree:
        raise _fail(what, mode, order, chain,
                    f"structures differ: {a_tree} (actual) vs {e_tree} (expected)")
    for k, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape:
            raise _fail(what, mode, order, chain,
                        f"output leaf {k} has shape {a.shape}, expected {e.shape}")
        if e.dtype.kind != "f":
            continue
        if a.dtype != e.dtype:
            raise _fail(what, mode, order, chain,
                        f"output leaf {k} has dtype {a.dtype}, expected {e.dtype}")
        if a.size == 0:
            continue
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        finite = np.isfinite(e64)
        if not np.array_equal(np.isfinite(a64), finite):
            raise _fail(what, mode, order, chain,
                        f"output leaf {k}: non-finite values differ; actual {a} vs expected {e}")
        abs_err = np.abs(a64 - e64)[finite]
        if abs_err.size == 0:
            continue
        rel_err = abs_err / np.maximum(np.abs(e64[finite]), np.finfo(np.float64).tiny)
        bad = abs_err > atol + rtol * np.abs(e64[finite])
        if np.any(bad):
            raise _fail(what, mode, order, chain,
                        f"output leaf {k} (shape {a.shape}, dtype {a.dtype}): max abs error "
                        f"{abs_err.max():.3g}, max rel error {rel_err.max():.3g} "
                        f"(atol={atol:g}, rtol={rtol:g}, {int(bad.sum())} of {bad.size} "
                        f"elements off)\nactual:\n{a}\nexpected:\n{e}")


def _check_scalar(actual: float, expected: float, scale: float, atol: float, rtol: float,
                  what: str, mode: str, order: int, chain: str) -> None:
    err = abs(actual - expected)
    if not err <= atol + rtol * max(abs(expected), scale):
        rel = err / max(abs(expected), np.finfo(np.float64).tiny)
        raise _fail(what, mode, order, chain,
                    f"inner products {actual!r} (actual) vs {expected!r} (expected): max abs "
                    f"error {err:.3g}, max rel error {rel:.3g} (atol={atol:g}, rtol={rtol:g})")


def check_grads(f: Callable, args: Sequence, order: int = 2,
                modes: Sequence[str] = ("fwd", "rev"), atol: float | None = None,
                rtol: float | None = None, eps: float | None = None, seed: int = 0) -> None:
    """Check ``f``'s derivatives at ``args`` against finite differences, up to ``order``.

    ``args`` is a tuple of positional arguments (pytrees allowed).  ``modes``
    picks forward (``"fwd"``, jvp) and/or reverse (``"rev"``, vjp) mode.  The
    defaults of ``atol``, ``rtol`` and ``eps`` depend on the least precise float
    dtype involved.  Raises ``AssertionError`` naming the mode, the order and the
    largest absolute and relative errors.
    """
    if isinstance(modes, str):
        modes = (modes,)
    unknown = set(modes) - {"fwd", "rev"}
    if unknown:
        raise ValueError(f"check_grads: unknown modes {sorted(unknown)}; use 'fwd' and/or 'rev'")
    if not isinstance(args, (tuple, list)):
        raise TypeError("check_grads: args must be a tuple (or list) of positional arguments, "
                        f"got {type(args).__name__}")
    if order < 1:
        raise ValueError(f"check_grads: order must be at least 1, got {order}")
    if eps is not None and not (isinstance(eps, (int, float, np.floating, np.integer))
                                and 0 < eps < np.inf):
        raise ValueError(f"check_grads: eps must be a positive number (the finite-difference "
                         f"step), got {eps!r}")
    flat, treedef = tree_flatten(tuple(args))
    flat = [_prepare(x) for x in flat]
    if not any(np.asarray(x).dtype.kind == "f" for x in flat):
        raise TypeError("check_grads: no floating-point argument to differentiate (dtypes "
                        f"{sorted({str(np.asarray(x).dtype) for x in flat})}); pass float arrays "
                        "(x.astype(float)) for the arguments to check")
    args = tree_unflatten(treedef, flat)
    rng = np.random.default_rng(seed)

    loosest = [default_tolerance(args)]

    def tols(out: Any, a: tuple) -> tuple[float, float, float]:
        # the least precise dtype seen so far: derivatives of a float32 computation
        # stay float32-accurate even where their own inputs are float64
        cur = default_tolerance(a, out)
        if cur[0] > loosest[0][0]:
            loosest[0] = cur
        d_eps, d_atol, d_rtol = loosest[0]
        return (d_eps if eps is None else eps, d_atol if atol is None else atol,
                d_rtol if rtol is None else rtol)

    def check_jvp(fn: Callable, a: tuple, level: int, chain: str) -> None:
        v = _random_like(a, rng)
        out, t_out = jvp(fn, a, v)
        e, at, rt = tols(out, a)
        _check_close(out, fn(*a), at, rt, "primal output of jvp", "fwd", level, chain)
        t_num = numerical_jvp(fn, a, v, e)
        _check_close(t_out, t_num, at, rt, "jvp vs finite differences", "fwd", level, chain)

    def check_vjp(fn: Callable, a: tuple, level: int, chain: str) -> None:
        out, pullback = vjp(fn, *a)
        e, at, rt = tols(out, a)
        _check_close(out, fn(*a), at, rt, "primal output of vjp", "rev", level, chain)
        v = _random_like(a, rng)
        u = _random_like(out, rng)
        ct = pullback(u)
        if tree_flatten(ct)[1] != tree_flatten(a)[1]:
            raise _fail("cotangent structure", "rev", level, chain,
                        f"vjp returned {tree_flatten(ct)[1]}, the inputs are {tree_flatten(a)[1]}")
        for k, (c, x) in enumerate(zip(tree_flatten(ct)[0], tree_flatten(a)[0])):
            c, x = np.asarray(c), np.asarray(x)
            if c.shape != x.shape or (x.dtype.kind == "f" and c.dtype != x.dtype):
                raise _fail("cotangent shape/dtype", "rev", level, chain,
                            f"input leaf {k} has shape {x.shape} and dtype {x.dtype}, its "
                            f"cotangent shape {c.shape} and dtype {c.dtype}")
        t_num = numerical_jvp(fn, a, v, e)
        ip_num, scale = _inner(u, t_num)
        ip_ad, scale_ad = _inner(ct, v)
        _check_scalar(ip_ad, ip_num, max(scale, scale_ad), at, rt,
                      "<vjp(u), v> vs <u, finite differences along v>", "rev", level, chain)
        if "fwd" in modes:
            t_out = jvp(fn, a, v)[1]
            ip_fwd, scale_f = _inner(u, t_out)
            _check_scalar(ip_ad, ip_fwd, max(scale_f, scale_ad), at, rt,
                          "jvp/vjp consistency <vjp(u), v> vs <u, jvp(v)>", "rev", level, chain)

    def recurse(fn: Callable, a: tuple, level: int, chain: str) -> None:
        if "fwd" in modes:
            check_jvp(fn, a, level, chain)
            if level < order:
                v = _random_like(a, rng)

                def fn_jvp(primals: tuple, tangents: tuple) -> Any:
                    return jvp(fn, tuple(primals), tuple(tangents))
                recurse(fn_jvp, (a, v), level + 1, f"JVP of {chain}" if chain else "JVP")
        if "rev" in modes:
            check_vjp(fn, a, level, chain)
            if level < order:
                def fn_vjp(*xs: Any) -> Any:
                    out, pullback = vjp(fn, *xs)
                    return pullback(out)
                recurse(fn_vjp, a, level + 1, f"VJP of {chain}" if chain else "VJP")

    recurse(f, tuple(args), 1, "")
