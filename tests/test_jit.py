"""jit: caching and retracing, equality with the un-jitted function, composition, errors.

The oracle throughout is the same function run without jit (and, for the
derivatives, the un-jitted transformation).  ``trace_count`` counts how many
times the Python function was traced.
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Tracer
from funcgrad.tree_util import tree_leaves, tree_map, tree_structure

RNG = np.random.default_rng(0)


def assert_tree_equal(got, want, rtol=1e-12, atol=0.0):
    """Same pytree structure; every leaf a NumPy value of the same shape, dtype and (close) values."""
    assert tree_structure(got) == tree_structure(want)
    for g, w in zip(tree_leaves(got), tree_leaves(want)):
        assert isinstance(g, (np.ndarray, np.generic)), f"jit returned {type(g).__name__}"
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        if w.dtype.kind in "fc":
            tol = rtol if w.dtype == np.float64 else max(rtol, 1e-5)
            np.testing.assert_allclose(g, w, rtol=tol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)


# ------------------------------------------------------------------ caching ---

def test_traces_once_and_reruns_for_new_values():
    calls = []

    def f(x, y):
        calls.append(1)
        return fnp.sin(x) * y + 1.0

    fj = fg.jit(f)
    for _ in range(5):
        x, y = RNG.normal(size=3), RNG.normal(size=3)
        assert_tree_equal(fj(x, y), f(x, y))
    assert fj.trace_count == 1 and fj.cache_size() == 1
    assert len(calls) == 6          # 1 trace + 5 direct oracle calls: cached calls skip Python


def test_retraces_exactly_when_the_signature_changes():
    fj = fg.jit(lambda x: fnp.sum(x * x))
    x3 = np.ones(3)
    fj(x3)
    fj(x3 + 1)
    assert fj.trace_count == 1
    fj(np.ones(4))                                  # new shape
    assert fj.trace_count == 2
    fj(np.ones(3, np.float32))                      # new dtype
    assert fj.trace_count == 3
    fj(np.ones((3, 1)))                             # new rank
    assert fj.trace_count == 4
    for x in (np.full(3, 7.0), np.ones(4) * 2, np.zeros(3, np.float32), np.ones((3, 1))):
        fj(x)                                       # all seen before
    assert fj.trace_count == 4 and fj.cache_size() == 4
    fj.clear_cache()
    fj(x3)
    assert fj.trace_count == 5 and fj.cache_size() == 1


def test_python_scalars_key_on_type_not_value():
    fj = fg.jit(lambda x, s: x * s)
    x = np.ones(2)
    for s in (2.0, 3.5, -1.0):
        assert_tree_equal(fj(x, s), x * s)
    assert fj.trace_count == 1
    fj(x, 2)                     # an int is another signature
    fj(x, np.float64(2.0))       # and so is a NumPy scalar
    assert fj.trace_count == 3
    assert_tree_equal(fj(x, 5), x * 5)
    assert fj.trace_count == 3


def test_retraces_for_a_new_pytree_structure():
    fj = fg.jit(lambda p: tree_map(lambda a: a * 2, p))
    a, b = np.ones(2), np.arange(3.0)
    fj((a, b))
    fj((a + 1, b - 1))
    assert fj.trace_count == 1
    assert isinstance(fj([a, b]), list)                        # list vs tuple
    assert fj.trace_count == 2
    out = fj({"w": a, "b": b})
    assert set(out) == {"w", "b"}
    fj({"w": a, "c": b})                                       # other keys
    fj({"w": a, "b": b, "c": b})                               # more leaves
    fj((a, (b,)))                                              # other nesting
    assert fj.trace_count == 6
    fj({"b": b * 3, "w": a})                                   # same dict, other order
    assert fj.trace_count == 6


SIGNATURES = [np.ones(3), np.ones(4), np.ones(3, np.float32), np.ones((3, 1)), 2.0, 2, np.float64(2.0),
              (np.ones(3),), [np.ones(3)], {"a": np.ones(3)}, (np.ones(3), np.ones(3))]


@given(calls=st.lists(st.tuples(st.integers(0, len(SIGNATURES) - 1), st.floats(-5, 5)), max_size=25))
def test_trace_count_is_the_number_of_distinct_signatures(calls):
    fj = fg.jit(lambda p: tree_map(lambda a: a * 2 + 1, p))
    seen = set()
    for k, v in calls:
        arg = tree_map(lambda a: a * v if isinstance(a, np.ndarray) else type(a)(v), SIGNATURES[k])
        assert_tree_equal(fj(arg), tree_map(lambda a: np.asarray(a * 2 + 1), arg))
        seen.add(k)
        assert fj.trace_count == len(seen) == fj.cache_size()


def test_static_argnums_key_on_value():
    calls = collections.Counter()

    def f(x, n, mode):
        calls[(n, mode)] += 1
        y = x ** n
        return fnp.sum(y) if mode == "sum" else fnp.max(y)

    fj = fg.jit(f, static_argnums=(1, 2))
    x = RNG.normal(size=4)
    assert_tree_equal(fj(x, 2, "sum"), f(x, 2, "sum"))
    assert_tree_equal(fj(x + 1, 2, "sum"), f(x + 1, 2, "sum"))
    assert fj.trace_count == 1
    assert_tree_equal(fj(x, 3, "sum"), f(x, 3, "sum"))
    assert_tree_equal(fj(x, 3, "max"), f(x, 3, "max"))
    assert fj.trace_count == 3
    fj(x, 2.0, "sum")            # 2.0 == 2 but a float is another static value
    assert fj.trace_count == 4
    fj(x, (2, 3)[0], "sum")
    assert fj.trace_count == 4


def test_static_argnums_negative_and_as_int():
    fj = fg.jit(lambda x, n: x * n, static_argnums=-1)
    assert_tree_equal(fj(np.ones(2), 3), np.full(2, 3.0))
    fj2 = fg.jit(lambda n, x: fnp.ones(n) * x, static_argnums=0)
    assert_tree_equal(fj2(3, 2.0), np.full(3, 2.0))
    assert_tree_equal(fj2(4, 2.0), np.full(4, 2.0))
    assert fj2.trace_count == 2


def test_lower_gives_the_cached_graph():
    fj = fg.jit(lambda x: fnp.tanh(x) * 2.0)
    x = np.ones(3)
    g = fj.lower(x)
    assert isinstance(g, fg.Jaxpr)
    assert [e.primitive.name for e in g.eqns] == ["tanh", "mul"]
    assert fj.lower(x + 5) is g
    fj(x)
    assert fj.trace_count == 1
    assert_tree_equal(fg.eval_jaxpr(g, x), np.tanh(x) * 2.0)


def test_keeps_name_and_doc():
    def my_function(x):
        """Docstring."""
        return x
    fj = fg.jit(my_function)
    assert fj.__name__ == "my_function" and fj.__doc__ == "Docstring."


# ----------------------------------------------------------- equal results ---

def _x(*shape, dtype=np.float64, low=-2.0, high=2.0):
    return RNG.uniform(low, high, size=shape).astype(dtype)


CASES = {
    "arith": (lambda x, y: (x + y) * (x - y) / (1.0 + y * y) - 2 * x, (_x(3, 4), _x(4))),
    "pow": (lambda x, y: fnp.abs(x) ** y + x ** 2 + x ** 3, (_x(3), _x(3))),
    "unary": (lambda x: [fnp.sin(x), fnp.cos(x), fnp.tan(x), fnp.tanh(x), fnp.exp(x), fnp.log(fnp.abs(x)),
                         fnp.log1p(fnp.abs(x)), fnp.expm1(x), fnp.sqrt(fnp.abs(x)), fnp.arctan(x),
                         fnp.sinh(x), fnp.cosh(x), fnp.abs(x), fnp.sign(x), -x, fnp.square(x)], (_x(5),)),
    "minmax": (lambda x, y: (fnp.maximum(x, y), fnp.minimum(x, 0.5), fnp.clip(x, -1, 1)), (_x(2, 3), _x(3))),
    "compare": (lambda x, y: (x < y, x <= y, x > y, x >= y, x == y, x != y,
                              fnp.logical_and(x > 0, y > 0), fnp.logical_or(x > 0, ~(y > 0)),
                              fnp.isfinite(fnp.log(y))),
                (np.array([0.5, -1.0, 3.0, 2.0]), np.array([0.5, 1.0, -1.0, 2.0]))),
    "where": (lambda x: fnp.where(x > 0, x, 0.1 * x), (_x(6),)),
    "reduce": (lambda x: (fnp.sum(x), fnp.sum(x, axis=0), fnp.mean(x, axis=1, keepdims=True), fnp.max(x),
                          fnp.min(x, axis=(0, 2)), fnp.prod(x, axis=-1), fnp.var(x), fnp.std(x, axis=0),
                          fnp.argmax(x, axis=1), fnp.argmin(x), fnp.logsumexp(x, axis=1)), (_x(2, 3, 4),)),
    "linalg": (lambda a, b, v: (a @ b, fnp.dot(a, v[:3]), fnp.matmul(v[:4], a), fnp.outer(v, v),
                                fnp.tensordot(a, b, axes=1), fnp.einsum("ij,jk->ik", a, b),
                                fnp.dot(v, v)), (_x(4, 3), _x(3, 2), _x(5))),
    "batched_matmul": (lambda a, b: a @ b, (_x(2, 3, 4), _x(4, 5))),
    "shape": (lambda x: (x.T, fnp.reshape(x, (4, -1)), fnp.ravel(x), fnp.swapaxes(x, 0, 2),
                         fnp.moveaxis(x, 0, -1), fnp.expand_dims(x, 1), fnp.squeeze(x[:, :1]),
                         fnp.broadcast_to(x[0], (5, 3, 4)), fnp.transpose(x, (1, 0, 2))), (_x(2, 3, 4),)),
    "join": (lambda x, y: (fnp.concatenate([x, y], axis=0), fnp.stack([x, y], axis=1),
                           fnp.split(fnp.concatenate([x, y]), 2)), (_x(2, 3), _x(2, 3))),
    "index": (lambda x: (x[0], x[1:3], x[::2, -1], x[:, None, 1], x[np.array([2, 0, 2])],
                         x[..., 1], x[np.array([0, 1]), np.array([2, 3])], x[-1, ::-1]), (_x(4, 5),)),
    "at": (lambda x, v: (fnp.at(x)[1].set(v), fnp.at(x)[:, 0].add(1.0),
                         fnp.at(x)[np.array([0, 0, 2])].add(v), fnp.at(x)[2:].multiply(2.0)),
           (_x(3, 4), _x(4))),
    "astype": (lambda x: (fnp.astype(x, np.float32) * 2, x.astype(np.int64), (x > 0).astype(np.float64)),
               (_x(4),)),
    "creation": (lambda x: (fnp.zeros_like(x) + x, fnp.ones_like(x), fnp.full_like(x, 3.0), fnp.eye(3) @ x,
                            fnp.arange(3.0) * x[0], fnp.linspace(0, 1, 3) + x[1]), (_x(3, 3),)),
    "logaddexp": (lambda x, y: fnp.logaddexp(x, y), (_x(4, low=-50, high=50), _x(4))),
    "len_iter": (lambda x: sum(row * i for i, row in enumerate(x)) + len(x), (_x(3, 2),)),
    "python_scalar_arg": (lambda x, s: (x * s, fnp.sin(s) * x, s * 2.0, fnp.sum(s), fnp.reshape(s, (1,)) + x),
                          (_x(3), 0.5)),
    "constant_output": (lambda x: (x, 1.0, np.arange(3.0)), (_x(2),)),
    "pytree_output": (lambda d: {"s": d["a"] + d["b"], "t": (d["a"] * 2, [d["b"].sum()])},
                      ({"a": _x(2), "b": _x(2)},)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_jit_equals_unjitted(name, dtype):
    f, args = CASES[name]
    args = tree_map(lambda a: a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a,
                    args)
    fj = fg.jit(f)
    with np.errstate(all="ignore"):
        want = f(*args)
        got = fj(*args)
        again = fj(*args)                       # the cached run too
    assert_tree_equal(got, want)
    assert_tree_equal(again, want)
    assert fj.trace_count == 1


@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                    elements=st.floats(-1e3, 1e3)))
def test_jit_equals_unjitted_on_random_shapes(x):
    def f(x):
        y = fnp.tanh(x) * x - fnp.exp(-x * x) / (1.0 + fnp.abs(x))
        return y, fnp.sum(y * y), fnp.max(x, axis=0) if x.ndim else x, fnp.where(x > 0, y, -y)
    assert_tree_equal(fg.jit(f)(x), f(x), rtol=1e-12)


def test_nan_and_inf_flow_through():
    f = lambda x: (x * 1.0, x * 0.0, x - x, x / x, fnp.sqrt(x), fnp.log(x), fnp.maximum(x, 0.0))
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 2.0])
    with np.errstate(all="ignore"):
        assert_tree_equal(fg.jit(f)(x), f(x))


# ------------------------------------------------------------ outputs, dtypes ---

def test_outputs_are_numpy_arrays():
    fj = fg.jit(lambda x: (fnp.sum(x), x[0], x * 2, 3.0, (x > 0)[0], fnp.argmax(x)))
    out = fj(np.arange(3.0))
    for o in out:
        assert isinstance(o, (np.ndarray, np.generic)) and not isinstance(o, Tracer)
        assert type(o) is not float and type(o) is not bool and type(o) is not int
    assert out[0].shape == () and out[3].dtype == np.float64 and out[4].dtype == np.bool_


def test_float32_stays_float32():
    x = _x(4, 3, dtype=np.float32)
    w = _x(3, 2, dtype=np.float32)
    fns = [lambda x: x * 2.0 + 1, lambda x: fnp.mean(x ** 2), lambda x: fnp.sqrt(fnp.abs(x)) / 3,
           lambda x: fnp.where(x > 0, x, 0.01 * x), lambda x: fnp.logsumexp(x, axis=1),
           lambda x: fnp.var(x, axis=0), lambda x: fnp.tanh(x @ w).sum(), lambda x: x.mean() * 0.5 - 1]
    for f in fns:
        for g in (f, fg.grad(lambda x: fnp.sum(f(x)))):
            out = fg.jit(g)(x)
            assert out.dtype == np.float32, f
            assert_tree_equal(out, g(x))
    v, gr = fg.jit(fg.value_and_grad(lambda w: fnp.mean(fnp.tanh(x @ w) ** 2)))(w)
    assert v.dtype == np.float32 and gr.dtype == np.float32
    h = fg.jit(fg.hessian(lambda x: fnp.sum(fnp.sin(x) ** 3)))(x[0])
    assert h.dtype == np.float32 and h.shape == (3, 3)


def test_mutating_a_result_never_changes_later_calls():
    fj = fg.jit(fg.grad(lambda x: fnp.sum(2.0 * x)))      # the gradient is a constant
    x = np.ones(3)
    out = fj(x)
    out += 100.0
    assert_tree_equal(fj(x), np.full(3, 2.0))
    ident = fg.jit(lambda x: x * 1)
    y = ident(x)
    y[0] = 5.0
    assert x[0] == 1.0
    assert_tree_equal(ident(x), np.ones(3))


_C = np.arange(6.0).reshape(2, 3)


@pytest.mark.parametrize("f", [
    lambda a: fnp.where(a > 0, _C, _C)[::-1],        # simplified to a view of the constant
    lambda a: (_C * 1.0).T + 0.0,
    lambda a: (a * 1.0).T,                          # simplified to a view of the argument
    lambda a: (a + 0.0).reshape(-1),
    lambda a: fnp.negative(-a)[::-1],
    lambda a: fg.stop_gradient(a)[0],
], ids=["where-const", "const-T", "arg-T", "arg-reshape", "arg-reversed", "arg-row"])
def test_results_that_are_views_of_arguments_or_constants_are_fresh(f):
    x = np.linspace(1.0, 2.0, 6).reshape(2, 3)
    x0, c0 = x.copy(), _C.copy()
    jf = fg.jit(f)
    first = jf(x)
    assert not np.shares_memory(first, x) and not np.shares_memory(first, _C)
    want = first.copy()
    first[...] = -7.0                                # mutate the result
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(_C, c0)
    np.testing.assert_array_equal(jf(x), want)


_XC = np.linspace(-1.0, 1.0, 12).reshape(4, 3)


@pytest.mark.parametrize("body", [
    lambda x, w: fnp.mean((x @ w) ** 2),
    lambda x, w: fnp.sum(x * w),
    lambda x, w: fnp.max(x * w),
    lambda x, w: fnp.prod(x[0] * w + 2.0),
    lambda x, w: fnp.logsumexp(x * w),
    lambda x, w: fnp.sum(fnp.einsum("ij,j->i", x, w)),
    lambda x, w: fnp.sum(fnp.concatenate([x[0] * w, w])),
    lambda x, w: fnp.sum(fnp.where(x > 0, x * w, 0.0)),
    lambda x, w: fnp.sum(fnp.broadcast_to(w, (4, 3)) * x),
    lambda x, w: fnp.sum(fnp.at(x)[0].set(w) ** 2),
    lambda x, w: fnp.sum((x * w).astype(np.float32)),
    lambda x, w: fnp.sum(fnp.take(x, fnp.argmax(w), axis=0) * w),
], ids=["mean", "sum", "max", "prod", "logsumexp", "einsum", "concatenate", "where",
        "broadcast_to", "at-set", "astype", "argmax"])
def test_a_jit_made_inside_a_transformation_may_close_over_its_tracers(body):
    # the jitted function gets concrete arguments but closes over w, a tracer of the outer
    # transformation: every transformation sees through it as if it were not jitted
    w0 = np.array([0.3, -0.2, 0.5])
    plain = lambda w: body(_XC, w)                           # noqa: E731
    jitted = lambda w: fg.jit(lambda x: body(x, w))(_XC)     # noqa: E731
    np.testing.assert_allclose(fg.grad(jitted)(w0), fg.grad(plain)(w0), rtol=1e-12)
    np.testing.assert_allclose(fg.jvp(jitted, (w0,), (np.ones(3),))[1],
                               fg.jvp(plain, (w0,), (np.ones(3),))[1], rtol=1e-12)
    ws = np.stack([w0, 2 * w0])
    np.testing.assert_allclose(fg.vmap(jitted)(ws), fg.vmap(plain)(ws), rtol=1e-12)
    np.testing.assert_allclose(fg.jit(jitted)(w0), plain(w0), rtol=1e-12)
    np.testing.assert_allclose(fg.hessian(jitted)(w0), fg.hessian(plain)(w0), rtol=1e-12)


def test_a_jit_closing_over_a_tracer_is_not_cached():
    jf_box = []

    def outer(w):
        if not jf_box:
            jf_box.append(fg.jit(lambda x: fnp.sum(x * w)))    # closes over the first call's w
        return jf_box[0](_XC)

    fg.grad(outer)(np.ones(3))
    assert jf_box[0].cache_size() == 0          # the first call's tracer was not kept
    with pytest.raises(fg.LeakedTracerError):    # and a later call does not reuse a dead one
        fg.grad(outer)(np.ones(3))


# -------------------------------------------------------------- composition ---

def init_mlp(sizes, dtype=np.float64):
    rng = np.random.default_rng(1)
    return [{"W": (rng.normal(size=(m, n)) / np.sqrt(m)).astype(dtype), "b": rng.normal(size=n).astype(dtype)}
            for m, n in zip(sizes[:-1], sizes[1:])]


def mlp(params, x):
    for layer in params[:-1]:
        x = fnp.tanh(x @ layer["W"] + layer["b"])
    return x @ params[-1]["W"] + params[-1]["b"]


def loss(params, x, y):
    return fnp.mean((mlp(params, x) - y) ** 2)


PARAMS = init_mlp([3, 8, 8, 2])
X, Y = RNG.normal(size=(10, 3)), RNG.normal(size=(10, 2))


def test_jit_of_grad_and_value_and_grad_on_mlp_pytrees():
    gj = fg.jit(fg.grad(loss))
    vgj = fg.jit(fg.value_and_grad(loss))
    want_g = fg.grad(loss)(PARAMS, X, Y)
    want_v = loss(PARAMS, X, Y)
    for _ in range(3):
        assert_tree_equal(gj(PARAMS, X, Y), want_g, rtol=1e-10)
        v, g = vgj(PARAMS, X, Y)
        assert_tree_equal(v, want_v, rtol=1e-12)
        assert_tree_equal(g, want_g, rtol=1e-10)
    assert gj.trace_count == 1 and vgj.trace_count == 1


def test_training_loop_under_jit_matches_eager():
    @fg.jit
    def step(p, x, y):
        g = fg.grad(loss)(p, x, y)
        return tree_map(lambda a, b: a - 0.1 * b, p, g)

    def eager_step(p, x, y):
        g = fg.grad(loss)(p, x, y)
        return tree_map(lambda a, b: a - 0.1 * b, p, g)

    p, q = PARAMS, PARAMS
    for _ in range(5):
        p, q = step(p, X, Y), eager_step(q, X, Y)
    assert_tree_equal(p, q, rtol=1e-10)
    assert step.trace_count == 1
    assert loss(p, X, Y) < loss(PARAMS, X, Y)


def test_grad_of_jit_inlines():
    fj = fg.jit(loss)
    assert_tree_equal(fg.grad(fj)(PARAMS, X, Y), fg.grad(loss)(PARAMS, X, Y), rtol=1e-10)
    assert_tree_equal(fg.value_and_grad(fj, argnums=1)(PARAMS, X, Y),
                      fg.value_and_grad(loss, argnums=1)(PARAMS, X, Y), rtol=1e-10)
    assert fj.trace_count == 0          # inlined into grad's trace, nothing cached


def test_vmap_of_jit_and_jit_of_vmap_per_example_gradients():
    per_ex = lambda p, x, y: loss(p, x[None], y[None])
    want = fg.vmap(fg.grad(per_ex), in_axes=(None, 0, 0))(PARAMS, X, Y)
    a = fg.vmap(fg.jit(fg.grad(per_ex)), in_axes=(None, 0, 0))(PARAMS, X, Y)
    b = fg.jit(fg.vmap(fg.grad(per_ex), in_axes=(None, 0, 0)))(PARAMS, X, Y)
    c = fg.jit(fg.vmap(fg.jit(fg.grad(per_ex)), in_axes=(None, 0, 0)))(PARAMS, X, Y)
    for got in (a, b, c):
        assert_tree_equal(got, want, rtol=1e-10)
    # summed per-example gradients are the batch gradient
    total = tree_map(lambda g: np.mean(g, axis=0), want)
    assert_tree_equal(total, fg.grad(loss)(PARAMS, X, Y), rtol=1e-10)


def test_nested_jit():
    inner = fg.jit(lambda x: fnp.sin(x) * 2.0)
    middle = fg.jit(lambda x: inner(x) + inner(x * 2))
    outer = fg.jit(lambda x: middle(x) * fnp.cos(x))
    x = _x(4)
    want = (np.sin(x) * 2 + np.sin(2 * x) * 2) * np.cos(x)
    assert_tree_equal(outer(x), want)
    assert_tree_equal(outer(x), want)
    assert outer.trace_count == 1
    assert_tree_equal(middle(x), np.sin(x) * 2 + np.sin(2 * x) * 2)
    assert middle.trace_count == 1
    # the inner call happened under the outer traces: the graph has both sin calls, merged by CSE
    names = [e.primitive.name for e in outer.lower(x).eqns]
    assert names.count("sin") == 2 and names.count("cos") == 1


@pytest.mark.parametrize("transform", [fg.jacfwd, fg.jacrev, fg.hessian])
def test_jit_of_jacobians(transform):
    f = lambda x: fnp.sum(fnp.sin(x) * x ** 2) if transform is fg.hessian else fnp.tanh(x) * x[0]
    x = _x(4)
    want = transform(f)(x)
    assert_tree_equal(fg.jit(transform(f))(x), want, rtol=1e-10)
    assert_tree_equal(transform(fg.jit(f))(x), want, rtol=1e-10)
    assert_tree_equal(fg.jit(transform(fg.jit(f)))(x), want, rtol=1e-10)


def test_hessian_of_rosenbrock_under_jit():
    def rosen(x):
        return fnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    x = _x(10)
    h = fg.jit(fg.hessian(rosen))(x)
    # hand-derived tridiagonal Hessian
    n = len(x)
    want = np.zeros((n, n))
    for i in range(n - 1):
        want[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        want[i + 1, i + 1] += 200
        want[i, i + 1] += -400 * x[i]
        want[i + 1, i] += -400 * x[i]
    np.testing.assert_allclose(h, want, rtol=1e-10, atol=1e-9)


def test_jvp_and_vjp_of_jit():
    f = lambda x, y: fnp.tanh(x) * y
    fj = fg.jit(f)
    x, y, t = _x(3), _x(3), _x(3)
    assert_tree_equal(fg.jvp(fj, (x, y), (t, t)), fg.jvp(f, (x, y), (t, t)))
    out, pull = fg.vjp(fj, x, y)
    out2, pull2 = fg.vjp(f, x, y)
    assert_tree_equal(out, out2)
    assert_tree_equal(pull(t), pull2(t))


def test_make_jaxpr_of_jit_shows_the_inlined_graph():
    g = fg.make_jaxpr(fg.jit(lambda x: fnp.exp(x) + 1.0))(np.ones(2))
    assert [e.primitive.name for e in g.eqns] == ["exp", "add"]


def test_control_flow_on_values_inside_grad_inside_jit_fails_but_outside_works():
    def f(x):
        return x * 2 if x > 0 else -x
    assert fg.grad(f)(3.0) == 2.0              # grad runs on concrete values
    with pytest.raises(fg.ConcretizationError):
        fg.jit(fg.grad(f))(3.0)


# -------------------------------------------------------------------- errors ---

@pytest.mark.parametrize("body", [
    lambda x: x if x > 0 else -x,
    lambda x: x * 2 if bool(fnp.sum(x) > 0) else x,
    lambda x: x[: int(x[0])],
    lambda x: float(x[0]) * x,
    lambda x: x * 2 if (x > 0).sum() else x,
    lambda x: x * (1 if x[0] and x[1] else 2),
], ids=["if", "bool", "int-slice", "float", "sum", "and"])
def test_python_control_flow_on_traced_values_raises(body):
    fj = fg.jit(body)
    with pytest.raises(fg.ConcretizationError) as info:
        fj(np.array([1.0, 2.0]))
    msg = str(info.value)
    assert "jit" in msg and "concrete" in msg
    assert "fnp.where" in msg and "static_argnums" in msg


def test_while_loop_on_traced_value_raises_and_static_argnums_fixes_it():
    def f(x, n):
        while n > 0:
            x = fnp.sin(x)
            n = n - 1
        return x
    with pytest.raises(fg.ConcretizationError, match="static_argnums"):
        fg.jit(f)(np.ones(2), 3)
    fj = fg.jit(f, static_argnums=1)
    assert_tree_equal(fj(np.ones(2), 3), np.sin(np.sin(np.sin(np.ones(2)))))
    assert_tree_equal(fj(np.ones(2), 0), np.ones(2))


def test_fnp_where_is_the_fix_for_if():
    f = lambda x: fnp.where(x > 0, x, -x)
    x = _x(5)
    assert_tree_equal(fg.jit(f)(x), np.abs(x))


def test_static_argnums_makes_python_branching_work():
    def f(x, mode):
        if mode == "double":
            return x * 2
        return x
    fj = fg.jit(f, static_argnums=(1,))
    assert_tree_equal(fj(np.ones(2), "double"), np.full(2, 2.0))
    assert_tree_equal(fj(np.ones(2), "same"), np.ones(2))
    assert fj.trace_count == 2


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, np.ones(2), {1, 2}])
def test_unhashable_static_argument_is_a_type_error_naming_it(bad):
    fj = fg.jit(lambda x, cfg: x, static_argnums=1)
    with pytest.raises(TypeError) as info:
        fj(np.ones(2), bad)
    msg = str(info.value)
    assert "static" in msg and "1" in msg and type(bad).__name__ in msg and "hashable" in msg


def test_static_argnums_out_of_range():
    with pytest.raises(ValueError, match="static_argnums"):
        fg.jit(lambda x: x, static_argnums=3)(np.ones(2))


def test_non_array_argument_is_a_type_error_suggesting_static():
    with pytest.raises(TypeError, match="static_argnums"):
        fg.jit(lambda x, s: x)(np.ones(2), "a string")


def test_shape_errors_inside_jit_are_the_eager_errors():
    f = lambda x, y: x + y
    with pytest.raises(ValueError, match="broadcast"):
        fg.jit(f)(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="matmul"):
        fg.jit(lambda a, b: a @ b)(np.ones((2, 3)), np.ones((2, 3)))


def test_leaked_tracer_used_outside_raises():
    leaked = []

    def f(x):
        leaked.append(x)
        return x * 2

    fj = fg.jit(f)
    assert_tree_equal(fj(np.ones(2)), np.full(2, 2.0))
    t = leaked[0]
    for use in (lambda: t + 1, lambda: fnp.sin(t), lambda: np.sin(t), lambda: np.asarray(t),
                lambda: t > 0, lambda: bool(t[0]), lambda: t.sum(), lambda: float(t[0])):
        with pytest.raises(fg.LeakedTracerError, match="leak"):
            use()


def test_leaked_tracer_used_in_a_later_transformation_raises():
    leaked = []
    fg.jit(lambda x: leaked.append(x) or x)(np.ones(2))
    t = leaked[0]
    for transform in (fg.jit, fg.grad, fg.vmap, fg.make_jaxpr):
        g = transform(lambda x: fnp.sum(x * t))
        with pytest.raises(fg.LeakedTracerError) as info:
            g(np.ones(2))
        assert "jit" in str(info.value) and "leak" in str(info.value)


def test_leaked_tracer_from_a_closure_in_a_cached_function():
    """A function that leaks a tracer and uses it on a *later* trace must not give a wrong answer."""
    state = {}

    def f(x):
        if "t" in state:
            return x + state["t"]        # a tracer of an earlier, finished trace
        state["t"] = x
        return x

    fj = fg.jit(f)
    fj(np.ones(2))
    with pytest.raises(fg.LeakedTracerError):
        fj(np.ones(3))                   # new shape: retraced, uses the stale tracer


def test_leaked_tracer_from_inner_jit_of_outer_jit():
    store = []
    inner = fg.jit(lambda x: store.append(x) or x + 1)
    outer = fg.jit(lambda x: inner(x) * 2)
    assert_tree_equal(outer(np.ones(2)), np.full(2, 4.0))
    with pytest.raises(fg.LeakedTracerError):
        store[0] * 3


def test_errors_while_tracing_leave_no_trace_behind():
    from funcgrad.core import current_traces
    fj = fg.jit(lambda x: x if x > 0 else -x)
    for _ in range(2):
        with pytest.raises(fg.ConcretizationError):
            fj(np.ones(2))
    assert current_traces() == [] and fj.cache_size() == 0
    assert_tree_equal(fg.jit(lambda x: x * 2)(np.ones(2)), np.full(2, 2.0))


def test_leaked_tracer_passed_back_into_jit_raises():
    leaked = []
    fg.jit(lambda x: leaked.append(x) or x)(np.ones(2))
    with pytest.raises(fg.LeakedTracerError):
        fg.jit(lambda x: x * 2)(leaked[0])


def test_closed_over_tracer_of_an_outer_transformation():
    """A jit created inside grad/vmap closes over the outer tracer: still the right derivative."""
    def f(s):
        g = fg.jit(lambda y: fnp.sin(y * s))
        return fnp.sum(g(np.arange(3.0)))
    np.testing.assert_allclose(fg.grad(f)(2.0), np.sum(np.arange(3.0) * np.cos(np.arange(3.0) * 2.0)))
    out = fg.vmap(lambda s: fg.jit(lambda y: y * s)(np.ones(2)))(np.arange(3.0))
    assert_tree_equal(out, np.arange(3.0)[:, None] * np.ones(2))


@pytest.mark.parametrize("n", [3, 5000])
def test_closed_over_tracer_with_in_place_candidates(n):
    """Intermediates that die inside the jitted body would be overwritten in place, but
    with a closed-over outer tracer they are tracers: no buffers to write into."""
    y = np.linspace(0.0, 1.0, n)

    def f(s):
        g = fg.jit(lambda y: fnp.exp(fnp.sin(y * s) * 2.0) + 1.0)
        return fnp.sum(g(y))
    want = np.sum(np.exp(np.sin(y * 0.5) * 2.0) * 2.0 * np.cos(y * 0.5) * y)
    np.testing.assert_allclose(fg.grad(f)(0.5), want, rtol=1e-12)


def test_returning_a_non_array_is_a_type_error():
    with pytest.raises(TypeError):
        fg.jit(lambda x: "text")(np.ones(2))


# ------------------------------------------------------ horizontal stacking ---

def _source(jf, *args):
    from funcgrad.jit import compile_jaxpr
    return compile_jaxpr(jf.lower(*args)).source


def _chain(n):
    """The sum of ``n`` steps x -> tanh(exp(sin(x) * a + b)), as in bench/'s chain."""
    a, b = np.linspace(0.5, 1.0, 16), np.linspace(-0.2, 0.2, 16)
    step = lambda x, _: fnp.tanh(fnp.exp(fnp.sin(x) * a + b))  # noqa: E731
    return lambda x: fnp.sum(functools.reduce(step, range(n), x))


def test_stacked_groups_in_a_chain_gradient_equal_eager_bit_for_bit():
    """cos(x_i), t_i * t_i and 1 - t_i**2 of every step run as three stacked calls."""
    x = np.random.default_rng(0).standard_normal(16)
    g = fg.grad(_chain(12))
    jg = fg.jit(g)
    src = _source(jg, x)
    assert "_np_cos(b0[0:12])" in src and "_np_multiply(b0[1:13], b0[1:13])" in src
    assert src.count("_np_cos(") == 1 and src.count("_np_tanh(") == 12
    np.testing.assert_array_equal(jg(x), g(x))
    np.testing.assert_array_equal(jg(x + 1.0), g(x + 1.0))          # the same buffers, reused


def test_small_groups_are_not_stacked():
    x = np.random.default_rng(0).standard_normal(16)
    src = _source(fg.jit(fg.grad(_chain(3))), x)
    assert "_np_empty" not in src and src.count("_np_cos(") == 3


def _many(xs, c):
    """Independent same-op work on each argument: stackable groups with shared operands
    (a literal, a constant), groups fed by arguments (copied into a buffer), a group fed
    by another group's result, and members that are outputs."""
    ys = [fnp.exp(x) for x in xs]                    # exp of arguments: copies into rows
    zs = [fnp.sin(y) * c for y in ys]               # sin: rows written by exp; * c shared
    ws = [2.0 - z for z in zs]                      # fed by the stacked product
    return [fnp.sum(w * y) for w, y in zip(ws, ys)], ys[0], ws[-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [4, 7])
def test_stacked_groups_with_shared_operands_and_outputs(dtype, n):
    rng = np.random.default_rng(n)
    xs = [rng.standard_normal((2, 3)).astype(dtype) for _ in range(n)]
    c = rng.standard_normal(3).astype(dtype)
    saved = [x.copy() for x in xs]
    jf = fg.jit(lambda *xs: _many(xs, c))
    src = _source(jf, *xs)
    assert "_np_empty" in src and src.count("_np_sin(") == 1
    want = _many(xs, c)
    got = jf(*xs)
    assert_tree_equal(got, want, rtol=0)
    for leaf in tree_leaves(got):
        assert leaf.dtype == dtype
        leaf[...] = np.nan                 # results are the caller's: the next call is unaffected
    assert_tree_equal(jf(*xs), want, rtol=0)
    for x, s in zip(xs, saved):
        np.testing.assert_array_equal(x, s)
    # and the gradient of the whole, whose backward pass has stackable groups too
    loss = lambda *xs: sum(_many(xs, c)[0])  # noqa: E731
    assert_tree_equal(fg.jit(fg.grad(loss, argnums=tuple(range(n))))(*xs),
                      fg.grad(loss, argnums=tuple(range(n)))(*xs), rtol=1e-6)


@given(st.integers(4, 9), st.integers(0, 2 ** 16), st.sampled_from(["sin", "exp", "tanh", "neg"]),
       st.sampled_from([(4,), (2, 3), (1,)]))
def test_stacked_groups_match_eager_on_random_sizes(n, seed, op, shape):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(shape) for _ in range(n)]
    fn = getattr(fnp, {"neg": "negative"}.get(op, op))

    def f(*xs):
        a = [fn(x * 0.5) for x in xs]           # x * 0.5 of arguments, then op of each
        b = [fn(y) + 1.0 for y in a[::-1]]       # order reversed: rows still line up
        return [u * v for u, v in zip(a, b)]
    assert_tree_equal(fg.jit(f)(*xs), f(*xs), rtol=0)


@given(st.data())
def test_stacking_on_random_wide_programs_matches_eager(data):
    """Lanes of same-shape values, each layer one op per lane: a unary ufunc, a binary one
    with an operand shared by every lane (literal, constant, argument), or x * x; lanes
    permuted between layers, some of them outputs.  jit (which stacks the layers) must
    give the eager values and dtypes, and leave its arguments alone."""
    n = data.draw(st.integers(1, 7), label="lanes")
    depth = data.draw(st.integers(1, 4), label="layers")
    shape = data.draw(st.sampled_from([(3,), (2, 2), (5,)]), label="shape")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
    xs = [rng.uniform(0.5, 1.5, shape).astype(dtype) for _ in range(n)]
    const = rng.uniform(0.5, 1.5, shape[-1:]).astype(dtype)
    layers = []
    for _ in range(depth):
        op = data.draw(st.sampled_from(["sin", "exp", "tanh", "square", "times_lit", "plus_const",
                                        "minus_arg", "div_lit"]), label="op")
        layers.append((op, data.draw(st.permutations(range(n)), label="perm")))
    keep = data.draw(st.sets(st.integers(0, n - 1)), label="outputs")

    def f(*xs):
        lanes, outs = list(xs), []
        for op, perm in layers:
            lanes = [lanes[i] for i in perm]
            lanes = [{"sin": fnp.sin, "exp": fnp.exp, "tanh": fnp.tanh,
                      "square": lambda v: v * v, "times_lit": lambda v: v * 0.75,
                      "plus_const": lambda v: v + const, "minus_arg": lambda v: xs[0] - v,
                      "div_lit": lambda v: 1.5 / v}[op](v) for v in lanes]
            outs += [lanes[i] for i in sorted(keep)]
        return outs, fnp.sum(fnp.stack(lanes))
    saved = [x.copy() for x in xs]
    with np.errstate(all="ignore"):        # xs[0] - xs[0] can be 0, and 1.5 / 0 inf
        want = f(*xs)
        got = fg.jit(f)(*xs)
    assert_tree_equal(got, want, rtol=0)
    for a, b in zip(tree_leaves(got), tree_leaves(want)):
        assert a.dtype == b.dtype
    for x, s in zip(xs, saved):
        np.testing.assert_array_equal(x, s)


def test_pytree_deeper_than_the_recursion_limit_takes_the_general_path():
    """The per-call signature walk is recursive (fast); a deeper tree falls back."""
    import sys
    deep = np.arange(3.0)
    for _ in range(sys.getrecursionlimit() + 100):
        deep = (deep,)

    def f(t):
        while isinstance(t, tuple):
            t = t[0]
        return t * 2.0
    jf = fg.jit(f)
    np.testing.assert_array_equal(jf(deep), np.arange(3.0) * 2.0)
    np.testing.assert_array_equal(jf(deep), np.arange(3.0) * 2.0)
    assert jf.trace_count == 1


@pytest.mark.parametrize("f, args, exc, needles", [
    (lambda x, i: x[i], (np.ones((2, 3)), 5), IndexError, ("gather", "(2, 3)", "index 5")),
    (lambda x, i: x.at[i].add(1.0), (np.ones((2, 3)), 7), IndexError, ("scatter", "index 7")),
    (lambda x: fnp.logsumexp(x), (np.ones(0),), ValueError, ("logsumexp", "(0,)")),
    (lambda x: x ** -1, (np.arange(1, 3),), ValueError, ("pow", "negative integer powers")),
], ids=["index", "at-add", "empty-logsumexp", "int-pow"])
def test_errors_inside_compiled_code_name_the_operation(f, args, exc, needles):
    # values only known at run time (an index argument, an empty array): the compiled code
    # fails where the graph's interpreter would, and says which operation and shapes
    jf = fg.jit(f)
    with pytest.raises(exc) as info:
        jf(*args)
    for n in needles:
        assert n in str(info.value)
    assert "<funcgrad.jit>" not in str(info.value)


def test_a_constant_result_is_a_fresh_array_every_call():
    jh = fg.jit(fg.grad(lambda x, y: fnp.sum(x * 2.0) + y, argnums=1))   # d/dy is the literal 1
    x32, y32 = np.ones(3, np.float32), np.float32(1.0)
    out = jh(x32, y32)
    out[()] = 5.0
    assert jh(x32, y32) == 1.0 and jh(x32, y32).dtype == np.float32
    jc = fg.jit(lambda x: (x + 1.0, np.float32(2.5), 3.0))
    a = jc(x32)
    a[1][()], a[2][()] = 0.0, 0.0
    assert jc(x32)[1] == 2.5 and jc(x32)[2] == 3.0


@pytest.mark.parametrize("f, x", [
    (lambda x: x < 300, np.arange(3, dtype=np.uint8)),
    (lambda x: x != -1, np.arange(3, dtype=np.uint32)),
    (lambda x: x < 2 ** 70, np.arange(3)),
    (lambda x: fnp.where(x > 1, x, 2 ** 40), np.arange(3, dtype=np.int32)),
], ids=["uint8<300", "uint32!=-1", "int64<2**70", "where-int32"])
def test_python_ints_outside_the_operand_dtype_compare_as_numpy_does(f, x):
    assert_tree_equal(fg.jit(f)(x), f(x))


def test_in_place_results_keep_numpy_s_memory_layout():
    # sin(x.T) is Fortran-ordered; NumPy gives sin(x.T) * y in C order, and a later sum
    # along an axis adds in an order that depends on the layout: results stay bit-identical
    r = np.random.default_rng(0)
    x, y = r.standard_normal((64, 64)), r.standard_normal((64, 64))
    f = lambda x, y: fnp.sum(fnp.sin(x.T) * y, axis=1)         # noqa: E731
    np.testing.assert_array_equal(fg.jit(f)(x, y), f(x, y))
    g = lambda x, y: fnp.sin(x.T) * y                           # noqa: E731
    assert fg.jit(g)(x, y).flags.c_contiguous == g(x, y).flags.c_contiguous
    # the layout is checked at run time only where it depends on the arguments: results
    # of matmul, and ufuncs of them, are C-ordered whatever the arguments
    from funcgrad.jit import compile_jaxpr
    mlp = fg.jit(lambda w, x: fnp.sum(fnp.maximum(x @ w + 1.0, 0.0) * 2.0))
    assert "c_contiguous" not in compile_jaxpr(fg.jit(fg.grad(mlp)).lower(x, y)).source
    assert "c_contiguous" in compile_jaxpr(fg.jit(f).lower(x, y)).source
    h = lambda x: fnp.exp(fnp.sin(x.T))                         # all Fortran: reuse is fine
    assert fg.jit(h)(x).flags.f_contiguous == h(x).flags.f_contiguous
    np.testing.assert_array_equal(fg.jit(h)(x), h(x))
