"""The graph IR: make_jaxpr / eval_jaxpr round trips for every primitive, golden listings,
constants and literals, pytrees, static arguments, concretization errors and deep graphs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Tracer
from funcgrad.ir import Eqn, Jaxpr, Literal, Var
from funcgrad.primitives import registry
from funcgrad.tree_util import tree_leaves, tree_structure


def assert_tree_equal(got: Any, expected: Any, rtol: float = 0.0) -> None:
    assert tree_structure(got) == tree_structure(expected)
    for g, e in zip(tree_leaves(got), tree_leaves(expected)):
        assert not isinstance(g, Tracer)
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, e.shape, g.dtype, e.dtype)
        if rtol:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)
        else:
            np.testing.assert_array_equal(g, e)


def prims(jaxpr: Jaxpr) -> list[str]:
    return [e.primitive.name for e in jaxpr.eqns]


# ----------------------------------------------- every primitive round-trips ---

rng = np.random.default_rng(0)
X = rng.standard_normal((3, 4))
Y = rng.standard_normal((3, 4))
P = rng.uniform(0.5, 2.0, (3, 4))
V = rng.standard_normal(4)
M = rng.standard_normal((4, 2))
IDX = np.array([2, 0, 2])

# name: (function, arguments); together they use every registered primitive
PROGRAMS: dict[str, tuple[Callable, tuple]] = {
    "arithmetic": (lambda x, y: (x + y, x - y, x * y, x / (y * y + 1.0), -x, x ** 2, 2.0 ** x), (X, Y)),
    "pow_arrays": (lambda p, y: fnp.power(p, y), (P, Y)),
    "transcendental": (lambda x, p: (fnp.exp(x), fnp.log(p), fnp.log1p(p), fnp.expm1(x), fnp.sqrt(p),
                                     fnp.sin(x), fnp.cos(x), fnp.tan(x * 0.3), fnp.tanh(x), fnp.sinh(x),
                                     fnp.cosh(x), fnp.arctan(x), fnp.abs(x)), (X, P)),
    "step": (lambda x: registry["step"].bind(x - 0.5), (np.array([0.0, 0.5, 1.0]),)),
    "floor-division": (lambda x, y: (x // y, x % y, fnp.divmod(x, 2.0), 7.0 % x), (X, P)),
    "rounding": (lambda x: (fnp.ceil(x), fnp.trunc(x), fnp.rint(x), fnp.round(x, 1)), (X,)),
    "piecewise": (lambda x, y: (fnp.sign(x), fnp.floor(x), fnp.maximum(x, y), fnp.minimum(x, y),
                                fnp.clip(x, -0.5, 0.5), fnp.where(x > y, x, y)), (X, Y)),
    "comparisons": (lambda x, y: (x == y, x != y, x < y, x <= y, x > y, x >= y,
                                  fnp.logical_and(x > 0, y > 0), fnp.logical_or(x > 0, y > 0),
                                  fnp.logical_not(x > 0), fnp.isfinite(x / y)), (X, Y)),
    "bitwise": (lambda i, b: (i & 6, 5 | i, i ^ i[::-1], ~i, b & (i > 0), ~b, b ^ True),
                (np.array([3, -2, 7, 0]), np.array([True, False, True, True]))),
    "reductions": (lambda x: (fnp.sum(x), fnp.sum(x, 0), fnp.max(x, 1), fnp.min(x, keepdims=True),
                              fnp.prod(x, -1), fnp.argmax(x), fnp.argmin(x, 0), fnp.mean(x), fnp.var(x, 1),
                              fnp.logsumexp(x, 1)), (X,)),
    "shape": (lambda x, v: (x.reshape(2, 6), x.T, fnp.broadcast_to(v, (2, 3, 4)),
                            fnp.concatenate([x, x * 2], 1), fnp.stack([x, x]), fnp.squeeze(x[:1]),
                            fnp.expand_dims(v, 0), fnp.moveaxis(x[None], 0, -1)), (X, V)),
    "linalg": (lambda x, m, v: (x @ m, fnp.dot(v, m), fnp.einsum("ij,jk->ik", x, m),
                                fnp.tensordot(x, m, 1), fnp.outer(v, v), x @ v), (X, M, V)),
    "indexing": (lambda x, i: (x[1], x[:, ::-2], x[i], x[i, 1:], x[..., None, 0], x[x.shape[0] - 1, i],
                               fnp.at(x)[i].add(1.0), fnp.at(x)[0, 1:3].set(0.0),
                               fnp.at(x)[:, i[:2]].multiply(2.0)),
                 (X, IDX)),
    "dtypes": (lambda x: (x.astype(np.float32), fg.stop_gradient(x), fnp.astype(x > 0, np.int64)), (X,)),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_eval_jaxpr_equals_function(name):
    f, args = PROGRAMS[name]
    expected = f(*args)
    jaxpr = fg.make_jaxpr(f)(*args)
    assert_tree_equal(fg.eval_jaxpr(jaxpr, *args), expected, rtol=1e-13)
    # the same graph at other values of the same shapes
    others = tuple(a + 0.25 if a.dtype.kind == "f" else a for a in args)
    assert_tree_equal(fg.eval_jaxpr(jaxpr, *others), f(*others), rtol=1e-13)
    # every equation's output aval is what its primitive's shape/dtype rule said
    for e in jaxpr.eqns:
        assert e.outputs[0].aval == e.primitive.abstract_eval(*[a.aval for a in e.inputs], **e.params)


def test_programs_cover_every_primitive():
    seen: set[str] = set()
    for f, args in PROGRAMS.values():
        seen.update(prims(fg.make_jaxpr(f)(*args)))
    assert set(registry) - seen == set(), "primitives without a round-trip test"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_eval_jaxpr_hypothesis(dtype, data):
    """Random compositions of ops on random broadcastable shapes evaluate like the function."""
    s = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    el = st.floats(-2, 2, width=32 if dtype == np.float32 else 64)
    x = data.draw(hnp.arrays(dtype, s.input_shapes[0], elements=el))
    y = data.draw(hnp.arrays(dtype, s.input_shapes[1], elements=el))
    ops = data.draw(st.lists(st.sampled_from(["add", "mul", "sub", "tanh", "max", "sin", "where", "sq"]),
                             min_size=1, max_size=8))

    def f(x, y):
        for op in ops:
            if op == "add":
                x = x + y
            elif op == "mul":
                x = x * y
            elif op == "sub":
                x = 1.5 - x
            elif op == "tanh":
                x = fnp.tanh(x)
            elif op == "max":
                x = fnp.maximum(x, y)
            elif op == "sin":
                x = fnp.sin(x)
            elif op == "where":
                x = fnp.where(x > 0, x, 0.5 * y)
            else:
                x = x * x
        return x, fnp.sum(x, axis=-1) if np.ndim(x) else x

    jaxpr = fg.make_jaxpr(f)(x, y)
    assert_tree_equal(fg.eval_jaxpr(jaxpr, x, y), f(x, y))
    assert [v.aval.dtype for v in jaxpr.outvars] == [np.dtype(dtype)] * 2


# ------------------------------------------------------------ golden listings ---

def test_lecture_example_add_then_mul():
    def f(x, y, z):
        return (x + y) * z

    x = np.ones(3, np.float32)
    jaxpr = fg.make_jaxpr(f)(x, x, x)
    assert str(jaxpr) == (
        "{ lambda ; a:f32[3] b:f32[3] c:f32[3]. let\n"
        "    d:f32[3] = add a b\n"
        "    e:f32[3] = mul d c\n"
        "  in (e,) }")
    assert prims(jaxpr) == ["add", "mul"]
    add, mul = jaxpr.eqns
    a, b, c = jaxpr.invars
    assert add.inputs == [a, b] and mul.inputs == [add.outputs[0], c]
    assert jaxpr.outvars == [mul.outputs[0]]
    assert jaxpr.consts == [] and all(e.params == {} for e in jaxpr.eqns)
    np.testing.assert_array_equal(fg.eval_jaxpr(jaxpr, x, 2 * x, 3 * x), np.full(3, 9.0, np.float32))

    scalar = fg.make_jaxpr(f)(1.0, 2.0, 3.0)
    assert str(scalar) == (
        "{ lambda ; a:f64[] b:f64[] c:f64[]. let\n"
        "    d:f64[] = add a b\n"
        "    e:f64[] = mul d c\n"
        "  in (e,) }")
    assert fg.eval_jaxpr(scalar, 1.0, 2.0, 3.0) == 9.0


def test_listing_with_constant_and_literal():
    c = np.array([1.0, 2.0, 3.0])
    jaxpr = fg.make_jaxpr(lambda x: fnp.sin(x) * c + 1.0)(np.zeros(3))
    assert str(jaxpr) == (
        "{ lambda a:f64[3]; b:f64[3]. let\n"
        "    c:f64[3] = sin b\n"
        "    d:f64[3] = mul c a\n"
        "    e:f64[3] = add d 1.0\n"
        "  in (e,) }")
    assert len(jaxpr.consts) == 1                               # captured arrays become constants
    np.testing.assert_array_equal(jaxpr.consts[0], c)
    assert isinstance(jaxpr.constvars[0], Var) and jaxpr.constvars[0].aval.shape == (3,)
    lit = jaxpr.eqns[2].inputs[1]
    assert isinstance(lit, Literal) and lit.val == 1.0          # Python scalars stay inline
    assert lit.aval.weak_type


def test_listing_with_params_and_index_arrays():
    def f(x):
        return (fnp.sum(x, axis=1), x[1:, ::2, None], x[np.array([0, 2])], x.reshape(-1), x.T,
                x.astype(np.float32))

    jaxpr = fg.make_jaxpr(f)(np.ones((3, 4)))
    assert str(jaxpr) == (
        "{ lambda a:i64[2]; b:f64[3,4]. let\n"
        "    c:f64[3] = reduce_sum[axes=(1,) keepdims=False] b\n"
        "    d:f64[2,2,1] = gather[index=[1:, ::2, None]] b\n"
        "    e:f64[2,4] = gather[index=[#0]] b a\n"
        "    f:f64[12] = reshape[shape=(12,)] b\n"
        "    g:f64[4,3] = transpose[perm=(1, 0)] b\n"
        "    h:f32[3,4] = convert[dtype=float32] b\n"
        "  in (c, d, e, f, g, h) }")
    assert jaxpr.eqns[0].params == {"axes": (1,), "keepdims": False}


def test_listing_scatter_and_mixed_dtypes():
    jaxpr = fg.make_jaxpr(lambda x, i: x.at[i].add(2.0) * np.float32(0.5))(
        np.ones(4, np.float32), np.array([1, 1]))
    assert str(jaxpr) == (
        "{ lambda ; a:f32[4] b:i64[2]. let\n"
        "    c:f32[4] = scatter[index=[#0] mode='add'] a 2.0 b\n"
        "    d:f32[4] = mul c 0.5:f32[]\n"
        "  in (d,) }")


def test_one_equation_per_line_with_shapes_and_dtypes():
    def f(x):
        h = fnp.tanh(x @ np.ones((4, 5), np.float32))
        return fnp.sum(h ** 2)

    jaxpr = fg.make_jaxpr(f)(np.ones((2, 4), np.float32))
    lines = str(jaxpr).splitlines()
    assert len(lines) == len(jaxpr.eqns) + 2
    for line, e in zip(lines[1:-1], jaxpr.eqns):
        assert f" = {e.primitive.name}" in line
        assert f":{e.outputs[0].aval.str_short()} =" in line
    assert repr(jaxpr) == str(jaxpr)


def test_many_variables_get_distinct_names():
    def f(x):
        for _ in range(60):
            x = x + 1.0
        return x

    text = str(fg.make_jaxpr(f)(0.0))
    names = [line.split(":")[0].strip() for line in text.splitlines()[1:-1]]
    assert len(set(names)) == 60 and "ba" in names


# ------------------------------------------------- graph object structure ---

def test_graph_fields():
    c = np.arange(3.0)

    def f(x, y):
        return fnp.sum(x * c + y, axis=0), 2.0

    jaxpr = fg.make_jaxpr(f)(np.ones(3), 1.0)
    assert [v.aval.shape for v in jaxpr.invars] == [(3,), ()]
    assert all(isinstance(e, Eqn) for e in jaxpr.eqns)
    for e in jaxpr.eqns:
        assert isinstance(e.params, dict)
        assert all(isinstance(a, (Var, Literal)) for a in e.inputs)
        assert all(isinstance(v, Var) for v in e.outputs)
    assert isinstance(jaxpr.outvars[1], Literal)          # a literal output
    assert fg.eval_jaxpr(jaxpr, np.ones(3), 1.0) == (6.0, 2.0)
    assert [a.dtype for a in jaxpr.in_avals] == [np.float64, np.float64]
    assert jaxpr.out_avals[0].shape == ()


def test_outputs_that_are_inputs_constants_or_literals():
    c = np.array([5.0, 6.0])
    jaxpr = fg.make_jaxpr(lambda x: (x, c, 3, np.float32(1.5)))(np.ones(2))
    assert jaxpr.eqns == []
    out = fg.eval_jaxpr(jaxpr, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(out[0], [1.0, 2.0])
    np.testing.assert_array_equal(out[1], c)
    assert out[2] == 3 and out[3] == np.float32(1.5) and out[3].dtype == np.float32


def test_same_constant_captured_once():
    c = np.arange(4.0)
    jaxpr = fg.make_jaxpr(lambda x: x * c + c - c)(np.ones(4))
    assert len(jaxpr.consts) == 1


def test_pytree_inputs_and_outputs():
    c = np.array([1.0, 2.0, 3.0])

    def f(d, t):
        return {"s": d["a"] * 2, "p": (d["b"], 1.0, c)}, [t[0] + t[1]["k"], None]

    args = ({"b": np.ones(2), "a": np.float32(1.0)}, (np.ones(3), {"k": np.ones(3)}))
    jaxpr = fg.make_jaxpr(f)(*args)
    assert jaxpr.in_tree == tree_structure(args)
    assert jaxpr.out_tree == tree_structure(f(*args))
    assert [v.aval.str_short() for v in jaxpr.invars] == ["f32[]", "f64[2]", "f64[3]", "f64[3]"]
    out = fg.eval_jaxpr(jaxpr, *args)
    assert_tree_equal(out, f(*args))
    assert list(out[0]) == ["p", "s"]


def test_static_argnums():
    def f(x, n, mode):
        for _ in range(n):
            x = fnp.sin(x)
        return x * 2.0 if mode == "double" else x

    x = np.ones(3)
    j3 = fg.make_jaxpr(f, static_argnums=(1, 2))(x, 3, "double")
    assert prims(j3) == ["sin", "sin", "sin", "mul"]
    assert len(j3.invars) == 1
    np.testing.assert_allclose(fg.eval_jaxpr(j3, x), f(x, 3, "double"))
    j1 = fg.make_jaxpr(f, static_argnums=(-2, -1))(x, 1, "plain")
    assert prims(j1) == ["sin"]
    assert prims(fg.make_jaxpr(f, static_argnums=[1, 2])(x, 0, "plain")) == []
    j_int = fg.make_jaxpr(lambda n, x: x * n, static_argnums=0)(4, x)
    assert str(j_int).count("mul a 4") == 1
    with pytest.raises(ValueError, match="static_argnums"):
        fg.make_jaxpr(f, static_argnums=5)(x, 1, "plain")


def test_eval_jaxpr_argument_errors():
    jaxpr = fg.make_jaxpr(lambda x, y: x + y)(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="2 input arrays, got 1"):
        fg.eval_jaxpr(jaxpr, np.ones(3))
    with pytest.raises(ValueError, match=r"shape \(4,\).*expects \(3,\)"):
        fg.eval_jaxpr(jaxpr, np.ones(3), np.ones(4))


def test_graphs_of_transformed_functions_evaluate():
    def f(x):
        return fnp.sum(fnp.tanh(x) ** 2)

    x = np.linspace(-1, 1, 5)
    g_jaxpr = fg.make_jaxpr(fg.grad(f))(x)
    np.testing.assert_allclose(fg.eval_jaxpr(g_jaxpr, x), fg.grad(f)(x), rtol=1e-13)
    xs = np.stack([x, 2 * x])
    v_jaxpr = fg.make_jaxpr(fg.vmap(f))(xs)
    np.testing.assert_allclose(fg.eval_jaxpr(v_jaxpr, xs), [f(x), f(2 * x)], rtol=1e-13)


def test_nested_make_jaxpr_and_eval_inside_a_trace():
    x = np.arange(3.0)

    def outer(x):
        inner = fg.make_jaxpr(lambda y: fnp.exp(y) * x)(x)   # closes over the outer tracer
        return fg.eval_jaxpr(inner, x + 1.0)

    jaxpr = fg.make_jaxpr(outer)(x)
    assert prims(jaxpr) == ["add", "exp", "mul"]
    np.testing.assert_allclose(fg.eval_jaxpr(jaxpr, x), np.exp(x + 1.0) * x)


# ------------------------------------------------ Python control flow errors ---

CONTROL_FLOW = {
    "if": lambda x: x if x > 0 else -x,
    "while": lambda x: _while(x),
    "bool": lambda x: bool(x),
    "and": lambda x: (x > 0) and (x < 1),
    "not": lambda x: not x,
    "int": lambda x: int(x),
    "float": lambda x: float(x),
    "item": lambda x: x.item(),
    "tolist": lambda x: x.tolist(),
    "range": lambda x: [x for _ in range(x.astype(np.int64))],
    "index": lambda x: [1.0, 2.0][x.astype(np.int64)],
}


def _while(x):
    while x < 10:
        x = x * 2
    return x


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_control_flow_on_traced_value_raises_concretization_error(name):
    with pytest.raises(fg.ConcretizationError) as info:
        fg.make_jaxpr(CONTROL_FLOW[name])(0.5)
    msg = str(info.value)
    assert "fnp.where" in msg and "static_argnums" in msg
    assert "abstract value" in msg and "[]" in msg     # names the traced value's shape/dtype


def test_concretization_error_is_avoided_by_the_named_fixes():
    def relu(x):
        return fnp.where(x > 0, x, 0.0)

    j = fg.make_jaxpr(relu)(np.array([-1.0, 2.0]))
    np.testing.assert_array_equal(fg.eval_jaxpr(j, np.array([-1.0, 2.0])), [0.0, 2.0])

    def branch(x, flag):
        return x if flag > 0 else -x

    j = fg.make_jaxpr(branch, static_argnums=1)(np.ones(2), 1)
    assert prims(j) == []


# ------------------------------------------------------------ deep graphs ---

def test_deep_chain_traces_prints_and_evaluates():
    n = 5000

    def chain(x):
        for i in range(n):
            x = fnp.sin(x) + 0.001 * i if i % 2 else x * 0.999
        return x

    limit = sys.getrecursionlimit()
    x = np.array([0.3, -0.2])
    jaxpr = fg.make_jaxpr(chain)(x)
    assert len(jaxpr.eqns) >= n
    text = str(jaxpr)
    assert len(text.splitlines()) == len(jaxpr.eqns) + 2
    np.testing.assert_allclose(fg.eval_jaxpr(jaxpr, x), chain(x), rtol=1e-12)
    assert sys.getrecursionlimit() == limit     # nobody raised the limit to get here


def test_wide_graph_and_many_inputs():
    xs = [np.full(2, float(i)) for i in range(300)]

    def total(*xs):
        acc = xs[0]
        for x in xs[1:]:
            acc = acc + x
        return acc

    jaxpr = fg.make_jaxpr(total)(*xs)
    assert len(jaxpr.invars) == 300 and len(jaxpr.eqns) == 299
    np.testing.assert_array_equal(fg.eval_jaxpr(jaxpr, *xs), total(*xs))


# ------------------------------------------------ avals agree with evaluation ---

# (no Python bools: eagerly True + True is the int 2, traced it is NumPy's logical or)
SCALARS = [2.0, 3, -1.5, np.float32(1.5), np.float64(0.5), np.int32(2), np.array(0.25, np.float32)]
SCALAR_EXPRS: dict[str, Callable] = {
    "add": lambda x, a, b: x * (a + b),
    "sqrt": lambda x, a, b: x * fnp.sqrt(fnp.abs(a)),
    "sum": lambda x, a, b: x + fnp.sum(a),
    "reshape": lambda x, a, b: x * fnp.reshape(a, (1,)),
    "broadcast": lambda x, a, b: x * fnp.broadcast_to(a, (3,)),
    "stop_gradient": lambda x, a, b: x * fg.stop_gradient(a),
    "maximum": lambda x, a, b: x - fnp.maximum(a, b),
    "where": lambda x, a, b: x * fnp.where(a > 0, a, b),
    "astype": lambda x, a, b: x * fnp.astype(a, np.float32),
    "pow": lambda x, a, b: x ** a + b,
    "chain": lambda x, a, b: (x * a) * (b * a) + a * b,
}


@pytest.mark.parametrize("name", sorted(SCALAR_EXPRS))
@given(a=st.sampled_from(SCALARS), b=st.sampled_from(SCALARS),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_graph_types_agree_with_numpy_for_scalar_mixes(name, a, b, dtype):
    """Python numbers are weakly typed, NumPy scalars are not, and results of ops on Python
    numbers are NumPy scalars: the graph's avals must say what evaluating it gives."""
    f = SCALAR_EXPRS[name]
    x = np.linspace(0.5, 1.5, 3).astype(dtype)
    expected = f(x, a, b)
    for jaxpr, args in [(fg.make_jaxpr(f)(x, a, b), (x, a, b)),
                        (fg.make_jaxpr(lambda x: f(x, a, b))(x), (x,))]:
        out = fg.eval_jaxpr(jaxpr, *args)
        assert_tree_equal(out, expected, rtol=1e-6)
        assert jaxpr.out_avals[0].dtype == np.asarray(expected).dtype
        for e in jaxpr.eqns:   # every intermediate too, against the value the op really makes
            vals = [a_.val if isinstance(a_, Literal) else None for a_ in e.inputs]
            if all(v is not None for v in vals):
                assert np.asarray(e.primitive.impl(*vals, **e.params)).dtype == e.outputs[0].aval.dtype
