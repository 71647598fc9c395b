"""Every primitive: declared completely, and its derivative rules checked against
finite differences in forward and reverse mode up to order 2 (check_grads), on
random inputs including broadcasting, in float64 and float32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.primitives import registry
from funcgrad.test_util import check_grads

# ----------------------------------------------------------- registry walk ---


def test_every_primitive_is_fully_declared():
    missing = []
    for name, p in registry.items():
        for rule in ("impl", "abstract_eval", "batch"):
            if getattr(p, rule) is None:
                missing.append(f"{name}: no {rule}")
        if not p.zero_derivative and (p.jvp is None or p.vjp is None):
            missing.append(f"{name}: needs jvp and vjp rules, or zero_derivative=True")
        if p.zero_derivative and (p.jvp is not None or p.vjp is not None):
            missing.append(f"{name}: zero_derivative=True but also has AD rules")
    assert not missing, "incomplete primitives:\n" + "\n".join(missing)


@given(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
       st.sampled_from(["array32", "array64", "scalar64", "python"]))
def test_unbroadcast_sums_broadcast_axes_and_casts(shapes, kind):
    """``unbroadcast`` (concrete NumPy path and traced path) against a NumPy oracle."""
    from funcgrad.primitives._base import unbroadcast
    like_shape, other = shapes.input_shapes
    if kind in ("scalar64", "python"):
        like_shape = ()
    like = {"array32": np.ones(like_shape, np.float32), "array64": np.ones(like_shape),
            "scalar64": np.float64(1.0), "python": 1.0}[kind]
    g = np.random.default_rng(0).standard_normal(np.broadcast_shapes(like_shape, other))
    lead = g.ndim - len(like_shape)
    want = g.sum(axis=tuple(range(lead)))
    want = want.sum(axis=tuple(i for i, n in enumerate(like_shape) if n == 1), keepdims=True)
    want = want.reshape(like_shape).astype(np.float32 if kind == "array32" else np.float64)
    for got in (unbroadcast(g, like), fg.jit(lambda g: unbroadcast(g, like))(g)):
        assert np.shape(got) == like_shape and np.asarray(got).dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6 if kind == "array32" else 1e-12)


ELEMENTWISE_DIFF = sorted(n for n, p in registry.items() if p.vjp_terms is not None)


@pytest.mark.parametrize("name", ELEMENTWISE_DIFF)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("second", ["array", "broadcast", "python"])
def test_numpy_terms_equal_the_binder_terms_bit_for_bit(name, dtype, second):
    """The eager backward pass runs ``raw_terms`` (the derivative code with NumPy's
    functions in place of the binders) on concrete values: same values, same dtype."""
    p = registry[name]
    r = np.random.default_rng(0)
    n = len(p.vjp_terms)
    x = r.uniform(0.5, 2.0, (3, 4)).astype(dtype)
    y = {"array": r.uniform(0.5, 2.0, (3, 4)).astype(dtype),
         "broadcast": r.uniform(0.5, 2.0, (4,)).astype(dtype), "python": 1.5}[second]
    args = [x, y][:n] if name != "select" else [x > 1.0, x, y]
    params = {"dtype": np.dtype(dtype)} if name == "convert" else {}
    out = p.impl(*args, **params)
    t = r.standard_normal(np.shape(out)).astype(dtype)
    for i, (term, raw) in enumerate(zip(p.vjp_terms, p.raw_terms)):
        if term is None:
            assert raw is None
            continue
        want = np.asarray(term(t, out, *args, **params))
        got = raw(t, out, *args, **params)
        assert type(got) in (np.ndarray, type(want)) or np.isscalar(got), (name, i, type(got))
        got = np.asarray(got)
        assert got.dtype == want.dtype, (name, i, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want, err_msg=f"{name} operand {i}")
        if n == 1 and not params:   # the backward pass trusts unary terms to keep x's aval
            assert got.shape == x.shape and got.dtype == x.dtype, (name, got.shape, got.dtype)


def test_numpy_terms_skip_the_binders():
    from funcgrad.primitives import elementwise as ew
    src = registry["sin"].raw_terms[0]
    assert src.__globals__["mul"] is np.multiply and src.__globals__["cos"] is np.cos
    assert ew.mul is not np.multiply                   # the module itself is untouched
    assert registry["add"].raw_terms == registry["add"].vjp_terms   # identity terms: as is


def test_pullback_with_traced_cotangent_uses_the_binder_terms():
    """A pullback from a concrete forward pass, called under jit/vmap with a traced
    cotangent, cannot use the NumPy terms: it must trace through the binders."""
    x = np.linspace(0.1, 1.0, 5)
    f = lambda x: fnp.tanh(fnp.sin(x) * 2.0 + 1.0) ** 2  # noqa: E731
    _, pullback = fg.vjp(f, x)
    ct = np.arange(5.0)
    want = pullback(ct)[0]
    np.testing.assert_allclose(fg.jit(pullback)(ct)[0], want, rtol=1e-14)
    rows = fg.vmap(pullback)(np.stack([ct, 2 * ct]))[0]
    np.testing.assert_allclose(rows, np.stack([want, 2 * want]), rtol=1e-14)


# ------------------------------------------------------------ input makers ---

def normal(*shape):
    return lambda r: r.standard_normal(shape)


def positive(*shape, lo=0.5, hi=2.0):
    return lambda r: r.uniform(lo, hi, shape)


def nonzero(*shape, lo=0.5, hi=2.0):
    """Magnitudes in [lo, hi] with random signs: away from kinks and poles at 0."""
    return lambda r: r.uniform(lo, hi, shape) * r.choice([-1.0, 1.0], shape)


def uniform(*shape, lo, hi):
    return lambda r: r.uniform(lo, hi, shape)


def distinct(*shape):
    """Values whose pairwise gaps are at least 0.1 (no ties within a finite-difference step)."""
    def make(r):
        n = int(np.prod(shape))
        return (r.permutation(n) * 0.3 + r.uniform(-0.1, 0.1, n) - 0.15 * n).reshape(shape)
    return make


def with_zeros(*shape, zeros):
    """Random values with exact zeros at the flat positions ``zeros``."""
    def make(r):
        x = r.uniform(0.5, 1.5, shape) * r.choice([-1.0, 1.0], shape)
        x.reshape(-1)[list(zeros)] = 0.0
        return x
    return make


def _ramp(n, x):
    """Weights 1..n in x's dtype: make each output element depend differently on x."""
    return np.arange(1.0, n + 1.0, dtype=x.dtype)


def _other_float(dt):
    return np.float32 if dt == np.float64 else np.float64


IDX = np.array([2, 0, 2, 1])            # repeated index: gradients must accumulate
IDX_UNIQ = np.array([3, 0, 1])
IDX2 = np.array([[1, 0], [2, 1]])       # 2-d index array
COND = np.array([[True, False, True, False], [False, True, True, False],
                 [True, True, False, False]])


# (primitive name, case id, function, input makers); every differentiable
# primitive in the registry must appear at least once (checked below).
CASES: list[tuple[str, str, Callable, tuple]] = [
    # arithmetic, incl. broadcasting
    ("add", "bcast", fnp.add, (normal(3, 1), normal(1, 4))),
    ("add", "scalar", lambda x: x + 2.0, (normal(3),)),
    ("sub", "bcast", fnp.subtract, (normal(2, 3, 4), normal(4))),
    ("neg", "plain", fnp.negative, (normal(3, 2),)),
    ("mul", "bcast", fnp.multiply, (normal(3, 4), normal(3, 1))),
    ("mul", "same", lambda x: x * x, (normal(5),)),
    ("div", "bcast", fnp.divide, (normal(2, 3), nonzero(3))),
    ("div", "rscalar", lambda x: 1.0 / x, (nonzero(4),)),
    ("pow", "both", fnp.power, (positive(3, 1), normal(4))),
    ("pow", "int_exp_neg_base", lambda x: x ** 3, (normal(5),)),
    ("pow", "scalar_base", lambda y: 2.0 ** y, (normal(3),)),
    ("max", "bcast", fnp.maximum, (distinct(3, 4), lambda r: distinct(4)(r) + 0.05)),
    ("max", "relu", lambda x: fnp.maximum(x, 0.0), (nonzero(6),)),
    ("min", "bcast", fnp.minimum, (distinct(2, 3), lambda r: distinct(2, 1)(r) + 0.05)),
    # x % y: x near odd multiples of |y| ~ 2, so x / y stays ~0.4 from the jumps at integers
    ("rem", "bcast", fnp.remainder, (
        lambda r: 2.0 * r.integers(-3, 4, (3, 4)) + 1.0 + r.uniform(-0.3, 0.3, (3, 4)),
        lambda r: r.choice([-2.0, 2.0], (4,)) + r.uniform(-0.05, 0.05, (4,)))),
    ("rem", "scalar", lambda x: x % 1.5, (lambda r: 1.5 * r.integers(-3, 4, (5,)) + 0.7,)),
    # transcendental
    ("exp", "plain", fnp.exp, (normal(3, 2),)),
    ("log", "plain", fnp.log, (positive(4),)),
    ("log1p", "plain", fnp.log1p, (uniform(5, lo=-0.5, hi=2.0),)),
    ("expm1", "plain", fnp.expm1, (normal(4),)),
    ("sqrt", "plain", fnp.sqrt, (positive(2, 3),)),
    ("sin", "plain", fnp.sin, (normal(2, 3),)),
    ("cos", "plain", fnp.cos, (normal(2, 3),)),
    ("tan", "plain", fnp.tan, (uniform(4, lo=-1.2, hi=1.2),)),
    ("tanh", "plain", fnp.tanh, (normal(4),)),
    ("sinh", "plain", fnp.sinh, (normal(4),)),
    ("cosh", "plain", fnp.cosh, (normal(4),)),
    ("arctan", "plain", fnp.arctan, (normal(4),)),
    ("abs", "plain", fnp.abs, (nonzero(2, 3),)),
    # select / convert
    ("select", "bcast", lambda x, y: fnp.where(COND, x, y), (normal(3, 4), normal(4))),
    ("select", "scalar_branch", lambda x: fnp.where(x > 0, x, 0.0) * x, (nonzero(5),)),
    # float64 -> float32 in the float64 run, float32 -> float64 in the float32 run
    ("convert", "flip_precision", lambda x: fnp.sin(x).astype(_other_float(x.dtype)) * 2.0,
     (normal(4),)),
    ("convert", "flip_and_back", lambda x: fnp.sin(x.astype(_other_float(x.dtype)) ** 2)
     .astype(np.float32), (normal(4),)),
    # reductions
    ("reduce_sum", "all", fnp.sum, (normal(3, 4),)),
    ("reduce_sum", "axis_keepdims", lambda x: fnp.sum(x, axis=1, keepdims=True) * x,
     (normal(2, 3, 2),)),
    ("reduce_sum", "axes", lambda x: fnp.sum(x ** 2, axis=(0, 2)), (normal(2, 3, 2),)),
    ("reduce_max", "axis", lambda x: fnp.max(x, axis=1), (distinct(3, 4),)),
    ("reduce_max", "all_keepdims", lambda x: fnp.max(x, keepdims=True) * x, (distinct(2, 3),)),
    ("reduce_min", "axis", lambda x: fnp.min(x, axis=0), (distinct(3, 4),)),
    ("reduce_prod", "axis", lambda x: fnp.prod(x, axis=1), (nonzero(3, 4),)),
    ("reduce_prod", "one_zero", lambda x: fnp.prod(x, axis=1), (with_zeros(3, 4, zeros=[1, 6]),)),
    ("reduce_prod", "two_zeros", lambda x: fnp.prod(x, axis=1),
     (with_zeros(2, 4, zeros=[0, 2, 5]),)),
    ("reduce_prod", "all_zero_free", lambda x: fnp.prod(x), (nonzero(5),)),
    ("logsumexp", "axis", lambda x: fnp.logsumexp(x, axis=1), (normal(3, 4),)),
    ("logsumexp", "all_keepdims", lambda x: fnp.logsumexp(x, keepdims=True) - x, (normal(2, 3),)),
    # shape
    ("reshape", "plain", lambda x: fnp.reshape(x, (4, 3)) * _ramp(3, x), (normal(2, 6),)),
    ("transpose", "perm", lambda x: fnp.transpose(x, (2, 0, 1)) * _ramp(3, x), (normal(2, 3, 4),)),
    ("broadcast_to", "plain", lambda x: fnp.broadcast_to(x, (2, 3, 4)) * _ramp(4, x),
     (normal(3, 1),)),
    ("concatenate", "axis1", lambda a, b, c: fnp.concatenate([a, b, c], axis=1) ** 2,
     (normal(2, 1), normal(2, 3), normal(2, 2))),
    ("concatenate", "axis0", lambda a, b: fnp.sin(fnp.concatenate([a, b])), (normal(2), normal(3))),
    # linear algebra
    ("matmul", "2d_2d", fnp.matmul, (normal(3, 4), normal(4, 2))),
    ("matmul", "1d_2d", fnp.matmul, (normal(4), normal(4, 2))),
    ("matmul", "2d_1d", fnp.matmul, (normal(3, 4), normal(4))),
    ("matmul", "1d_1d", fnp.matmul, (normal(4), normal(4))),
    ("matmul", "batched_3d_2d", fnp.matmul, (normal(2, 3, 4), normal(4, 5))),
    ("matmul", "batched_bcast_4d", fnp.matmul, (normal(2, 1, 3, 4), normal(3, 4, 2))),
    ("matmul", "batched_1d", fnp.matmul, (normal(4), normal(2, 4, 3))),
    ("matmul", "batched_x_1d", fnp.matmul, (normal(2, 3, 4), normal(4))),
    ("einsum", "matmul", lambda a, b: fnp.einsum("ij,jk->ik", a, b), (normal(3, 4), normal(4, 2))),
    ("einsum", "batched", lambda a, b: fnp.einsum("bij,bjk->bik", a, b),
     (normal(2, 3, 4), normal(2, 4, 2))),
    ("einsum", "dot", lambda a, b: fnp.einsum("i,i->", a, b), (normal(4), normal(4))),
    ("einsum", "reduce_one", lambda a: fnp.einsum("ij->j", a) ** 2, (normal(3, 4),)),
    ("einsum", "outer_three", lambda a, b, c: fnp.einsum("i,j,k->ijk", a, b, c),
     (normal(2), normal(3), normal(2))),
    ("einsum", "diagonal", lambda a: fnp.einsum("ii->i", a), (normal(3, 3),)),
    ("einsum", "trace_times_vec", lambda a, v: fnp.einsum("ii,i->", a, v), (normal(3, 3), normal(3))),
    ("einsum", "partial_diag", lambda b: fnp.einsum("iij->ij", b) ** 2, (normal(2, 2, 3),)),
    ("einsum", "implicit", lambda a, b: fnp.einsum("ij,kj", a, b), (normal(2, 3), normal(4, 3))),
    # gather
    ("gather", "basic_slices", lambda x: x[1:3, ::2] ** 2, (normal(4, 5),)),
    ("gather", "int_and_newaxis", lambda x: x[1, None, :] * x[:, 2, None], (normal(3, 4),)),
    ("gather", "advanced_repeated", lambda x: x[IDX] ** 2, (normal(4, 3),)),
    ("gather", "advanced_2d", lambda x: x[IDX2] * 2.0, (normal(3, 2),)),
    ("gather", "advanced_with_slice", lambda x: fnp.sin(x[IDX_UNIQ, 1:3]), (normal(4, 4),)),
    ("gather", "non_adjacent_advanced", lambda x: x[IDX_UNIQ, :, IDX_UNIQ[::-1] % 2] ** 2,
     (normal(4, 3, 2),)),
    ("gather", "mask", lambda x: x[np.array([True, False, True])] ** 3, (normal(3, 2),)),
    # scatter
    ("scatter", "set_slice", lambda x, v: fnp.at(x)[1:3].set(v) * x, (normal(4, 3), normal(3))),
    ("scatter", "set_advanced", lambda x, v: fnp.at(x)[IDX_UNIQ].set(v ** 2), (normal(5, 2), normal(3, 2))),
    ("scatter", "add_repeated", lambda x, v: fnp.at(x)[IDX].add(v) ** 2, (normal(3, 2), normal(4, 2))),
    ("scatter", "add_int_bcast", lambda x, v: fnp.at(x)[:, 1].add(v) ** 2, (normal(3, 2), normal(1))),
    ("scatter", "multiply", lambda x, v: fnp.at(x)[IDX_UNIQ].multiply(v), (normal(4, 2), normal(3, 2))),
    ("scatter", "multiply_slice_bcast", lambda x, v: fnp.at(x)[::2, 1].multiply(v) * x,
     (normal(5, 2), normal(1))),
]

DIFFERENTIABLE = sorted(n for n, p in registry.items() if not p.zero_derivative)


def test_every_differentiable_primitive_has_a_case():
    covered = {c[0] for c in CASES}
    assert not set(DIFFERENTIABLE) - covered, f"no gradient check for {set(DIFFERENTIABLE) - covered}"


def _args(makers: tuple, seed: int, dtype) -> tuple:
    r = np.random.default_rng(seed)
    return tuple(np.asarray(m(r), dtype) for m in makers)


def _prims_in(fn: Callable, args: tuple) -> set:
    return {e.primitive.name for e in fg.make_jaxpr(fn)(*args).eqns}


@pytest.mark.parametrize("prim, fn, makers", [pytest.param(p, f, m, id=f"{p}-{i}")
                                              for p, i, f, m in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_grads_float64(prim, fn, makers, seed):
    args = _args(makers, seed, np.float64)
    assert prim in _prims_in(fn, args), f"case does not exercise {prim}"
    check_grads(fn, args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("prim, fn, makers", [pytest.param(p, f, m, id=f"{p}-{i}")
                                              for p, i, f, m in CASES])
def test_grads_float32(prim, fn, makers):
    args = _args(makers, 2, np.float32)
    check_grads(fn, args, order=2, modes=("fwd", "rev"))
    # gradients (and tangents) keep float32
    out, pullback = fg.vjp(fn, *args)
    if prim != "convert":
        assert np.asarray(out).dtype == np.float32
    cts = pullback(np.ones_like(out))
    assert all(c.dtype == np.float32 and c.shape == a.shape for c, a in zip(cts, args))
    _, t = fg.jvp(fn, args, tuple(np.ones_like(a) for a in args))
    assert np.asarray(t).dtype == np.asarray(out).dtype


BINARY = {
    "add": (fnp.add, normal), "sub": (fnp.subtract, normal), "mul": (fnp.multiply, normal),
    "div": (fnp.divide, normal), "pow": (fnp.power, positive),
    "max": (fnp.maximum, normal), "min": (fnp.minimum, normal),
}


@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_binary_broadcasting_grads(shapes, op, seed, dtype):
    """Random broadcast shape pairs: derivatives match and each gradient has its input's shape."""
    fn, maker = BINARY[op]
    r = np.random.default_rng(seed)
    sx, sy = shapes.input_shapes
    if op in ("max", "min"):   # x near integers, y near half-integers: never within 0.3
        x = r.integers(-3, 4, sx) + r.uniform(-0.1, 0.1, sx)
        y = r.integers(-3, 4, sy) + 0.5 + r.uniform(-0.1, 0.1, sy)
    else:
        x = maker(*sx)(r)
        y = (nonzero if op == "div" else normal)(*sy)(r)
    x, y = np.asarray(x, dtype), np.asarray(y, dtype)
    check_grads(fn, (x, y), order=2)
    gx, gy = fg.grad(lambda a, b: fnp.sum(fn(a, b)), argnums=(0, 1))(x, y)
    assert gx.shape == x.shape and gy.shape == y.shape
    assert gx.dtype == dtype and gy.dtype == dtype


def test_reduce_prod_gradient_with_zeros_exact():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]])
    g = fg.grad(lambda x: fnp.sum(fnp.prod(x, axis=1)))(x)
    np.testing.assert_array_equal(g, [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [8.0, 4.0, 2.0]])


@pytest.mark.filterwarnings("ignore:divide by zero")   # 0**-1 in the branch select drops
def test_pow_derivatives_at_zero_base_are_finite():
    g = fg.grad
    assert float(g(lambda x: x ** 0)(0.0)) == 0.0
    assert float(g(g(g(lambda x: x ** 2)))(0.0)) == 0.0
    assert float(g(g(g(lambda x: x ** 3)))(0.0)) == 6.0
    assert float(g(g(g(g(lambda x: x ** 3))))(0.0)) == 0.0
    gx = g(lambda x: fnp.sum(fnp.power(x, np.array([2.0, 0.0, 1.0]))))(np.zeros(3))
    np.testing.assert_array_equal(gx, [0.0, 0.0, 1.0])
    # d/dy 0**y = 0 for y > 0 (log 0 is not evaluated into the result)
    assert float(g(lambda y: fnp.power(0.0, y))(2.0)) == 0.0
    assert float(g(lambda y: fnp.power(np.zeros(()), y))(2.0)) == 0.0


def test_max_ties_share_the_gradient():
    g = fg.grad(lambda x: fnp.max(x))(np.array([1.0, 3.0, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 0.5, 0.5])


def test_gather_repeated_index_accumulates():
    g = fg.grad(lambda x: fnp.sum(x[IDX]))(np.zeros(3))
    np.testing.assert_array_equal(g, [1.0, 1.0, 2.0])


def test_scatter_set_repeated_indices_only_kept_update_gets_gradient():
    x, v = np.zeros(3), np.array([1.0, 2.0, 3.0])
    f = lambda x, v: fnp.at(x)[np.array([0, 2, 0])].set(v) * np.array([1.0, 2.0, 3.0])  # noqa: E731
    check_grads(f, (x, v), order=2)
    gv = fg.grad(lambda v: fnp.sum(f(x, v)))(v)
    np.testing.assert_array_equal(gv, [0.0, 3.0, 1.0])   # NumPy keeps the last of repeated writes
    batched = fg.vmap(fg.grad(lambda v, i: fnp.sum(fnp.at(x)[i].set(v) * np.arange(3.0))))(
        np.ones((2, 3)), np.array([[0, 2, 0], [1, 1, 2]]))
    np.testing.assert_array_equal(batched, [[0.0, 2.0, 0.0], [0.0, 1.0, 2.0]])


def test_scatter_multiply_repeated_indices_refused_for_v_derivative():
    idx = np.array([0, 2, 0])
    x, v = np.ones(3) * 2.0, np.array([1.0, 2.0, 3.0])
    with pytest.raises(NotImplementedError, match="repeats positions"):
        fg.grad(lambda v: fnp.sum(fnp.at(x)[idx].multiply(v)))(v)
    # the derivative in x is fine: each position is scaled by the product of its factors
    gx = fg.grad(lambda x: fnp.sum(fnp.at(x)[idx].multiply(v)))(x)
    np.testing.assert_array_equal(gx, [3.0, 1.0, 2.0])


@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_scatter_multiply_traced_indices_need_the_unique_promise(transform):
    """Traced indices cannot be checked for repeats: the v-derivative is refused unless the
    caller promises unique_indices=True (as in JAX), and then it is right."""
    x, v = np.arange(1.0, 6.0), np.array([2.0, 3.0])

    def loss(v, i, **kw):
        return fnp.sum(fnp.at(x)[i].multiply(v, **kw) ** 2)

    idx = np.array([[1, 3], [4, 0]])
    run = {"jit": lambda g: [fg.jit(g)(v, i) for i in idx],
           "vmap": lambda g: list(fg.vmap(g, in_axes=(None, 0))(v, idx))}[transform]
    with pytest.raises(NotImplementedError, match=r"idx is traced.*unique_indices=True"):
        run(fg.grad(loss))
    got = run(fg.grad(lambda v, i: loss(v, i, unique_indices=True)))
    for g, i in zip(got, idx):      # against the concrete-index gradient (checked for repeats)
        np.testing.assert_allclose(g, fg.grad(loss)(v, i), rtol=1e-12)
        np.testing.assert_allclose(g, 2 * x[i] ** 2 * v, rtol=1e-12)
    # the derivative in x needs no promise: it is right with repeated traced indices too
    gx = fg.jit(fg.grad(lambda x, i: fnp.sum(fnp.at(x)[i].multiply(v))))(x, np.array([0, 0]))
    np.testing.assert_allclose(gx, [6.0, 1.0, 1.0, 1.0, 1.0])


def test_scatter_set_gradient_blocks_overwritten_entries():
    gx, gv = fg.grad(lambda x, v: fnp.sum(x.at[1].set(v) * 3.0), argnums=(0, 1))(np.ones(3), 2.0)
    np.testing.assert_array_equal(gx, [3.0, 0.0, 3.0])
    assert gv == 3.0


# ------------------------------------------------------ non-differentiable ops ---

ZERO_GRAD_FUNS = {
    "sign": lambda x: fnp.sum(fnp.sign(x) * 3.0),
    "floor": lambda x: fnp.sum(fnp.floor(x)),
    "ceil-trunc-rint": lambda x: fnp.sum(fnp.ceil(x) + fnp.trunc(x) * 2.0 + fnp.rint(x) * 3.0),
    "floor_divide": lambda x: fnp.sum(x // 0.7 + fnp.floor_divide(2.0, x)),
    "step": lambda x: fnp.sum(registry["step"].bind(x) * 3.0),
    "comparisons": lambda x: fnp.sum((x > 0.1).astype(x.dtype) + (x <= 0.2).astype(x.dtype)
                                     + (x >= 0.3).astype(x.dtype) + (x == x).astype(x.dtype)
                                     + (x != 1.0).astype(x.dtype)),
    "logical": lambda x: fnp.sum(fnp.logical_or(fnp.logical_and(x > 0, fnp.logical_not(x > 1)), x < -1)
                                 .astype(x.dtype)),
    "isfinite": lambda x: fnp.sum(fnp.isfinite(x).astype(x.dtype)),
    "bitwise": lambda x: fnp.sum((((x > 0) & (x < 1)) | ((x > 2) ^ ~(x < -1))).astype(x.dtype)
                                 + ((x * 4).astype(np.int64) & 3)),
    "argmax": lambda x: (fnp.argmax(x) + fnp.argmin(x)).astype(x.dtype),
    "integer_ops": lambda x: fnp.sum((x * 10).astype(np.int64) * 2 + 3).astype(x.dtype),
    "stop_gradient": lambda x: fnp.sum(fg.stop_gradient(x) ** 2),
}


@pytest.mark.parametrize("name", sorted(ZERO_GRAD_FUNS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_differentiable_ops_give_zero_gradients(name, dtype):
    f = ZERO_GRAD_FUNS[name]
    x = np.random.default_rng(3).standard_normal(5).astype(dtype)
    g = fg.grad(f)(x)
    assert g.dtype == dtype and g.shape == x.shape
    np.testing.assert_array_equal(g, np.zeros_like(x))
    _, t = fg.jvp(f, (x,), (np.ones_like(x),))
    assert np.all(np.asarray(t) == 0)
    np.testing.assert_array_equal(fg.jacfwd(f)(x), np.zeros_like(x))
    np.testing.assert_array_equal(fg.hessian(f)(x), np.zeros((5, 5), dtype))


def test_every_zero_derivative_primitive_is_exercised():
    used = set()
    x = np.random.default_rng(3).standard_normal(5)
    for f in ZERO_GRAD_FUNS.values():
        used |= _prims_in(f, (x,))
    zero = {n for n, p in registry.items() if p.zero_derivative}
    assert not zero - used, f"not exercised: {zero - used}"


# ------------------------------------------------------ outer-product kernels ---
@pytest.mark.parametrize("shapes", [((8, 1), (1, 8)), ((784, 1), (1, 128)), ((600, 1), (1, 400)),
                                    ((5, 1), (1, 3)), ((4, 16, 1), (4, 1, 1200)),
                                    ((3, 7, 1), (3, 1, 5)), ((2, 3, 4, 1), (2, 3, 1, 6))])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float64, np.float64),
                                    (np.float32, np.float64), (np.int64, np.int64)])
def test_outer_product_kernels_agree_with_matmul(shapes, dtypes):
    """Matmuls with a contraction of size 1 pick BLAS dot, one dot per matrix, einsum or a
    broadcast multiply by shape and dtype: each must give np.matmul's values and dtype."""
    from funcgrad.primitives.linalg import _einsum_impl, _matmul_impl
    r = np.random.default_rng(0)
    a = (r.standard_normal(shapes[0]) * 10).astype(dtypes[0])
    b = (r.standard_normal(shapes[1]) * 10).astype(dtypes[1])
    want = np.matmul(a, b)
    got = _matmul_impl(a, b)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
    if a.ndim == 3:        # the same products as vmap's einsum of per-example vectors
        got = _einsum_impl(a[..., 0], b[:, 0, :], spec="ab,ac->abc")
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6)
