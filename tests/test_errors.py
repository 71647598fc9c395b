"""The catalogue of user mistakes: each raises its specific exception with a message that
names the problem and the fix, at the call, never as a NumPy traceback from inside funcgrad,
an ``AttributeError`` on a tracer, or a silent wrong answer.

Cases tested elsewhere (not repeated here):

- non-scalar output of ``grad``, integer/boolean inputs, ``argnums`` out of range,
  ``has_aux`` without a pair, jvp tangent shape/structure, vjp cotangent shape/structure:
  ``tests/test_ad.py`` (bad input section);
- ``in_axes`` structure, axis out of range, inconsistent batch sizes, ``axis_size``
  mismatch, ``out_axes=None`` on a varying output: ``tests/test_vmap.py`` (bad input);
- unhashable static arguments, ``static_argnums`` out of range, non-array jit arguments,
  control flow on traced values: ``tests/test_jit.py`` (errors);
- unsupported argument types to every op, shape errors at trace time, leaked tracers of
  grad/jvp/vmap/make_jaxpr/jit used later: ``tests/test_core.py``, ``tests/test_jit.py``;
- reduction axis and index errors: ``tests/test_numpy.py``; eval_jaxpr arguments:
  ``tests/test_ir.py``; export arguments: ``tests/test_export.py``; ``nn`` losses:
  ``tests/test_nn.py``.

Here: what those leave out (each case states the problem words and the fix words its
message must contain).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Tracer, current_traces

X = np.linspace(-1.0, 1.0, 3)
XS = np.linspace(-1.0, 1.0, 6).reshape(2, 3)


def _raises(call: Callable, exc: type[BaseException], *needles: str) -> str:
    """``call()`` raises ``exc`` whose message contains every needle (case-insensitive)."""
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for n in needles:
        assert n.lower() in msg.lower(), f"{n!r} not in message: {msg}"
    assert current_traces() == [], "a failed transformation left its trace on the stack"
    return msg


# Each transformation, applied to a function of one array, run on suitable input.
TRANSFORMS: dict[str, Callable[[Callable], object]] = {
    "grad": lambda f: fg.grad(lambda x: fnp.sum(f(x)))(X),
    "jvp": lambda f: fg.jvp(f, (X,), (X,)),
    "vjp": lambda f: fg.vjp(f, X),
    "vmap": lambda f: fg.vmap(f)(XS),
    "jit": lambda f: fg.jit(f)(X),
    "make_jaxpr": lambda f: fg.make_jaxpr(f)(X),
}


# ------------------------------------------- NumPy-only code applied to tracers ---

NUMPY_FUNCTIONS: dict[str, tuple[Callable, str, str]] = {
    # name: (function of a tracer, its qualified NumPy name, the fix the message names)
    "sum": (lambda x: np.sum(x), "numpy.sum", "funcgrad.numpy.sum"),
    "mean": (lambda x: np.mean(x, axis=0), "numpy.mean", "funcgrad.numpy.mean"),
    "dot": (lambda x: np.dot(x, x), "numpy.dot", "funcgrad.numpy.dot"),
    "concatenate": (lambda x: np.concatenate([x, x]), "numpy.concatenate",
                    "funcgrad.numpy.concatenate"),
    "where": (lambda x: np.where(x > 0, x, 0.0), "numpy.where", "funcgrad.numpy.where"),
    "clip": (lambda x: np.clip(x, 0, 1), "numpy.clip", "funcgrad.numpy.clip"),
    "cumsum": (lambda x: np.cumsum(x), "numpy.cumsum", "funcgrad.numpy has no cumsum"),
    "sort": (lambda x: np.sort(x), "numpy.sort", "funcgrad.numpy has no sort"),
    "linalg.norm": (lambda x: np.linalg.norm(x), "numpy.linalg.norm", "funcgrad.numpy"),
    "linalg.inv": (lambda x: np.linalg.inv(fnp.outer(x, x) + fnp.eye(3)), "numpy.linalg.inv",
                   "funcgrad.numpy"),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(NUMPY_FUNCTIONS))
def test_numpy_function_on_a_tracer_names_funcgrad_numpy(name: str, transform: str) -> None:
    f, qualified, fix = NUMPY_FUNCTIONS[name]
    msg = _raises(lambda: TRANSFORMS[transform](f), TypeError, qualified, "traced array", fix)
    assert "Traceback" not in msg


NUMPY_METHODS: dict[str, tuple[Callable, str]] = {
    # NumPy array attributes that traced arrays do not have, and what the message suggests
    "cumsum": (lambda x: x.cumsum(), "funcgrad.numpy has no cumsum"),
    "sort": (lambda x: x.sort(), "funcgrad.numpy has no sort"),
    "copy": (lambda x: x.copy(), "funcgrad.numpy"),
    "nbytes": (lambda x: x.nbytes * x, "funcgrad.numpy"),
    "cumprod": (lambda x: x.cumprod(), "funcgrad.numpy"),
    "any": (lambda x: x * x.any(), "funcgrad.numpy"),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", sorted(NUMPY_METHODS))
def test_numpy_only_method_on_a_tracer_names_funcgrad_numpy(name: str, transform: str) -> None:
    f, fix = NUMPY_METHODS[name]
    _raises(lambda: TRANSFORMS[transform](f), AttributeError, f"no attribute '{name}'",
            "traced arrays", fix)


def test_supported_numpy_names_on_tracers_still_work() -> None:
    """The metadata functions and ufuncs keep working (they need no values)."""
    def f(x):
        assert np.shape(x) == (3,) and np.ndim(x) == 1 and np.size(x) == 3
        return np.sin(x) * np.exp(x)
    for t in ("grad", "vmap", "jit", "make_jaxpr"):
        TRANSFORMS[t](f)
    np.testing.assert_allclose(fg.grad(lambda x: fnp.sum(f(x)))(X),
                               np.exp(X) * (np.cos(X) + np.sin(X)))


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_item_assignment_on_a_tracer_points_to_at(transform: str) -> None:
    def f(x):
        x[0] = 1.0
        return x
    _raises(lambda: TRANSFORMS[transform](f), TypeError, "immutable", "x.at[idx].set(v)")


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_np_asarray_of_a_tracer_names_funcgrad_numpy(transform: str) -> None:
    _raises(lambda: TRANSFORMS[transform](lambda x: np.asarray(x) * 2), TypeError,
            "cannot be converted to a NumPy array", "funcgrad.numpy")


@pytest.mark.parametrize("call, what", [
    (lambda x: np.add.reduce(x), "numpy.add.reduce"),
    (lambda x: np.multiply.outer(x, x), "numpy.multiply.outer"),
    (lambda x: np.sin(x, out=np.empty(3)), "numpy.sin"),
    (lambda x: np.arcsin(x), "numpy.arcsin"),
], ids=["reduce", "outer", "out=", "unknown-ufunc"])
def test_unsupported_ufunc_forms_on_a_tracer(call: Callable, what: str) -> None:
    _raises(lambda: TRANSFORMS["grad"](call), TypeError, what, "not supported on traced arrays",
            "funcgrad.numpy")


def test_hash_of_a_tracer_names_static_argnums() -> None:
    _raises(lambda: fg.jit(lambda x: {x: 1} and x)(X), TypeError, "not hashable", "static_argnums")


# ------------------------------------------------------------ grad / jvp / vjp ---

@pytest.mark.parametrize("out", [None, "loss", (1.0, 2.0), {"a": 1.0}],
                         ids=["None", "str", "tuple", "dict"])
def test_grad_of_a_function_returning_no_array(out: object) -> None:
    _raises(lambda: fg.grad(lambda x: out)(1.0), TypeError, "real scalar",
            type(out).__name__, "fg.jacrev", "fg.vjp")


@pytest.mark.parametrize("arg, shown", [(1j, "complex128"), (np.ones(2, np.complex64), "complex64")])
def test_grad_of_complex_input(arg: object, shown: str) -> None:
    _raises(lambda: fg.grad(lambda z: fnp.sum(z))(arg), TypeError, "real-valued floating-point",
            shown, "astype(float)")


@pytest.mark.parametrize("arg", ["abc", object()], ids=["str", "object"])
def test_grad_of_a_non_array_argument(arg: object) -> None:
    _raises(lambda: fg.grad(lambda x: 1.0)(arg), TypeError, type(arg).__name__,
            "cannot be differentiated", "argnums")


@pytest.mark.parametrize("argnums", ["a", 0.5, [0.0], None], ids=["str", "float", "list-float", "None"])
@pytest.mark.parametrize("transform", ["grad", "value_and_grad", "jacfwd", "jacrev"])
def test_argnums_of_the_wrong_type(transform: str, argnums: object) -> None:
    t = getattr(fg, transform)
    _raises(lambda: t(lambda a, b: a * b, argnums=argnums)(1.0, 2.0), TypeError,
            "argnums must be an int or a tuple of ints", repr(argnums))


def test_argnums_naming_an_argument_twice() -> None:
    """It used to run and return a zero gradient for the first copy."""
    _raises(lambda: fg.grad(lambda a, b: a * b, argnums=(0, 0))(1.0, 2.0), ValueError,
            "(0, 0)", "twice", "once")
    _raises(lambda: fg.grad(lambda a, b: a * b, argnums=(1, -1))(1.0, 2.0), ValueError, "twice")
    g = fg.grad(lambda a, b: a * b, argnums=range(2))(1.0, 2.0)     # any sequence of ints
    assert g == (2.0, 1.0)


def test_argnums_empty() -> None:
    _raises(lambda: fg.grad(lambda a: a, argnums=())(1.0), ValueError, "at least one argument")


@pytest.mark.parametrize("primal, tangent, exc, needles", [
    ("abc", "abc", TypeError, ("primal", "unsupported type str")),
    (X, "abc", TypeError, ("tangent", "unsupported type str")),
    (X, np.ones(3, int), TypeError, ("tangent 0 has dtype int64", "floating-point tangents")),
    (X, np.ones(3, np.float32), TypeError, ("float32", "primal's dtype")),
], ids=["str", "str-tangent", "int-tangent", "f32-tangent"])
def test_jvp_bad_primals_and_tangents(primal, tangent, exc, needles) -> None:
    _raises(lambda: fg.jvp(lambda a: a * 2.0, (primal,), (tangent,)), exc, *needles)


def test_jvp_primals_not_a_tuple() -> None:
    _raises(lambda: fg.jvp(fnp.sin, X, X), TypeError, "tuples", "one entry per argument")


def test_vjp_cotangent_of_unsupported_type() -> None:
    _, pullback = fg.vjp(lambda x: x * 2.0, X)
    _raises(lambda: pullback("abc"), TypeError, "cotangent", "unsupported type str")
    _raises(lambda: pullback(None), ValueError, "structure")


# ------------------------------------------------------------------------ vmap ---

@pytest.mark.parametrize("kw, exc, needles", [
    ({"in_axes": "0"}, TypeError, ("in_axes must be an int, None", "str")),
    ({"in_axes": 0.5}, TypeError, ("in_axes must be an int, None", "float")),
    ({"out_axes": "0"}, TypeError, ("out_axes must be an int, None", "str")),
    ({"in_axes": None, "axis_size": -1}, ValueError, ("axis_size", "non-negative", "-1")),
    ({"in_axes": None, "axis_size": "3"}, TypeError, ("axis_size", "non-negative int")),
    ({"in_axes": None, "axis_size": 2.0}, TypeError, ("axis_size", "non-negative int")),
], ids=["in_axes-str", "in_axes-float", "out_axes-str", "axis_size-negative", "axis_size-str",
        "axis_size-float"])
def test_vmap_bad_axis_arguments(kw: dict, exc: type, needles: tuple) -> None:
    _raises(lambda: fg.vmap(lambda x: x * 2.0, **kw)(XS), exc, *needles)


@pytest.mark.parametrize("out", ["label", object()], ids=["str", "object"])
def test_vmap_of_a_function_returning_a_non_array(out: object) -> None:
    _raises(lambda: fg.vmap(lambda x: (x, out))(XS), TypeError, "vmap", "output",
            type(out).__name__)


def test_vmap_of_a_scalar_argument_names_in_axes_none() -> None:
    _raises(lambda: fg.vmap(lambda a, b: a * b)(XS, 2.0), ValueError, "argument b", "0-d",
            "in_axes=None")


# ------------------------------------------------------------ jit / make_jaxpr ---

@pytest.mark.parametrize("static", ["a", 0.5, [0.5], True], ids=["str", "float", "list-float", "bool"])
@pytest.mark.parametrize("transform", ["jit", "make_jaxpr"])
def test_static_argnums_of_the_wrong_type(transform: str, static: object) -> None:
    _raises(lambda: getattr(fg, transform)(lambda x: x, static_argnums=static), TypeError,
            "static_argnums must be an int or a tuple of ints")


def test_static_argnums_past_the_function_s_parameters() -> None:
    # past the arguments given but naming a parameter with a default: the default (JAX)
    np.testing.assert_array_equal(fg.jit(lambda x, n=2: x * n, static_argnums=1)(X), 2 * X)
    assert len(fg.make_jaxpr(lambda x, n=2: x * n, static_argnums=1)(X).invars) == 1
    # past the function's parameters: an error naming static_argnums
    _raises(lambda: fg.jit(lambda x: x, static_argnums=3)(X), ValueError, "jit",
            "static_argnums (3,) out of range")
    _raises(lambda: fg.make_jaxpr(lambda x: x, static_argnums=(1,))(X), ValueError,
            "make_jaxpr", "out of range")


@pytest.mark.parametrize("graph", [3, "graph", lambda x: x], ids=["int", "str", "function"])
def test_eval_jaxpr_of_something_that_is_not_a_graph(graph: object) -> None:
    _raises(lambda: fg.eval_jaxpr(graph, X), TypeError, "eval_jaxpr takes a graph",
            "fg.make_jaxpr(f)(*args)", type(graph).__name__)


# ------------------------------------------------------------------- indexing ---

@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_boolean_mask_of_the_wrong_shape(transform: str) -> None:
    """It used to index the first elements silently (``x[[True]]`` on a length-3 array)."""
    mask = np.array([True, False])
    _raises(lambda: TRANSFORMS[transform](lambda x: x[mask]), IndexError,
            "boolean index did not match", "(2,)", "(3,)")
    _raises(lambda: TRANSFORMS[transform](lambda x: x.at[mask].set(0.0)), IndexError,
            "boolean index did not match")


def test_boolean_mask_checks_the_axes_it_covers() -> None:
    y = np.arange(24.0).reshape(2, 3, 4)
    mask = np.arange(12).reshape(3, 4) % 5 == 0
    np.testing.assert_array_equal(fg.jit(lambda a: a[:, mask])(y), y[:, mask])
    _raises(lambda: fg.make_jaxpr(lambda a: a[:, np.ones((4, 3), bool)])(y), IndexError,
            "(4, 3)", "(3, 4)")
    _raises(lambda: fg.make_jaxpr(lambda a: a[..., np.ones(3, bool)])(y), IndexError, "(3,)", "(4,)")


@pytest.mark.parametrize("transform", ["jit", "make_jaxpr", "vmap", "grad"])
def test_constant_index_array_out_of_bounds_raises_while_tracing(transform: str) -> None:
    """Known indices are checked when the op is applied, not later when the graph runs."""
    idx = np.array([0, 5])
    _raises(lambda: TRANSFORMS[transform](lambda x: x[idx]), IndexError, "index 5",
            "out of bounds", "axis 0", "size 3")
    _raises(lambda: TRANSFORMS[transform](lambda x: x.at[np.array([-4])].set(0.0)), IndexError,
            "index -4", "size 3")


@pytest.mark.parametrize("axis", [1.5, "0", [0.5]], ids=["float", "str", "list-float"])
def test_reduction_axis_of_the_wrong_type(axis: object) -> None:
    for op in (fnp.sum, fnp.mean, fnp.max):
        _raises(lambda: op(XS, axis=axis), TypeError, "axis must be None, an int or a tuple of ints")
        _raises(lambda: fg.grad(lambda x: fnp.sum(op(x, axis=axis)))(XS), TypeError,
                "axis must be")


# ---------------------------------------------------------------- leaked tracers ---

def _leak(kind: str) -> Tracer:
    """A tracer stored by ``fun`` during transformation ``kind``, which has returned since."""
    box: list = []

    def f(x):
        box.append(x * 2.0)
        return fnp.sum(x)

    runs = {
        "grad": lambda: fg.grad(f)(X), "value_and_grad": lambda: fg.value_and_grad(f)(X),
        "jvp": lambda: fg.jvp(f, (X,), (X,)), "vjp": lambda: fg.vjp(f, X)[1](1.0),
        "vmap": lambda: fg.vmap(f)(XS), "jit": lambda: fg.jit(f)(X),
        "make_jaxpr": lambda: fg.make_jaxpr(f)(X), "jacfwd": lambda: fg.jacfwd(f)(X),
        "jacrev": lambda: fg.jacrev(f)(X), "hessian": lambda: fg.hessian(f)(X),
        "grad-of-grad": lambda: fg.grad(lambda y: fnp.sum(fg.grad(f)(y)))(X),
        "vmap-of-grad": lambda: fg.vmap(fg.grad(f))(XS),
        "jit-of-grad": lambda: fg.jit(fg.grad(f))(X),
    }
    runs[kind]()
    assert isinstance(box[0], Tracer)
    return box[0]


LEAK_KINDS = ["grad", "value_and_grad", "jvp", "vjp", "vmap", "jit", "make_jaxpr", "jacfwd",
              "jacrev", "hessian", "grad-of-grad", "vmap-of-grad", "jit-of-grad"]

# every way of using a leaked tracer later: its values, or handing it to a transformation
LEAK_USES: dict[str, Callable[[Tracer], object]] = {
    "arithmetic": lambda t: t * 3.0 + 1.0,
    "fnp": lambda t: fnp.tanh(t),
    "ufunc": lambda t: np.exp(t),
    "numpy-function": lambda t: np.sum(t),
    "index": lambda t: t[0],
    "at-set": lambda t: t.at[0].set(0.0),
    "method": lambda t: t.sum(),
    "bool": lambda t: bool(t[0] > 0),
    "float": lambda t: float(t[0]),
    "asarray": lambda t: np.asarray(t),
    "iterate": lambda t: list(t),
    "returned-by-jit": lambda t: fg.jit(lambda y: t)(X),
    "returned-by-make_jaxpr": lambda t: fg.make_jaxpr(lambda y: (y, t))(X),
    "returned-by-jvp": lambda t: fg.jvp(lambda y: t, (X,), (X,)),
    "returned-by-vjp": lambda t: fg.vjp(lambda y: (y, t), X),
    "returned-by-vmap": lambda t: fg.vmap(lambda y: (y, t), out_axes=(0, None))(XS),
    "closed-over-by-grad": lambda t: fg.grad(lambda y: fnp.sum(y * t))(X),
    "closed-over-by-vmap": lambda t: fg.vmap(lambda y: y + t)(XS),
    "closed-over-by-jit": lambda t: fg.jit(lambda y: y + t)(X),
    "argument-of-grad": lambda t: fg.grad(lambda y: fnp.sum(y))(t),
    "argument-of-vmap": lambda t: fg.vmap(lambda y: y * 2.0)(t),
    "argument-of-jvp": lambda t: fg.jvp(lambda y: y * 2.0, (t,), (X,)),
    "argument-of-make_jaxpr": lambda t: fg.make_jaxpr(lambda y: y * 2.0)(t),
}


@pytest.mark.parametrize("use", sorted(LEAK_USES))
@pytest.mark.parametrize("kind", LEAK_KINDS)
def test_leaked_tracer_raises_leaked_tracer_error_naming_the_leak(kind: str, use: str) -> None:
    t = _leak(kind)
    msg = _raises(lambda: LEAK_USES[use](t), fg.LeakedTracerError, "leaked tracer",
                  "after that transformation returned", "return")
    assert re.search(r"a tracer of a (grad/vjp|jvp|vmap|jit|make_jaxpr) transformation", msg), msg


def test_leaked_tracer_keeps_its_metadata_for_debugging() -> None:
    """Shape-only questions do not need the value, so they still answer (as in JAX)."""
    t = _leak("jit")
    assert t.shape == (3,) and t.ndim == 1 and t.dtype == np.float64 and len(t) == 3
    assert "jit" in repr(t)


# ------------------------------------------------------- funcgrad.numpy arguments ---

FNP_MISTAKES: dict[str, tuple[Callable, type, tuple]] = {
    # name: (function of a (2, 3) array, exception, words the message must contain)
    "transpose-axis-out-of-range": (lambda x: fnp.transpose(x, (0, 5)), ValueError,
                                    ("transpose", "(0, 5)", "out of bounds", "rank 2")),
    "reshape-non-integer-shape": (lambda x: fnp.reshape(x, (2.5, 2)), TypeError,
                                  ("reshape", "tuple of ints", "2.5")),
    "reshape-string-shape": (lambda x: fnp.reshape(x, "ab"), TypeError, ("reshape", "'ab'")),
    "reshape-layout-order": (lambda x: fnp.reshape(x, (3, 2), order="A"), ValueError,
                             ("reshape", "'C' or 'F'", "'A'")),
    "astype-unknown-dtype": (lambda x: fnp.astype(x, "notadtype"), TypeError,
                             ("astype", "notadtype")),
    "astype-string-dtype": (lambda x: fnp.astype(x, str), TypeError, ("astype", "not numeric")),
    "einsum-digit-subscript": (lambda x: fnp.einsum("i1->", x), ValueError,
                               ("einsum", "'1'", "letters")),
}


@pytest.mark.parametrize("mode", ["eager", "jit", "grad", "vmap"])
@pytest.mark.parametrize("name", sorted(FNP_MISTAKES))
def test_funcgrad_numpy_argument_mistakes(name: str, mode: str) -> None:
    """Raised when the op is applied (also while tracing), not by NumPy later."""
    f, exc, needles = FNP_MISTAKES[name]
    x = np.ones((2, 3))
    if mode != "eager":     # the same mistakes through the tracer methods
        method = {"reshape-string-shape": lambda a: a.reshape("ab"),
                  "astype-string-dtype": lambda a: a.astype(str)}
        f = method.get(name, f)
    run = {"eager": lambda: f(x), "jit": lambda: fg.jit(f)(x),
           "grad": lambda: fg.grad(lambda a: fnp.sum(f(a)))(x),
           "vmap": lambda: fg.vmap(f)(np.ones((4, 2, 3)))}[mode]
    _raises(run, exc, *needles)


def test_where_with_a_float_condition_differentiates_the_branches() -> None:
    """``where`` takes any condition NumPy takes; a float one used to crash grad and jvp."""
    x = np.array([1.0, 0.0, 2.0])

    def f(a):
        return fnp.where(a, a * 3.0, 1.0)

    np.testing.assert_array_equal(fg.grad(lambda a: fnp.sum(f(a)))(x), [3.0, 0.0, 3.0])
    np.testing.assert_array_equal(fg.jvp(f, (x,), (np.ones(3),))[1], [3.0, 0.0, 3.0])
    np.testing.assert_array_equal(fg.jit(fg.grad(lambda a: fnp.sum(f(a))))(x), [3.0, 0.0, 3.0])


def test_jit_and_make_jaxpr_take_keyword_arguments_as_traced_inputs() -> None:
    f = fg.jit(lambda x, y=1.0, *, z=0.0: x * y + z)
    np.testing.assert_array_equal(f(X, y=2.0), 2 * X)
    np.testing.assert_array_equal(f(X, y=3.0, z=1.0), 3 * X + 1)
    np.testing.assert_array_equal(f(X, z=1.0, y=3.0), 3 * X + 1)     # order does not matter
    assert f.trace_count == 2                                       # new values: no retrace
    np.testing.assert_array_equal(f(X, y=np.full(3, 2.0)), 2 * X)  # new shape: a new trace
    assert f.trace_count == 3
    k = fg.jit(lambda x, d: x * d["s"])          # a dict by keyword is not a dict by position
    np.testing.assert_array_equal(k(X, d={"s": 2.0}), 2 * X)
    np.testing.assert_array_equal(k(X, {"s": 2.0}), 2 * X)
    assert k.trace_count == 2
    g = fg.make_jaxpr(lambda x, y=1.0: x * y)(X, y=2.0)
    assert len(g.invars) == 2 and [e.primitive.name for e in g.eqns] == ["mul"]
    np.testing.assert_array_equal(fg.grad(lambda a: fnp.sum(f(a, y=2.0)))(X), np.full(3, 2.0))
    _raises(lambda: f(X, y="a"), TypeError, "jit", "str")


# ------------------------- arguments NumPy rejects (funcgrad once answered silently) ---

M = lambda x: fnp.outer(x, x)       # noqa: E731  a (3, 3) value in every mode

BAD_ARGUMENTS: dict[str, tuple[Callable, type[BaseException], tuple[str, ...]]] = {
    "tensordot axis out of range": (lambda x: fnp.tensordot(M(x), M(x), axes=([5], [0])),
                                    ValueError, ("tensordot", "axis 5 is out of bounds")),
    "tensordot negative axis out of range": (
        lambda x: fnp.tensordot(M(x), M(x), axes=([-3], [0])), ValueError, ("out of bounds",)),
    "tensordot repeated axis": (lambda x: fnp.tensordot(M(x), M(x), axes=([1, 1], [0, 0])),
                                ValueError, ("tensordot", "repeated axis")),
    "tensordot axes too many": (lambda x: fnp.tensordot(x, M(x), axes=2), ValueError,
                                ("tensordot", "axes=2")),
    "tensordot of a scalar": (lambda x: fnp.tensordot(fnp.sum(x), M(x), axes=1), ValueError,
                              ("tensordot", "axes=1")),
    "tensordot axes not ints": (lambda x: fnp.tensordot(M(x), M(x), axes="ab"), TypeError,
                                ("tensordot", "axes must be")),
    "moveaxis lengths differ": (lambda x: fnp.moveaxis(M(x), [0, 1], [1]), ValueError,
                                ("moveaxis", "same number")),
    "moveaxis repeated destination": (lambda x: fnp.moveaxis(M(x), [0, 1], [1, 1]),
                                      ValueError, ("moveaxis", "repeated axis")),
    "argmax over a tuple of axes": (lambda x: fnp.argmax(M(x), axis=(0, 1)), TypeError,
                                    ("argmax", "axis must be None or an int")),
    "keepdims a string": (lambda x: fnp.sum(M(x), axis=1, keepdims="False"), TypeError,
                          ("sum", "keepdims must be a bool")),
    "keepdims of argmin": (lambda x: fnp.argmin(x, keepdims="yes"), TypeError,
                           ("argmin", "keepdims must be a bool")),
    "reshape to -2": (lambda x: fnp.reshape(M(x), (-2, 3)), ValueError,
                      ("reshape", "negative size")),
}


@pytest.mark.parametrize("transform", ["eager", *sorted(TRANSFORMS)])
@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_arguments_numpy_rejects_raise_in_every_mode(case: str, transform: str) -> None:
    f, exc, needles = BAD_ARGUMENTS[case]
    run = (lambda f: f(X)) if transform == "eager" else TRANSFORMS[transform]
    _raises(lambda: run(f), exc, *needles)


def test_jit_never_pastes_a_parameter_s_text_into_its_code() -> None:
    # a str parameter reaching a primitive goes to its impl as a value, not as source:
    # NumPy rejects it, and nothing in the string runs
    import builtins

    from funcgrad.core import bind
    from funcgrad.primitives import reduce as red
    ran: list = []
    builtins._fg_probe = ran.append       # type: ignore[attr-defined]
    try:
        f = fg.jit(lambda x: bind(red.reduce_sum_p, x, axes=(0,), keepdims="_fg_probe(1) or True"))
        with pytest.raises(Exception):      # noqa: B017  NumPy's own complaint about keepdims
            f(XS)
    finally:
        del builtins._fg_probe              # type: ignore[attr-defined]
    assert ran == []


@pytest.mark.parametrize("spec, exc, needles", [
    ("ij->k", ValueError, ("output subscript 'k'", "does not appear")),
    ("ij->jj", ValueError, ("output subscript 'j'", "more than once")),
    ("ij->j->i", ValueError, ("more than one '->'",)),
    ("i.j", ValueError, ("'.' outside an ellipsis",)),
    (3, TypeError, ("subscripts string", "got int")),
])
@pytest.mark.parametrize("transform", ["eager", *sorted(TRANSFORMS)])
def test_einsum_bad_subscripts(spec: object, exc: type, needles: tuple, transform: str) -> None:
    run = (lambda f: f(X)) if transform == "eager" else TRANSFORMS[transform]
    _raises(lambda: run(lambda x: fnp.einsum(spec, M(x))), exc, "einsum", *needles)


def test_einsum_sublist_form_is_named_unsupported() -> None:
    _raises(lambda: fnp.einsum(XS, [0, 1], [1]), TypeError, "sublist form", "not supported")


@pytest.mark.parametrize("out", ["s", object(), (1.0, "s")], ids=["str", "object", "in-tuple"])
def test_jvp_and_vjp_of_a_function_returning_no_array(out: object) -> None:
    tname = type(out[1] if isinstance(out, tuple) else out).__name__
    _raises(lambda: fg.jvp(lambda x: out, (X,), (X,)), TypeError, "jvp: fun returned",
            f"type {tname}", "numeric arrays")
    _raises(lambda: fg.vjp(lambda x: out, X), TypeError, "vjp: fun returned", f"type {tname}",
            "has_aux=True")
    _raises(lambda: fg.jacrev(lambda x: out)(X), TypeError, "fun returned", f"type {tname}")


def test_has_aux_without_a_pair_says_what_came_back() -> None:
    _raises(lambda: fg.grad(lambda x: fnp.sum(x), has_aux=True)(X), TypeError,
            "must return a pair (output, aux)", "a single array of shape ()")
    _raises(lambda: fg.grad(lambda x: (fnp.sum(x), 1, 2), has_aux=True)(X), TypeError,
            "a tuple of length 3")


def test_eval_jaxpr_checks_dtypes_and_structure() -> None:
    g = fg.make_jaxpr(lambda d: d["a"] * d["b"])({"a": X, "b": X})
    np.testing.assert_array_equal(fg.eval_jaxpr(g, {"a": X, "b": 2 * X}), 2 * X * X)
    np.testing.assert_array_equal(fg.eval_jaxpr(g, X, 2 * X), 2 * X * X)    # its leaves
    _raises(lambda: fg.eval_jaxpr(g, {"x": X, "y": X}), ValueError, "structure",
            "traced with")
    _raises(lambda: fg.eval_jaxpr(g, {"a": X > 0, "b": X}), TypeError, "input 0",
            "dtype bool", "float64", "astype")
    _raises(lambda: fg.eval_jaxpr(g, {"a": X.astype(np.float32), "b": X}), TypeError,
            "float32", "expects float64")
    i8 = fg.make_jaxpr(lambda x: x + 1)(np.int8(1))       # a Python number takes the graph's dtype
    assert fg.eval_jaxpr(i8, 127) == -128 and fg.eval_jaxpr(i8, 127).dtype == np.int8
    assert fg.eval_jaxpr(fg.make_jaxpr(lambda x: x + 1)(np.float32(1)), 1.0).dtype == np.float32
    _raises(lambda: fg.eval_jaxpr(i8, 300), ValueError, "300", "does not fit", "int8")
    s = fg.make_jaxpr(lambda x, y: x * y)(X, 2.0)         # y traced from a Python float
    np.testing.assert_array_equal(fg.eval_jaxpr(s, X, 3.0), 3 * X)
    np.testing.assert_array_equal(fg.eval_jaxpr(s, X, np.float64(3.0)), 3 * X)


@pytest.mark.parametrize("name", ["grad", "value_and_grad", "jacfwd", "jacrev", "hessian",
                                  "vmap", "jit", "make_jaxpr"])
def test_a_transformation_of_a_non_function_raises_when_created(name: str) -> None:
    _raises(lambda: getattr(fg, name)(3), TypeError, f"{name}: expected a function",
            "got 3 of type int")


def test_jvp_and_vjp_of_a_non_function() -> None:
    _raises(lambda: fg.jvp(X, (X,), (X,)), TypeError, "jvp: expected a function", "ndarray")
    _raises(lambda: fg.vjp("f", X), TypeError, "vjp: expected a function", "str")


def test_numpy_integer_argnums_select_one_argument() -> None:
    f = lambda x, y: x * y      # noqa: E731
    assert fg.grad(f, argnums=np.int64(1))(2.0, 3.0) == 2.0
    assert fg.jacrev(f, argnums=np.int32(0))(2.0, 3.0) == 3.0
    assert fg.jacfwd(f, argnums=np.int64(1))(2.0, 3.0) == 2.0


def test_hessian_names_itself_in_argument_errors() -> None:
    _raises(lambda: fg.hessian(lambda x: fnp.sum(x), argnums=2)(X), ValueError,
            "hessian: argnums=2 is out of range")
    _raises(lambda: fg.hessian(lambda x: fnp.sum(x))(np.arange(3)), TypeError,
            "hessian requires real-valued floating-point inputs", "int64")


@pytest.mark.parametrize("call", [lambda a: fnp.sum([a, a]), lambda a: fnp.add([a, a], 1.0),
                                  lambda a: fnp.mean((a, 2 * a), axis=0)],
                         ids=["sum", "add", "mean"])
@pytest.mark.parametrize("transform", ["grad", "jit", "vmap"])
def test_a_list_of_traced_arrays_points_to_stack(call: Callable, transform: str) -> None:
    _raises(lambda: TRANSFORMS[transform](call), TypeError, "holding traced arrays",
            "fnp.stack(...)")


@pytest.mark.parametrize("call, exc, needles", [
    (lambda x: fnp.stack([x, x], axis=None), TypeError, ("stack: axis must be an int", "None")),
    (lambda x: fnp.stack([x, x], axis="x"), TypeError, ("stack: axis must be an int",)),
    (lambda x: fnp.expand_dims(x, "x"), TypeError, ("expand_dims: axis must be",)),
    (lambda x: fnp.expand_dims(x, 1.5), TypeError, ("expand_dims: axis must be", "1.5")),
    (lambda x: fnp.split(x, 1.5), TypeError, ("split: indices_or_sections must be",)),
    (lambda x: fnp.transpose(M(x), "ab"), TypeError, ("transpose: axes must be",)),
    (lambda x: fnp.hstack([]), ValueError, ("hstack: need at least one array",)),
], ids=["stack-None", "stack-str", "expand_dims-str", "expand_dims-float", "split-float",
        "transpose-str", "hstack-empty"])
@pytest.mark.parametrize("transform", ["eager", "grad", "jit", "vmap"])
def test_shape_function_arguments_of_the_wrong_type(call, exc, needles, transform) -> None:
    run = (lambda f: f(X)) if transform == "eager" else TRANSFORMS[transform]
    _raises(lambda: run(call), exc, *needles)


def test_second_pass_on_this_session_s_additions() -> None:
    """Each line was a wrong result or an internal error before (found by an audit)."""
    x32, xi, m = np.arange(4.0, dtype=np.float32), np.arange(4, dtype=np.int32), np.ones((3, 4))
    # static_argnums by keyword stays static (as JAX)
    f = fg.jit(lambda x, n: fnp.zeros(n) + fnp.sum(x), static_argnums=1)
    np.testing.assert_array_equal(f(X, n=3), np.full(3, fnp.sum(X)))
    assert f.trace_count == 1 and f(X, 3).shape == (3,) and f.trace_count == 1
    assert len(fg.make_jaxpr(lambda x, n: x * n, static_argnums=1)(X, n=3).invars) == 1
    # round keeps integers; initial keeps x's dtype; masks must be boolean and fit
    np.testing.assert_array_equal(fnp.round(np.array([2 ** 53 + 1])), [2 ** 53 + 1])
    np.testing.assert_array_equal(fnp.round(np.array([1234, -1250], np.int16), -2),
                                  np.round(np.array([1234, -1250], np.int16), -2))
    assert fnp.max(x32, initial=np.float64(1e30)).dtype == np.float32
    assert fnp.sum(xi, initial=1.5) == np.sum(xi, initial=1.5)
    _raises(lambda: fnp.sum(m, axis=1, initial=np.ones((3, 3))), ValueError, "initial must be a scalar")
    _raises(lambda: fnp.sum(m, where=np.ones((2, 3, 4), bool)), ValueError, "does not broadcast")
    _raises(lambda: fnp.sum(x32, where=np.array([1, 0, 1, 1])), TypeError, "boolean mask")
    i8 = np.array([[100, 100, -3], [7, 8, 9]], np.int8)
    assert fnp.mean(i8, dtype=np.int8) == np.mean(i8, dtype=np.int8)       # int8 sums wrap
    assert fg.jit(lambda i: fnp.max(np.zeros((0, 2)), axis=0, initial=i))(1.0).tolist() == [1, 1]
    # linspace keeps a float32 endpoint's dtype next to a Python float
    assert fg.jit(lambda a: fnp.linspace(a, 3.0, 5))(np.float32(1)).dtype == np.float32
    # CSE-merged outputs are two arrays
    r1, r2 = fg.jit(lambda x: (x * 2, x * 2))(X)
    r1[0] = 99.0
    assert r2[0] == 2 * X[0]
    # NumPy's casting error inside an update is reported, not a constructor crash
    _raises(lambda: fg.jit(lambda a: a.at[0:2].divide(2))(np.array([9, 7, 5])), TypeError,
            ".at[] update", "Cannot cast")
    # divmod with a NumPy number on the left; tracer methods take keepdims positionally
    assert fg.grad(lambda t: divmod(np.float64(10.0), t)[1])(3.0) == -3.0
    assert fg.jit(lambda t: t.sum(0, True))(X).shape == (1,)
    np.testing.assert_array_equal(fg.jit(lambda t: t.clip(min=0.0))(X), np.clip(X, 0.0, None))
    _raises(lambda: fg.jit(lambda t: t.reshape(newshape=(3,)))(X), TypeError, "reshape")
    _raises(lambda: fg.jit(lambda t: t.reshape())(X), TypeError, "shape is missing")
    _raises(lambda: fnp.round(X, 1.5), TypeError, "round: decimals must be an int")
    _raises(lambda: fnp.zeros_like(X, shape=(-1,)), ValueError, "zeros_like", "negative size")
    np.testing.assert_array_equal(fnp.full_like(X, 7.0, shape=np.int64(2)), [7.0, 7.0])


@pytest.mark.parametrize("name", ["jit", "make_jaxpr"])
def test_a_non_array_keyword_argument_points_to_partial_and_static_argnums(name: str) -> None:
    _raises(lambda: getattr(fg, name)(lambda x, mode="a": x)(X, mode="b"), TypeError,
            f"{name}: keyword argument 'mode'", "functools.partial(f, mode=...)",
            "static_argnums")
    f = getattr(fg, name)(lambda x, mode="a": x * (2.0 if mode == "b" else 1.0), static_argnums=1)
    f(X, mode="b")                   # named by static_argnums: static, so fine
