"""Random-program fuzzing: random compositions of primitives under random stacks of
transformations, checked against an independent NumPy reference.

A *program* is a short list of operations drawn by hypothesis (elementwise ops with
broadcasting, reductions over random axes, reshape/transpose/broadcast, matmul, indexing
and ``.at[]`` updates, ``where``, concatenate; float32 or float64), each reading earlier
values.  It is run two ways:

- with ``funcgrad.numpy`` (so it traces under every transformation), and
- by a plain NumPy interpreter in float64, the *reference*, which also records how close
  the inputs of every non-smooth operation (``maximum``, ``where``, ``abs``, ``max``) are
  to a kink, so that examples where finite differences would straddle one are rejected.

A random *stack* of transformations (``jit``, ``make_jaxpr`` + ``eval_jaxpr``, ``vmap``,
``grad``, ``vjp``, ``jvp``, ``jacfwd``, ``jacrev``; depth 1 to 3) is applied to the
funcgrad version, and the matching stack of references to the NumPy one: ``jit`` ->
the same function, ``vmap`` -> a Python loop over the examples, derivatives -> central
finite differences (fourth order, in float64).  Results must agree in shape, value and
dtype (float32 programs give float32 results), and be plain NumPy arrays.  A second test
runs ``check_grads`` (orders 1 and 2, both modes) on the smooth programs.

Failing examples that hypothesis shrank are kept as plain tests in ``tests/regressions/``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Tracer
from funcgrad.test_util import check_grads

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

MAX_SIZE = 12          # elements per intermediate value: keeps nested finite differences cheap


# ------------------------------------------------------------- the two backends ---

class Kinks:
    """Collects, during a reference evaluation, how safe the run is for finite differences."""

    def __init__(self) -> None:
        self.margin = np.inf        # smallest relative distance of a non-smooth op to its kink
        self.magnitude = 0.0        # largest intermediate magnitude

    def gap(self, a: Any, b: Any) -> None:
        """Record the distance between ``a`` and ``b`` (a kink where they are equal).

        Exactly equal values are copies of one value (broadcasting), which move together
        under perturbation: no kink is crossed, so they are ignored.
        """
        a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
        d = np.abs(a - b)[a != b]
        if d.size:
            scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b))[a != b])
            self.margin = min(self.margin, float(np.min(d / scale)))

    def value(self, x: Any) -> Any:
        if np.size(x):
            self.magnitude = max(self.magnitude, float(np.max(np.abs(x))))
        return x


class NumpyBackend:
    """The reference: plain NumPy in float64, recording kink margins."""

    def __init__(self) -> None:
        self.kinks = Kinks()

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    # non-smooth operations record their margins
    def abs(self, x):  # noqa: A003
        self.kinks.gap(x, 0.0)
        return np.abs(x)

    def maximum(self, a, b):
        self.kinks.gap(a, b)
        return np.maximum(a, b)

    def minimum(self, a, b):
        self.kinks.gap(a, b)
        return np.minimum(a, b)

    def where_gt(self, a, b, x, y):
        self.kinks.gap(a, b)
        return np.where(a > b, x, y)

    def max(self, x, axis=None, keepdims=False):  # noqa: A003
        m = np.max(x, axis=axis, keepdims=True)
        below = np.where(x < m, x, -np.inf)
        second = np.max(below, axis=axis, keepdims=True)
        ok = np.isfinite(second)
        if np.any(ok):
            self.kinks.gap(np.broadcast_to(m, ok.shape)[ok], second[ok])
        return np.max(x, axis=axis, keepdims=keepdims)

    def positive_index(self, v):
        self.kinks.gap(v, 0.0)
        return (np.asarray(v) > 0).astype(np.int64)

    def argmax(self, v, axis):
        self.max(v, axis=axis)               # near-ties are kinks too
        return np.argmax(v, axis=axis)

    @staticmethod
    def logsumexp(x, axis=None, keepdims=False):
        m = np.max(x, axis=axis, keepdims=True)
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    @staticmethod
    def getitem(x, idx):
        return np.asarray(x)[idx]

    @staticmethod
    def at(x, idx, mode, v):
        y = np.array(x, dtype=np.result_type(x, v), copy=True)
        if mode == "set":
            y[idx] = v
        elif mode == "add":
            np.add.at(y, idx, v)
        else:
            np.multiply.at(y, idx, v)
        return y


class FuncgradBackend:
    """The program under test: ``funcgrad.numpy``, traceable by every transformation."""

    def __getattr__(self, name: str) -> Any:
        return getattr(fnp, name)

    @staticmethod
    def where_gt(a, b, x, y):
        return fnp.where(a > b, x, y)

    @staticmethod
    def positive_index(v):
        return fnp.astype(v > 0, np.int64)

    @staticmethod
    def sigmoid(x):
        return fg.nn.sigmoid(x)

    @staticmethod
    def getitem(x, idx):
        return x[idx] if isinstance(x, Tracer) else fnp.at(x)[idx].get()

    @staticmethod
    def at(x, idx, mode, v):
        ref = fnp.at(x)[idx]
        return {"set": ref.set, "add": ref.add, "mul": ref.multiply}[mode](v)


FG = FuncgradBackend()


# ---------------------------------------------------------------- operations ---
# Every operation is ``fn(m, *operands, **params)`` with ``m`` a backend.  Domains are kept
# safe by construction (log of 1 + x^2, exp of tanh, ...), so any real inputs are valid.

UNARY: dict[str, Callable] = {
    "sin": lambda m, x: m.sin(x),
    "cos": lambda m, x: m.cos(x),
    "tanh": lambda m, x: m.tanh(x),
    "arctan": lambda m, x: m.arctan(x),
    "exp": lambda m, x: m.exp(m.tanh(x)),
    "log": lambda m, x: m.log(1.0 + x * x),
    "log1p": lambda m, x: m.log1p(x * x),
    "expm1": lambda m, x: m.expm1(m.sin(x)),
    "sqrt": lambda m, x: m.sqrt(x * x + 0.5),
    "sinh": lambda m, x: m.sinh(m.tanh(x)),
    "cosh": lambda m, x: m.cosh(m.tanh(x)),
    "square": lambda m, x: m.square(x),
    "neg": lambda m, x: -x,
    "affine": lambda m, x: x * 0.5 + 1.0,          # Python scalars: weak types keep float32
    "cube": lambda m, x: x ** 3,
    "sigmoid": lambda m, x: m.sigmoid(x),
    "abs": lambda m, x: m.abs(x),                   # kink at 0
}
NONSMOOTH = {"abs", "maximum", "minimum", "where", "max"}

BINARY: dict[str, Callable] = {
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / (1.0 + b * b),
    "pow": lambda m, a, b: m.power(1.0 + a * a, 0.5 * m.tanh(b)),
    "logaddexp": lambda m, a, b: m.logaddexp(a, b),
    "maximum": lambda m, a, b: m.maximum(a, b),
    "minimum": lambda m, a, b: m.minimum(a, b),
    "where": lambda m, a, b: m.where_gt(a, b, a * b, a + b),
    "where-truthy": lambda m, a, b: m.where(a, a * b, b),     # a float condition (a != 0)
}

REDUCTIONS: dict[str, Callable] = {
    "sum": lambda m, x, axis, keepdims: m.sum(x, axis=axis, keepdims=keepdims),
    "mean": lambda m, x, axis, keepdims: m.mean(x, axis=axis, keepdims=keepdims),
    "max": lambda m, x, axis, keepdims: m.max(x, axis=axis, keepdims=keepdims),
    "prod": lambda m, x, axis, keepdims: m.prod(x, axis=axis, keepdims=keepdims),
    "logsumexp": lambda m, x, axis, keepdims: m.logsumexp(x, axis=axis, keepdims=keepdims),
    "var": lambda m, x, axis, keepdims: m.var(x, axis=axis, keepdims=keepdims),
}


@dataclass
class Op:
    """One step: ``values.append(fn(m, *[values[i] for i in args], *consts))``."""

    name: str
    args: tuple
    fn: Callable
    consts: tuple = ()
    smooth: bool = True

    def __repr__(self) -> str:
        return f"{self.name}{self.args}"


@dataclass
class Program:
    in_shapes: list
    dtype: Any
    ops: list = field(default_factory=list)

    @property
    def smooth(self) -> bool:
        return all(op.smooth for op in self.ops)

    def run(self, m: Any, xs: list) -> Any:
        values = list(xs)
        for op in self.ops:
            out = op.fn(m, *[values[i] for i in op.args], *op.consts)
            if isinstance(m, NumpyBackend):
                m.kinks.value(out)
            values.append(out)
        return values[-1]

    def __repr__(self) -> str:
        return f"Program({np.dtype(self.dtype).name}, in={self.in_shapes}, ops={self.ops})"


def _size(shape: tuple) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _eval_shape(fn: Callable, shapes: list, consts: tuple = ()) -> tuple | None:
    """The result shape of ``fn`` on zeros of ``shapes`` (None if NumPy refuses)."""
    try:
        with np.errstate(all="ignore"):
            out = fn(NumpyBackend(), *[np.zeros(s) for s in shapes], *consts)
    except (ValueError, IndexError, TypeError):
        return None
    return np.shape(out)


@st.composite
def programs(draw: Any, smooth_only: bool = False, max_ops: int = 6) -> Program:
    """A random program over 1-2 small float inputs."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n_in = draw(st.integers(1, 2))
    shape_st = st.sampled_from([1, 2, 0]).flatmap(    # vectors first: the simplest interesting case
        lambda r: st.lists(st.integers(1, 3), min_size=r, max_size=r).map(tuple))
    prog = Program([draw(shape_st) for _ in range(n_in)], dtype)
    shapes = list(prog.in_shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))

    def const(shape: tuple) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    def pick() -> int:     # the latest value half of the time: long dependency chains
        k = draw(st.one_of(st.just(0), st.integers(0, len(shapes) - 1)))
        return len(shapes) - 1 - k

    kinds = ["unary", "binary", "reduce", "shape", "binary", "matmul", "index", "update", "concat",
             "traced-index", "method", "einsum"]
    for _ in range(draw(st.integers(2, max_ops))):
        kind = draw(st.sampled_from(kinds))
        i = pick()
        s = shapes[i]
        op: Op | None = None
        if kind == "unary":
            names = [n for n in UNARY if not (smooth_only and n in NONSMOOTH)]
            name = draw(st.sampled_from(names))
            op = Op(name, (i,), UNARY[name], smooth=name not in NONSMOOTH)
        elif kind == "binary":
            names = [n for n in BINARY if not (smooth_only and n in NONSMOOTH)]
            name = draw(st.sampled_from(names))
            if draw(st.booleans()):
                j = pick()
                op = Op(name, (i, j), BINARY[name], smooth=name not in NONSMOOTH)
            else:            # against a constant of a broadcast-compatible shape
                cs = s[draw(st.integers(0, len(s))):]
                if draw(st.booleans()) and cs:
                    cs = (1,) + cs[1:]
                c = const(cs)
                swap = draw(st.booleans())
                fn = BINARY[name]
                op = Op(f"{name}-const", (i,), (lambda m, x, c, f=fn: f(m, c, x)) if swap else
                        (lambda m, x, c, f=fn: f(m, x, c)), (c,), smooth=name not in NONSMOOTH)
        elif kind == "reduce":
            names = [n for n in REDUCTIONS if not (smooth_only and n in NONSMOOTH)]
            name = draw(st.sampled_from(names))
            if s:
                axes = draw(st.lists(st.integers(-len(s), len(s) - 1), min_size=1, max_size=len(s),
                                     unique_by=lambda a: a % len(s)))
                axis: Any = draw(st.sampled_from([None, tuple(axes), axes[0]]))
            else:
                axis = None
            keepdims = draw(st.booleans())
            op = Op(f"{name}(axis={axis}, keepdims={keepdims})", (i,), REDUCTIONS[name],
                    (axis, keepdims), smooth=name not in NONSMOOTH)
        elif kind == "shape":
            which = draw(st.sampled_from(["reshape", "transpose", "broadcast", "expand", "ravel",
                                          "swapaxes"]))
            if which == "reshape":
                n = _size(s)
                factors = [d for d in range(1, n + 1) if n % d == 0]
                a = draw(st.sampled_from(factors))
                new = draw(st.sampled_from([(a, n // a), (n // a, a), (a, -1), (n,), (1, n)]))
                op = Op(f"reshape{new}", (i,), lambda m, x, shp: m.reshape(x, shp), (new,))
            elif which == "transpose" and len(s) >= 2:
                perm = tuple(draw(st.permutations(range(len(s)))))
                op = Op(f"transpose{perm}", (i,), lambda m, x, p: m.transpose(x, p), (perm,))
            elif which == "swapaxes" and len(s) >= 2:
                op = Op("swapaxes", (i,), lambda m, x: m.swapaxes(x, 0, -1))
            elif which == "broadcast" and _size(s) * 2 <= MAX_SIZE:
                op = Op("broadcast_to", (i,), lambda m, x, shp: m.broadcast_to(x, shp), ((2,) + s,))
            elif which == "expand":
                ax = draw(st.integers(-len(s) - 1, len(s)))
                op = Op(f"expand_dims({ax})", (i,), lambda m, x, a: m.expand_dims(x, a), (ax,))
            else:
                op = Op("ravel", (i,), lambda m, x: m.ravel(x))
        elif kind == "matmul" and s:
            j = pick()
            t = shapes[j]
            if t and (t[-2] if len(t) >= 2 else t[0]) == s[-1] and draw(st.booleans()):
                op = Op("matmul", (i, j), lambda m, a, b: m.matmul(a, b))
            else:
                k = draw(st.integers(1, 3))
                w = const((s[-1], k) if draw(st.booleans()) else (s[-1],))
                if draw(st.booleans()):
                    op = Op(f"matmul-const{w.shape}", (i,), lambda m, a, w: m.matmul(a, w), (w,))
                else:       # the constant on the left: x.T-like contraction over the first axis
                    w2 = const((k, s[0]))
                    op = Op(f"const-matmul{w2.shape}", (i,), lambda m, a, w: m.matmul(w, a), (w2,))
        elif kind == "index" and s:
            n0 = s[0]
            idx = draw(st.sampled_from([
                draw(st.integers(-n0, n0 - 1)),
                slice(draw(st.integers(0, n0 - 1)), None, draw(st.sampled_from([1, 2, -1]))),
                np.asarray(draw(st.lists(st.integers(-n0, n0 - 1), min_size=1, max_size=4))),
                (Ellipsis, draw(st.integers(0, s[-1] - 1))),
                (None, slice(None)),
                np.asarray([draw(st.booleans()) for _ in range(n0)]) if n0 > 1 else 0,
            ]))
            if isinstance(idx, np.ndarray) and idx.dtype == bool and not idx.any():
                idx = 0
            op = Op(f"getitem[{idx!r}]", (i,), lambda m, x, ix: m.getitem(x, ix), (idx,))
        elif kind == "update" and s:
            n0 = s[0]
            mode = draw(st.sampled_from(["set", "add", "mul"]))
            if mode == "mul":    # derivative of repeated multiply updates is not supported
                idx_list = draw(st.lists(st.integers(0, n0 - 1), min_size=1, max_size=n0, unique=True))
            else:
                idx_list = draw(st.lists(st.integers(-n0, n0 - 1), min_size=1, max_size=4))
            idx = draw(st.sampled_from([np.asarray(idx_list), slice(0, None, 2), 0]))
            region = _eval_shape(lambda m, x: m.getitem(x, idx), [s])
            j = pick()
            if region is not None and shapes[j] and _broadcasts_to(shapes[j], region) \
                    and draw(st.booleans()):
                op = Op(f"at[{idx!r}].{mode}(v{j})", (i, j),
                        lambda m, x, v, ix, md: m.at(x, ix, md, v), (idx, mode))
            else:
                op = Op(f"at[{idx!r}].{mode}(2.5)", (i,),
                        lambda m, x, ix, md: m.at(x, ix, md, 2.5 if md != "mul" else -1.5), (idx, mode))
        elif kind == "traced-index" and s:
            # index arrays computed from values: traced (and batched under vmap), kinks recorded
            j = pick()
            t = shapes[j]
            how = draw(st.sampled_from(["sign", "argmax", "update"]))
            if how == "argmax" and t and t[-1] <= s[0]:
                op = Op("x[argmax(v, -1)]", (i, j), lambda m, x, v: m.getitem(x, m.argmax(v, -1)),
                        smooth=False)
            elif how == "update" and s[0] >= 2 and _broadcasts_to(s[1:], t + s[1:]):
                op = Op("x.at[v > 0].add(x[0])", (i, j),
                        lambda m, x, v: m.at(x, m.positive_index(v), "add", x[0]), smooth=False)
            elif s[0] >= 2:
                op = Op("x[v > 0]", (i, j), lambda m, x, v: m.getitem(x, m.positive_index(v)),
                        smooth=False)
        elif kind == "method" and s:
            which = draw(st.sampled_from(["T", "sum", "mean", "reshape", "max", "squeeze"]))
            if which == "T":
                op = Op(".T", (i,), lambda m, x: x.T)
            elif which == "sum":
                op = Op(".sum(0)", (i,), lambda m, x: x.sum(axis=0))
            elif which == "mean":
                op = Op(".mean(-1, keepdims)", (i,), lambda m, x: x.mean(axis=-1, keepdims=True))
            elif which == "reshape":
                op = Op(".reshape(-1, 1)", (i,), lambda m, x: x.reshape(-1, 1))
            elif which == "max":
                op = Op(".max()", (i,), lambda m, x: m.max(x) + 0 * x.max(), smooth=False)
            elif 1 in s:
                op = Op(".squeeze()", (i,), lambda m, x: m.squeeze(x))
        elif kind == "einsum" and s:
            j = pick()
            t = shapes[j]
            if len(s) == 2 and s[0] == s[1] and draw(st.booleans()):
                op = Op("einsum(ii->i)", (i,), lambda m, x: m.einsum("ii->i", x))
            elif len(s) == 2 and len(t) == 2 and s[1] == t[0]:
                op = Op("einsum(ij,jk->ki)", (i, j), lambda m, a, b: m.einsum("ij,jk->ki", a, b))
            elif len(s) == 1 and len(t) == 1:
                if s == t and draw(st.booleans()):
                    op = Op("dot", (i, j), lambda m, a, b: m.dot(a, b))
                else:
                    op = Op("outer", (i, j), lambda m, a, b: m.outer(a, b))
            elif len(s) >= 1:
                c = const((s[-1], 2))
                op = Op("tensordot-const", (i,), lambda m, a, c: m.tensordot(a, c, axes=1), (c,))
        elif kind == "concat" and s:
            j = pick()
            if shapes[j] == s and 2 * _size(s) <= MAX_SIZE:
                ax = draw(st.integers(-len(s), len(s) - 1))
                if draw(st.booleans()):
                    op = Op(f"concatenate(axis={ax})", (i, j),
                            lambda m, a, b, ax: m.concatenate([a, b], axis=ax), (ax,))
                else:
                    op = Op(f"stack(axis={ax})", (i, j), lambda m, a, b, ax: m.stack([a, b], axis=ax),
                            (ax,))
        if op is None:
            continue
        out = _eval_shape(op.fn, [shapes[k] for k in op.args], op.consts)
        if out is None or _size(out) > MAX_SIZE or _size(out) == 0:
            continue
        prog.ops.append(op)
        shapes.append(out)
    assume(prog.ops)
    return prog


# ---------------------------------------------------------- stacks of transformations ---

def _fd(f: Callable[[list], np.ndarray], xs: list, h: float = 1e-3) -> np.ndarray:
    """Jacobian of ``f`` at ``xs`` by a fourth-order central difference: (out..., n_total)."""
    flat = np.concatenate([x.ravel() for x in xs]) if xs else np.zeros(0)
    sizes = [x.size for x in xs]

    def call(v: np.ndarray) -> np.ndarray:
        parts, k = [], 0
        for x, n in zip(xs, sizes):
            parts.append(v[k:k + n].reshape(x.shape))
            k += n
        return np.asarray(f(parts), dtype=np.float64)

    base = call(flat)
    jac = np.zeros(base.shape + (flat.size,))
    for k in range(flat.size):
        e = np.zeros_like(flat)
        e[k] = h
        jac[..., k] = (call(flat - 2 * e) - 8 * call(flat - e) + 8 * call(flat + e)
                       - call(flat + 2 * e)) / (12 * h)
    return jac


def _concat_ravel(m: Any, parts: Any) -> Any:
    parts = list(parts)
    return m.concatenate([m.ravel(p) for p in parts]) if len(parts) > 1 else m.ravel(parts[0])


@dataclass
class Stage:
    """One transformation applied to F (funcgrad) and to its reference refF (NumPy)."""

    kind: str
    params: dict

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.params.items() if not isinstance(v, (np.ndarray, list))}
        return f"{self.kind}({shown})" if shown else self.kind


DERIVATIVES = ("grad", "vjp", "jvp", "jacfwd", "jacrev")
STAGE_KINDS = ("jit", "make_jaxpr", "vmap") + DERIVATIVES


@st.composite
def stacks(draw: Any, depth: tuple[int, int]) -> list:
    """Kinds of a stack of transformations, innermost first (at most two derivatives)."""
    n = draw(st.integers(*depth))
    kinds = []
    for _ in range(n):
        allowed = STAGE_KINDS if sum(k in DERIVATIVES for k in kinds) < 2 else ("jit", "make_jaxpr", "vmap")
        kinds.append(draw(st.sampled_from(allowed)))
    return kinds


def build(draw: Any, kind: str, F: Callable, refF: Callable, in_shapes: list, out_shape: tuple,
          dtype: Any, rng: np.random.Generator) -> tuple:
    """Apply one transformation: (G, refG, G's input shapes, G's output shape, stage)."""
    n_in = len(in_shapes)
    if kind == "jit":
        return fg.jit(F), refF, in_shapes, out_shape, Stage(kind, {})
    if kind == "make_jaxpr":
        def G(*xs):
            return fg.eval_jaxpr(fg.make_jaxpr(F)(*xs), *xs)
        return G, refF, in_shapes, out_shape, Stage(kind, {})
    if kind == "vmap":
        B = draw(st.sampled_from([2, 1, 3, 0]))       # 0: an empty batch
        axes = [draw(st.sampled_from([None] + list(range(-len(s) - 1, len(s) + 1)))) for s in in_shapes]
        out_axis = draw(st.integers(-len(out_shape) - 1, len(out_shape)))
        new_shapes = []
        for s, ax in zip(in_shapes, axes):
            if ax is None:
                new_shapes.append(s)
            else:
                a = ax % (len(s) + 1)
                new_shapes.append(s[:a] + (B,) + s[a:])
        size = B if all(a is None for a in axes) else None
        G = fg.vmap(F, in_axes=tuple(axes), out_axes=out_axis, axis_size=size)

        oa = out_axis % (len(out_shape) + 1)

        def refG(xs):
            outs = [refF([x if ax is None else np.take(x, b, axis=ax) for x, ax in zip(xs, axes)])
                    for b in range(B)]
            if not outs:          # an empty batch
                return np.zeros(out_shape[:oa] + (0,) + out_shape[oa:])
            return np.stack(outs, axis=out_axis)
        return G, refG, new_shapes, out_shape[:oa] + (B,) + out_shape[oa:], \
            Stage(kind, {"B": B, "in_axes": tuple(axes), "out_axes": out_axis})
    total = sum(_size(s) for s in in_shapes)
    argnums = tuple(range(n_in))
    if kind in ("grad", "vjp"):
        w = rng.standard_normal(out_shape).astype(dtype)
        if kind == "grad":
            def G(*xs):
                return _concat_ravel(fnp, fg.grad(lambda *a: fnp.sum(F(*a) * w), argnums=argnums)(*xs))
        else:
            def G(*xs):
                return _concat_ravel(fnp, fg.vjp(F, *xs)[1](w))

        def refG(xs):
            return np.tensordot(np.asarray(w, np.float64), _fd(refF, xs), axes=len(out_shape))
        return G, refG, in_shapes, (total,), Stage(kind, {})
    if kind == "jvp":
        ts = [rng.standard_normal(s).astype(dtype) for s in in_shapes]

        def G(*xs):
            p, t = fg.jvp(F, tuple(xs), tuple(ts))
            return fnp.concatenate([fnp.ravel(p), fnp.ravel(t)])

        def refG(xs):
            tflat = np.concatenate([np.ravel(t) for t in ts]).astype(np.float64)
            return np.concatenate([np.ravel(refF(xs)), np.ravel(_fd(refF, xs) @ tflat)])
        return G, refG, in_shapes, (2 * _size(out_shape),), Stage(kind, {})
    # jacfwd / jacrev: the Jacobian per input, raveled and concatenated
    jac = getattr(fg, kind)(F, argnums=argnums)

    def G(*xs):
        return _concat_ravel(fnp, jac(*xs))

    def refG(xs):
        J = _fd(refF, xs)
        parts, k = [], 0
        for s in in_shapes:
            n = _size(s)
            parts.append(np.ravel(J[..., k:k + n]))
            k += n
        return np.concatenate(parts)
    return G, refG, in_shapes, (_size(out_shape) * total,), Stage(kind, {})


def check_stack(data: Any, prog: Program, kinds: list) -> None:
    """Apply ``kinds`` to ``prog`` (innermost first) and compare with the reference stack."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
    dtype = np.dtype(prog.dtype)
    backends: list[NumpyBackend] = []

    def F(*xs):
        return prog.run(FG, list(xs))

    def refF(xs):
        m = NumpyBackend()
        backends.append(m)
        return np.asarray(prog.run(m, [np.asarray(x, np.float64) for x in xs]), np.float64)

    in_shapes = list(prog.in_shapes)
    out_shape = _eval_shape(lambda m, *xs: prog.run(m, list(xs)), in_shapes)
    stages = []
    G, refG = F, refF
    for kind in kinds:
        G, refG, in_shapes, out_shape, stage = build(data.draw, kind, G, refG, in_shapes, out_shape,
                                                     dtype, rng)
        stages.append(stage)
    # keep nested finite differences affordable
    n_total = sum(_size(s) for s in in_shapes)
    n_deriv = sum(k in DERIVATIVES for k in kinds)
    assume(n_total ** max(n_deriv, 1) <= 600)
    xs = [rng.standard_normal(s).astype(dtype) for s in in_shapes]
    with np.errstate(all="ignore"):
        want = refG([x.astype(np.float64) for x in xs])
    margin = min((b.kinks.margin for b in backends), default=np.inf)
    magnitude = max((b.kinks.magnitude for b in backends), default=0.0)
    assume(magnitude < 1e3)
    assume(margin > (2e-2 if n_deriv else 1e-4))    # no kink within reach of the differences
    got = G(*xs)
    what = f"{prog}\nstack (innermost first): {stages}"
    assert not isinstance(got, Tracer), what
    assert isinstance(got, (np.ndarray, np.generic)), f"{type(got).__name__}: {what}"
    assert got.shape == want.shape == tuple(out_shape), f"{got.shape} vs {want.shape}: {what}"
    assert got.dtype == dtype, f"{got.dtype} result for a {dtype} program: {what}"
    tol = (5e-3 if dtype == np.float32 else 1e-6) * (10 if n_deriv >= 2 else 1)
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol * scale,
                               err_msg=what)


# four times the profile's example count (100 in CI): each example takes about 20 ms
FUZZ = settings(max_examples=4 * settings.default.max_examples, deadline=None,
                suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@FUZZ
@given(prog=programs(), kinds=stacks((1, 1)), data=st.data())
def test_one_transformation_matches_reference(prog: Program, kinds: list, data: Any) -> None:
    check_stack(data, prog, kinds)


@FUZZ
@given(prog=programs(max_ops=5), kinds=stacks((2, 2)), data=st.data())
def test_two_transformations_match_reference(prog: Program, kinds: list, data: Any) -> None:
    check_stack(data, prog, kinds)


@FUZZ
@given(prog=programs(max_ops=4), kinds=stacks((3, 3)), data=st.data())
def test_three_transformations_match_reference(prog: Program, kinds: list, data: Any) -> None:
    check_stack(data, prog, kinds)


@FUZZ
@given(prog=programs(), data=st.data())
def test_every_pair_order_of_derivative_and_batching(prog: Program, data: Any) -> None:
    """The orders that mix tangents and batch axes most: each one is drawn in turn."""
    pairs = list(itertools.product(("vmap", "jit"), ("grad", "jvp", "jacrev"))) + \
        list(itertools.product(("grad", "jvp", "jacrev"), ("vmap", "jit")))
    inner, outer = data.draw(st.sampled_from(pairs), label="pair")
    check_stack(data, prog, [inner, outer])


@FUZZ
@given(prog=programs(smooth_only=True, max_ops=5), data=st.data())
def test_check_grads_on_random_smooth_programs(prog: Program, data: Any) -> None:
    """Forward and reverse mode to second order against finite differences (check_grads)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
    xs = [rng.standard_normal(s).astype(prog.dtype) for s in prog.in_shapes]
    m = NumpyBackend()
    prog.run(m, [x.astype(np.float64) for x in xs])
    assume(m.kinks.magnitude < 1e2)
    order = data.draw(st.integers(1, 2), label="order")
    check_grads(lambda *a: prog.run(FG, list(a)), tuple(xs), order=order)


@settings(deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
@pytest.mark.parametrize("batch", [3, 4096])
@given(prog=programs(max_ops=8), data=st.data())
def test_arrays_under_jit_match_eager(batch: int, prog: Program, data: Any) -> None:
    """Batches of 3 and 4096 examples: jit's in-place buffer reuse (any size) and early
    frees of big intermediates.

    ``jit(vmap(f))`` and ``jit(vmap(grad(f)))`` equal their eager versions, leave their
    arguments untouched, and give fresh arrays on every call (results may be views of the
    arguments, as NumPy's ``reshape`` gives, but never buffers a later call writes to).
    """
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
    xs = [rng.standard_normal((batch,) + s).astype(prog.dtype) for s in prog.in_shapes]
    saved = [x.copy() for x in xs]
    argnums = tuple(range(len(xs)))

    def F(*a):
        return prog.run(FG, list(a))

    for name, G in [("vmap", fg.vmap(F)),
                    ("vmap-of-grad", fg.vmap(fg.grad(lambda *a: fnp.sum(F(*a)), argnums=argnums)))]:
        with np.errstate(all="ignore"):
            want = fg.tree_util.tree_leaves(G(*xs))
            GJ = fg.jit(G)
            got = fg.tree_util.tree_leaves(GJ(*xs))
            for g in got:
                if not any(np.shares_memory(g, x) for x in xs):
                    g[...] = np.nan      # callers own their results: a later call is unaffected
            again = fg.tree_util.tree_leaves(GJ(*xs))
        for w, a in zip(want, again):
            assert a.dtype == w.dtype and a.shape == w.shape, f"{name}: {prog}"
            tol = 1e-5 if w.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(a, w, rtol=tol, atol=tol, err_msg=f"{name}: {prog}")
        for x, s in zip(xs, saved):
            np.testing.assert_array_equal(x, s, err_msg=f"{name} wrote into its argument: {prog}")
