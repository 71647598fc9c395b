"""Trace machinery: abstract values, primitives, ``bind``, traces and tracers.

funcgrad uses a *stack of trace levels*, as in Autodidax.  Every running
transformation (``jvp``, ``vjp``/``grad``, ``vmap``, ``make_jaxpr``/``jit``) owns
a :class:`Trace` with a ``level``: its position on a per-thread stack.  A tracer
belongs to exactly one trace.  When a primitive is applied, :func:`bind` picks
the trace with the highest level among the arguments and lets it interpret the
primitive; that interpretation binds the primitive again on the unwrapped
values, which reaches the next trace down, and so on until plain NumPy runs.
Values from lower levels are constants to a higher trace, so two nested
transformations of the same kind (grad of grad) never confuse their tangents.

When a transformation returns it marks its trace dead; a tracer of a dead
trace used later raises :class:`LeakedTracerError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "ShapedArray", "get_aval", "Primitive", "bind", "Trace", "Tracer",
    "ConcretizationError", "LeakedTracerError", "new_trace", "to_concrete",
]


# ----------------------------------------------------------------- errors ---

class ConcretizationError(Exception):
    """A Python-level decision (``if``, ``bool``, ``int``) needed a traced value."""


class LeakedTracerError(Exception):
    """A tracer was used after the transformation that created it returned."""


# ---------------------------------------------------------- abstract values ---

_SCALAR_TYPES = (bool, int, float, complex)
_ARRAY_TYPES = (np.ndarray, np.generic)


class ShapedArray:
    """The abstract value of an array: its shape and dtype.

    ``weak_type`` marks values that came from Python scalars: like NumPy (NEP 50)
    they take the dtype of the array they are combined with.
    """

    __slots__ = ("shape", "dtype", "weak_type")

    def __init__(self, shape: tuple, dtype: Any, weak_type: bool = False):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.weak_type = weak_type

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def str_short(self) -> str:
        return f"{_short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self) -> str:
        return f"ShapedArray({self.str_short()})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ShapedArray) and self.shape == other.shape
                and self.dtype == other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))


_DTYPE_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "int64": "i64",
                "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
                "bool": "bool", "complex128": "c128", "complex64": "c64"}


def _short_dtype(dtype: np.dtype) -> str:
    return _DTYPE_SHORT.get(dtype.name, dtype.name)


_NUMERIC_KINDS = "biufc"


def valid_value(x: Any) -> bool:
    """True for the values funcgrad accepts as array data (numeric arrays and scalars, tracers)."""
    if isinstance(x, _ARRAY_TYPES):
        return x.dtype.kind in _NUMERIC_KINDS
    return isinstance(x, (Tracer,) + _SCALAR_TYPES)


def get_aval(x: Any) -> ShapedArray:
    """The abstract value (shape, dtype) of a tracer, array or scalar."""
    if isinstance(x, Tracer):
        return x.aval
    if isinstance(x, _ARRAY_TYPES):
        return ShapedArray(x.shape, x.dtype)
    if isinstance(x, _SCALAR_TYPES):
        return ShapedArray((), np.result_type(type(x)), weak_type=True)
    raise TypeError(f"value of type {type(x).__name__} is not an array: funcgrad "
                    "works on NumPy arrays, NumPy scalars and Python numbers")


def dtype_of(x: Any) -> np.dtype:
    d = getattr(x, "dtype", None)
    return d if d is not None else np.result_type(type(x))


def is_float(x: Any) -> bool:
    """True if ``x`` holds inexact (differentiable) data."""
    d = getattr(x, "dtype", None)
    if d is not None:
        return d.kind in "fc"
    return isinstance(x, (float, complex))


# -------------------------------------------------------------- primitives ---

class Primitive:
    """An operation funcgrad knows how to evaluate, trace and transform.

    Every primitive is declared once (in ``funcgrad/primitives/``) with:

    - ``impl``: the NumPy implementation, called on concrete arrays;
    - ``abstract_eval``: the shape/dtype rule, ``(*avals, **params) -> aval``;
    - ``jvp``: forward-mode rule ``(primals, tangents, **params) -> (out, t_out)``
      where a tangent of ``None`` means zero;
    - ``vjp``: reverse-mode rule ``(ct, out, primals, needed, **params)`` giving
      one cotangent per primal (``None`` where not needed);
    - ``batch``: vmap rule ``(args, bdims, **params) -> (out, out_bdim)``;
    - ``vjp_terms`` (elementwise primitives): the per-operand terms of ``vjp``;
    - ``zero_derivative=True`` instead of the two AD rules for operations whose
      derivative is zero almost everywhere (comparisons, sign, argmax, ...).

    The rules are written with primitives themselves, so derivatives can be
    traced, batched and differentiated again.
    """

    def __init__(self, name: str, impl: Callable, abstract_eval: Callable | None = None):
        self.name = name
        self.label = name         # how error messages name it (the facade's name: select -> where)
        self.impl = impl
        self.abstract_eval = abstract_eval
        self.jvp: Callable | None = None
        self.vjp: Callable | None = None
        self.batch: Callable | None = None
        self.zero_derivative = False
        # elementwise primitives: per operand, (ct, out, *primals) -> that operand's
        # cotangent before broadcasting is undone; the eager backward pass calls these
        # directly (``vjp`` is the same rule behind one more call and a list)
        self.vjp_terms: tuple | None = None
        # the same terms evaluated with NumPy's functions in place of the binders: the
        # eager backward pass uses them when every value is concrete (see _base.numpy_terms)
        self.raw_terms: tuple | None = None
        # for jit: a Python expression template ("{0} + {1}"), or a function
        # (arg sources, in avals, **params) -> expression or None (then impl is called)
        self.codegen: str | Callable | None = None

    def bind(self, *args: Any, **params: Any) -> Any:
        return bind(self, *args, **params)

    def __repr__(self) -> str:
        return self.name


def bind(prim: Primitive, *args: Any, **params: Any) -> Any:
    """Apply ``prim``: hand it to the highest-level trace among ``args``.

    With no tracer among the arguments this is just the NumPy implementation,
    which is the eager fast path (no thread-local lookup, no per-argument
    validation).  Bad input surfaces as NumPy failing or returning a
    non-numeric array; both become a TypeError naming the operation and argument.
    """
    top = None
    for a in args:
        if isinstance(a, Tracer):
            tr = a._trace
            if not tr.alive:
                raise _leak_error(tr)
            if top is None or tr.level > top.level:
                top = tr
            elif tr is not top and tr.level == top.level:
                check_thread(tr)
                check_thread(top)
                names = tr.name if tr.name == top.name else f"{top.name} and {tr.name}"
                raise LeakedTracerError(
                    f"{prim.name}: mixes tracers of two different transformations ({names}) "
                    "at the same level; a tracer escaped from one transformation into "
                    "another (leaked tracer). Return values out of transformed functions "
                    "instead of storing tracers in outside variables.")
        elif not (a.dtype.kind in _NUMERIC_KINDS if type(a) is np.ndarray else _accepted(a)):
            raise _op_error(prim, args, params, None)        # None, strings, objects
    if top is None:
        try:
            out = prim.impl(*args, **params)
        except Exception as e:   # turn NumPy's message into one that names the op
            raise _op_error(prim, args, params, e) from None
        if getattr(out, "dtype", _F64).kind in _BAD_KINDS:
            raise _op_error(prim, args, params, None)
        if (type(out) is not np.ndarray or not out.ndim) and type(args[0]) in _PY_SCALARS \
                and weak_inputs(args, params):   # (first-argument test: cheap for reductions)
            return _as_python(out)
        return out
    return top.process_primitive(prim, args, params)


_PY_SCALARS = frozenset((bool, int, float, complex))


def weak_inputs(args: tuple, params: dict) -> bool:
    """True if an op on ``args`` gives a weakly typed result: all are Python numbers.

    As Python's own arithmetic does (and JAX's weak types), an operation on Python
    numbers only gives a Python number, which then takes the dtype of the arrays it
    meets (``x32 * fnp.sqrt(2.0)`` stays float32).  This is what makes a traced
    ``lr * 2.0`` (``lr`` a Python float argument) evaluate exactly as the same code
    run eagerly.  An explicit ``dtype`` (``astype``) gives a NumPy value.
    """
    return bool(args) and "dtype" not in params and all(type(a) in _PY_SCALARS for a in args)


def _as_python(out: Any) -> Any:
    """A 0-d NumPy result as the Python number of the same value."""
    return out.item() if isinstance(out, (np.generic, np.ndarray)) and not np.ndim(out) else out


_F64 = np.dtype(np.float64)
_NO_PARAMS: dict = {}               # shared, never mutated
_BAD_KINDS = frozenset("OSUVMmT")   # object, bytes, str, void, datetime, timedelta, StringDType


def binder(prim: Primitive, nargs: int, name: str | None = None, doc: str | None = None) -> Callable:
    """``bind`` specialised to ``prim`` and ``nargs`` positional arguments, no params
    (``nargs=-1``: one positional argument and keyword params).

    The facade and the derivative rules call primitives through these: on
    plain arrays they go straight to the implementation (about 0.3 µs less per
    call than the generic ``bind``, which matters in eager reverse mode).
    """
    impl = prim.impl

    def fail(args: tuple, err: Exception | None) -> Exception:
        return _op_error(prim, args, {}, err)

    if nargs == 1:
        def op1(x: Any) -> Any:
            if isinstance(x, Tracer):          # one tracer: its trace handles the primitive
                tr = x._trace
                if not tr.alive:
                    raise _leak_error(tr)
                return tr.process_primitive(prim, (x,), _NO_PARAMS)
            try:
                out = impl(x)
            except Exception as e:
                raise fail((x,), e) from None
            if type(out) is np.ndarray and out.dtype.kind in "fc":
                return out                  # the common case
            if getattr(out, "dtype", _F64).kind in _BAD_KINDS:
                raise fail((x,), None)
            if type(out) is not np.ndarray and type(x) in _PY_SCALARS:
                return _as_python(out)      # weakly typed in, weakly typed out (see weak_inputs)
            return out
        op = op1
    elif nargs == 2:
        def op2(x: Any, y: Any) -> Any:
            xt = isinstance(x, Tracer)
            if xt or isinstance(y, Tracer):
                if xt and isinstance(y, Tracer):
                    tr = x._trace
                    if tr is y._trace and tr.alive:     # two tracers of one trace: x * x
                        return tr.process_primitive(prim, (x, y), _NO_PARAMS)
                    return bind(prim, x, y)             # different levels: bind sorts it out
                tr = (x if xt else y)._trace
                if not tr.alive:
                    raise _leak_error(tr)
                other = y if xt else x
                if not (other.dtype.kind in _NUMERIC_KINDS if type(other) is np.ndarray
                        else type(other) in _PY_SCALARS or _accepted(other)):
                    raise _op_error(prim, (x, y), {}, None)
                return tr.process_primitive(prim, (x, y), _NO_PARAMS)
            try:
                out = impl(x, y)
            except Exception as e:
                raise fail((x, y), e) from None
            if type(out) is np.ndarray and out.dtype.kind in "fc":
                return out                  # the common case
            if getattr(out, "dtype", _F64).kind in _BAD_KINDS:
                raise fail((x, y), None)
            if type(out) is not np.ndarray and type(x) in _PY_SCALARS and type(y) in _PY_SCALARS:
                return _as_python(out)
            return out
        op = op2
    elif nargs == -1:                       # one array argument plus keyword params
        def op1k(x: Any, **params: Any) -> Any:
            if isinstance(x, Tracer):
                tr = x._trace
                if not tr.alive:
                    raise _leak_error(tr)
                return tr.process_primitive(prim, (x,), params)
            if type(x) is not np.ndarray:
                return bind(prim, x, **params)     # scalars, lists: the general checks
            try:
                out = impl(x, **params)
            except Exception as e:
                raise _op_error(prim, (x,), params, e) from None
            if type(out) is np.ndarray and out.dtype.kind in "fc":
                return out
            if getattr(out, "dtype", _F64).kind in _BAD_KINDS:
                raise _op_error(prim, (x,), params, None)
            return out
        op = op1k
    else:
        def opn(*args: Any) -> Any:
            return bind(prim, *args)
        op = opn
    op.__name__ = op.__qualname__ = name or prim.name
    op.__doc__ = doc or f"Apply the ``{prim.name}`` primitive."
    if nargs != -1:
        op.raw = impl   # type: ignore[attr-defined]  # what op computes on concrete arrays
    return op


def _accepted(x: Any) -> bool:
    """True for values ``bind`` accepts: numeric arrays and scalars, tracers, numeric lists."""
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x).dtype.kind in _NUMERIC_KINDS
        except (TypeError, ValueError):
            return False
    return valid_value(x)


def check_callable(fun: Any, where: str) -> None:
    """A transformation's first argument must be a function: say so when it is created."""
    if not callable(fun):
        raise TypeError(f"{where}: expected a function as the first argument, got "
                        f"{_short(fun)} of type {type(fun).__name__}")


def _short(x: Any) -> str:
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def _holds_tracer(x: list | tuple) -> bool:
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, Tracer):
            return True
        if isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def unsupported_type_message(where: str, i: int, x: Any) -> str:
    """The message for an argument funcgrad cannot work on, naming it and its type."""
    what = type(x).__name__
    if isinstance(x, (list, tuple)) and _holds_tracer(x):
        return (f"{where}: argument {i} is a {what} holding traced arrays; combine them first "
                "with fnp.stack(...) or fnp.asarray(...)")
    if isinstance(x, _ARRAY_TYPES) or isinstance(x, (list, tuple)):
        try:
            what += f" of dtype {np.asarray(x).dtype}"
        except (TypeError, ValueError):
            what += " that is not a regular array"
    return (f"{where}: argument {i} has unsupported type {what}; funcgrad operations take "
            "numeric NumPy arrays, NumPy scalars or Python numbers")


def _op_error(prim: Primitive, args: tuple, params: dict, err: Exception | None) -> Exception:
    for i, a in enumerate(args):
        if not _accepted(a):
            return TypeError(unsupported_type_message(prim.label, i, a))
    assert err is not None
    if prim.abstract_eval is not None:
        try:
            prim.abstract_eval(*[get_aval(a) for a in args], **params)
        except (TypeError, ValueError, IndexError) as e:
            return e
    shapes = ", ".join(str(np.shape(a)) for a in args)
    msg = f"{prim.label} failed on arguments with shapes {shapes}: {err}"
    try:
        return type(err)(msg)
    except TypeError:      # NumPy's own exception classes (casting errors) take other arguments
        base = next(c for c in type(err).__mro__ if c.__module__ == "builtins")
        return base(msg)


def _leak_error(trace: Trace) -> LeakedTracerError:
    return LeakedTracerError(
        f"leaked tracer: a tracer of a {trace.name} transformation was used after that "
        "transformation returned (for example it was stored in a global variable or "
        "a list outside the function). Transformed functions must return every value "
        "they compute; pass values in as arguments and return them as outputs instead.")


def check_thread(trace: Trace) -> None:
    """Raise if ``trace`` runs in another thread: tracers cannot be shared between threads."""
    if trace.thread != threading.get_ident():
        raise LeakedTracerError(
            f"a tracer of a {trace.name} transformation running in another thread was used in "
            "this thread (leaked tracer). The trace state is per thread: run each transformation "
            "entirely inside one thread and pass concrete arrays (its results) between threads.")


def check_output(x: Any) -> None:
    """Raise if ``x`` is a tracer of a finished transformation or of another thread."""
    if isinstance(x, Tracer):
        if not x._trace.alive:
            raise _leak_error(x._trace)
        check_thread(x._trace)


# ------------------------------------------------------- traces and tracers ---

class _TraceState(threading.local):
    def __init__(self) -> None:
        self.stack: list[Trace] = []


_state = _TraceState()


class Trace:
    """One running transformation.  Subclasses implement ``process_primitive``."""

    name = "trace"
    differentiates = False      # True for AD traces: float() of their tracers raises

    def __init__(self, level: int):
        self.level = level
        self.alive = True
        self.thread = threading.get_ident()   # tracers belong to the thread running the trace

    def process_primitive(self, prim: Primitive, args: tuple, params: dict) -> Any:
        raise NotImplementedError

    def own(self, x: Any) -> bool:
        return isinstance(x, Tracer) and x._trace is self


class new_trace:  # noqa: N801  (used like a function: ``with new_trace(JVPTrace) as t``)
    """Push a new trace of class ``cls`` on this thread's stack for a ``with`` body.

    On exit the trace is popped and marked dead, so its tracers can no longer be
    used (a leaked tracer raises :class:`LeakedTracerError`).  A class rather
    than a generator-based context manager: it is entered once per transformed
    call, so its cost counts.
    """

    __slots__ = ("trace", "stack")

    def __init__(self, cls: type, *args: Any, **kwargs: Any):
        self.stack = _state.stack
        self.trace = cls(len(self.stack) + 1, *args, **kwargs)

    def __enter__(self) -> Any:
        self.stack.append(self.trace)
        return self.trace

    def __exit__(self, *exc: Any) -> None:
        self.stack.pop()
        self.trace.alive = False


_UFUNCS: dict = {}     # NumPy ufunc name -> facade function, filled on first use


def _facade():
    from funcgrad import numpy as fnp
    return fnp


def _ufunc_table() -> dict:
    if not _UFUNCS:
        _UFUNCS.update(_facade()._UFUNCS)
    return _UFUNCS


class Tracer:
    """A stand-in for an array during tracing; behaves like a NumPy array."""

    __slots__ = ("_trace",)
    __array_priority__ = 1000

    @property
    def aval(self) -> ShapedArray:
        raise NotImplementedError

    def concrete(self) -> Any:
        """The concrete value, where the transformation has one (grad, jvp)."""
        raise ConcretizationError(self._concretization_message("its value"))

    def _concretization_message(self, what: str) -> str:
        trace = self._trace
        if not trace.alive:
            return str(_leak_error(trace))
        hint = ("under vmap each example has its own value, so no single Python value "
                "exists" if trace.name == "vmap" else
                "under jit/make_jaxpr only shapes and dtypes are known while tracing")
        fix = ("if the value is the same for every example, pass it unbatched (in_axes=None "
               "for its argument) or close over it (under jit, static_argnums=... makes an "
               "argument's value known while tracing)" if trace.name == "vmap" else
               "mark the argument static with static_argnums=... so that its value is known "
               "while tracing")
        return (f"{trace.name}: {what} is needed as a concrete Python value, but the "
                f"argument is traced (abstract value {self.aval.str_short()}); {hint}. "
                "Fixes: use fnp.where(cond, a, b) instead of `if`/`and`/`or` on array "
                f"values, or {fix}.")

    # shape properties
    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)
    ndim = property(lambda self: len(self.aval.shape))
    size = property(lambda self: self.aval.size)

    def __len__(self) -> int:
        shape = self.aval.shape
        if not shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return shape[0]

    def __iter__(self):
        shape = self.aval.shape
        if not shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(shape[0]))

    # Python conversions need concrete values
    def __bool__(self) -> bool:
        return bool(self._concrete_for("bool(x), `if x` or `while x`"))

    def __int__(self) -> int:
        return int(self._concrete_for("int(x)"))

    def __float__(self) -> float:
        return float(self._constant_of("float(x)"))

    def __complex__(self) -> complex:
        return complex(self._constant_of("complex(x)"))

    def _constant_of(self, what: str) -> Any:
        """The value for ``float(x)``/``complex(x)``.  As in JAX, a value being
        differentiated raises instead of quietly becoming a constant with a zero
        derivative; int() and bool() stay allowed: they are how Python control flow and
        indexing on values work under grad."""
        x = self
        while isinstance(x, Tracer) and x._trace.alive:
            if x._trace.differentiates and x.dtype.kind in "fc":
                raise ConcretizationError(
                    f"{x._trace.name}: {what} would turn a value being differentiated "
                    f"({x.aval.str_short()}) into a constant and silently drop its "
                    "derivative. Keep x as an array (arithmetic and funcgrad.numpy "
                    "functions work on it); if a constant is intended, use "
                    "fg.stop_gradient(x); to log its value, return it as auxiliary "
                    "output (has_aux=True).")
            try:
                x = x.concrete()
            except ConcretizationError:
                break
        return self._concrete_for(what)

    def __index__(self) -> int:
        return int(self._concrete_for("using x as an index or size"))

    def item(self) -> Any:
        return np.asarray(self._concrete_for("x.item()")).item()

    def tolist(self) -> Any:
        return np.asarray(self._concrete_for("x.tolist()")).tolist()

    def _concrete_for(self, what: str) -> Any:
        if not self._trace.alive:
            raise _leak_error(self._trace)
        x = self
        while isinstance(x, Tracer):        # the message names the trace that has no value
            try:
                x = x.concrete()
            except ConcretizationError:
                raise ConcretizationError(x._concretization_message(what)) from None
        return x

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if not self._trace.alive:
            raise _leak_error(self._trace)
        check_thread(self._trace)
        raise TypeError(
            f"a traced array ({self.aval.str_short()}, under {self._trace.name}) cannot be "
            "converted to a NumPy array: inside transformed functions use funcgrad.numpy "
            "(import funcgrad.numpy as fnp) instead of numpy functions that are not ufuncs. "
            "To index a NumPy array with a traced index, use fnp.take(array, index, axis=0) "
            "(array[index] is NumPy's own indexing, which cannot take it).")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        # (ndarray @ tracer and friends come here too: NumPy tries its ufunc first)
        fn = _ufunc_table().get(ufunc.__name__)
        if method != "__call__" or fn is None or kwargs:
            raise TypeError(
                f"numpy.{ufunc.__name__}{'' if method == '__call__' else '.' + method} is not "
                "supported on traced arrays; use the funcgrad.numpy function of the same name.")
        return fn(*inputs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        fnp = _facade()
        name = getattr(func, "__name__", str(func))
        if func in (np.shape, np.ndim, np.size) and len(args) == 1 and not kwargs:
            return getattr(fnp, name)(*args)         # metadata only: no value needed
        if not self._trace.alive:
            raise _leak_error(self._trace)
        module = getattr(func, "__module__", "numpy") or "numpy"
        module = "numpy" if module.startswith("numpy._core") or module.startswith("numpy.core") \
            else module
        raise TypeError(
            f"{module}.{name} cannot be applied to a traced array ({self.aval.str_short()}, under "
            f"{self._trace.name}): only NumPy ufuncs dispatch to funcgrad. "
            + _facade_hint(name, f"{module}.{name}"))

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: NumPy-only attributes and methods
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(
            f"traced arrays ({type(self).__name__} under {self._trace.name}) have no attribute "
            f"{name!r}: they support the NumPy attributes and methods listed in funcgrad's docs "
            "(shape, dtype, ndim, size, T, at, sum, mean, max, min, prod, var, std, argmax, "
            "argmin, reshape, transpose, ravel, flatten, squeeze, astype, clip, dot, item). "
            + _facade_hint(name, f"x.{name}"))

    def __setitem__(self, idx: Any, value: Any) -> None:
        raise TypeError(
            f"traced arrays are immutable ({self._trace.name}): `x[idx] = v` cannot be traced. "
            "Use the functional update `x = x.at[idx].set(v)` (or .add / .multiply) instead.")

    def __hash__(self) -> int:
        raise TypeError("traced arrays are not hashable (they have no concrete value); "
                        "pass hashable values as static_argnums instead")

    def __repr__(self) -> str:
        return f"{type(self).__name__}<{self._trace.name}>({self.aval.str_short()})"

    # Operators (+, *, @, <, [], .T, .at, .sum(), ...) are installed on this class by
    # funcgrad.numpy, the one place that maps NumPy's names to primitives.


def _facade_hint(name: str, what: str) -> str:
    """Point to ``funcgrad.numpy.<name>`` if it exists, else say to compose it from the facade."""
    if callable(getattr(_facade(), name, None)):
        return f"Use funcgrad.numpy.{name} instead (import funcgrad.numpy as fnp; fnp.{name}(x, ...))."
    return (f"funcgrad.numpy has no {name}: write {what} with funcgrad.numpy operations "
            "(import funcgrad.numpy as fnp), which trace and differentiate.")


def to_concrete(x: Any) -> Any:
    """The concrete value of ``x``, unwrapping tracers that know their value."""
    while isinstance(x, Tracer):
        x = x.concrete()
    return x


def current_traces() -> list[Trace]:
    """This thread's active traces, lowest level first (for tests and debugging)."""
    return list(_state.stack)
