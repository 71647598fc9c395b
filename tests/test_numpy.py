"""``funcgrad.numpy`` equals NumPy: values, shapes and dtypes, eagerly and through a traced graph.

Every check runs the function twice against the NumPy reference: eagerly on
arrays (the fast path that calls NumPy directly) and as
``eval_jaxpr(make_jaxpr(f))``, which also checks that each primitive's
shape/dtype rule predicts what its implementation produces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Tracer
from funcgrad.tree_util import tree_leaves

FLOATS = [np.float32, np.float64]


# ------------------------------------------------------------------ oracle ---

def _tol(dtype: np.dtype) -> tuple[float, float]:
    return (2e-5, 2e-5) if np.dtype(dtype) == np.float32 else (1e-11, 1e-11)


def assert_same(got: Any, expected: Any, rtol: float | None = None) -> None:
    """Same pytree, leaves never tracers, same shapes, same dtypes, values equal (to rounding)."""
    g_leaves, e_leaves = tree_leaves(got), tree_leaves(expected)
    assert len(g_leaves) == len(e_leaves)
    for g, e in zip(g_leaves, e_leaves):
        assert not isinstance(g, Tracer)
        # ops on Python numbers give Python numbers (weakly typed, as in JAX); else NumPy values
        assert isinstance(g, (np.ndarray, np.generic, bool, int, float, complex)), type(g)
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape, (g.shape, e.shape)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        if e.dtype.kind in "fc":
            r, a = _tol(e.dtype)
            np.testing.assert_allclose(g, e, rtol=rtol or r, atol=rtol or a, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, e)


def traced(f: Callable, *args: Any) -> Any:
    """``eval_jaxpr(make_jaxpr(f))``; also checks the graph's output avals against the result."""
    jaxpr = fg.make_jaxpr(f)(*args)
    out = fg.eval_jaxpr(jaxpr, *args)
    for aval, leaf in zip(jaxpr.out_avals, tree_leaves(out)):
        assert aval.shape == np.shape(leaf), (str(jaxpr), np.shape(leaf))
        assert aval.dtype == np.asarray(leaf).dtype, (str(jaxpr), np.asarray(leaf).dtype)
    return out


def check(f: Callable, ref: Callable, *args: Any, rtol: float | None = None) -> None:
    """``f`` equals the NumPy reference ``ref`` eagerly and through tracing."""
    expected = ref(*args)
    assert_same(f(*args), expected, rtol)
    assert_same(traced(f, *args), expected, rtol)


# -------------------------------------------------------------- strategies ---

def floats_of(dtype: Any, lo: float = -3.0, hi: float = 3.0) -> st.SearchStrategy:
    if np.dtype(dtype) == np.float32:    # bounds must be float32 numbers: round inwards
        lo32, hi32 = np.float32(lo), np.float32(hi)
        lo = float(lo32 if lo32 >= lo else np.nextafter(lo32, np.float32(np.inf)))
        hi = float(hi32 if hi32 <= hi else np.nextafter(hi32, np.float32(-np.inf)))
        return st.floats(lo, hi, width=32, allow_subnormal=False)
    return st.floats(lo, hi, allow_subnormal=False)


def arrays(dtype: Any, shape: Any, lo: float = -3.0, hi: float = 3.0) -> st.SearchStrategy:
    return hnp.arrays(dtype, shape, elements=floats_of(dtype, lo, hi))


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
dtypes = st.sampled_from(FLOATS)


@st.composite
def array_and_dtype(draw, lo=-3.0, hi=3.0, shape=shapes):
    dt = draw(dtypes)
    return draw(arrays(dt, draw(shape), lo, hi))


@st.composite
def broadcasting_pair(draw, lo=(-3.0, -3.0), hi=(3.0, 3.0)):
    """Two arrays with mutually broadcastable shapes and any mix of float32/float64."""
    s = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4))
    d1, d2 = draw(dtypes), draw(dtypes)
    return (draw(arrays(d1, s.input_shapes[0], lo[0], hi[0])),
            draw(arrays(d2, s.input_shapes[1], lo[1], hi[1])))


@st.composite
def axis_for(draw, ndim: int, allow_tuple: bool = True):
    """None, an int (possibly negative) or a tuple of distinct axes (possibly negative)."""
    kinds = ["none"] + (["int", "neg"] if ndim else []) + (["tuple"] if allow_tuple else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(0, ndim - 1))
    if kind == "neg":
        return draw(st.integers(-ndim, -1))
    axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim)) if ndim else []
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


# ---------------------------------------------------------- elementwise ---

def _positive(x):
    return np.abs(x) + np.asarray(0.01, x.dtype)


def _ident(x):
    return x


# name: (funcgrad function, NumPy function, map of a draw in [-3, 3] into the domain)
UNARY = {
    "negative": (fnp.negative, np.negative, _ident),
    "square": (fnp.square, np.square, _ident),
    "sqrt": (fnp.sqrt, np.sqrt, np.abs),
    "exp": (fnp.exp, np.exp, _ident),
    "log": (fnp.log, np.log, _positive),
    "log1p": (fnp.log1p, np.log1p, lambda x: np.maximum(x, np.asarray(-0.9, x.dtype))),
    "expm1": (fnp.expm1, np.expm1, _ident),
    "sin": (fnp.sin, np.sin, _ident),
    "cos": (fnp.cos, np.cos, _ident),
    "tan": (fnp.tan, np.tan, lambda x: x * np.asarray(0.4, x.dtype)),
    "tanh": (fnp.tanh, np.tanh, _ident),
    "arctan": (fnp.arctan, np.arctan, _ident),
    "sinh": (fnp.sinh, np.sinh, _ident),
    "cosh": (fnp.cosh, np.cosh, _ident),
    "abs": (fnp.abs, np.abs, _ident),
    "absolute": (fnp.absolute, np.absolute, _ident),
    "sign": (fnp.sign, np.sign, _ident),
    "floor": (fnp.floor, np.floor, _ident),
    "ceil": (fnp.ceil, np.ceil, _ident),
    "trunc": (fnp.trunc, np.trunc, _ident),
    "fix": (fnp.fix, np.fix, _ident),
    "rint": (fnp.rint, np.rint, lambda x: np.round(x * 2) / 2),      # halves: to even
    "round": (fnp.round, np.round, lambda x: np.round(x * 2) / 2),
    "around": (fnp.around, np.round, _ident),
    "isfinite": (fnp.isfinite, np.isfinite, _ident),
    "isnan": (fnp.isnan, np.isnan, _ident),
    "logical_not": (fnp.logical_not, np.logical_not, np.round),
}


@given(x=array_and_dtype(), s=st.floats(-3, 3))
def test_unary(x, s):
    """Every unary function on one drawn array (float32 or float64), a Python float and a NumPy scalar."""
    for name, (f, ref, domain) in UNARY.items():
        xd = domain(x)
        assert xd.dtype == x.dtype, name
        check(f, ref, xd)
        sd = domain(np.float64(s))
        check(f, ref, float(sd))
        check(f, ref, np.float32(sd))


def test_unary_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30], np.float32)
    for name in ["negative", "abs", "sign", "isfinite", "isnan", "logical_not", "floor", "tanh",
                 "arctan"]:
        f, ref = UNARY[name][:2]
        with np.errstate(all="ignore"):
            check(f, ref, x)


def _nonzero(y):
    return np.where(np.abs(y) < 0.5, np.asarray(1.0, y.dtype), y)


# name: (funcgrad function, NumPy function, maps of draws in [-3, 3] into the domain of x and y)
BINARY = {
    "add": (fnp.add, np.add, _ident, _ident),
    "subtract": (fnp.subtract, np.subtract, _ident, _ident),
    "multiply": (fnp.multiply, np.multiply, _ident, _ident),
    "divide": (fnp.divide, np.divide, _ident, _nonzero),
    "true_divide": (fnp.true_divide, np.true_divide, _ident, _nonzero),
    "power": (fnp.power, np.power, _positive, _ident),
    "maximum": (fnp.maximum, np.maximum, _ident, _ident),
    "minimum": (fnp.minimum, np.minimum, _ident, _ident),
    "equal": (fnp.equal, np.equal, _ident, _ident),
    "not_equal": (fnp.not_equal, np.not_equal, _ident, _ident),
    "less": (fnp.less, np.less, _ident, _ident),
    "less_equal": (fnp.less_equal, np.less_equal, _ident, _ident),
    "greater": (fnp.greater, np.greater, _ident, _ident),
    "greater_equal": (fnp.greater_equal, np.greater_equal, _ident, _ident),
    "logical_and": (fnp.logical_and, np.logical_and, np.round, np.round),
    "logical_or": (fnp.logical_or, np.logical_or, np.round, np.round),
    "logaddexp": (fnp.logaddexp, np.logaddexp, _ident, _ident),
    "floor_divide": (fnp.floor_divide, np.floor_divide, _ident, _nonzero),
    "remainder": (fnp.remainder, np.remainder, _ident, _nonzero),
    "mod": (fnp.mod, np.mod, _ident, _nonzero),
}


@given(xy=broadcasting_pair(), ties=st.booleans())
def test_binary_broadcasting(xy, ties):
    """Every binary function on one pair of broadcastable arrays of any float32/float64 mix."""
    x, y = xy
    if ties:     # equal entries exercise ==, <=, maximum/minimum ties
        y = np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape)).astype(y.dtype)
    for f, ref, dx, dy in BINARY.values():
        check(f, ref, dx(x), dy(y))


@pytest.mark.parametrize("dtype", FLOATS)
@given(data=st.data())
def test_binary_with_python_scalar_keeps_dtype(dtype, data):
    """A float32 array combined with a Python scalar stays float32 (NEP 50), on either side."""
    x = data.draw(arrays(dtype, shapes))
    s = float(data.draw(st.floats(-3, 3)))
    n = data.draw(st.integers(1, 3))
    for name, (f, ref, dx, dy) in BINARY.items():
        xd, sd, nd = dx(x), float(dy(np.float64(s))), n
        check(f, ref, xd, sd)
        check(f, ref, xd, nd)
        sx, xy = float(dx(np.float64(s))), dy(x)
        check(f, ref, sx, xy)
        # literals (the scalar closed over, not an argument) keep the dtype as well
        assert_same(traced(lambda a: f(a, sd), xd), ref(xd, sd))
        assert_same(traced(lambda a: f(sx, a), xy), ref(sx, xy))
        if np.asarray(ref(xd, sd)).dtype.kind == "f":
            assert np.asarray(f(xd, sd)).dtype == dtype, name
            assert np.asarray(f(sx, xy)).dtype == dtype, name


def test_ops_on_python_numbers_stay_weakly_typed():
    """Python numbers in, a Python number out: it then adapts to float32 arrays (as in JAX)."""
    x32 = np.ones(3, np.float32)
    for f, args in [(fnp.sqrt, (2.0,)), (fnp.add, (2.0, 3)), (fnp.exp, (1,)), (fnp.sum, (2.0,)),
                    (fnp.maximum, (1.0, 2.0)), (fnp.where, (True, 1.0, 2.0)), (fnp.logaddexp, (0.0, 1.0))]:
        out = f(*args)
        assert type(out) in (float, int), (f, type(out))
        assert (x32 * out).dtype == np.float32
        jaxpr = fg.make_jaxpr(lambda x, *a: x * f(*a))(x32, *args)     # Python numbers as arguments
        assert jaxpr.out_avals[0].dtype == np.float32
        assert fg.eval_jaxpr(jaxpr, x32, *args).dtype == np.float32
    # NumPy scalars and an explicit dtype stay NumPy values
    assert type(fnp.sqrt(np.float64(2.0))) is np.float64
    cast = fnp.astype(2.0, np.float32)
    assert isinstance(cast, (np.ndarray, np.generic)) and cast.dtype == np.float32
    assert (x32 * fnp.sqrt(np.float64(2.0))).dtype == np.float64


def test_mixed_float_precisions_follow_numpy():
    x32, x64 = np.ones(3, np.float32), np.ones(3, np.float64)
    for f, ref in [(fnp.add, np.add), (fnp.multiply, np.multiply), (fnp.maximum, np.maximum)]:
        check(f, ref, x32, x64)
        check(f, ref, x32, np.float64(2.0))      # a NumPy float64 scalar is not weak
        check(f, ref, x32, np.array(2.0))         # neither is a 0-d float64 array
        check(f, ref, x32, np.int64(2))
        check(f, ref, np.arange(3), 2.5)          # int array with a Python float -> float64
        check(f, ref, np.arange(3, dtype=np.int32), 2)


@given(data=st.data())
def test_where_and_clip(data):
    x, y = data.draw(broadcasting_pair())
    c = x > 0
    check(fnp.where, np.where, c, x, y)
    check(lambda c, x: fnp.where(c, x, 0.0), lambda c, x: np.where(c, x, 0.0), c, x)
    check(lambda c, x: fnp.where(c, 1.5, x), lambda c, x: np.where(c, 1.5, x), c, x)
    lo = float(data.draw(st.floats(-2, 0)))
    hi = float(data.draw(st.floats(0, 2)))
    check(lambda x: fnp.clip(x, lo, hi), lambda x: np.clip(x, lo, hi), x)
    check(lambda x: fnp.clip(x, lo, None), lambda x: np.clip(x, lo, None), x)
    check(lambda x: fnp.clip(x, None, hi), lambda x: np.clip(x, None, hi), x)
    check(lambda x, y: fnp.clip(x, y, None), lambda x, y: np.clip(x, y, None), x, y)
    check(lambda x: x.clip(lo, hi), lambda x: x.clip(lo, hi), x)


def test_where_one_argument_and_errors():
    x = np.array([[0.0, 1.0], [2.0, 0.0]])
    got = fnp.where(x > 0)
    for g, e in zip(got, np.where(x > 0)):
        np.testing.assert_array_equal(g, e)
    with pytest.raises(TypeError):
        fnp.where(x > 0, x)
    with pytest.raises(ValueError, match="a_min"):
        fnp.clip(x)


def test_logaddexp_extremes():
    x = np.array([-np.inf, np.inf, -np.inf, 1000.0, -1000.0, 0.0], np.float32)
    y = np.array([-np.inf, np.inf, 2.0, 1000.0, -1000.0, np.inf], np.float32)
    with np.errstate(all="ignore"):
        check(fnp.logaddexp, np.logaddexp, x, y)


@given(x=array_and_dtype(), dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, bool]))
def test_astype(x, dtype):
    check(lambda x: fnp.astype(x, dtype), lambda x: x.astype(dtype), x)
    check(lambda x: x.astype(dtype), lambda x: x.astype(dtype), x)


# ------------------------------------------------------------- reductions ---

REDUCTIONS = {
    "sum": (fnp.sum, np.sum),
    "mean": (fnp.mean, np.mean),
    "max": (fnp.max, np.max),
    "min": (fnp.min, np.min),
    "amax": (fnp.amax, np.amax),
    "amin": (fnp.amin, np.amin),
    "prod": (fnp.prod, np.prod),
    "var": (fnp.var, np.var),
    "std": (fnp.std, np.std),
}


def _np_logsumexp(x, axis=None, keepdims=False):
    x64 = x.astype(np.float64)
    out = np.log(np.sum(np.exp(x64), axis=axis, keepdims=keepdims))
    return np.asarray(out).astype(x.dtype)[()] if np.ndim(out) == 0 else out.astype(x.dtype)


REDUCTIONS["logsumexp"] = (fnp.logsumexp, _np_logsumexp)


@given(x=array_and_dtype(lo=-1.5, hi=1.5), keepdims=st.booleans(), data=st.data())
def test_reductions(x, keepdims, data):
    """Every reduction with axis None / int / negative int / tuple, with and without keepdims."""
    axis = data.draw(axis_for(x.ndim))
    for name, (f, ref) in REDUCTIONS.items():
        rtol = 1e-4 if (name in ("var", "std") and x.dtype == np.float32) else None
        check(lambda x: f(x, axis, keepdims=keepdims), lambda x: ref(x, axis=axis, keepdims=keepdims),
              x, rtol=rtol)
        check(lambda x: f(x, axis=axis), lambda x: ref(x, axis=axis), x, rtol=rtol)
        if name in ("sum", "mean", "max", "min", "prod", "var", "std"):   # the tracer methods too
            check(lambda x: getattr(x, name)(axis, keepdims=keepdims),
                  lambda x: getattr(x, name)(axis, keepdims=keepdims), x, rtol=rtol)


@given(x=array_and_dtype(), ddof=st.integers(0, 1), data=st.data())
def test_var_std_ddof(x, ddof, data):
    axis = data.draw(axis_for(x.ndim))
    n = x.size if axis is None else int(np.prod([x.shape[a] for a in np.atleast_1d(axis)]))
    assume(n > ddof)
    check(lambda x: fnp.var(x, axis, ddof=ddof), lambda x: np.var(x, axis, ddof=ddof), x, rtol=1e-4)
    check(lambda x: fnp.std(x, axis, ddof=ddof), lambda x: np.std(x, axis, ddof=ddof), x, rtol=1e-4)


@given(x=array_and_dtype(), ties=st.booleans(), keepdims=st.booleans(), data=st.data())
def test_argreductions(x, ties, keepdims, data):
    if ties:   # the first occurrence wins, as in NumPy
        x = np.round(x)
    axis = data.draw(axis_for(x.ndim, allow_tuple=False))
    for name in ["argmax", "argmin"]:
        f, ref = getattr(fnp, name), getattr(np, name)
        check(lambda x: f(x, axis, keepdims=keepdims), lambda x: ref(x, axis, keepdims=keepdims), x)
        check(lambda x: f(x, axis), lambda x: ref(x, axis), x)
        check(lambda x: getattr(x, name)(axis), lambda x: getattr(x, name)(axis), x)


def test_var_ddof_larger_than_count():
    x = np.arange(6.0).reshape(2, 3)
    with np.errstate(all="ignore"):
        for ddof in [3, 4, 7]:
            check(lambda x: fnp.var(x, 1, ddof=ddof), lambda x: np.var(x, 1, ddof=ddof), x)
            check(lambda x: fnp.std(x, ddof=ddof), lambda x: np.std(x, ddof=ddof), x)


def test_reductions_on_integers_and_bools():
    i = np.arange(12, dtype=np.int32).reshape(3, 4)
    b = i % 3 == 0
    for name in ["sum", "mean", "max", "min", "prod", "var", "std"]:
        f, ref = REDUCTIONS[name]
        check(lambda x: f(x, 1), lambda x: ref(x, 1), i)
        check(lambda x: f(x), lambda x: ref(x), i)
    check(fnp.sum, np.sum, b)
    check(fnp.mean, np.mean, b)


def test_reduction_axis_errors():
    x = np.ones((2, 3))
    for f in [fnp.sum, fnp.mean, fnp.max, fnp.argmax, fnp.var]:
        with pytest.raises(ValueError, match="out of bounds"):
            f(x, 2)
        with pytest.raises(ValueError, match="out of bounds"):
            fg.make_jaxpr(lambda x: f(x, -3))(x)
    with pytest.raises(ValueError, match="repeated axis"):
        fnp.sum(x, (0, -2))


def test_sum_over_empty_and_lists():
    check(lambda x: fnp.sum(x, 0), lambda x: np.sum(x, 0), np.ones((0, 3)))
    check(lambda x: fnp.prod(x, 1), lambda x: np.prod(x, 1), np.ones((2, 0), np.float32))
    assert_same(fnp.sum([1.0, 2.0, 3.0]), np.sum([1.0, 2.0, 3.0]))
    assert_same(fnp.mean([[1, 2], [3, 5]], axis=0), np.mean([[1, 2], [3, 5]], axis=0))
    assert_same(fnp.max([1, 5, 2]), np.max([1, 5, 2]))
    assert_same(fnp.transpose([[1, 2]]), np.transpose([[1, 2]]))
    assert_same(fnp.squeeze([[1.0]]), np.squeeze([[1.0]]))


# ---------------------------------------------------------- linear algebra ---

@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    ba, bb = batch.input_shapes
    kind = draw(st.sampled_from(["mm", "vm", "mv", "vv"]))
    if kind == "vv":
        return (k,), (k,)
    if kind == "vm":
        return (k,), bb + (k, m)
    if kind == "mv":
        return ba + (n, k), (k,)
    return ba + (n, k), bb + (k, m)


@given(shp=matmul_shapes(), d1=dtypes, d2=dtypes, data=st.data())
def test_matmul(shp, d1, d2, data):
    a = data.draw(arrays(d1, shp[0]))
    b = data.draw(arrays(d2, shp[1]))
    check(fnp.matmul, np.matmul, a, b, rtol=1e-4)
    check(lambda a, b: a @ b, lambda a, b: a @ b, a, b, rtol=1e-4)


@given(ranks=st.tuples(st.integers(0, 3), st.integers(0, 3)), dt=dtypes, data=st.data())
def test_dot_inner_vdot_outer(ranks, dt, data):
    k = data.draw(st.integers(1, 3))
    ra, rb = ranks
    sa = tuple(data.draw(st.integers(1, 3)) for _ in range(max(ra - 1, 0))) + ((k,) if ra else ())
    sb_other = tuple(data.draw(st.integers(1, 3)) for _ in range(rb))
    if rb >= 2:
        sb = sb_other[:-2] + (k,) + sb_other[-1:]
    else:
        sb = (k,) if rb == 1 else ()
    a = data.draw(arrays(dt, sa))
    b = data.draw(arrays(dt, sb))
    check(fnp.dot, np.dot, a, b, rtol=1e-4)
    if ra and rb:
        b_inner = data.draw(arrays(dt, sa[-1:] if rb == 1 else sb_other[:-1] + (k,)))
        check(fnp.inner, np.inner, a, b_inner, rtol=1e-4)
    check(fnp.outer, np.outer, a, b, rtol=1e-4)
    c = data.draw(arrays(dt, np.shape(a)))
    check(fnp.vdot, np.vdot, a, c, rtol=1e-4)
    if ra:
        check(lambda a, b: a.dot(b), lambda a, b: a.dot(b), a, b, rtol=1e-4)


@given(dt=dtypes, data=st.data())
def test_tensordot(dt, data):
    s = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    a = data.draw(arrays(dt, s[:3]))
    b = data.draw(arrays(dt, s[1:]))
    for axes in [0, 1, 2]:
        b_ax = data.draw(arrays(dt, a.shape[3 - axes:] + (2,)))
        check(lambda a, b: fnp.tensordot(a, b, axes), lambda a, b: np.tensordot(a, b, axes), a, b_ax,
              rtol=1e-4)
    check(lambda a, b: fnp.tensordot(a, b, ([1, 2], [0, 1])),
          lambda a, b: np.tensordot(a, b, ([1, 2], [0, 1])), a, b, rtol=1e-4)
    c = data.draw(arrays(dt, (s[2], s[0])))
    check(lambda a, c: fnp.tensordot(a, c, ([-1, 0], [0, -1])),
          lambda a, c: np.tensordot(a, c, ([-1, 0], [0, -1])), a, c, rtol=1e-4)
    check(lambda a, c: fnp.tensordot(a, c, (2, 0)), lambda a, c: np.tensordot(a, c, (2, 0)), a, c,
          rtol=1e-4)


EINSUMS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk", [(2, 3), (3, 4)]), ("ij->ji", [(2, 3)]),
    ("ii->i", [(3, 3)]), ("ii", [(3, 3)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 1)]),
    ("i,i->", [(4,), (4,)]), ("i,j->ij", [(2,), (3,)]), ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("ijk->", [(2, 3, 2)]), ("ba,ab->a", [(3, 2), (2, 3)]),
]


@pytest.mark.parametrize("spec,shapes_", EINSUMS, ids=[e[0] for e in EINSUMS])
@pytest.mark.parametrize("dt", FLOATS)
def test_einsum(spec, shapes_, dt):
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s).astype(dt) for s in shapes_]
    check(lambda *xs: fnp.einsum(spec, *xs), lambda *xs: np.einsum(spec, *xs), *ops, rtol=1e-4)


def test_linalg_shape_errors_show_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        fnp.matmul(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="tensordot"):
        fnp.tensordot(np.ones((2, 3)), np.ones((4, 5)), 1)
    with pytest.raises(ValueError, match="einsum"):
        fnp.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((4, 5)))


# ------------------------------------------------------------------ shape ---

@st.composite
def perm_for(draw, ndim):
    perm = draw(st.permutations(range(ndim)))
    return tuple(p - ndim if draw(st.booleans()) else p for p in perm)


@given(x=array_and_dtype(shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=3)), data=st.data())
def test_transpose_swapaxes_moveaxis(x, data):
    check(fnp.transpose, np.transpose, x)
    check(lambda x: x.T, lambda x: x.T, x)
    perm = data.draw(perm_for(x.ndim))
    check(lambda x: fnp.transpose(x, perm), lambda x: np.transpose(x, perm), x)
    check(lambda x: x.transpose(perm), lambda x: x.transpose(perm), x)
    check(lambda x: x.transpose(*perm), lambda x: x.transpose(*perm), x)
    if x.ndim:
        a1 = data.draw(st.integers(-x.ndim, x.ndim - 1))
        a2 = data.draw(st.integers(-x.ndim, x.ndim - 1))
        check(lambda x: fnp.swapaxes(x, a1, a2), lambda x: np.swapaxes(x, a1, a2), x)
        check(lambda x: fnp.moveaxis(x, a1, a2), lambda x: np.moveaxis(x, a1, a2), x)
        k = data.draw(st.integers(1, x.ndim))
        src = data.draw(st.lists(st.integers(0, x.ndim - 1), min_size=k, max_size=k, unique=True))
        dst = data.draw(st.lists(st.integers(-x.ndim, x.ndim - 1), min_size=k, max_size=k,
                                 unique_by=lambda a: a % x.ndim))
        check(lambda x: fnp.moveaxis(x, src, dst), lambda x: np.moveaxis(x, src, dst), x)


@given(x=array_and_dtype(shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=3)), data=st.data())
def test_reshape_ravel_squeeze_expand_dims(x, data):
    check(fnp.ravel, np.ravel, x)
    check(lambda x: x.ravel(), lambda x: x.ravel(), x)
    check(lambda x: x.flatten(), lambda x: x.flatten(), x)
    new = data.draw(st.permutations(list(x.shape) + [1]))
    check(lambda x: fnp.reshape(x, new), lambda x: np.reshape(x, new), x)
    check(lambda x: x.reshape(new), lambda x: x.reshape(new), x)
    check(lambda x: x.reshape(*new), lambda x: x.reshape(*new), x)
    if new:
        i = data.draw(st.integers(0, len(new) - 1))
        minus = tuple(-1 if j == i else n for j, n in enumerate(new))
        check(lambda x: fnp.reshape(x, minus), lambda x: np.reshape(x, minus), x)
    check(lambda x: fnp.reshape(x, x.size), lambda x: np.reshape(x, x.size), x)
    check(lambda x: fnp.reshape(x, new, order="F"), lambda x: np.reshape(x, new, order="F"), x)
    check(lambda x: x.reshape(new, order="F"), lambda x: x.reshape(new, order="F"), x)
    check(fnp.squeeze, np.squeeze, x)
    check(lambda x: x.squeeze(), lambda x: x.squeeze(), x)
    ones = [i for i, n in enumerate(x.shape) if n == 1]
    if ones:
        ax = tuple(data.draw(st.lists(st.sampled_from(ones), unique=True, min_size=1)))
        neg = tuple(a - x.ndim for a in ax)
        check(lambda x: fnp.squeeze(x, ax), lambda x: np.squeeze(x, ax), x)
        check(lambda x: fnp.squeeze(x, neg[0]), lambda x: np.squeeze(x, neg[0]), x)
    nd = x.ndim + 1
    e = data.draw(st.integers(-nd, nd - 1))
    check(lambda x: fnp.expand_dims(x, e), lambda x: np.expand_dims(x, e), x)
    nd2 = x.ndim + 2
    e2 = tuple(data.draw(st.lists(st.integers(0, nd2 - 1), min_size=2, max_size=2, unique=True)))
    e2 = (e2[0] - nd2, e2[1])
    check(lambda x: fnp.expand_dims(x, e2), lambda x: np.expand_dims(x, e2), x)
    check(fnp.atleast_1d, np.atleast_1d, x)
    check(fnp.atleast_2d, np.atleast_2d, x)
    with pytest.raises(ValueError, match="repeated axis"):
        fnp.expand_dims(x, (0, -nd2))
    with pytest.raises(ValueError, match="out of bounds"):
        fnp.expand_dims(x, nd2)


@given(data=st.data())
def test_broadcast_to(data):
    s = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=4))
    x = data.draw(arrays(data.draw(dtypes), s.input_shapes[0]))
    target = s.result_shape
    extra = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    check(lambda x: fnp.broadcast_to(x, extra + target), lambda x: np.broadcast_to(x, extra + target), x)
    check(lambda x: fnp.broadcast_to(x, x.shape), lambda x: np.broadcast_to(x, x.shape), x)
    check(lambda: fnp.broadcast_to(2.0, (3,)), lambda: np.broadcast_to(2.0, (3,)))


@given(data=st.data())
def test_concatenate_stack_split(data):
    nd = data.draw(st.integers(1, 3))
    base = [data.draw(st.integers(1, 3)) for _ in range(nd)]
    axis = data.draw(st.integers(-nd, nd - 1))
    parts = []
    for _ in range(data.draw(st.integers(1, 3))):
        s = list(base)
        s[axis] = data.draw(st.integers(1, 3))
        parts.append(data.draw(arrays(data.draw(dtypes), tuple(s))))
    check(lambda *xs: fnp.concatenate(xs, axis), lambda *xs: np.concatenate(xs, axis), *parts)
    check(lambda *xs: fnp.concatenate(list(xs), axis=None), lambda *xs: np.concatenate(xs, axis=None),
          *parts)
    same = [data.draw(arrays(parts[0].dtype, tuple(base))) for _ in range(len(parts))]
    sax = data.draw(st.integers(-nd - 1, nd))
    check(lambda *xs: fnp.stack(xs, sax), lambda *xs: np.stack(xs, sax), *same)
    check(lambda *xs: fnp.vstack(xs), lambda *xs: np.vstack(xs), *same)
    check(lambda *xs: fnp.hstack(xs), lambda *xs: np.hstack(xs), *same)
    x = parts[0]
    n = x.shape[axis]
    sections = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    check(lambda x: fnp.split(x, sections, axis), lambda x: np.split(x, sections, axis), x)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    check(lambda x: fnp.split(x, cuts, axis), lambda x: np.split(x, cuts, axis), x)


def test_concatenate_mixed_dtypes_and_errors():
    a, b = np.ones((2, 2), np.float32), np.zeros((1, 2), np.float64)
    check(lambda a, b: fnp.concatenate([a, b]), lambda a, b: np.concatenate([a, b]), a, b)
    check(lambda a: fnp.concatenate([a, a], axis=-1), lambda a: np.concatenate([a, a], axis=-1), a)
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(1, 3\)"):
        fnp.concatenate([a, np.ones((1, 3))])
    with pytest.raises(ValueError, match="same shape"):
        fnp.stack([a, b])
    with pytest.raises(ValueError, match="0-d"):
        fnp.concatenate([np.float64(1.0), np.float64(2.0)])
    with pytest.raises(ValueError, match="split"):
        fnp.split(np.ones(5), 2)


@given(x=array_and_dtype(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)), data=st.data())
def test_take(x, data):
    idx = data.draw(hnp.arrays(np.int64, data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
                               elements=st.integers(-x.size, x.size - 1)))
    check(lambda x: fnp.take(x, idx), lambda x: np.take(x, idx), x)
    ax = data.draw(st.integers(-x.ndim, x.ndim - 1))
    idx2 = np.clip(idx, -x.shape[ax], x.shape[ax] - 1)
    check(lambda x: fnp.take(x, idx2, axis=ax), lambda x: np.take(x, idx2, axis=ax), x)


# ---------------------------------------------------------------- creation ---

@given(x=array_and_dtype(), fill=st.floats(-3, 3),
       dt=st.sampled_from([None, np.float32, np.float64, np.int64]))
def test_like_functions(x, fill, dt):
    check(lambda x: fnp.zeros_like(x, dt), lambda x: np.zeros_like(x, dt), x)
    check(lambda x: fnp.ones_like(x, dt), lambda x: np.ones_like(x, dt), x)
    check(lambda x: fnp.full_like(x, fill, dt), lambda x: np.full_like(x, fill, dt), x)
    check(lambda x: fnp.zeros_like(x), lambda x: np.zeros_like(x), x)
    # a traced fill value gives a traced result of the right dtype
    check(lambda x: fnp.full_like(x, fnp.sum(x), dt), lambda x: np.full_like(x, np.sum(x), dt), x)


def test_creation_functions():
    for f, ref, args in [
        (fnp.zeros, np.zeros, ((2, 3),)), (fnp.ones, np.ones, (4,)),
        (fnp.zeros, np.zeros, ((2,), np.float32)),
        (fnp.ones, np.ones, ((1, 2), np.int32)), (fnp.full, np.full, ((2, 2), 1.5)),
        (fnp.full, np.full, (3, 2, np.float32)), (fnp.eye, np.eye, (3,)), (fnp.eye, np.eye, (2, 4, 1)),
        (fnp.eye, np.eye, (3, None, 0, np.float32)), (fnp.arange, np.arange, (5,)),
        (fnp.arange, np.arange, (1, 7, 2)), (fnp.arange, np.arange, (0.0, 1.0, 0.25)),
        (fnp.linspace, np.linspace, (0, 1, 5)), (fnp.linspace, np.linspace, (-1.0, 1.0, 4, False)),
        (fnp.asarray, np.asarray, ([1.0, 2.0],)), (fnp.asarray, np.asarray, ([1, 2], np.float32)),
        (fnp.array, np.array, ([[1, 2], [3, 4]],)), (fnp.array, np.array, (2.5,)),
    ]:
        assert_same(f(*args), ref(*args))
        assert_same(traced(lambda: f(*args)), ref(*args))
    assert_same(fnp.arange(4, dtype=np.float32), np.arange(4, dtype=np.float32))
    assert_same(fnp.linspace(0, 1, 3, dtype=np.float32), np.linspace(0, 1, 3, dtype=np.float32))


@given(x=array_and_dtype(shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)))
def test_asarray_array_of_tracers(x):
    check(lambda x: fnp.asarray([x, 2 * x]), lambda x: np.asarray([x, 2 * x]), x)
    check(lambda x: fnp.array([[x, x], [x, -x]]), lambda x: np.array([[x, x], [x, -x]]), x)
    check(lambda x: fnp.asarray(x, np.float64), lambda x: np.asarray(x, np.float64), x)
    check(lambda x: fnp.asarray(x), lambda x: np.asarray(x), x)


def test_shape_ndim_size_and_constants():
    x = np.ones((2, 3), np.float32)
    for f in [lambda x: fnp.shape(x), lambda x: fnp.ndim(x), lambda x: fnp.size(x)]:
        ref = f(x)
        seen = []
        fg.make_jaxpr(lambda x: seen.append(f(x)) or x)(x)
        assert seen == [ref]
    assert (fnp.shape(x), fnp.ndim(x), fnp.size(x)) == ((2, 3), 2, 6)
    assert fnp.pi == np.pi and fnp.inf == np.inf and fnp.newaxis is None
    assert fnp.float32 is np.float32 and fnp.ndarray is np.ndarray


# ---------------------------------------------------------------- indexing ---

def _idx_fn(idx):
    return lambda x: x[idx]


def check_index(x: np.ndarray, idx: Any) -> None:
    """``x[idx]`` eagerly (fnp._getitem on an ndarray) and on a tracer equals NumPy."""
    expected = x[idx]
    assert_same(fnp._getitem(x, idx), expected)
    assert_same(traced(_idx_fn(idx), x), expected)


def check_updates(x: np.ndarray, idx: Any, v: Any, modes=("set", "add", "multiply")) -> None:
    """``x.at[idx].set/add/multiply(v)`` on tracers and via ``fnp.at`` equals NumPy on a copy."""
    for mode in modes:
        ref = x.copy()
        if mode == "set":
            ref[idx] = v
        elif mode == "add":
            np.add.at(ref, idx, v)           # repeated indices accumulate
        else:
            np.multiply.at(ref, idx, v)
        before = x.copy()
        eager = getattr(fnp.at(x)[idx], mode)(v)
        np.testing.assert_array_equal(x, before)     # functional: x is not mutated
        assert_same(eager, ref)
        assert_same(traced(lambda x, v: getattr(x.at[idx], mode)(v), x, v), ref)
        assert_same(traced(lambda x: getattr(x.at[idx], mode)(v), x), ref)   # v a constant/literal
        assert_same(traced(lambda x: getattr(fnp.at(x)[idx], mode)(v), x), ref)


index_shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)


@given(data=st.data())
def test_basic_indexing(data):
    x = data.draw(array_and_dtype(shape=index_shapes))
    idx = data.draw(hnp.basic_indices(x.shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    check_index(x, idx)


@given(data=st.data())
def test_basic_index_updates(data):
    x = data.draw(array_and_dtype(shape=index_shapes))
    idx = data.draw(hnp.basic_indices(x.shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    region = x[idx].shape
    vshape = region[data.draw(st.integers(0, len(region))):]      # values broadcast into the region
    v = data.draw(arrays(x.dtype, vshape))
    check_updates(x, idx, v)
    check_updates(x, idx, 2.0)


@st.composite
def mixed_index(draw, shape):
    """Ints, slices with steps, None, Ellipsis and integer arrays (adjacent or not) for ``shape``."""
    nd = len(shape)
    adv_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    kinds = draw(st.lists(st.sampled_from(["int", "slice", "array", "list", "full"]),
                          min_size=1, max_size=nd))
    if "array" not in kinds and "list" not in kinds:
        kinds[draw(st.integers(0, len(kinds) - 1))] = "array"
    idx: list = []
    for k, n in zip(kinds, shape):
        if k == "int":
            idx.append(draw(st.integers(-n, n - 1)))
        elif k == "slice":
            step = draw(st.sampled_from([None, 1, 2, -1, -2, 3]))
            start = draw(st.one_of(st.none(), st.integers(-n, n)))
            stop = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            idx.append(slice(start, stop, step))
        elif k == "full":
            idx.append(slice(None))
        else:
            # an array of the shared shape, or one that broadcasts against it
            s = adv_shape[draw(st.integers(0, len(adv_shape))):]
            a = draw(hnp.arrays(draw(st.sampled_from([np.int64, np.int32])), s,
                                elements=st.integers(-n, n - 1)))
            idx.append(a.tolist() if k == "list" and a.ndim == 1 else a)
    if draw(st.booleans()):
        idx.insert(draw(st.integers(0, len(idx))), None)
    if draw(st.booleans()):
        if len(kinds) == nd:   # every axis addressed: an empty "..." may stand anywhere (NumPy
            idx.insert(draw(st.integers(0, len(idx))), Ellipsis)   # counts it as a separator)
        else:                  # components address the leading axes, so "..." goes last
            idx.append(Ellipsis)
    return tuple(idx)


@given(data=st.data())
def test_advanced_indexing(data):
    x = data.draw(array_and_dtype(shape=index_shapes))
    idx = data.draw(mixed_index(x.shape))
    check_index(x, idx)


@given(data=st.data())
def test_advanced_index_updates(data):
    x = data.draw(array_and_dtype(shape=index_shapes))
    idx = data.draw(mixed_index(x.shape))
    region = x[idx].shape
    v = data.draw(arrays(x.dtype, region[data.draw(st.integers(0, len(region))):]))
    check_updates(x, idx, v)


def test_non_adjacent_advanced_indices():
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    i, j = np.array([[0, 1], [1, 0]]), np.array([3, -1])
    for idx in [(i, slice(None), j), (slice(None), i, slice(None), j), (i, 0, j), (0, slice(1, 3), j),
                (i, 0, 1, Ellipsis, j), (None, i, 0, Ellipsis, 2, j),   # an empty "..." separates
                (i, None, slice(None), j), (Ellipsis, i, slice(None), j), (i, slice(None), slice(None), 0),
                (slice(None), i, j), (slice(None, None, -1), i, 0, slice(None, None, 2))]:
        check_index(x, idx)
        check_updates(x, idx, np.float64(3.0))
        check_updates(x, idx, np.ones(x[idx].shape))


def test_repeated_indices_accumulate_in_add():
    x = np.zeros(5, np.float32)
    idx = np.array([0, 1, 1, 1, 4, 0])
    v = np.arange(6, dtype=np.float32)
    check_updates(x, idx, v, modes=("add", "multiply"))
    ref = np.zeros(5, np.float32)
    np.add.at(ref, idx, v)
    np.testing.assert_array_equal(ref, [5, 6, 0, 0, 4])
    assert_same(traced(lambda x, v: x.at[idx].add(v), x, v), ref)
    # repeated rows in 2-d, with a broadcast value
    x2 = np.ones((3, 2))
    check_updates(x2, ([0, 0, 2], slice(None)), np.array([1.0, 2.0]), modes=("add", "multiply"))


@given(data=st.data())
def test_boolean_masks(data):
    x = data.draw(array_and_dtype(shape=index_shapes))
    k = data.draw(st.integers(1, x.ndim))
    mask = data.draw(hnp.arrays(bool, x.shape[:k]))
    check_index(x, mask)
    check_index(x, (Ellipsis, data.draw(hnp.arrays(bool, x.shape[-1:]))))
    check_index(x, x > 0)
    if x.ndim > k:
        check_index(x, (mask, slice(None, None, -1)))
    check_index(x, mask.tolist() if k == 1 else mask)
    n_sel = int(mask.sum())
    check_updates(x, mask, 0.5)
    check_updates(x, mask, data.draw(arrays(x.dtype, (n_sel,) + x.shape[k:])))
    check_updates(x, x > 0, -1.0, modes=("set",))


@given(data=st.data())
def test_boolean_scalar_indices(data):
    """x[True], x[..., False], x[0, :, True]: a boolean scalar is a 0-d mask (NumPy and JAX),
    an advanced index on a new axis of length 1 (True) or 0 (False), also among integer
    arrays and in .at[] updates."""
    x = data.draw(array_and_dtype(shape=index_shapes))
    base = data.draw(st.one_of(
        hnp.basic_indices(x.shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True),
        mixed_index(x.shape)))
    base = list(base) if isinstance(base, tuple) else [base]
    for _ in range(data.draw(st.integers(1, 2))):
        flag = data.draw(st.sampled_from([True, False, np.bool_(True), np.array(False)]))
        base.insert(data.draw(st.integers(0, len(base))), flag)
    idx = tuple(base)
    try:
        region = x[idx].shape
    except IndexError:             # e.g. False (length 0) against an index array of length 2
        assume(False)
    check_index(x, idx)
    check_updates(x, idx, 2.0)
    v = data.draw(arrays(x.dtype, region[data.draw(st.integers(0, len(region))):]))
    check_updates(x, idx, v)


def test_boolean_scalar_index_examples():
    x = np.arange(24.0).reshape(2, 3, 4)
    for idx in [True, False, (slice(None), True), (0, slice(None), True), (True, Ellipsis, 1),
                (np.array(True),), ([0, 1], True)]:
        check_index(x, idx)
        check_updates(x, idx, -1.0)
    assert traced(lambda x: x[True], x).shape == (1, 2, 3, 4)
    assert traced(lambda x: x[0, :, True], x).shape == (1, 3, 4)   # advanced dims go first
    g = fg.grad(lambda x: fnp.sum(x[:, True] * x[:, True]) + fnp.sum(x[False]))(x)
    np.testing.assert_array_equal(g, 2 * x)


def test_mask_from_traced_value_is_a_concretization_error():
    with pytest.raises(fg.ConcretizationError, match="fnp.where"):
        fg.make_jaxpr(lambda x: x[x > 0])(np.ones(3))
    with pytest.raises(fg.ConcretizationError):
        fg.make_jaxpr(lambda x: x.at[x > 0].set(0.0))(np.ones(3))


def test_traced_integer_index_arrays():
    x = np.arange(12.0).reshape(3, 4)
    idx = np.array([2, 0, 2])
    check(lambda x, i: x[i], lambda x, i: x[i], x, idx)
    check(lambda x, i: x[:, i], lambda x, i: x[:, i], x, idx)
    check(lambda x, i: x[i, i], lambda x, i: x[i, i], x, idx)
    check(lambda x, i: x[np.int64(1), i], lambda x, i: x[1, i], x, idx)

    def upd(x, i):
        return fnp.at(x)[i].add(1.0)

    def upd_ref(x, i):
        y = x.copy()
        np.add.at(y, i, 1.0)
        return y
    check(upd, upd_ref, x, idx)
    check(lambda x, i: x[i], lambda x, i: x[i], x, np.int64(1))    # a traced 0-d index


def test_index_errors():
    x = np.ones((2, 3))
    with pytest.raises(IndexError, match="too many indices"):
        fnp._getitem(x, (0, 0, 0))
    with pytest.raises(IndexError, match="too many indices"):
        fg.make_jaxpr(lambda x: x[0, 0, 0])(x)
    with pytest.raises(IndexError):
        fg.make_jaxpr(lambda x: x[5])(x)
    with pytest.raises(IndexError, match="ellipsis"):
        fg.make_jaxpr(lambda x: x[..., 0, ...])(x)
    with pytest.raises(IndexError, match="integer"):
        fg.make_jaxpr(lambda x: x[np.array([0.5])])(x)
    with pytest.raises(ValueError, match=r"\(4,\).*\(2, 3\)|\(2, 3\).*\(4,\)"):
        fg.make_jaxpr(lambda x: x.at[:].set(np.ones(4)))(x)


def test_at_get_and_dtype_kept():
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    assert_same(traced(lambda x: x.at[:, 1].get(), x), x[:, 1])
    out = traced(lambda x: x.at[0].set(np.float64(7.0)), x)
    assert out.dtype == np.float32             # the updated array keeps its dtype, as in JAX
    out = traced(lambda x: x.at[0].add(np.ones(3)), x)
    assert out.dtype == np.float32


def test_at_divide_as_numpy_divide_at_and_unsupported_modes_named():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    for idx, v in [((0, 1), 2.0), (np.array([1, 1, 0]), np.array([2.0, 4.0, 8.0])[:, None]),
                   ((slice(None), np.array([0, 2, 2])), 0.5)]:
        ref = x.copy()
        np.divide.at(ref, idx, v)            # repeated positions divide repeatedly, as in JAX
        assert_same(traced(lambda a: a.at[idx].divide(v), x), ref)
        np.testing.assert_allclose(fnp.at(x)[idx].divide(v), ref)
    g = fg.grad(lambda a: fnp.sum(a.at[0, 1].divide(a[1, 0])))(x)
    want = np.ones_like(x)
    want[0, 1], want[1, 0] = 1 / x[1, 0], 1 - x[0, 1] / x[1, 0] ** 2
    np.testing.assert_allclose(g, want)
    with pytest.raises(AttributeError, match=r"x.at\[...\].min is not supported.*fnp.minimum"):
        traced(lambda a: a.at[0].min(1.0), x)


# --------------------------------------------------- tracer methods/operators ---

def _methods_program(x, y):
    """Array code written once; runs on ndarrays (the reference) and on tracers."""
    outs = [
        x.T, x.sum(), x.sum(axis=0), x.sum(0, keepdims=True), x.mean(), x.mean(axis=1), x.max(),
        x.max(axis=-1, keepdims=True), x.min(0), x.prod(1), x.var(), x.std(0), x.argmax(), x.argmin(1),
        x.reshape(-1), x.reshape((x.shape[1], x.shape[0])), x.reshape(x.shape[1], -1),
        x.transpose(), x.transpose(1, 0), x.astype(np.float32), x.astype(np.int64),
        x.ravel(), x.squeeze(), x.dot(y), x.clip(-1.0, 1.0),
        np.asarray(len(x)), np.asarray(x.ndim), np.asarray(x.size), np.asarray(x.shape),
    ]
    outs += [row * 2.0 for row in x]          # iteration over the first axis
    outs += [
        x + y.T, x - 1.0, 1.0 - x, x * 2, 2 * x, x / 3.0, 3.0 / (x * x + 1.0), x ** 2, 2.0 ** x,
        x @ y, -x, +x, abs(x), x < 0.5, x <= 0.5, x > 0.5, x >= 0.5, x == 0.5, x != 0.5,
        0.5 < x, 0.5 >= x, (x > 0) & (x < 1), (x > 0) | (x < -1), ~(x > 0),
        # ndarray (or NumPy scalar) on the left: NumPy defers to the tracer's __array_ufunc__
        y.T + x, y.T - x, y.T * x, y.T / (x * x + 1.0), y.T ** 2 + x, y @ x, y.T < x, y.T == x,
        np.float64(2.0) * x, np.float32(3.0) - x, np.sin(x), np.exp(x), np.maximum(x, y.T),
        np.logaddexp(x, 0.5), np.negative(x), np.isfinite(x), np.matmul(y, x),
    ]
    return outs


@pytest.mark.parametrize("dt", FLOATS)
@given(data=st.data())
def test_tracer_methods_and_operators(dt, data):
    x = data.draw(arrays(dt, (2, 3), -2, 2))
    y = data.draw(arrays(dt, (3, 2), -2, 2))
    y_const = y    # closed over as an ndarray: exercises ndarray-op-tracer

    def traced_program(x):
        return _methods_program(x, y_const)

    expected = _methods_program(x, y)
    assert_same(traced(traced_program, x), expected, rtol=1e-4 if dt == np.float32 else None)


def test_tracer_properties_and_python_protocols():
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    seen = {}

    def f(t):
        seen.update(shape=t.shape, ndim=t.ndim, dtype=t.dtype, size=t.size, len=len(t),
                    rows=len(list(t)), T=t.T.shape)
        return t
    fg.make_jaxpr(f)(x)
    assert seen == dict(shape=(2, 3), ndim=2, dtype=np.dtype(np.float32), size=6, len=2, rows=2, T=(3, 2))

    def g(t):
        with pytest.raises(TypeError, match="len"):
            len(t[0, 0])
        with pytest.raises(TypeError, match="iteration"):
            iter(t[0, 0])
        with pytest.raises(TypeError, match="hashable"):
            hash(t)
        with pytest.raises(TypeError, match="funcgrad.numpy"):
            np.asarray(t)
        with pytest.raises(TypeError, match="not supported"):
            np.add.reduce(t)
        return t
    fg.make_jaxpr(g)(x)


@given(x=array_and_dtype(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3)))
def test_iteration_matches_numpy(x):
    check(lambda x: [r for r in x], lambda x: [r for r in x], x)
    check(lambda x: fnp.stack(list(x)), lambda x: np.stack(list(x)), x)


# ------------------------------------------------------------------ coverage ---

# every public function of funcgrad.numpy, and where above it is compared with NumPy
BITWISE = {"bitwise_and": (fnp.bitwise_and, np.bitwise_and), "bitwise_or": (fnp.bitwise_or, np.bitwise_or),
           "bitwise_xor": (fnp.bitwise_xor, np.bitwise_xor)}


@given(dtype=st.sampled_from([np.int64, np.int32, np.uint8, np.bool_]),
       shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4),
       seed=st.integers(0, 2**32 - 1))
def test_bitwise_functions_and_operators(dtype, shapes, seed):
    """& | ^ ~ as NumPy: bitwise on integers, logical on booleans; with Python scalars too."""
    r = np.random.default_rng(seed)
    x, y = (r.integers(0, 2, s).astype(dtype) if dtype == np.bool_ else
            r.integers(0, 100, s).astype(dtype) for s in shapes.input_shapes)
    c = True if dtype == np.bool_ else 6
    for f, ref in BITWISE.values():
        check(f, ref, x, y)
        check(lambda a, f=f: f(a, c), lambda a, ref=ref: ref(a, c), x)
    check(fnp.invert, np.invert, x)
    check(fnp.bitwise_not, np.bitwise_not, x)
    check(lambda a, b: (a & b, a | b, a ^ b, ~a, c & a, c | a, c ^ a),
          lambda a, b: (a & b, a | b, a ^ b, ~a, c & a, c | a, c ^ a), x, y)


def test_bitwise_on_floats_is_a_teaching_type_error():
    x = np.ones(3)
    for f in (lambda: fnp.bitwise_and(x, 1), lambda: fg.jit(lambda a: a | 1)(x),
              lambda: fg.jit(lambda a: ~a)(x)):
        with pytest.raises(TypeError, match=r"not defined for operands of dtype float64.*"
                                            r"bitwise on integers and logical on booleans"):
            f()


@given(xy=broadcasting_pair(), ints=st.booleans())
def test_floor_division_remainder_and_divmod(xy, ints):
    """//, %, divmod on tracers and the facade functions equal NumPy (floats and integers),
    and the derivatives are 1 and -floor(x / y) for % and 0 for //."""
    x, y = xy[0], _nonzero(xy[1])
    if ints:
        x, y = np.round(x * 3).astype(np.int64), np.round(y * 3).astype(np.int32)
        y = np.where(y == 0, 1, y).astype(np.int32)
    for got in (traced(lambda a, b: (a // b, a % b, divmod(a, b)), x, y),
                traced(lambda a, b: (fnp.floor_divide(a, b), fnp.remainder(a, b),
                                     fnp.divmod(a, b)), x, y),
                (fnp.floor_divide(x, y), fnp.mod(x, y), fnp.divmod(x, y))):
        assert_same(got[0], np.floor_divide(x, y))
        assert_same(got[1], np.remainder(x, y))
        assert_same(got[2][0], np.floor_divide(x, y))
        assert_same(got[2][1], np.remainder(x, y))
    if not ints:
        def sum_to(g, shape):          # the oracle for undoing broadcasting
            g = g.sum(axis=tuple(range(g.ndim - len(shape))))
            return g.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)
        xb, yb = np.broadcast_arrays(x, y)
        gx, gy = fg.grad(lambda a, b: fnp.sum(a % b + 3.0 * (a // b)), argnums=(0, 1))(x, y)
        np.testing.assert_array_equal(gx, sum_to(np.ones(xb.shape, x.dtype), x.shape))
        np.testing.assert_allclose(gy, sum_to(-np.floor_divide(xb, yb), y.shape), rtol=1e-6)
        assert gx.dtype == x.dtype and gy.dtype == y.dtype


def test_remainder_derivative_against_finite_differences():
    x, y = np.array([5.5, -3.2, 7.3]), np.array([2.0, 2.1, -3.0])     # away from the jumps
    fg.test_util.check_grads(lambda a, b: a % b, (x, y), order=2)
    fg.test_util.check_grads(lambda a: 7.5 % a + a // 2.0, (np.array([2.2, 3.1]),), order=1)


@given(x=array_and_dtype(), decimals=st.integers(-1, 3))
def test_round_with_decimals_and_python_round(x, decimals):
    assert_same(traced(lambda a: fnp.round(a, decimals), x), np.round(x, decimals))
    assert_same(traced(lambda a: a.round(decimals), x), np.round(x, decimals))
    assert_same(traced(lambda a: round(a), x), np.round(x))      # an array, as in JAX
    np.testing.assert_array_equal(fg.grad(lambda a: fnp.sum(fnp.round(a, decimals) * a))(x),
                                  np.round(x, decimals))         # round itself: derivative 0


REDUCTION_OPTIONS = [
    ("sum", dict(where="mask")), ("sum", dict(dtype=np.float32)),
    ("sum", dict(initial=5.0, axis=0)), ("sum", dict(where="mask", initial=1.0, axis=1)),
    ("prod", dict(where="mask", axis=1)), ("prod", dict(initial=2.0)),
    ("max", dict(where="mask", initial=-10.0, axis=1)), ("max", dict(initial=0.5)),
    ("min", dict(where="mask", initial=10.0)), ("min", dict(initial=-0.5, axis=0)),
    ("mean", dict(where="mask", axis=1)), ("mean", dict(dtype=np.float32)),
    ("mean", dict(where="mask", keepdims=True, axis=0)),
]


@pytest.mark.parametrize("name, kw", REDUCTION_OPTIONS,
                         ids=[f"{n}-{'-'.join(k)}" for n, k in REDUCTION_OPTIONS])
def test_reduction_options_dtype_where_initial(name, kw):
    x = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    mask = np.abs(x) > 0.5
    kw = {k: (mask if v == "mask" else v) for k, v in kw.items()}
    want = getattr(np, name)(x, **kw)
    check(lambda a: getattr(fnp, name)(a, **kw), lambda a: getattr(np, name)(a, **kw), x)
    method = traced(lambda a: getattr(a, name)(**kw), x)           # the methods take them too
    assert_same(method, want)


def test_max_with_where_needs_initial():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="where= needs initial="):
        fnp.max(x, where=x > 0)
    with pytest.raises(ValueError, match="where= needs initial="):
        fg.jit(lambda a: fnp.min(a, where=a > 0))(x)


def test_creation_and_misc_options_follow_numpy_and_jax():
    x = np.linspace(-2.0, 2.0, 5)
    assert_same(fnp.clip(x, min=-1.0, max=1.0), np.clip(x, -1.0, 1.0))          # JAX's names
    assert_same(traced(lambda a: fnp.clip(a, max=0.5), x), np.clip(x, None, 0.5))
    with pytest.raises(TypeError, match="not both"):
        fnp.clip(x, -1.0, max=1.0)
    assert_same(fnp.einsum("i,i->", x, x, optimize=True), np.einsum("i,i->", x, x))
    assert_same(traced(lambda a: fnp.concatenate([a, a], dtype=np.float32), x),
                np.concatenate([x, x], dtype=np.float32))
    copied = fnp.asarray(x, copy=True)
    assert copied is not x and np.array_equal(copied, x)
    assert_same(fnp.zeros_like(x, shape=(2, 3)), np.zeros_like(x, shape=(2, 3)))
    assert_same(fnp.full_like(x, 2.0, shape=(2,)), np.full_like(x, 2.0, shape=(2,)))
    got, step = fnp.linspace(0.0, 1.0, 5, retstep=True)
    assert step == 0.25 and np.array_equal(got, np.linspace(0.0, 1.0, 5))
    assert_same(fnp.array(3.0, ndmin=2), np.array(3.0, ndmin=2))
    assert_same(traced(lambda a: fnp.array(a, ndmin=3), x), np.array(x, ndmin=3))
    assert_same(traced(lambda a: a.reshape(shape=(5, 1)), x), x.reshape(5, 1))


TESTED = {
    **{n: "test_unary" for n in UNARY}, **{n: "test_binary_broadcasting" for n in BINARY},
    "divmod": "test_floor_division_remainder_and_divmod",
    **{n: "test_bitwise_functions_and_operators" for n in [*BITWISE, "invert", "bitwise_not"]},
    **{n: "test_reductions" for n in REDUCTIONS},
    "argmax": "test_argreductions", "argmin": "test_argreductions", "where": "test_where_and_clip",
    "clip": "test_where_and_clip", "astype": "test_astype", "matmul": "test_matmul",
    "dot": "test_dot_inner_vdot_outer", "inner": "test_dot_inner_vdot_outer",
    "vdot": "test_dot_inner_vdot_outer", "outer": "test_dot_inner_vdot_outer",
    "tensordot": "test_tensordot", "einsum": "test_einsum",
    "transpose": "test_transpose_swapaxes_moveaxis", "swapaxes": "test_transpose_swapaxes_moveaxis",
    "moveaxis": "test_transpose_swapaxes_moveaxis", "reshape": "test_reshape_ravel_squeeze_expand_dims",
    "ravel": "test_reshape_ravel_squeeze_expand_dims", "squeeze": "test_reshape_ravel_squeeze_expand_dims",
    "expand_dims": "test_reshape_ravel_squeeze_expand_dims",
    "atleast_1d": "test_reshape_ravel_squeeze_expand_dims",
    "atleast_2d": "test_reshape_ravel_squeeze_expand_dims", "broadcast_to": "test_broadcast_to",
    "concatenate": "test_concatenate_stack_split", "stack": "test_concatenate_stack_split",
    "split": "test_concatenate_stack_split", "vstack": "test_concatenate_stack_split",
    "hstack": "test_concatenate_stack_split", "take": "test_take",
    "zeros_like": "test_like_functions", "ones_like": "test_like_functions",
    "full_like": "test_like_functions",
    **{n: "test_creation_functions" for n in ["zeros", "ones", "full", "eye", "arange", "linspace",
                                               "asarray", "array"]},
    "shape": "test_shape_ndim_size_and_constants", "ndim": "test_shape_ndim_size_and_constants",
    "size": "test_shape_ndim_size_and_constants", "at": "check_updates",
}
NOT_NUMPY_FUNCTIONS = {"bind", "dtype_of", "to_concrete", "valid_value"}   # re-exported helpers


def test_every_public_function_is_compared_with_numpy():
    public = {n for n in dir(fnp) if not n.startswith("_") and callable(getattr(fnp, n))
              and not isinstance(getattr(fnp, n), type)} - NOT_NUMPY_FUNCTIONS
    assert public - set(TESTED) == set()
    for name, test in TESTED.items():
        assert test in globals(), (name, test)


def test_reduction_dtype_integer_mean_and_empty_extrema_with_initial_follow_numpy():
    i = np.arange(12).reshape(3, 4)
    for name in ("sum", "prod"):
        check(lambda a: getattr(fnp, name)(a, 0, dtype=np.int32),
              lambda a: getattr(np, name)(a, 0, dtype=np.int32), i)
    check(lambda a: fnp.mean(a, 0, dtype=np.int64), lambda a: np.mean(a, 0, dtype=np.int64), i)
    e = np.ones((2, 0))
    for name in ("max", "min"):
        for kw in (dict(initial=5.0), dict(axis=1, initial=-1.0, keepdims=True)):
            check(lambda a: getattr(fnp, name)(a, **kw), lambda a: getattr(np, name)(a, **kw), e)
