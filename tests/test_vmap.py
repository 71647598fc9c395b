"""vmap: batching rules of every primitive, axis specs, composition, graph size, bad input.

The oracle throughout is the definition of vmap: run the function on each
example separately with plain NumPy (the eager path) and ``np.stack`` the
results along the output axis.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict, namedtuple
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.primitives import registry
from funcgrad.tree_util import (
    register_dataclass,
    register_pytree_node,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
)

# ----------------------------------------------------------------- oracles ---


def stacked(f: Callable, args: tuple, in_axes: list, out_axes: Any = 0, size: int | None = None) -> Any:
    """``np.stack`` of ``f`` over the examples: what ``vmap(f, in_axes, out_axes)`` must return.

    ``in_axes`` has one int/None per positional argument (applied to all of its
    leaves); ``out_axes`` one int/None for every output leaf.
    """
    if size is None:
        size = next(np.shape(leaf)[ax] for a, ax in zip(args, in_axes) if ax is not None
                    for leaf in tree_leaves(a))
    if size == 0:   # one example of zeros gives the result shapes; then an empty batch axis
        def one_zero(v, ax):
            s = list(np.shape(v))
            s[ax] = 1
            return np.zeros(s, np.asarray(v).dtype)
        one = [a if ax is None else tree_map(lambda v, ax=ax: one_zero(v, ax), a)
               for a, ax in zip(args, in_axes)]
        with np.errstate(all="ignore"):
            full = stacked(f, tuple(one), in_axes, out_axes, 1)
        return tree_map(lambda v: v if out_axes is None else np.take(v, [], axis=out_axes), full)
    outs = []
    for i in range(size):
        ex = [a if ax is None else tree_map(lambda v, ax=ax: np.take(v, i, axis=ax), a)
              for a, ax in zip(args, in_axes)]
        outs.append(f(*ex))
    flat0, tree = tree_flatten(outs[0])
    res = []
    for k in range(len(flat0)):
        vals = [np.asarray(tree_flatten(o)[0][k]) for o in outs]
        res.append(vals[0] if out_axes is None else np.stack(vals, axis=out_axes))
    return tree_unflatten(tree, res)


def assert_same(actual: Any, expected: Any, rtol: float | None = None) -> None:
    """Same pytree structure; every leaf a NumPy value of the same shape, dtype and values."""
    assert tree_structure(actual) == tree_structure(expected), (actual, expected)
    for a, e in zip(tree_leaves(actual), tree_leaves(expected)):
        assert isinstance(a, (np.ndarray, np.generic)), f"output leaf is a {type(a).__name__}"
        e = np.asarray(e)
        assert np.shape(a) == e.shape, f"shape {np.shape(a)} != expected {e.shape}"
        assert np.asarray(a).dtype == e.dtype, f"dtype {np.asarray(a).dtype} != expected {e.dtype}"
        if e.dtype.kind in "fc":
            tol = rtol if rtol is not None else (2e-5 if e.dtype == np.float32 else 1e-10)
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(a, e)


def eqn_count(fun: Callable, *args: Any) -> int:
    return len(fg.make_jaxpr(fun)(*args).eqns)


def primitives_in(fun: Callable, *args: Any) -> set:
    return {e.primitive.name for e in fg.make_jaxpr(fun)(*args).eqns}


# ------------------------------------------------- per-example value makers ---
# A case describes one call: the function and, per operand, its per-example shape
# and a generator ``gen(rng, shape)`` of one example's values.

def floats(lo: float = -2.0, hi: float = 2.0, dtype: Any = np.float64) -> Callable:
    return lambda rng, s: rng.uniform(lo, hi, s).astype(dtype)


def bools(rng: np.random.Generator, s: tuple) -> np.ndarray:
    return rng.random(s) < 0.5


def with_nonfinite(rng: np.random.Generator, s: tuple) -> np.ndarray:
    return rng.choice(np.array([0.5, -1.0, np.inf, -np.inf, np.nan]), size=s)


def ints_below(n: int) -> Callable:
    """Index values valid for an axis of length ``n``, negative ones included."""
    return lambda rng, s: rng.integers(-n, n, s)


def unique_below(n: int) -> Callable:
    """Distinct positions (mod ``n``) for an axis of length ``n``: ``.set`` with no duplicates."""
    def gen(rng, s):
        k = int(np.prod(s, dtype=np.int64))
        v = rng.permutation(n)[:k]
        v = np.where(rng.random(k) < 0.5, v - n, v)
        return v.reshape(s)
    return gen


class Case:
    def __init__(self, f: Callable, shapes: list, gens: list, prim: str | None = None):
        self.f, self.shapes, self.gens, self.prim = f, [tuple(s) for s in shapes], gens, prim

    def __repr__(self) -> str:
        return f"Case({getattr(self.f, '__name__', self.f)}, shapes={self.shapes})"


dims = st.integers(1, 3)
float_dtypes = st.sampled_from([np.float64, np.float32])


@st.composite
def bshapes(draw: Any, n: int, max_rank: int = 3, min_rank: int = 0) -> list:
    """``n`` mutually broadcastable shapes of possibly different ranks."""
    base = draw(st.lists(dims, min_size=min_rank, max_size=max_rank))
    out = []
    for _ in range(n):
        r = draw(st.integers(min_rank, len(base)))
        out.append(tuple(1 if draw(st.integers(0, 3)) == 0 else d for d in base[len(base) - r:]))
    return out


# ------------------------------------------------------ elementwise cases ---
UNARY: dict[str, tuple[Callable, Callable]] = {
    "neg": (fnp.negative, floats()), "exp": (fnp.exp, floats()), "log": (fnp.log, floats(0.1, 3)),
    "log1p": (fnp.log1p, floats(-0.5, 2)), "expm1": (fnp.expm1, floats()),
    "sqrt": (fnp.sqrt, floats(0.1, 3)), "sin": (fnp.sin, floats()), "cos": (fnp.cos, floats()),
    "tan": (fnp.tan, floats(-1, 1)), "tanh": (fnp.tanh, floats()), "sinh": (fnp.sinh, floats()),
    "cosh": (fnp.cosh, floats()), "arctan": (fnp.arctan, floats()), "abs": (fnp.abs, floats()),
    "sign": (fnp.sign, floats()), "floor": (fnp.floor, floats()),
    "ceil": (fnp.ceil, floats()), "trunc": (fnp.trunc, floats()), "rint": (fnp.rint, floats()),
    "step": (registry["step"].bind, floats()),
    "not": (fnp.logical_not, bools), "isfinite": (fnp.isfinite, with_nonfinite),
    "invert": (fnp.invert, ints_below(16)),
    "stop_gradient": (fg.stop_gradient, floats()),
}
BINARY: dict[str, tuple[Callable, Callable]] = {
    "add": (fnp.add, floats()), "sub": (fnp.subtract, floats()), "mul": (fnp.multiply, floats()),
    "div": (fnp.divide, floats(0.5, 2)), "pow": (fnp.power, floats(0.2, 2)),
    "floor_divide": (fnp.floor_divide, floats(0.5, 2)), "rem": (fnp.remainder, floats(0.5, 2)),
    "max": (fnp.maximum, floats()), "min": (fnp.minimum, floats()),
    "eq": (fnp.equal, ints_below(2)), "ne": (fnp.not_equal, ints_below(2)),
    "lt": (fnp.less, floats()), "le": (fnp.less_equal, ints_below(2)),
    "gt": (fnp.greater, floats()), "ge": (fnp.greater_equal, ints_below(2)),
    "and": (fnp.logical_and, bools), "or": (fnp.logical_or, bools),
    "bitwise_and": (fnp.bitwise_and, ints_below(16)), "bitwise_or": (fnp.bitwise_or, ints_below(16)),
    "bitwise_xor": (fnp.bitwise_xor, bools),
}


def _typed(gen: Callable, dtype: Any) -> Callable:
    def g(rng, s):
        v = gen(rng, s)
        return v.astype(dtype) if v.dtype.kind == "f" else v
    return g


def unary_case(name: str) -> st.SearchStrategy:
    fn, gen = UNARY[name]

    @st.composite
    def case(draw):
        (s,) = draw(bshapes(1))
        return Case(fn, [s], [_typed(gen, draw(float_dtypes))], name)
    return case()


def binary_case(name: str) -> st.SearchStrategy:
    fn, gen = BINARY[name]

    @st.composite
    def case(draw):
        s = draw(bshapes(2))
        gen_t = _typed(gen, draw(float_dtypes))
        if draw(st.integers(0, 4)) == 0:   # a Python scalar as the second operand
            kind = np.asarray(gen(np.random.default_rng(0), ())).dtype.kind
            c = True if gen is bools else 3 if kind in "iu" else 1.5
            return Case(lambda x: fn(x, c), s[:1], [gen_t], name)
        return Case(fn, s, [gen_t, gen_t], name)
    return case()


@st.composite
def select_case(draw):
    s = draw(bshapes(3))
    dt = draw(float_dtypes)
    return Case(lambda c, x, y: fnp.where(c, x, y), s, [bools, floats(dtype=dt), floats(dtype=dt)],
                "select")


@st.composite
def convert_case(draw):
    (s,) = draw(bshapes(1))
    to = draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_]))
    frm = np.float32 if to == np.float64 else np.float64
    return Case(lambda x: fnp.astype(x, to), [s], [floats(-3, 3, frm)], "convert")


# -------------------------------------------------------- reduction cases ---
@st.composite
def reduction_case(draw, name: str, fn: Callable, gen: Callable = floats()):
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    r = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-r, r - 1),
                          st.lists(st.integers(0, r - 1), unique=True, max_size=r).map(tuple)))
    keepdims = draw(st.booleans())
    return Case(lambda x: fn(x, axis=axis, keepdims=keepdims), [shape], [gen], name)


@st.composite
def argreduce_case(draw, name: str, fn: Callable):
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    keepdims = draw(st.booleans())
    return Case(lambda x: fn(x, axis=axis, keepdims=keepdims), [shape], [floats()], name)


# ------------------------------------------------------------ shape cases ---
@st.composite
def reshape_case(draw):
    shape = draw(st.lists(dims, min_size=0, max_size=3))
    target = list(draw(st.permutations(shape)))
    for _ in range(draw(st.integers(0, 2))):
        target.insert(draw(st.integers(0, len(target))), 1)
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    if tuple(target) == tuple(shape):   # a reshape to the same shape binds nothing
        target.append(1)
    kind = draw(st.sampled_from(["reshape", "ravel", "method"]))
    if kind == "ravel" and len(shape) == 1:
        kind = "reshape"
    if kind == "ravel":
        return Case(fnp.ravel, [tuple(shape)], [floats()], "reshape")
    if kind == "method":
        return Case(lambda x: x.reshape(tuple(target)), [tuple(shape)], [floats()], "reshape")
    return Case(lambda x: fnp.reshape(x, tuple(target)), [tuple(shape)], [floats()], "reshape")


@st.composite
def transpose_case(draw):
    shape = tuple(draw(st.lists(dims, min_size=2, max_size=4)))
    r = len(shape)
    kind = draw(st.sampled_from(["perm", "T", "swapaxes", "moveaxis"]))
    if kind == "perm":
        perm = tuple(draw(st.permutations(range(r))))
        if perm == tuple(range(r)):
            perm = perm[::-1]
        perm = tuple(p - r if draw(st.booleans()) else p for p in perm)
        f = lambda x: fnp.transpose(x, perm)  # noqa: E731
    elif kind == "T":
        f = lambda x: x.T  # noqa: E731
    elif kind == "swapaxes":
        a, b = draw(st.integers(-r, r - 1)), draw(st.integers(-r, r - 1))
        if (a - b) % r == 0:
            b = (a + 1) % r
        f = lambda x: fnp.swapaxes(x, a, b)  # noqa: E731
    else:
        a, b = draw(st.integers(-r, r - 1)), draw(st.integers(-r, r - 1))
        if a % r == b % r:
            b = (a + 1) % r
        f = lambda x: fnp.moveaxis(x, a, b)  # noqa: E731
    return Case(f, [shape], [floats()], "transpose")


@st.composite
def broadcast_case(draw):
    (s,) = draw(bshapes(1))
    lead = tuple(draw(st.lists(dims, max_size=2)))
    target = lead + tuple(draw(dims) if n == 1 else n for n in s)
    if target == s:      # broadcast_to to the same shape binds nothing
        target = (2,) + target
    return Case(lambda x: fnp.broadcast_to(x, target), [s], [floats()], "broadcast_to")


@st.composite
def concat_case(draw):
    shape = list(draw(st.lists(dims, min_size=1, max_size=3)))
    n = draw(st.integers(2, 3))
    r = len(shape)
    if draw(st.booleans()):
        axis = draw(st.integers(-r - 1, r))
        return Case(lambda *xs: fnp.stack(xs, axis=axis), [tuple(shape)] * n, [floats()] * n,
                    "concatenate")
    axis = draw(st.integers(-r, r - 1))
    shapes = []
    for _ in range(n):
        s = list(shape)
        s[axis] = draw(dims)
        shapes.append(tuple(s))
    return Case(lambda *xs: fnp.concatenate(xs, axis=axis), shapes, [floats()] * n, "concatenate")


# ----------------------------------------------------------- linalg cases ---
@st.composite
def matmul_case(draw):
    m, k, n = draw(dims), draw(dims), draw(dims)
    kind = draw(st.sampled_from(["1,1", "1,2", "2,1", "2,2", "N,N", "N,1", "1,N", "N,2", "2,N"]))
    bat = draw(bshapes(2, max_rank=2, min_rank=1))
    left = {"1": (k,), "2": (m, k), "N": bat[0] + (m, k)}[kind[0]]
    right = {"1": (k,), "2": (k, n), "N": bat[1] + (k, n)}[kind[2]]
    op = draw(st.sampled_from(["matmul", "@", "dot"]))
    if op == "dot" and "N" not in kind:
        f = fnp.dot
    elif op == "@":
        f = lambda a, b: a @ b  # noqa: E731
    else:
        f = fnp.matmul
    dt = draw(float_dtypes)
    return Case(f, [left, right], [floats(dtype=dt)] * 2, "matmul")


EINSUM_SPECS = (  # explicit and implicit outputs, traces, ellipses, three operands
    "ij,jk->ik", "i,i->", "bij,bjk->bik", "ii->i", "ij->ji", "ij->", "i,j->ij", "ij,j->i",
    "...ij,...jk->...ik", "ij,jk,kl->il", "ijk,ik->j", "ij,ij", "ji",
)


@st.composite
def einsum_case(draw):
    kind = draw(st.sampled_from(EINSUM_SPECS + ("tensordot", "dot_nd", "outer", "inner")))
    size = {c: draw(dims) for c in "abcdefghijklmnopqrstuvwxyz"}
    if kind == "tensordot":
        sa = (size["a"], size["b"], size["c"])
        nax = draw(st.integers(0, 2))
        sb = sa[3 - nax:] + (size["d"],)
        if draw(st.booleans()) or nax == 0:
            return Case(lambda a, b: fnp.tensordot(a, b, axes=nax), [sa, sb], [floats()] * 2, "einsum")
        return Case(lambda a, b: fnp.tensordot(a, b, axes=([0, 2], [1, 0])),
                    [sa, (sa[2], sa[0], size["e"])], [floats()] * 2, "einsum")
    if kind == "dot_nd":
        return Case(fnp.dot, [(size["a"], size["b"], size["c"]), (size["d"], size["c"], size["e"])],
                    [floats()] * 2, "einsum")
    if kind == "outer":
        return Case(fnp.outer, [(size["a"],), (size["b"],)], [floats()] * 2, "reshape")
    if kind == "inner":
        return Case(fnp.inner, [(size["a"], size["c"]), (size["b"], size["c"])], [floats()] * 2,
                    "einsum")
    ins = kind.split("->")[0].split(",")
    shapes = []
    for sub in ins:
        sub = sub.replace("...", "")
        s = tuple(size[c] for c in sub)
        if "..." in kind:
            s = (size["z"],) + s
        if sub == "ii":
            s = (size["i"], size["i"])
        shapes.append(s)
    return Case(lambda *xs: fnp.einsum(kind, *xs), shapes, [floats()] * len(shapes), "einsum")


# --------------------------------------------------------- indexing cases ---
@st.composite
def index_template(draw, unique: bool = False):
    """(x shape, index components, index-array shapes and generators).

    Components are 's'(slice) 'i'(int) 'n'(newaxis) 'a'(array operand); several
    arrays may be separated by slices (non-adjacent advanced indices) and come
    after slices (the advanced block not at the front).
    """
    xshape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    n_comp = draw(st.integers(1, len(xshape)))
    kinds = [draw(st.sampled_from("sia")) for _ in range(n_comp)]
    n_arr = kinds.count("a")
    if unique and n_arr:
        # `.set` with repeated positions keeps an unspecified value: keep positions distinct
        k = draw(st.integers(1, min(xshape[i] for i, c in enumerate(kinds) if c == "a")))
        arr_shapes = [(k,)] * n_arr if draw(st.booleans()) else [()] * n_arr
    else:
        arr_shapes = draw(bshapes(n_arr, max_rank=2)) if n_arr else []
    comps: list = []
    gens: list = []
    first_arr = True
    for axis, c in enumerate(kinds):
        d = xshape[axis]
        if c == "s":
            start = draw(st.one_of(st.none(), st.integers(-d, d - 1)))
            stop = draw(st.one_of(st.none(), st.integers(-d, d)))
            step = draw(st.sampled_from([None, 1, 2, -1]))
            comps.append(slice(start, stop, step))
        elif c == "i":
            comps.append(draw(st.integers(-d, d - 1)))
        else:
            comps.append("a")
            gens.append(unique_below(d) if unique and first_arr else ints_below(d))
            first_arr = False
    if draw(st.integers(0, 3)) == 0:
        comps.insert(draw(st.integers(0, len(comps))), None)
    if draw(st.integers(0, 4)) == 0 and len(comps) < len(xshape):
        comps.append(Ellipsis)
    if all(c is Ellipsis or c == slice(None) for c in comps):   # x[:] binds nothing
        comps[-1] = 0
    return xshape, comps, arr_shapes, gens


def build_index(comps: list, arrays: tuple) -> tuple:
    it = iter(arrays)
    return tuple(next(it) if isinstance(c, str) else c for c in comps)


@st.composite
def gather_case(draw):
    xshape, comps, arr_shapes, gens = draw(index_template())

    def f(x, *arrays):   # fnp.at(x) also indexes a plain (unbatched) NumPy x with traced indices
        return fnp.at(x)[build_index(comps, arrays)].get()
    if not arr_shapes and draw(st.booleans()):
        return Case(f, [xshape], [floats()], "gather")
    if len(arr_shapes) == 1 and draw(st.integers(0, 3)) == 0:
        ax = comps.index("a") if None not in comps else None
        if ax is not None and all(isinstance(c, slice) and c == slice(None) for c in comps[:ax]):
            def take(x, i):
                return fnp.take(x, i, axis=ax)
            return Case(take, [xshape] + arr_shapes, [floats()] + gens, "gather")
    return Case(f, [xshape] + arr_shapes, [floats()] + gens, "gather")


@st.composite
def scatter_case(draw):
    mode = draw(st.sampled_from(["set", "add", "multiply"]))
    xshape, comps, arr_shapes, gens = draw(index_template(unique=mode == "set"))
    dummy = np.zeros(xshape)[build_index(comps, [np.zeros(s, np.intp) for s in arr_shapes])]
    region = dummy.shape
    r = draw(st.integers(0, len(region)))
    vshape = tuple(1 if draw(st.integers(0, 3)) == 0 else n for n in region[len(region) - r:])
    vgen = floats(0.5, 1.5) if mode == "multiply" else floats()

    def f(x, v, *arrays):
        return getattr(fnp.at(x)[build_index(comps, arrays)], mode)(v)
    return Case(f, [xshape, vshape] + arr_shapes, [floats(), vgen] + gens, "scatter")


# ------------------------------------------------------------------ table ---
CASES: dict[str, Callable[[], st.SearchStrategy]] = {}
for _n in UNARY:
    CASES[_n] = lambda _n=_n: unary_case(_n)
for _n in BINARY:
    CASES[_n] = lambda _n=_n: binary_case(_n)
CASES.update({
    "select": select_case, "convert": convert_case,
    "reduce_sum": lambda: st.one_of(reduction_case("reduce_sum", fnp.sum),
                                    reduction_case("reduce_sum", fnp.mean),
                                    reduction_case("reduce_sum", fnp.var)),
    "reduce_max": lambda: reduction_case("reduce_max", fnp.max),
    "reduce_min": lambda: reduction_case("reduce_min", fnp.min),
    "reduce_prod": lambda: reduction_case("reduce_prod", fnp.prod, floats(0.5, 1.5)),
    "logsumexp": lambda: reduction_case("logsumexp", fnp.logsumexp, floats(-30, 30)),
    "argmax": lambda: argreduce_case("argmax", fnp.argmax),
    "argmin": lambda: argreduce_case("argmin", fnp.argmin),
    "reshape": reshape_case, "transpose": transpose_case, "broadcast_to": broadcast_case,
    "concatenate": concat_case, "matmul": matmul_case, "einsum": einsum_case,
    "gather": gather_case, "scatter": scatter_case,
})


def test_every_primitive_has_a_vmap_case() -> None:
    missing = sorted(set(registry) - set(CASES))
    assert not missing, f"primitives without a vmap test case: {missing}"


FEWER = max(10, settings.default.max_examples // 3)   # structural checks need fewer examples


def batched_args(case: Case, axes: list, size: int, rng: np.random.Generator) -> list:
    args = []
    for s, gen, ax in zip(case.shapes, case.gens, axes):
        if ax is None:
            args.append(gen(rng, s))
        else:
            exs = [gen(rng, s) for _ in range(max(size, 1))][:size] or [gen(rng, s)[None][:0]]
            args.append(np.moveaxis(np.stack(exs) if size else exs[0], 0, ax))
    return args


@pytest.mark.parametrize("name", sorted(registry))
@given(data=st.data())
def test_primitive_batching_matches_stacked_loop(name: str, data: st.DataObject) -> None:
    """vmap(f)(xs) == np.stack([f(x) for x in xs]) with drawn shapes and in/out axes."""
    assert name in CASES, f"no vmap test case for primitive {name!r}"
    case = data.draw(CASES[name](), label="case")
    size = data.draw(st.integers(0, 4), label="batch size")
    axes = [data.draw(st.sampled_from([None, 0, -1] + ([1, -2] if len(s) else [])), label="in_axis")
            for s in case.shapes]
    if all(a is None for a in axes):
        axes[data.draw(st.integers(0, len(axes) - 1))] = 0
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    args = batched_args(case, axes, size, rng)
    example = [a if ax is None else gen(rng, s) for a, ax, gen, s in zip(args, axes, case.gens,
                                                                       case.shapes)]
    if case.prim is not None and case.prim == name:
        assert name in primitives_in(case.f, *example), f"case does not use primitive {name}"
    out_rank = np.ndim(case.f(*example)) + 1
    out_axis = data.draw(st.integers(-out_rank, out_rank - 1), label="out_axes")
    note(f"shapes={[np.shape(a) for a in args]} in_axes={axes} out_axes={out_axis}")
    got = fg.vmap(case.f, in_axes=tuple(axes), out_axes=out_axis)(*args)
    assert_same(got, stacked(case.f, tuple(args), axes, out_axis))


@pytest.mark.parametrize("name", sorted(registry))
@settings(max_examples=FEWER)
@given(data=st.data())
def test_primitive_batching_nested_two_levels(name: str, data: st.DataObject) -> None:
    """vmap(vmap(f)) with operands batched at the inner level, the outer level, both or neither."""
    case = data.draw(CASES[name](), label="case")
    n = len(case.shapes)
    inner = [data.draw(st.sampled_from([None, 0, -1]), label="inner axis") for _ in range(n)]
    outer = [data.draw(st.sampled_from([None, 0, -1]), label="outer axis") for _ in range(n)]
    if all(a is None for a in inner):
        inner[data.draw(st.integers(0, n - 1))] = 0
    if all(a is None for a in outer):
        outer[data.draw(st.integers(0, n - 1))] = -1
    bi, bo = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    args = []
    for s, gen, ai, ao in zip(case.shapes, case.gens, inner, outer):
        def one(s=s, gen=gen, ai=ai):
            return gen(rng, s) if ai is None else np.moveaxis(np.stack([gen(rng, s) for _ in range(bi)]),
                                                             0, ai)
        args.append(one() if ao is None else np.moveaxis(np.stack([one() for _ in range(bo)]), 0, ao))
    note(f"shapes={[np.shape(a) for a in args]} inner={inner} outer={outer}")
    got = fg.vmap(fg.vmap(case.f, in_axes=tuple(inner)), in_axes=tuple(outer))(*args)
    want = stacked(lambda *a: stacked(case.f, a, inner), tuple(args), outer)
    assert_same(got, want)


@pytest.mark.parametrize("name", sorted(registry))
@settings(max_examples=FEWER)
@given(data=st.data())
def test_primitive_batching_graph_does_not_grow_with_batch(name: str, data: st.DataObject) -> None:
    """The batch axis is moved, never looped over: same equation count for batch 2 and 7."""
    case = data.draw(CASES[name](), label="case")
    axes = [data.draw(st.sampled_from([None, 0, -1]), label="in_axis") for _ in case.shapes]
    if all(a is None for a in axes):
        axes[0] = 0
    rng = np.random.default_rng(0)
    f = fg.vmap(case.f, in_axes=tuple(axes))
    counts = {n: eqn_count(f, *batched_args(case, axes, n, rng)) for n in (2, 7)}
    assert counts[2] == counts[7], counts


INDEX_PATTERNS = {  # name -> (index from index arrays i, j; the arrays it uses)
    "slice_before_array": (lambda i, j: (slice(None), i), "i"),
    "non_adjacent_arrays": (lambda i, j: (i, slice(None), j), "ij"),
    "int_and_array_non_adjacent": (lambda i, j: (1, slice(None), j), "j"),
    "adjacent_after_slice": (lambda i, j: (slice(1, None), i, j), "ij"),
    "newaxis_and_slices": (lambda i, j: (None, i, slice(None, None, -1), j), "ij"),
    "ellipsis_last_axis": (lambda i, j: (Ellipsis, j), "j"),
    "array_first": (lambda i, j: (i,), "i"),
}


@pytest.mark.parametrize("pattern", sorted(INDEX_PATTERNS))
@pytest.mark.parametrize("mode", ["get", "set", "add", "multiply"])
def test_indexing_patterns_every_batching_combination(pattern: str, mode: str) -> None:
    """Advanced indices (adjacent or not, after slices) with x, indices and values batched or not."""
    build, used = INDEX_PATTERNS[pattern]
    n_arr = len(used)
    xs = randn(3, 4, 5, 6)                                # 3 examples of shape (4, 5, 6)
    ii = np.array([[0, 3, 1], [2, 2, 0], [-1, 1, 3]])     # i: valid for axes of size >= 4
    jj = np.array([[5, 0, 2], [1, -2, 4], [3, 3, 0]])     # j: valid for the axis of size 6
    if mode == "set":   # distinct positions per example
        ii = np.array([[0, 3, 1], [2, 1, 0], [-1, 1, 2]])
        jj = np.array([[5, 0, 2], [1, 4, 3], [3, 2, 0]])
    arrays = [{"i": ii, "j": jj}[c] for c in used]
    region = xs[0][build(ii[0], jj[0])].shape
    vs = randn(3, *region) + 1.0

    def f(x, v, *idx):
        i, j = idx if n_arr == 2 else (idx[0], idx[0])
        ref = fnp.at(x)[build(i, j)]
        return ref.get() if mode == "get" else getattr(ref, mode)(v)

    for axes in [(0, None, 0, 0), (None, None, 0, 0), (0, None, None, None), (0, 0, None, 0),
                 (None, 0, 0, None), (-1, 0, None, -1), (0, 0, 0, 0)]:
        ax = axes[:2 + n_arr]
        if all(a is None for a in ax):
            continue
        args = [np.moveaxis(xs, 0, ax[0]) if ax[0] is not None else xs[0],
                vs if ax[1] is not None else vs[0]]
        args += [a if d is not None else a[0] for a, d in zip(arrays, ax[2:])]
        got = fg.vmap(f, in_axes=ax)(*args)
        assert_same(got, stacked(f, tuple(args), list(ax)))


# ----------------------------------------------------- in_axes / out_axes ---
rng0 = np.random.default_rng(42)


def randn(*shape: int, dtype: Any = np.float64) -> np.ndarray:
    return rng0.standard_normal(shape).astype(dtype)


def test_in_axes_int_none_negative() -> None:
    x = randn(3, 4, 5)
    f = lambda a, b: fnp.sin(a) * b  # noqa: E731
    y1, y0, z, w = randn(3, 5), randn(4, 5), randn(4, 5), randn(3, 4, 1)
    assert_same(fg.vmap(f, in_axes=(1, None))(x, y1), stacked(f, (x, y1), [1, None]))
    assert_same(fg.vmap(f, in_axes=(-1, -1))(x, z), stacked(f, (x, z), [-1, -1]))
    assert_same(fg.vmap(f, in_axes=-2)(x, w), stacked(f, (x, w), [-2, -2]))
    assert_same(fg.vmap(f, in_axes=[0, None])(x, y0), stacked(f, (x, y0), [0, None]))
    assert_same(fg.vmap(f, in_axes=(None, 0))(y0, x), stacked(f, (y0, x), [None, 0]))


def test_in_axes_pytree_prefix() -> None:
    params = {"W": randn(4, 3), "b": randn(3)}
    xs = [randn(5, 4), randn(4, 5)]

    def f(p, pair):
        return fnp.tanh(pair[0] @ p["W"] + p["b"]) * fnp.sum(pair[1])

    got = fg.vmap(f, in_axes=(None, [0, 1]))(params, xs)
    want = np.stack([f(params, [xs[0][i], xs[1][:, i]]) for i in range(5)])
    assert_same(got, want)

    # a dict inside the prefix: batch only W (along its last axis), share b
    ws = randn(4, 3, 6)
    got = fg.vmap(f, in_axes=({"W": 2, "b": None}, None))({"W": ws, "b": params["b"]}, xs)
    want = np.stack([f({"W": ws[:, :, i], "b": params["b"]}, xs) for i in range(6)])
    assert_same(got, want)

    # a tuple of dicts, and a leaf-level None inside a list
    a = ({"u": randn(2, 3), "v": randn(3)}, [randn(3, 2), randn(7)])
    g = lambda t, lst: t["u"] * lst[0].T + t["v"] + fnp.sum(lst[1])  # noqa: E731
    got = fg.vmap(g, in_axes=({"u": 1, "v": 0}, [0, None]))(*a)
    want = np.stack([g({"u": a[0]["u"][:, i], "v": a[0]["v"][i]}, [a[1][0][i], a[1][1]])
                     for i in range(3)])
    assert_same(got, want)


def test_out_axes_int_negative_none_pytree() -> None:
    x = randn(4, 3, 2)
    c = randn(5)

    def f(v):
        return {"same": c * 2.0, "sq": v * v, "sum": fnp.sum(v, axis=0)}

    got = fg.vmap(f, out_axes={"same": None, "sq": -1, "sum": 1})(x)
    assert_same(got["same"], c * 2.0)
    assert_same(got["sq"], np.moveaxis(x * x, 0, -1))
    assert_same(got["sum"], np.sum(x, axis=1).T)

    got = fg.vmap(lambda v: (v, (v + 1, c)), out_axes=(1, (-1, None)))(x)
    assert_same(got, (np.moveaxis(x, 0, 1), (np.moveaxis(x + 1, 0, -1), c)))

    # an unbatched output with an int out_axes is broadcast along the batch axis
    got = fg.vmap(lambda v: (v, c), out_axes=(0, 1))(x)
    assert_same(got[1], np.broadcast_to(c[:, None], (5, 4)))


def test_axis_size_without_batched_inputs() -> None:
    c = randn(3)
    got = fg.vmap(lambda v: v * 2.0, in_axes=None, axis_size=4)(c)
    assert_same(got, np.broadcast_to(c * 2.0, (4, 3)))
    got = fg.vmap(lambda: fnp.ones(2), axis_size=3)()
    assert_same(got, np.ones((3, 2)))
    got = fg.vmap(lambda v: v, in_axes=None, out_axes=-1, axis_size=2)(c)
    assert_same(got, np.stack([c, c], axis=-1))
    # axis_size agreeing with the batched inputs is accepted
    assert_same(fg.vmap(fnp.sin, axis_size=3)(c), np.sin(c))


def test_nested_vmap_two_levels() -> None:
    x, y = randn(3, 4, 5), randn(5, 3)

    def f(a, b):
        return fnp.dot(a, b)

    inner = fg.vmap(f, in_axes=(0, None))               # over rows of a
    outer = fg.vmap(inner, in_axes=(0, 1))              # over the batch of a and columns of b
    got = outer(x, y)
    want = np.stack([np.stack([np.dot(x[i, j], y[:, i]) for j in range(4)]) for i in range(3)])
    assert_same(got, want)
    # batch axes in the middle and at the end, out_axes at each level
    got = fg.vmap(fg.vmap(f, in_axes=(1, None), out_axes=-1), in_axes=(-1, 0), out_axes=0)(
        x.transpose(2, 1, 0), y.T)
    want2 = np.stack([np.stack([np.dot(x[i, j], y[:, i]) for j in range(4)], axis=-1)
                      for i in range(3)])
    assert_same(got, want2)


def test_nested_vmap_three_levels() -> None:
    x = randn(2, 3, 4, 5)
    w = randn(3, 6)

    def f(v):  # v: (3,)
        return fnp.sum(fnp.tanh(v @ w)) + v[0] * v[-1]

    # outer maps x's axis 2 (size 4), middle axis 0 of the rest (size 2), inner the last (size 5)
    got = fg.vmap(fg.vmap(fg.vmap(f, in_axes=1), in_axes=0), in_axes=2)(x)
    want = np.array([[[np.sum(np.tanh(x[i, :, k, j] @ w)) + x[i, 0, k, j] * x[i, -1, k, j]
                       for j in range(5)] for i in range(2)] for k in range(4)])
    assert_same(got, want)
    # with an unbatched operand at the middle level and out_axes at every level
    y = randn(3)
    g = fg.vmap(fg.vmap(fg.vmap(lambda v, u: v * u, in_axes=(0, None), out_axes=1),
                        in_axes=(1, 0), out_axes=-1), in_axes=(0, None))
    xs = x[:, :, :, 0]   # (2, 3, 4): outer axis 0, middle axis 1 of (3, 4) -> size 4, inner axis 0
    got = g(xs, np.stack([y] * 4))
    want = np.empty((2, 3, 3, 4))
    for i in range(2):
        for k in range(4):
            ex = xs[i][:, k]           # (3,)
            for j in range(3):
                want[i, :, j, k] = ex[j] * y   # inner out_axes=1 then middle out_axes=-1
    assert_same(got, want)


def test_keyword_arguments_are_mapped_over_axis_0() -> None:
    x, y = randn(3, 4), randn(3)

    def f(a, scale=1.0):
        return a * scale

    assert_same(fg.vmap(f)(x, scale=y), x * y[:, None])
    z = randn(4)
    assert_same(fg.vmap(f, in_axes=(1,))(x, scale=z), (x * z).T)
    assert_same(fg.vmap(f, in_axes=None)(x, scale=z), x[None] * z[:, None, None])
    with pytest.raises(ValueError, match=r"argument scale has size 4"):
        fg.vmap(f)(x, scale=randn(4))


FACADE = {  # composites of several primitives, each checked against the stacked loop
    "mean": lambda x: x - fnp.mean(x, axis=-1, keepdims=True),
    "std": lambda x: fnp.std(x, axis=0),
    "var_ddof": lambda x: fnp.var(x, ddof=1),
    "split": lambda x: fnp.split(x, [1, 3], axis=0) + fnp.split(x, 3, axis=-1),
    "hstack": lambda x: fnp.hstack([x, 2 * x]),
    "vstack": lambda x: fnp.vstack([x[0], x[1]]),
    "squeeze_expand": lambda x: fnp.squeeze(fnp.expand_dims(x, (0, -1))),
    "clip": lambda x: fnp.clip(x, -0.5, 0.5),
    "logaddexp": lambda x: fnp.logaddexp(x, x[::-1]),
    "full_like": lambda x: fnp.full_like(x, x[0, 0]),
    "zeros_like": lambda x: fnp.zeros_like(x) + x,
    "asarray_list": lambda x: fnp.asarray([x[0], x[1] * 2]),
    "iterate": lambda x: sum(r * i for i, r in enumerate(x)),
    "len": lambda x: x * len(x),
    "getitem": lambda x: x[1, ::-1] + x[:, 0][[0, 1, 1, 0][:2]].sum(),
    "outer": lambda x: fnp.outer(x[0], x[1]),
    "vdot": lambda x: fnp.vdot(x, x),
    "astype": lambda x: (x > 0).astype(fnp.float32) * 2,
    "relu_mask": lambda x: fnp.where(x > 0, x, 0.01 * x),
    "softmax": lambda x: fnp.exp(x - fnp.logsumexp(x, axis=-1, keepdims=True)),
    "isnan": lambda x: fnp.isnan(fnp.log(x)),
    "min_argmin": lambda x: (fnp.min(x, axis=1), fnp.argmin(x, axis=0)),
    "dict_out": lambda x: {"s": fnp.sum(x), "t": x.T},
}


@pytest.mark.parametrize("name", sorted(FACADE))
def test_facade_composites_under_vmap(name: str) -> None:
    f = FACADE[name]
    for axis in (0, 1, -1):
        x = np.moveaxis(randn(5, 4, 3), 0, axis)    # examples of shape (4, 3)
        with np.errstate(invalid="ignore"):
            want = stacked(f, (x,), [axis])
            got = fg.vmap(f, in_axes=axis)(x)
        assert_same(got, want)


def test_python_control_flow_under_vmap_of_grad() -> None:
    def f(x):
        return fnp.sum(x ** 2) if fnp.sum(x) > 0 else fnp.sum(x)

    g = fg.grad(f)
    x = randn(3, 4)
    assert_same(g(x[0]), 2 * x[0] if x[0].sum() > 0 else np.ones(4))   # fine on concrete values
    with pytest.raises(fg.ConcretizationError, match=r"vmap.*fnp\.where"):
        fg.vmap(g)(x)


# ---------------------------------------------------------- composition ---
def mlp_init(sizes: list, seed: int = 0, dtype: Any = np.float64) -> list:
    r = np.random.default_rng(seed)
    return [{"W": (r.standard_normal((m, n)) / np.sqrt(m)).astype(dtype),
             "b": (0.1 * r.standard_normal(n)).astype(dtype)}
            for m, n in zip(sizes[:-1], sizes[1:])]


def mlp_loss(params: list, x: Any, y: Any) -> Any:
    h = x
    for layer in params[:-1]:
        h = fnp.tanh(h @ layer["W"] + layer["b"])
    logits = h @ params[-1]["W"] + params[-1]["b"]
    logp = logits - fnp.logsumexp(logits, axis=-1, keepdims=True)
    return -fnp.sum(logp * y)


def test_per_example_gradients_of_mlp_equal_loop_of_grad() -> None:
    params = mlp_init([6, 5, 4, 3])
    xs = randn(7, 6)
    ys = np.eye(3)[rng0.integers(0, 3, 7)]
    per_ex = fg.vmap(fg.grad(mlp_loss), in_axes=(None, 0, 0))(params, xs, ys)
    loop = [fg.grad(mlp_loss)(params, xs[i], ys[i]) for i in range(7)]
    want = tree_map(lambda *gs: np.stack(gs), *loop)
    assert_same(per_ex, want)
    # and the loop of grad agrees with finite differences on one entry
    eps = 1e-6
    p2 = tree_map(np.copy, params)
    p2[0]["W"][1, 2] += eps
    fd = (mlp_loss(p2, xs[3], ys[3]) - mlp_loss(params, xs[3], ys[3])) / eps
    np.testing.assert_allclose(per_ex[0]["W"][3, 1, 2], fd, rtol=1e-4, atol=1e-6)


def test_per_example_gradients_float32_keep_dtype() -> None:
    params = mlp_init([4, 3, 2], dtype=np.float32)
    xs = randn(5, 4, dtype=np.float32)
    ys = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1]]
    per_ex = fg.vmap(fg.grad(mlp_loss), in_axes=(None, 0, 0))(params, xs, ys)
    for g, p in zip(tree_leaves(per_ex), tree_leaves(params)):
        assert g.dtype == np.float32 and g.shape == (5,) + p.shape


def test_grad_of_vmap() -> None:
    params = mlp_init([3, 4, 2])
    xs, ys = randn(6, 3), np.eye(2)[[0, 1, 1, 0, 0, 1]]

    def batch_loss(p):
        return fnp.mean(fg.vmap(mlp_loss, in_axes=(None, 0, 0))(p, xs, ys))

    got = fg.grad(batch_loss)(params)
    loop = [fg.grad(mlp_loss)(params, xs[i], ys[i]) for i in range(6)]
    want = tree_map(lambda *gs: np.mean(np.stack(gs), axis=0), *loop)
    assert_same(got, want)

    # grad w.r.t. a batched input, through vmap with a non-zero in_axes
    x = randn(4, 5)
    g = fg.grad(lambda v: fnp.sum(fg.vmap(lambda r: fnp.sum(fnp.sin(r) ** 2), in_axes=1)(v)))(x)
    assert_same(g, 2 * np.sin(x) * np.cos(x))


def test_vmap_of_jvp_and_vjp() -> None:
    xs, ts = randn(5, 3), randn(5, 3)
    f = lambda v: fnp.sin(v) * fnp.sum(v ** 2)  # noqa: E731
    got = fg.vmap(lambda x, t: fg.jvp(f, (x,), (t,)))(xs, ts)
    want = stacked(lambda x, t: fg.jvp(f, (x,), (t,)), (xs, ts), [0, 0])
    assert_same(got, want)
    # tangent shared across the batch
    got = fg.vmap(lambda x: fg.jvp(f, (x,), (ts[0],))[1])(xs)
    assert_same(got, stacked(lambda x: fg.jvp(f, (x,), (ts[0],))[1], (xs,), [0]))
    # vmap over a vjp's cotangent
    cts = randn(5, 3)
    got = fg.vmap(lambda x, c: fg.vjp(f, x)[1](c)[0])(xs, cts)
    assert_same(got, stacked(lambda x, c: fg.vjp(f, x)[1](c)[0], (xs, cts), [0, 0]))


def test_jacobians_of_vmapped_functions() -> None:
    w = randn(3, 4)

    def f(x):  # x: (B, 3) -> (B, 4)
        return fg.vmap(lambda r: fnp.tanh(r @ w))(x)

    x = randn(2, 3)
    want = np.zeros((2, 4, 2, 3))
    for b in range(2):
        d = 1 - np.tanh(x[b] @ w) ** 2
        want[b, :, b, :] = (w * d).T
    assert_same(fg.jacfwd(f)(x), want)
    assert_same(fg.jacrev(f)(x), want)
    # vmap of jacobians: per-example Jacobians
    got = fg.vmap(fg.jacrev(lambda r: fnp.tanh(r @ w)))(x)
    assert_same(got, np.stack([want[b, :, b, :] for b in range(2)]))
    got = fg.vmap(fg.jacfwd(lambda r: fnp.tanh(r @ w)))(x)
    assert_same(got, np.stack([want[b, :, b, :] for b in range(2)]))
    # per-example Hessians
    h = fg.vmap(fg.hessian(lambda r: fnp.sum(r ** 3)))(x)
    assert_same(h, np.stack([np.diag(6 * r) for r in x]))


def test_make_jaxpr_of_vmap() -> None:
    w = randn(3, 4)
    f = fg.vmap(lambda r, s: fnp.tanh(r @ w) * s, in_axes=(0, None))
    x, s = randn(5, 3), 2.0
    graph = fg.make_jaxpr(f)(x, s)
    assert [v.aval.shape for v in graph.outvars] == [(5, 4)]
    assert_same(fg.eval_jaxpr(graph, x, s), np.tanh(x @ w) * s)
    text = str(graph)
    assert "matmul" in text and "tanh" in text


def test_vmap_of_jit_and_jit_of_vmap() -> None:
    calls = []

    @fg.jit
    def f(v, w):
        calls.append(1)
        return fnp.sum(fnp.exp(v) * w, axis=-1)

    xs, w = randn(6, 3, 2), randn(2)
    want = stacked(f, (xs, w), [0, None])
    assert_same(fg.vmap(f, in_axes=(0, None))(xs, w), want)
    assert_same(fg.vmap(f, in_axes=(1, None), out_axes=1)(xs, w),
                stacked(f, (xs, w), [1, None], out_axes=1))
    g = fg.jit(fg.vmap(f, in_axes=(0, None)))
    assert_same(g(xs, w), want)
    assert_same(g(xs + 1, w), stacked(f, (xs + 1, w), [0, None]))
    # vmap(jit(grad)) for per-example gradients
    pg = fg.vmap(fg.jit(fg.grad(lambda p, v: fnp.sum(fnp.tanh(v @ p)))), in_axes=(None, 0))
    p = randn(2, 3)
    got = pg(p, xs)
    assert_same(got, stacked(fg.grad(lambda p, v: fnp.sum(fnp.tanh(v @ p))), (p, xs), [None, 0]))


# ------------------------------------------------------ graph-size checks ---
def test_per_example_gradient_graph_independent_of_batch_size() -> None:
    params = mlp_init([6, 5, 3])
    f = fg.vmap(fg.grad(mlp_loss), in_axes=(None, 0, 0))
    counts = [eqn_count(f, params, randn(n, 6), np.eye(3)[np.arange(n) % 3]) for n in (2, 100)]
    assert counts[0] == counts[1], counts


def test_vmap_graph_independent_of_batch_size_mixed_ops() -> None:
    w = randn(4, 3)

    def f(x, i, v):
        y = x.at[i].add(v)
        z = y[i] * fnp.max(y, axis=0)
        return fnp.where(z > 0, z, 0.0) @ w.T, fnp.argmax(y), fnp.concatenate([y, y[::-1]])

    counts = []
    for n in (2, 100):
        args = (randn(n, 5, 3), rng0.integers(0, 5, (n, 2)), randn(n, 2, 3))
        counts.append(eqn_count(fg.vmap(f), *args))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize("jac", [fg.jacrev, fg.jacfwd])
def test_jacobian_graph_independent_of_size(jac: Callable) -> None:
    """jacfwd/jacrev push the whole basis through one vmap: no loop over rows."""
    def f(x):
        return fnp.tanh(x) * fnp.sum(x ** 2)

    counts = [eqn_count(jac(f), randn(n)) for n in (3, 50)]
    assert counts[0] == counts[1], counts
    x = randn(4)
    want = np.diag(1 - np.tanh(x) ** 2) * np.sum(x ** 2) + np.outer(np.tanh(x), 2 * x)
    assert_same(jac(f)(x), want)


def test_jacrev_graph_independent_of_output_size() -> None:
    """One vmap over the output basis: the graph is the same for 2 and 40 outputs."""
    counts = [eqn_count(fg.jacrev(lambda x, w=randn(3, m): fnp.sin(x @ w)), randn(3)) for m in (2, 40)]
    assert counts[0] == counts[1], counts


def test_per_example_dense_layers_are_single_gemms() -> None:
    """A batched vector times a shared matrix is one 2-d matmul, and per-example outer products
    (the weight gradients) are not a loop of rank-1 matmuls: no matmul sees a batch axis."""
    params = mlp_init([6, 5, 3])
    graph = fg.make_jaxpr(fg.vmap(fg.grad(mlp_loss), in_axes=(None, 0, 0)))(
        params, randn(8, 6), np.eye(3)[np.arange(8) % 3])
    mm = [e for e in graph.eqns if e.primitive.name == "matmul"]
    assert mm and all(len(v.aval.shape) <= 2 for e in mm for v in e.inputs), str(graph)


# --------------------------------------------------------------- bad input ---
def test_in_axes_structure_mismatch_names_argument() -> None:
    x, y = randn(3), randn(3)
    with pytest.raises(ValueError, match=r"in_axes") as e:
        fg.vmap(lambda a, b: a + b, in_axes=(0, 0, 0))(x, y)
    assert "3" in str(e.value) and "2" in str(e.value)
    with pytest.raises(ValueError, match=r"in_axes") as e:
        fg.vmap(lambda p: p["a"] * p["b"], in_axes=({"a": 0},))({"a": x, "b": y})
    assert "'b'" in str(e.value) or "b" in str(e.value)
    with pytest.raises(ValueError, match=r"in_axes") as e:
        fg.vmap(lambda p: p[0] * p[1], in_axes=([0, 0, 0],))([x, y])
    with pytest.raises(ValueError, match=r"in_axes"):
        fg.vmap(lambda p: p[0], in_axes=({"a": 0},))([x])


def test_in_axes_out_of_range_names_argument_axis_and_rank() -> None:
    def f(a, b):
        return a * b

    with pytest.raises(ValueError) as e:
        fg.vmap(f, in_axes=(0, 2))(randn(3), randn(3, 4))
    msg = str(e.value)
    assert re.search(r"\bb\b", msg), msg            # the argument's name
    assert "2" in msg and "(3, 4)" in msg, msg      # the axis and the shape
    with pytest.raises(ValueError) as e:
        fg.vmap(f, in_axes=(-2, 0))(randn(3), randn(3))
    assert re.search(r"\ba\b", str(e.value)) and "-2" in str(e.value), str(e.value)
    with pytest.raises(ValueError, match=r"0-d|rank 0") as e:
        fg.vmap(fnp.sin)(2.0)


def test_inconsistent_batch_sizes_name_arguments_axes_and_sizes() -> None:
    def f(x, params):
        return x * params["scale"]

    with pytest.raises(ValueError) as e:
        fg.vmap(f, in_axes=(0, {"scale": 1}))(randn(3, 2), {"scale": randn(2, 4)})
    msg = str(e.value)
    assert "x" in msg and "params['scale']" in msg, msg
    assert "3" in msg and "4" in msg, msg
    assert "axis 1" in msg and "axis 0" in msg, msg
    with pytest.raises(ValueError) as e:
        fg.vmap(lambda a: a, axis_size=5)(randn(3))
    assert "5" in str(e.value) and "3" in str(e.value) and "axis_size" in str(e.value)


def test_no_batched_input_without_axis_size() -> None:
    with pytest.raises(ValueError, match="axis_size"):
        fg.vmap(fnp.sin, in_axes=None)(randn(3))


def test_out_axes_none_for_batch_dependent_output() -> None:
    with pytest.raises(ValueError, match=r"out_axes=None") as e:
        fg.vmap(lambda v: (v * 2, v.sum()), out_axes=(0, None))(randn(4, 3))
    assert "varies" in str(e.value)
    with pytest.raises(ValueError, match=r"out_axes"):
        fg.vmap(lambda v: v, out_axes=3)(randn(4, 3))


def test_python_control_flow_on_batched_value() -> None:
    def f(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(fg.ConcretizationError) as e:
        fg.vmap(f)(randn(4))
    msg = str(e.value)
    assert "fnp.where" in msg and "vmap" in msg, msg
    # the suggested fix works
    x = randn(4)
    assert_same(fg.vmap(lambda v: fnp.where(v > 0, v, -v))(x), np.abs(x))
    # control flow on an unbatched argument is fine
    assert_same(fg.vmap(lambda v, s: v * 2 if s > 0 else v, in_axes=(0, None))(x, 1.0), 2 * x)


# ------------------------------------------- axis specs that are pytree nodes ---

class Lin:
    """A layer registered with register_pytree_node: in_axes/out_axes may be a Lin."""

    def __init__(self, W: Any, b: Any):
        self.W, self.b = W, b


register_pytree_node(Lin, lambda m: ((m.W, m.b), None), lambda aux, ch: Lin(*ch))

Pair = namedtuple("Pair", ["u", "v"])


@register_dataclass
@dataclasses.dataclass
class Dense:
    W: Any
    b: Any
    act: str = dataclasses.field(default="tanh", metadata={"static": True})


def test_in_axes_may_be_a_registered_class() -> None:
    W, b = randn(5, 2, 3), randn(3)
    f = lambda m: fnp.sum(m.W, axis=0) + m.b  # noqa: E731
    got = fg.vmap(f, in_axes=(Lin(0, None),))(Lin(W, b))
    assert_same(got, np.stack([W[i].sum(0) + b for i in range(5)]))
    got = fg.vmap(f, in_axes=(Lin(2, 0),))(Lin(np.moveaxis(W, 0, 2), randn(5, 3)))
    assert got.shape == (5, 3)
    with pytest.raises(ValueError, match=r"in_axes\[0\]\[1\] has structure"):
        fg.vmap(f, in_axes=(Lin(0, (0, 0)),))(Lin(W, b))
    with pytest.raises(ValueError, match=r"not a prefix"):
        fg.vmap(f, in_axes=(Lin(0, None),))((W, b))


def test_in_axes_may_be_a_namedtuple_dataclass_or_ordered_dict() -> None:
    x, y = randn(4, 3), randn(3)
    got = fg.vmap(lambda p: p.u * p.v, in_axes=(Pair(0, None),))(Pair(x, y))
    assert_same(got, x * y)
    with pytest.raises(ValueError, match="not a prefix"):      # a tuple is not a Pair
        fg.vmap(lambda p: p.u * p.v, in_axes=((0, None),))(Pair(x, y))

    d = Dense(randn(4, 3, 2), randn(2), "relu")
    f = lambda m: fnp.sum(m.W, axis=0) * m.b if m.act == "relu" else m.b  # noqa: E731
    got = fg.vmap(f, in_axes=(Dense(0, None, "relu"),))(d)
    assert_same(got, np.stack([d.W[i].sum(0) * d.b for i in range(4)]))
    with pytest.raises(ValueError, match="not a prefix"):      # the static field differs
        fg.vmap(f, in_axes=(Dense(0, None, "tanh"),))(d)

    od = OrderedDict(w=randn(4, 3), b=randn(3))
    g = lambda p: p["w"] * p["b"]  # noqa: E731
    assert_same(fg.vmap(g, in_axes=(OrderedDict(w=0, b=None),))(od), od["w"] * od["b"])
    with pytest.raises(ValueError, match="not a prefix"):      # key order is structure
        fg.vmap(g, in_axes=(OrderedDict(b=None, w=0),))(od)


def test_out_axes_may_be_a_registered_class() -> None:
    x = randn(4, 3)
    got = fg.vmap(lambda v: Lin(v * 2.0, fnp.sum(v)), out_axes=Lin(1, 0))(x)
    assert isinstance(got, Lin)
    assert_same(got.W, (x * 2.0).T)
    assert_same(got.b, x.sum(1))
    c = randn(2)
    got = fg.vmap(lambda v: Pair(v, c * 2.0), out_axes=Pair(-1, None))(x)
    assert type(got) is Pair
    assert_same(got.u, x.T)
    assert_same(got.v, c * 2.0)


# ------------------------------------------------------ bad values and specs ---

class Unregistered:
    pass


@pytest.mark.parametrize("arg, tname", [("abc", "str"), (object(), "object"),
                                        (Unregistered(), "Unregistered"),
                                        ({"k": "abc"}, "str")],
                         ids=["str", "object", "unregistered-class", "str-in-dict"])
def test_batched_argument_of_unsupported_type(arg: Any, tname: str) -> None:
    with pytest.raises(TypeError) as e:
        fg.vmap(lambda x: x)(arg)
    msg = str(e.value)
    assert f"unsupported type {tname}" in msg and "vmap maps over arrays" in msg, msg
    assert "shape ()" not in msg, msg
    assert "argument x" in msg, msg
    # not batched, it is passed through untouched
    assert fg.vmap(lambda v, s: v, in_axes=(0, None))(np.ones(2), arg).shape == (2,)


@pytest.mark.parametrize("kw, where, bad", [
    ({"in_axes": ("a",)}, "in_axes[0]", "'a'"),
    ({"in_axes": ({"w": 0, "b": 1.5},)}, "in_axes[0]['b']", "1.5"),
    ({"in_axes": (Lin(0, "x"),)}, "in_axes[0][1]", "'x'"),
    ({"in_axes": (True,)}, "in_axes[0]", "True"),
    ({"out_axes": (0, "a")}, "out_axes[1]", "'a'"),
    ({"out_axes": True}, "out_axes", "True"),
    ({"out_axes": object()}, "out_axes", "object"),
], ids=["str", "float-in-dict", "str-in-registered", "bool", "out-str", "out-bool", "out-object"])
def test_axis_spec_entries_must_be_ints_or_none(kw: dict, where: str, bad: str) -> None:
    with pytest.raises(TypeError) as e:
        fg.vmap(lambda *a: a[0], **kw)      # raised when vmap is created, as in JAX
    msg = str(e.value)
    what = where.split("[")[0]
    assert f"{what} entries must be ints or None" in msg and bad in msg, msg
    if "[" in where:
        assert f"{where} is" in msg, msg


def test_concretization_error_under_vmap_names_in_axes_none() -> None:
    with pytest.raises(fg.ConcretizationError) as e:
        fg.vmap(lambda x: x if x > 0 else -x)(randn(4))
    msg = str(e.value)
    # the contract's two fixes (fnp.where, static_argnums), and vmap's own (in_axes=None)
    assert "fnp.where" in msg and "in_axes=None" in msg, msg
    assert "under jit, static_argnums" in msg, msg


@pytest.mark.parametrize("x", [np.array(["a", "b"]), np.array([object(), object()]),
                               np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]")],
                         ids=["str", "object", "datetime64"])
def test_non_numeric_arrays_are_refused_even_when_passed_through(x) -> None:
    with pytest.raises(TypeError, match=r"vmap: argument s has unsupported type ndarray of dtype"):
        fg.vmap(lambda s: s)(x)


def test_linspace_with_batched_endpoints_keeps_float32_and_numpy_rounding() -> None:
    a, b = np.float32([0.5, 1.5]), np.float32([2.0, 3.0])
    out = fg.vmap(lambda s, t: fnp.linspace(s, t, 5))(a, b)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.linspace(a, b, 5, axis=1))
    got = fg.vmap(lambda s: fnp.linspace(s, 46, 5, dtype=np.int64))(np.array([-5.7, 3.2]))
    np.testing.assert_array_equal(got, [np.linspace(s, 46, 5, dtype=np.int64) for s in (-5.7, 3.2)])


def test_a_value_error_inside_vmap_says_its_shapes_include_the_batch_axis() -> None:
    for f in (lambda x, i: x[i], lambda x, i: x.at[i].set(0.0)):
        with pytest.raises(IndexError, match=r"index 9 is out of bounds.*in vmap over a batch of "
                                             r"3; these shapes and axes include the batch axis"):
            fg.vmap(f)(np.ones((3, 4)), np.array([0, 1, 9]))
