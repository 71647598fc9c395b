"""Trace machinery and bad input: unsupported argument types, shape errors at trace time,
leaked tracers, and per-thread trace state."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import ShapedArray, Tracer, current_traces

X = np.ones(3)


class Opaque:
    """An arbitrary object that is not an array."""


BAD_VALUES = {"str": "a", "object": Opaque(), "None": None, "str_array": np.array(["a", "b", "c"]),
              "dict": {"a": 1.0}, "ragged": [[1.0], [2.0, 3.0]]}


# ------------------------------------------------- unsupported argument types ---

UNARY_CALLS: dict[str, Callable] = {
    "sin": fnp.sin, "exp": fnp.exp, "negative": fnp.negative, "sqrt": fnp.sqrt, "abs": fnp.abs,
    "sum": fnp.sum, "mean": fnp.mean, "max": fnp.max, "argmax": fnp.argmax, "transpose": fnp.transpose,
    "ravel": fnp.ravel, "squeeze": fnp.squeeze, "reshape": lambda a: fnp.reshape(a, (-1,)),
    "expand_dims": lambda a: fnp.expand_dims(a, 0), "broadcast_to": lambda a: fnp.broadcast_to(a, (2,)),
    "zeros_like": fnp.zeros_like, "astype": lambda a: fnp.astype(a, np.float32),
    "logsumexp": fnp.logsumexp, "concatenate": lambda a: fnp.concatenate([a, a]),
}
BINARY_CALLS: dict[str, Callable] = {
    "add": fnp.add, "multiply": fnp.multiply, "power": fnp.power, "maximum": fnp.maximum,
    "less": fnp.less, "matmul": fnp.matmul, "dot": fnp.dot, "where": lambda a, b: fnp.where(True, a, b),
    "logaddexp": fnp.logaddexp,
}
# as in NumPy and JAX, fnp.where(c, x, None) means "y missing": a different, also clear, TypeError
_WHERE_NONE = "either one argument or three"


def _names_type(msg: str, bad: object) -> bool:
    return type(bad).__name__ in msg or (bad is None and _WHERE_NONE in msg)


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("op", sorted(UNARY_CALLS))
def test_unsupported_type_eager_unary(op, bad):
    value = BAD_VALUES[bad]
    with pytest.raises(TypeError) as info:
        UNARY_CALLS[op](value)
    assert _names_type(str(info.value), value), str(info.value)
    assert "unsupported type" in str(info.value)


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("op", sorted(BINARY_CALLS))
def test_unsupported_type_eager_binary(op, bad):
    value = BAD_VALUES[bad]
    for args in [(X, value), (value, X)]:
        with pytest.raises(TypeError) as info:
            BINARY_CALLS[op](*args)
        assert _names_type(str(info.value), value), str(info.value)


def test_message_names_operation_and_argument_position():
    with pytest.raises(TypeError, match=r"^sin: argument 0 has unsupported type str"):
        fnp.sin("a")
    with pytest.raises(TypeError, match=r"^add \(\+\): argument 1 has unsupported type Opaque"):
        fnp.add(X, Opaque())
    with pytest.raises(TypeError, match=r"argument 0 has unsupported type ndarray of dtype <U1"):
        fnp.exp(np.array(["x"]))
    # NumPy itself would happily concatenate strings here
    with pytest.raises(TypeError, match="str"):
        fnp.add("a", "b")
    with pytest.raises(TypeError, match="str_"):
        fnp.multiply(np.str_("a"), 2)


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("op", sorted(BINARY_CALLS))
def test_unsupported_type_under_tracing(op, bad):
    value = BAD_VALUES[bad]
    with pytest.raises(TypeError) as info:
        fg.make_jaxpr(lambda x: BINARY_CALLS[op](x, value))(X)
    assert _names_type(str(info.value), value), str(info.value)


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_unsupported_type_under_operators_and_other_transforms(bad):
    value = BAD_VALUES[bad]
    for f in [lambda x: x + value, lambda x: value * x, lambda x: fnp.sin(value) + x]:
        with pytest.raises(TypeError, match="unsupported type"):
            fg.make_jaxpr(f)(X)
        with pytest.raises(TypeError, match="unsupported type"):
            fg.grad(lambda x: fnp.sum(f(x)))(X)
        with pytest.raises(TypeError, match="unsupported type"):
            fg.vmap(f)(np.ones((2, 3)))


@pytest.mark.parametrize("bad", ["str", "object", "str_array"])
def test_unsupported_argument_to_make_jaxpr(bad):
    value = BAD_VALUES[bad]
    with pytest.raises(TypeError) as info:
        fg.make_jaxpr(lambda x, y: x + y)(X, value)
    msg = str(info.value)
    assert "make_jaxpr" in msg and "argument leaf 1" in msg and type(value).__name__ in msg
    assert "static_argnums" in msg


def test_unsupported_output_of_traced_function():
    with pytest.raises(TypeError, match="output"):
        fg.make_jaxpr(lambda x: (x, "label"))(X)


def test_lists_and_numpy_scalars_are_accepted():
    np.testing.assert_array_equal(fnp.add([1.0, 2.0], 1), [2.0, 3.0])
    assert fnp.sum([[1, 2], [3, 4]]) == 10
    assert fnp.sin(np.float32(0.0)).dtype == np.float32
    jaxpr = fg.make_jaxpr(lambda x: x + [1.0, 2.0, 3.0])(X)
    np.testing.assert_array_equal(fg.eval_jaxpr(jaxpr, X), [2.0, 3.0, 4.0])


# -------------------------------------------- incompatible shapes at trace time ---

SHAPE_ERRORS: dict[str, tuple[Callable, tuple, tuple[str, str]]] = {
    "add": (fnp.add, ((3,), (4,)), ("(3,)", "(4,)")),
    "multiply_2d": (fnp.multiply, ((2, 3), (3, 2)), ("(2, 3)", "(3, 2)")),
    "where": (lambda x, y: fnp.where(fnp.greater(x, 0), x, y), ((2,), (3,)), ("(2,)", "(3,)")),
    "maximum": (fnp.maximum, ((5,), (2, 4)), ("(5,)", "(2, 4)")),
    "matmul": (fnp.matmul, ((2, 3), (4, 5)), ("(2, 3)", "(4, 5)")),
    "dot": (fnp.dot, ((3,), (4,)), ("(3,)", "(4,)")),
    "concatenate": (lambda x, y: fnp.concatenate([x, y]), ((2, 3), (2, 4)), ("(2, 3)", "(2, 4)")),
    "reshape": (lambda x, y: fnp.add(fnp.reshape(x, 5), y), ((2, 3), (5,)), ("(2, 3)", "(5,)")),
    "broadcast_to": (lambda x, y: fnp.broadcast_to(x, y.shape), ((3,), (4,)), ("(3,)", "(4,)")),
    "einsum": (lambda x, y: fnp.einsum("ij,jk->ik", x, y), ((2, 3), (4, 5)), ("3", "4")),
    "scatter": (lambda x, y: fnp.at(x)[0].set(y), ((2, 3), (4,)), ("(4,)", "(3,)")),
    "stack": (lambda x, y: fnp.stack([x, y]), ((2,), (3,)), ("(2,)", "(3,)")),
}


@pytest.mark.parametrize("name", sorted(SHAPE_ERRORS))
def test_shape_errors_raised_at_trace_time(name):
    f, (sx, sy), shown = SHAPE_ERRORS[name]
    x, y = np.ones(sx), np.ones(sy)
    evaluated = []

    def spy(x, y):
        out = f(x, y)
        evaluated.append(True)     # never reached: the error comes while the op is traced
        return out

    with pytest.raises(ValueError) as info:
        fg.make_jaxpr(spy)(x, y)
    assert evaluated == []
    for s in shown:
        assert s in str(info.value), str(info.value)
    # eagerly the same clear ValueError, not NumPy's
    with pytest.raises(ValueError) as eager:
        f(x, y)
    for s in shown:
        assert s in str(eager.value), str(eager.value)
    # under vmap, the shapes of one example (the ones the user wrote), not the batched ones
    with pytest.raises(ValueError) as batched:
        fg.vmap(f, in_axes=(0, None))(np.stack([x, x]), y)
    for s in shown:
        assert s in str(batched.value), str(batched.value)
    assert str((2,) + sx) not in str(batched.value), str(batched.value)


def test_shape_error_names_the_operation():
    with pytest.raises(ValueError, match=r"^add \(\+\): operands with shapes \(3,\) and \(4,\) cannot be "
                                         r"broadcast"):
        fg.make_jaxpr(lambda x, y: x + y)(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"^matmul"):
        fg.make_jaxpr(lambda x, y: x @ y)(np.ones((2, 3)), np.ones((4, 5)))
    # primitives are named as the user wrote them: where, not select; sum, not reduce_sum
    with pytest.raises(ValueError, match=r"^where: operands with shapes"):
        fnp.where(np.ones(3) > 0, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"^greater_equal \(>=\): operands"):
        fg.jit(lambda x: x >= np.ones(4))(np.ones(3))
    with pytest.raises(ValueError, match=r"^max: zero-size axis 0 has no identity"):
        fg.jit(lambda x: fnp.max(x))(np.ones(0))
    with pytest.raises(IndexError, match=r"^indexing \(gather\) failed"):
        fg.jit(lambda x, i: x[i])(np.ones(3), 5)


def test_shape_errors_under_grad_and_vmap_come_from_the_op():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        fg.grad(lambda x: fnp.sum(x + np.ones(4)))(np.ones(3))
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(4,\) cannot be broadcast.*"
                                         r"in vmap over a batch of 2; the shapes are those of one"):
        fg.vmap(lambda x: x + np.ones(4))(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        fg.make_jaxpr(lambda x, y: x * y)(np.ones(3), np.ones(4))     # operators trace the op too


# ---------------------------------------------------------------- leaked tracers ---

def _leak(transform: str) -> Tracer:
    box: list = []

    def f(x):
        box.append(x * 2.0)
        return fnp.sum(x)

    x = np.ones(3)
    if transform == "make_jaxpr":
        fg.make_jaxpr(f)(x)
    elif transform == "grad":
        fg.grad(f)(x)
    elif transform == "jvp":
        fg.jvp(f, (x,), (x,))
    elif transform == "vmap":
        fg.vmap(f)(np.ones((2, 3)))
    return box[0]


@pytest.mark.parametrize("transform", ["make_jaxpr", "grad", "jvp", "vmap"])
def test_leaked_tracer_used_afterwards(transform):
    leaked = _leak(transform)
    assert isinstance(leaked, Tracer)
    uses = [lambda: leaked + 1.0, lambda: fnp.sin(leaked), lambda: 2.0 * leaked, lambda: leaked[0],
            lambda: fnp.sum(leaked), lambda: bool(leaked), lambda: float(leaked[0]),
            lambda: np.asarray(leaked), lambda: np.ones(3) * leaked, lambda: leaked.at[0].set(1.0)]
    for use in uses:
        with pytest.raises(fg.LeakedTracerError, match="leaked tracer"):
            use()


def test_leaked_tracer_inside_a_later_transformation():
    leaked = _leak("make_jaxpr")
    with pytest.raises(fg.LeakedTracerError):
        fg.make_jaxpr(lambda y: y + leaked)(np.ones(3))
    with pytest.raises(fg.LeakedTracerError):
        fg.grad(lambda y: fnp.sum(y * leaked))(np.ones(3))
    with pytest.raises(fg.LeakedTracerError):
        fg.vmap(lambda y: y * leaked)(np.ones((2, 3)))
    assert current_traces() == []      # the failed transformations cleaned up their traces


def test_leaked_tracer_still_reports_its_abstract_value():
    leaked = _leak("make_jaxpr")
    assert leaked.shape == (3,) and leaked.dtype == np.float64
    assert "make_jaxpr" in repr(leaked)


def test_trace_stack_unwinds_after_errors():
    with pytest.raises(fg.ConcretizationError):
        fg.make_jaxpr(lambda x: x if x > 0 else x)(1.0)
    with pytest.raises(ValueError):
        fg.make_jaxpr(lambda x: x + np.ones(4))(np.ones(3))
    assert current_traces() == []


def test_nested_traces_get_increasing_levels():
    levels = []

    def inner(y):
        levels.append([t.level for t in current_traces()])
        return y * 2.0

    fg.make_jaxpr(lambda x: fg.eval_jaxpr(fg.make_jaxpr(inner)(x), x))(1.0)
    assert levels == [[1, 2]]


# ------------------------------------------------------------ per-thread state ---

def test_trace_state_is_per_thread():
    n_threads = 6
    barrier = threading.Barrier(n_threads)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            def f(x):
                y = x
                for _ in range(k + 1):           # a different graph in every thread
                    y = fnp.sin(y) * (k + 1.0)
                barrier.wait(timeout=30)         # all threads are mid-trace at once
                levels = [t.level for t in current_traces()]
                for _ in range(50):
                    y = y + 1.0
                return y, np.asarray(levels, dtype=float)

            x = np.full(2, 0.1 * k)
            jaxpr = fg.make_jaxpr(f)(x)
            results[k] = (len(jaxpr.eqns), fg.eval_jaxpr(jaxpr, x), f(x))
        except BaseException as e:  # noqa: BLE001  (reported by the main thread)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for k in range(n_threads):
        n_eqns, (out, levels), (expected, _) = results[k]
        assert n_eqns == 2 * (k + 1) + 50
        np.testing.assert_allclose(out, expected)
        np.testing.assert_array_equal(levels, [1.0])    # each thread has its own stack of one
    assert current_traces() == []


def test_eager_and_traced_calls_from_many_threads():
    def f(x):
        return fnp.sum(fnp.tanh(x) * x)

    xs = [np.linspace(-1, 1, 7) * k for k in range(8)]
    out: dict[int, tuple] = {}

    def work(k: int) -> None:
        for _ in range(20):
            out[k] = (f(xs[k]), fg.eval_jaxpr(fg.make_jaxpr(f)(xs[k]), xs[k]), fg.grad(f)(xs[k]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(8):
        eager, traced, g = out[k]
        assert eager == traced
        np.testing.assert_allclose(g, np.tanh(xs[k]) + xs[k] * (1 - np.tanh(xs[k]) ** 2), atol=1e-12)


# ---------------------------------------------------------------- abstract values ---

def test_shaped_array():
    a = ShapedArray((2, 3), np.float32)
    assert a.ndim == 2 and a.size == 6 and a.str_short() == "f32[2,3]"
    assert a == ShapedArray([2, 3], "float32") and hash(a) == hash(ShapedArray((2, 3), np.float32))
    assert a != ShapedArray((2, 3), np.float64)
    assert repr(ShapedArray((), np.int64)) == "ShapedArray(i64[])"
