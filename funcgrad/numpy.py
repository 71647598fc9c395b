"""``funcgrad.numpy``: NumPy-named functions that work on arrays and tracers alike.

Called on plain arrays outside any transformation, each function runs NumPy
directly (the eager fast path in :func:`funcgrad.core.bind`).  Inside a
transformation it applies primitives to tracers.  Most functions here are
compositions of the small primitive set and need no derivative code.

Creation functions (``zeros``, ``ones``, ``eye``, ``arange``, ``linspace``)
take static sizes and return NumPy arrays; the ``*_like`` functions read only
the shape and dtype of their argument, so they give constants too.
"""

from __future__ import annotations

import builtins
import operator

import numpy as _np

from funcgrad.core import (
    ConcretizationError,
    Tracer,
    _holds_tracer,
    _short,
    bind,
    dtype_of,
    to_concrete,
    valid_value,
)
from funcgrad.core import binder as _binder
from funcgrad.core import get_aval as _get_aval
from funcgrad.primitives import elementwise as _ew
from funcgrad.primitives import indexing as _ix
from funcgrad.primitives import linalg as _la
from funcgrad.primitives import reduce as _red
from funcgrad.primitives import shape as _sh
from funcgrad.primitives._base import registry as _registry

# dtypes and constants, so code written against numpy keeps working
float32, float64, int32, int64, bool_ = _np.float32, _np.float64, _np.int32, _np.int64, _np.bool_
float16, int8, int16, uint8 = _np.float16, _np.int8, _np.int16, _np.uint8
pi, e, inf, nan, newaxis = _np.pi, _np.e, _np.inf, _np.nan, None
ndarray = _np.ndarray
dtype = _np.dtype

_add_p, _sub_p, _mul_p, _div_p = _ew.add_p, _ew.sub_p, _ew.mul_p, _ew.div_p


def _shape_of(x) -> tuple:
    """Shape of an array, tracer, scalar or (nested) list; TypeError for anything else.

    Lists count with their NumPy shape (``fnp.sum([1, 2])`` is 3, as in NumPy), and
    strings or arbitrary objects are rejected here, before any shortcut could pass
    them through unchanged (``fnp.transpose("ab")``).
    """
    s = getattr(x, "shape", None)
    if s is not None and (isinstance(x, Tracer) or valid_value(x)):
        return tuple(s)
    if isinstance(x, (bool, int, float, complex)):
        return ()
    if isinstance(x, (list, tuple)):
        if _holds_tracer(x):
            raise TypeError(f"funcgrad.numpy: a {type(x).__name__} holding traced arrays was "
                            "passed where an array is expected; combine them first with "
                            "fnp.stack(...) or fnp.asarray(...)")
        try:
            a = _np.asarray(x)
        except (TypeError, ValueError):
            a = None
        if a is not None and valid_value(a):
            return a.shape
    desc = type(x).__name__ + (f" of dtype {x.dtype}" if isinstance(x, (_np.ndarray, _np.generic)) else "")
    raise TypeError(f"funcgrad.numpy: argument {_short(x)} has unsupported type {desc}; "
                    "funcgrad operations take numeric NumPy arrays, NumPy scalars or Python numbers")


# ----------------------------------------------------------- elementwise ---
add = _binder(_registry["add"], 2, "add", "Elementwise x + y.")
subtract = _binder(_registry["sub"], 2, "subtract", "Elementwise x - y.")
multiply = _binder(_registry["mul"], 2, "multiply", "Elementwise x * y.")
divide = _binder(_registry["div"], 2, "divide", "Elementwise x / y (true division).")
negative = _binder(_registry["neg"], 1, "negative", "Elementwise -x.")
power = _binder(_registry["pow"], 2, "power", "Elementwise x ** y.")
sqrt = _binder(_registry["sqrt"], 1, "sqrt", "Elementwise square root.")
exp = _binder(_registry["exp"], 1, "exp", "Elementwise e ** x.")
log = _binder(_registry["log"], 1, "log", "Elementwise natural logarithm.")
log1p = _binder(_registry["log1p"], 1, "log1p", "Elementwise log(1 + x) (accurate for small x).")
expm1 = _binder(_registry["expm1"], 1, "expm1", "Elementwise exp(x) - 1 (accurate for small x).")
sin = _binder(_registry["sin"], 1, "sin", "Elementwise sine.")
cos = _binder(_registry["cos"], 1, "cos", "Elementwise cosine.")
tan = _binder(_registry["tan"], 1, "tan", "Elementwise tangent.")
tanh = _binder(_registry["tanh"], 1, "tanh", "Elementwise hyperbolic tangent.")
arctan = _binder(_registry["arctan"], 1, "arctan", "Elementwise inverse tangent.")
sinh = _binder(_registry["sinh"], 1, "sinh", "Elementwise hyperbolic sine.")
cosh = _binder(_registry["cosh"], 1, "cosh", "Elementwise hyperbolic cosine.")
abs = _binder(_registry["abs"], 1, "abs", "Elementwise absolute value (derivative sign(x)).")  # noqa: A001
sign = _binder(_registry["sign"], 1, "sign", "Elementwise sign (zero derivative).")
floor = _binder(_registry["floor"], 1, "floor", "Elementwise floor (zero derivative).")
ceil = _binder(_registry["ceil"], 1, "ceil", "Elementwise ceiling (zero derivative).")
trunc = _binder(_registry["trunc"], 1, "trunc", "Elementwise rounding toward 0 (zero derivative).")
fix = trunc
rint = _binder(_registry["rint"], 1, "rint",
               "Elementwise rounding to the nearest integer, halves to even (zero derivative).")


def round(x, decimals=0):  # noqa: A001
    """NumPy's ``round``: halves to even, at ``decimals`` digits (zero derivative)."""
    try:
        decimals = operator.index(decimals)
    except TypeError:
        raise TypeError(f"round: decimals must be an int, got {decimals!r}") from None
    if dtype_of(x).kind in "biu":             # integers: kept (to -decimals digits), as NumPy
        if decimals >= 0:
            return x
        return astype(round(astype(x, _np.float64), decimals), dtype_of(x))
    if decimals == 0:
        return rint(x)
    scale = 10.0 ** decimals       # as NumPy: scale, round, scale back
    return divide(rint(multiply(x, scale)), scale)


around = round
floor_divide = _binder(_registry["floor_divide"], 2, "floor_divide",
                       "Elementwise x // y, rounded down as in NumPy (zero derivative).")
remainder = _binder(_registry["rem"], 2, "remainder",
                    "Elementwise x % y with the sign of y, as in NumPy (derivatives 1 and "
                    "-floor(x / y)).")
mod = remainder


def divmod(x, y):  # noqa: A001
    """``(x // y, x % y)``, as NumPy's ``divmod``."""
    return floor_divide(x, y), remainder(x, y)
maximum = _binder(_registry["max"], 2, "maximum", "Elementwise maximum (ties split the derivative).")
minimum = _binder(_registry["min"], 2, "minimum", "Elementwise minimum (ties split the derivative).")
equal = _binder(_registry["eq"], 2, "equal", "Elementwise x == y.")
not_equal = _binder(_registry["ne"], 2, "not_equal", "Elementwise x != y.")
less = _binder(_registry["lt"], 2, "less", "Elementwise x < y.")
less_equal = _binder(_registry["le"], 2, "less_equal", "Elementwise x <= y.")
greater = _binder(_registry["gt"], 2, "greater", "Elementwise x > y.")
greater_equal = _binder(_registry["ge"], 2, "greater_equal", "Elementwise x >= y.")
logical_and = _binder(_registry["and"], 2, "logical_and", "Elementwise logical and.")
logical_or = _binder(_registry["or"], 2, "logical_or", "Elementwise logical or.")
logical_not = _binder(_registry["not"], 1, "logical_not", "Elementwise logical not.")
bitwise_and = _binder(_registry["bitwise_and"], 2, "bitwise_and",
                      "Elementwise x & y: bitwise on integers, logical on booleans.")
bitwise_or = _binder(_registry["bitwise_or"], 2, "bitwise_or",
                     "Elementwise x | y: bitwise on integers, logical on booleans.")
bitwise_xor = _binder(_registry["bitwise_xor"], 2, "bitwise_xor",
                      "Elementwise x ^ y: bitwise on integers, logical on booleans.")
invert = _binder(_registry["invert"], 1, "invert",
                 "Elementwise ~x: bitwise not on integers, logical not on booleans.")
bitwise_not = invert
isfinite = _binder(_registry["isfinite"], 1, "isfinite", "Elementwise True where finite.")


def square(x):
    """Elementwise x * x."""
    return multiply(x, x)


absolute = abs
true_divide = divide


def isnan(x):
    """NaN test, composed: NaN is the only value not equal to itself."""
    return not_equal(x, x)


def where(condition, x=None, y=None):
    """Elementwise ``x if condition else y`` (broadcasting), as ``np.where``.

    The one-argument form needs a concrete condition (its output shape depends
    on the values), so it is not available under jit or vmap.
    """
    if x is None and y is None:
        return _np.nonzero(_concrete(condition, "fnp.where(condition) with one argument"))
    if x is None or y is None:
        raise TypeError("fnp.where takes either one argument or three (condition, x, y)")
    return bind(_ew.select_p, condition, x, y)


def clip(x, a_min=None, a_max=None, *, min=None, max=None):  # noqa: A002
    """NumPy's ``clip``; ``min``/``max`` are JAX's names for ``a_min``/``a_max``."""
    if min is not None or max is not None:
        if a_min is not None or a_max is not None:
            raise TypeError("clip: give the bounds as a_min/a_max or as min/max, not both")
        a_min, a_max = min, max
    if a_min is None and a_max is None:
        raise ValueError("clip: at least one of a_min and a_max must be given")
    if a_min is not None:
        x = maximum(x, a_min)
    if a_max is not None:
        x = minimum(x, a_max)
    return x


def logaddexp(x, y):
    """``log(exp(x) + exp(y))`` without overflow: ``big + log1p(exp(small - big))``.

    ``big``/``small`` are selected from the inputs (no ``max``/``abs`` kink), so the
    formula is exact on each side and every derivative is right, also at ``x == y``
    (where ``|x - y|`` would give a zero second derivative).  NaN propagates to the value
    and the derivatives; equal infinities give that infinity, as in NumPy.
    """
    first = greater_equal(x, y)
    big = where(first, x, y)
    small = where(first, y, x)
    d = subtract(small, big)
    d = where(logical_and(equal(big, small), logical_not(isfinite(big))), 0, d)   # inf - inf
    return add(big, log1p(exp(d)))


def astype(x, dtype):
    try:
        dt = _np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"astype: {e}") from None
    if dt.kind not in "biufc":
        raise TypeError(f"astype: dtype {dt} is not numeric; funcgrad arrays hold booleans, "
                        "integers, floats or complex numbers")
    return _ew.convert(x, dt)


# ------------------------------------------------------------ reductions ---
_ALL_AXES = [tuple(range(n)) for n in range(33)]


def _axes(x, axis, where: str) -> tuple:
    """``axis`` (None, int or tuple, negative allowed) as sorted non-negative axes, checked."""
    try:
        nd = x.ndim
    except AttributeError:
        nd = len(_shape_of(x))
    if axis is None:
        return _ALL_AXES[nd] if nd < 33 else tuple(range(nd))
    if type(axis) is int and -nd <= axis < nd:
        return (axis % nd,)
    try:
        axs = [operator.index(a) for a in ((axis,) if isinstance(axis, (int, _np.integer))
                                           else tuple(axis))]
    except TypeError:
        raise TypeError(f"{where}: axis must be None, an int or a tuple of ints, got "
                        f"{axis!r}") from None
    out = []
    for a in axs:
        if not -nd <= a < nd:
            raise ValueError(f"{where}: axis {a} is out of bounds for an array of rank {nd} "
                             f"(shape {_shape_of(x)})")
        out.append(a % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: repeated axis in {axis}")
    return tuple(sorted(out))


def _kd(keepdims, where: str) -> bool:
    """``keepdims`` as a bool (True, False, NumPy bools, 0 and 1), else a TypeError."""
    if keepdims is True or keepdims is False:
        return keepdims
    if isinstance(keepdims, (int, _np.integer, _np.bool_)) and keepdims in (0, 1):
        return bool(keepdims)
    raise TypeError(f"{where}: keepdims must be a bool, got {keepdims!r}")


def sum(x, axis=None, keepdims=False, dtype=None, where=None, initial=None):  # noqa: A001
    if dtype is None and where is None and initial is None:
        return bind(_red.reduce_sum_p, x, axes=_axes(x, axis, "sum"),
                    keepdims=_kd(keepdims, "sum"))
    return _reduce(_red.reduce_sum_p, x, axis, keepdims, "sum", 0, add, dtype, where, initial)


def _extremum(p, name: str, combine):
    """``max`` or ``min``: one bind on the common path, NumPy's options through ``_reduce``."""
    def extremum(x, axis=None, keepdims=False, where=None, initial=None):
        if where is None and initial is None:
            return bind(p, x, axes=_axes(x, axis, name), keepdims=_kd(keepdims, name))
        return _reduce(p, x, axis, keepdims, name, None, combine, None, where, initial)
    extremum.__name__ = extremum.__qualname__ = name
    extremum.__doc__ = f"NumPy's ``{name}`` (``where`` needs ``initial``: no identity)."
    return extremum


max = _extremum(_red.reduce_max_p, "max", maximum)  # noqa: A001
min = _extremum(_red.reduce_min_p, "min", minimum)  # noqa: A001


def prod(x, axis=None, keepdims=False, dtype=None, where=None, initial=None):
    if dtype is None and where is None and initial is None:
        return bind(_red.reduce_prod_p, x, axes=_axes(x, axis, "prod"),
                    keepdims=_kd(keepdims, "prod"))
    return _reduce(_red.reduce_prod_p, x, axis, keepdims, "prod", 1, multiply, dtype, where,
                   initial)


def _reduce(p, x, axis, keepdims, name, identity, combine, dtype, where, initial):
    """A reduction with NumPy's options: ``dtype`` (convert first), ``where`` (masked-out
    entries count as the identity, or as ``initial`` where there is none) and ``initial``
    (one more operand of the reduction)."""
    if dtype is not None:
        x = astype(x, dtype)
    if initial is not None:
        if _shape_of(initial) != ():
            raise ValueError(f"{name}: initial must be a scalar, got shape {_shape_of(initial)}")
        initial = astype(initial, dtype_of(x))        # x's dtype, as NumPy and JAX keep it
    if where is not None:
        _check_mask(where, x, name)
        fill = identity if identity is not None else initial
        if fill is None:
            raise ValueError(f"{name}: where= needs initial= (the reduction has no identity "
                             "to put where the mask is False)")
        x = bind(_ew.select_p, where, x, fill)
    axes = _axes(x, axis, name)
    keepdims = _kd(keepdims, name)
    if identity is None and initial is not None and _count(x, axes) == 0:
        # max/min over nothing: just initial (NumPy), in x's dtype and the result's shape
        s = _shape_of(x)
        shape = tuple(1 if i in axes else n for i, n in enumerate(s)) if keepdims else \
            tuple(n for i, n in enumerate(s) if i not in axes)
        return broadcast_to(initial, shape) if isinstance(initial, Tracer) else \
            _np.full(shape, initial, dtype_of(x))
    out = bind(p, x, axes=axes, keepdims=keepdims)
    if dtype is not None and dtype_of(out) != _np.dtype(dtype):
        out = astype(out, dtype)              # NumPy accumulates in dtype (sum of int32: int32)
    return out if initial is None else combine(out, initial)


def _check_mask(where, x, name: str) -> None:
    """A reduction's ``where``: a boolean mask that broadcasts to ``x``'s shape (NumPy)."""
    if dtype_of(where).kind != "b":
        raise TypeError(f"{name}: where must be a boolean mask, got dtype {dtype_of(where)}")
    try:
        ok = _np.broadcast_shapes(_shape_of(where), _shape_of(x)) == _shape_of(x)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: the where mask of shape {_shape_of(where)} does not "
                         f"broadcast to the array's shape {_shape_of(x)}")


amax, amin = max, min


def _count(x, axes) -> int:
    s = _shape_of(x)
    n = 1
    for a in axes:
        n *= s[a]
    return n


def mean(x, axis=None, keepdims=False, dtype=None, where=None):
    if dtype is not None:
        x = astype(x, dtype)
    axes = _axes(x, axis, "mean")
    keepdims = _kd(keepdims, "mean")
    if where is not None:
        _check_mask(where, x, "mean")
    total = bind(_red.reduce_sum_p, x if where is None else bind(_ew.select_p, where, x, 0),
                 axes=axes, keepdims=keepdims)
    if dtype is not None and _np.issubdtype(dtype, _np.integer):
        total = astype(total, dtype)          # NumPy sums in dtype: int8 sums wrap
    if where is None:
        out = divide(total, _count(x, axes))
    else:
        count = bind(_red.reduce_sum_p, astype(broadcast_to(where, _shape_of(x)),
                                               _np.result_type(dtype_of(total), _np.float32)),
                     axes=axes, keepdims=keepdims)
        out = divide(total, count)
    if dtype is not None and _np.issubdtype(dtype, _np.integer):
        out = astype(out, dtype)              # NumPy: the mean cast back to an integer dtype
    return out


def var(x, axis=None, ddof=0, keepdims=False):
    axes = _axes(x, axis, "var")
    keepdims = _kd(keepdims, "var")
    d = subtract(x, mean(x, axes, keepdims=True))
    # NumPy divides by max(n - ddof, 0): inf/nan, never a negative "variance"
    return divide(sum(multiply(d, d), axes, keepdims), builtins.max(_count(x, axes) - ddof, 0))


def std(x, axis=None, ddof=0, keepdims=False):
    return sqrt(var(x, axis, ddof=ddof, keepdims=keepdims))


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` computed stably (a primitive: the max is subtracted)."""
    return bind(_red.logsumexp_p, x, axes=_axes(x, axis, "logsumexp"),
                keepdims=_kd(keepdims, "logsumexp"))


def _argreduce(p, x, axis, keepdims, where):
    if axis is not None and (not isinstance(axis, (int, _np.integer)) or isinstance(axis, bool)):
        raise TypeError(f"{where}: axis must be None or an int, got {axis!r}")
    ax = None if axis is None else _axes(x, axis, where)[0]
    return bind(p, x, axis=ax, keepdims=_kd(keepdims, where))


def argmax(x, axis=None, keepdims=False):
    return _argreduce(_red.argmax_p, x, axis, keepdims, "argmax")


def argmin(x, axis=None, keepdims=False):
    return _argreduce(_red.argmin_p, x, axis, keepdims, "argmin")


# ------------------------------------------------------------ linear algebra ---
matmul = _binder(_la.matmul_p, 2, "matmul", "Matrix product with NumPy's matmul semantics.")


def dot(a, b):
    """NumPy's ``dot``: products of scalars, matrix products, or a tensordot for N-d."""
    na, nb = len(_shape_of(a)), len(_shape_of(b))
    if na == 0 or nb == 0:
        return multiply(a, b)
    if na <= 2 and nb <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([na - 1], [builtins.max(nb - 2, 0)]))


def vdot(a, b):
    return sum(multiply(ravel(a), ravel(b)))


def inner(a, b):
    na, nb = len(_shape_of(a)), len(_shape_of(b))
    if na == 0 or nb == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([na - 1], [nb - 1]))


def outer(a, b):
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tensordot(a, b, axes=2):
    sha, shb = _shape_of(a), _shape_of(b)
    na, nb = len(sha), len(shb)
    if isinstance(axes, (int, _np.integer)) and not isinstance(axes, bool):
        if not 0 <= axes <= builtins.min(na, nb):
            raise ValueError(f"tensordot: axes={axes} needs 0 <= axes <= the ranks of both "
                             f"operands, which have shapes {sha} and {shb}")
        ax_a = list(range(na - axes, na))
        ax_b = list(range(axes))
    else:
        try:
            ax_a, ax_b = axes
            ax_a = [ax_a] if isinstance(ax_a, (int, _np.integer)) else list(ax_a)
            ax_b = [ax_b] if isinstance(ax_b, (int, _np.integer)) else list(ax_b)
            ax_a = [operator.index(x) for x in ax_a]
            ax_b = [operator.index(x) for x in ax_b]
        except (TypeError, ValueError):
            raise TypeError("tensordot: axes must be an int or a pair (axes of a, axes of b) "
                            f"of ints or sequences of ints, got {axes!r}") from None
    if len(ax_a) != len(ax_b):
        raise ValueError(f"tensordot: axes lists differ in length: {ax_a} and {ax_b}")
    for which, ax, n, sh in (("a", ax_a, na, sha), ("b", ax_b, nb, shb)):
        for x in ax:
            if not -n <= x < n:
                raise ValueError(f"tensordot: axis {x} is out of bounds for operand {which} of "
                                 f"shape {sh} (rank {n})")
        if len({x % n for x in ax}) != len(ax):
            raise ValueError(f"tensordot: repeated axis in the axes of operand {which}: {ax}")
    ax_a = [x % na for x in ax_a]
    ax_b = [x % nb for x in ax_b]
    for i, j in zip(ax_a, ax_b):
        if _shape_of(a)[i] != _shape_of(b)[j]:
            raise ValueError(f"tensordot: shape mismatch for summed axes: {_shape_of(a)} axis {i} "
                             f"vs {_shape_of(b)} axis {j}")
    sa = _LETTERS[:na]
    sb = list(_LETTERS[na:na + nb])
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    sb = "".join(sb)
    out = "".join(c for k, c in enumerate(sa) if k not in ax_a) + \
        "".join(c for k, c in enumerate(sb) if k not in ax_b)
    return bind(_la.einsum_p, a, b, spec=f"{sa},{sb}->{out}")


def einsum(subscripts: str, *operands, optimize=None):
    """Einstein summation (explicit or implicit output); differentiable and batchable.
    ``optimize`` is accepted for compatibility: funcgrad picks the contraction order."""
    ins, out = _la.parse_einsum(subscripts, [len(_shape_of(o)) for o in operands])
    return bind(_la.einsum_p, *operands, spec=",".join(ins) + "->" + out)


# ------------------------------------------------------------------ shape ---
def reshape(x, shape, order="C"):
    """NumPy's reshape; ``order="F"`` (first index fastest) is the C-order reshape of the
    transpose, transposed back, so it needs no rules of its own."""
    if order not in ("C", "F"):
        raise ValueError(f"reshape: order must be 'C' or 'F', got {order!r} ('A' and 'K' depend "
                         "on memory layout, which traced arrays do not have)")
    try:
        shape = tuple(operator.index(n) for n in (
            (shape,) if isinstance(shape, (int, _np.integer)) else tuple(shape)))
    except TypeError:
        raise TypeError(f"reshape: shape must be an int or a tuple of ints, got {shape!r}") from None
    if builtins.min(shape, default=0) < -1:
        raise ValueError(f"reshape: negative size in {shape}; -1 (once) stands for the size "
                         "that fits, other sizes must be >= 0")
    if order == "F":
        return transpose(_sh.reshape(transpose(x), shape[::-1]))
    return _sh.reshape(x, shape)


def ravel(x):
    return reshape(x, (-1,))


def transpose(x, axes=None):
    nd = len(_shape_of(x))
    if axes is None:
        perm = tuple(range(nd))[::-1]
    else:
        perm = tuple(_ints(axes, "axes", "transpose"))
        if any(not -nd <= a < nd for a in perm):
            raise ValueError(f"transpose: axes {tuple(axes)} are out of bounds for an array of "
                             f"rank {nd}")
        perm = tuple(a % nd for a in perm)
        if sorted(perm) != list(range(nd)):
            raise ValueError(f"transpose: axes {tuple(axes)} do not match an array of rank {nd}")
    return _sh.transpose(x, perm)


def swapaxes(x, axis1, axis2):
    nd = len(_shape_of(x))
    a1, a2 = _axes(x, axis1, "swapaxes")[0], _axes(x, axis2, "swapaxes")[0]
    perm = list(range(nd))
    perm[a1], perm[a2] = perm[a2], perm[a1]
    return _sh.transpose(x, tuple(perm))


def moveaxis(x, source, destination):
    nd = len(_shape_of(x))
    src = [source] if isinstance(source, (int, _np.integer)) else list(source)
    dst = [destination] if isinstance(destination, (int, _np.integer)) else list(destination)
    if len(src) != len(dst):
        raise ValueError(f"moveaxis: source {source} and destination {destination} must have "
                         "the same number of axes")
    src = [_axes(x, s, "moveaxis")[0] for s in src]
    dst = [_axes(x, d, "moveaxis")[0] for d in dst]
    for what, ax in (("source", src), ("destination", dst)):
        if len(set(ax)) != len(ax):
            raise ValueError(f"moveaxis: repeated axis in {what} {ax}")
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return _sh.transpose(x, tuple(order))


def squeeze(x, axis=None):
    s = _shape_of(x)
    if axis is None:
        axes = tuple(i for i, n in enumerate(s) if n == 1)
    else:
        axes = _axes(x, axis, "squeeze")
        for a in axes:
            if s[a] != 1:
                raise ValueError(f"squeeze: cannot select axis {a} of shape {s}: its size is not 1")
    return _sh.reshape(x, tuple(n for i, n in enumerate(s) if i not in axes))


def _ints(v, what: str, where: str) -> list:
    """``v`` (an int or a sequence of ints) as a list of ints; TypeError naming ``what``."""
    try:
        return [operator.index(v)] if not isinstance(v, (tuple, list)) else [
            operator.index(a) for a in v]
    except TypeError:
        raise TypeError(f"{where}: {what} must be an int or a tuple of ints, got {v!r}") from None


def expand_dims(x, axis):
    s = list(_shape_of(x))
    axs = _ints(axis, "axis", "expand_dims")
    nd = len(s) + len(axs)
    axs = sorted(int(a) % nd if -nd <= a < nd else _bad_axis(a, nd) for a in axs)
    if len(set(axs)) != len(axs):
        raise ValueError(f"expand_dims: repeated axis in {axis}")
    for a in axs:
        s.insert(a, 1)
    return _sh.reshape(x, tuple(s))


def _bad_axis(a, nd):
    raise ValueError(f"expand_dims: axis {a} is out of bounds for the result of rank {nd}")


def broadcast_to(x, shape):
    shape = (shape,) if isinstance(shape, (int, _np.integer)) else tuple(shape)
    return _sh.broadcast_to(x, shape)


def atleast_1d(x):
    return reshape(x, (1,)) if len(_shape_of(x)) == 0 else x


def atleast_2d(x):
    s = _shape_of(x)
    return reshape(x, (1,) * (2 - len(s)) + s) if len(s) < 2 else x


def concatenate(arrays, axis=0, dtype=None):
    arrays = list(arrays) if dtype is None else [astype(a, dtype) for a in arrays]
    if not arrays:
        raise ValueError("concatenate: need at least one array")
    if axis is None:
        arrays = [ravel(a) for a in arrays]
        axis = 0
    for i, a in enumerate(arrays):
        if len(_shape_of(a)) == 0:
            raise ValueError(f"concatenate: array {i} is 0-d; zero-dimensional arrays cannot be "
                             "concatenated")
    ax = _axes(arrays[0], axis, "concatenate")[0]
    if len(arrays) == 1:
        return arrays[0]
    return bind(_sh.concatenate_p, *arrays, axis=ax)


def stack(arrays, axis=0):
    arrays = list(arrays)
    if not arrays:
        raise ValueError("stack: need at least one array")
    shapes = {_shape_of(a) for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"stack: all input arrays must have the same shape, got {sorted(shapes)}")
    nd = len(_shape_of(arrays[0])) + 1
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"stack: axis must be an int, got {axis!r}") from None
    if not -nd <= axis < nd:
        raise ValueError(f"stack: axis {axis} is out of bounds for the result of rank {nd}")
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis % nd)


def vstack(arrays):
    return concatenate([atleast_2d(a) for a in arrays], axis=0)


def hstack(arrays):
    arrays = [atleast_1d(a) for a in arrays]
    if not arrays:
        raise ValueError("hstack: need at least one array")
    return concatenate(arrays, axis=0 if len(_shape_of(arrays[0])) == 1 else 1)


def split(x, indices_or_sections, axis=0):
    ax = _axes(x, axis, "split")[0]
    n = _shape_of(x)[ax]
    if isinstance(indices_or_sections, (int, _np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: array of size {n} along axis {ax} does not split into {k} "
                             "equal sections")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0] + _ints(indices_or_sections, "indices_or_sections", "split") + [n]
    pre = (slice(None),) * ax
    return [_getitem(x, pre + (slice(a, b),)) for a, b in zip(bounds[:-1], bounds[1:])]


# --------------------------------------------------------------- creation ---
def asarray(x, dtype=None, copy=None):
    if copy:
        return array(x, dtype)
    if isinstance(x, Tracer):
        return x if dtype is None else astype(x, dtype)
    if isinstance(x, (list, tuple)) and _holds_tracer(x):
        return stack([asarray(v, dtype) for v in x])
    return _np.asarray(x, dtype=dtype)


def array(x, dtype=None, copy=True, ndmin=0):
    if isinstance(x, Tracer) or (isinstance(x, (list, tuple))
                                 and _holds_tracer(x)):
        out = asarray(x, dtype)
        nd = len(_shape_of(out))
        return reshape(out, (1,) * (ndmin - nd) + _shape_of(out)) if nd < ndmin else out
    return _np.array(x, dtype=dtype, copy=copy, ndmin=ndmin)


def _like_shape(x, shape, name: str) -> tuple:
    """The shape of a ``*_like`` result: ``x``'s, or ``shape`` (an int or ints >= 0)."""
    if shape is None:
        return _shape_of(x)
    s = tuple(_ints(shape, "shape", name))
    if any(n < 0 for n in s):
        raise ValueError(f"{name}: negative size in shape {s}")
    return s


def zeros_like(x, dtype=None, shape=None):
    return _np.zeros(_like_shape(x, shape, "zeros_like"), dtype or dtype_of(x))


def ones_like(x, dtype=None, shape=None):
    return _np.ones(_like_shape(x, shape, "ones_like"), dtype or dtype_of(x))


def full_like(x, fill_value, dtype=None, shape=None):
    dt = _np.dtype(dtype or dtype_of(x))
    shape = _like_shape(x, shape, "full_like")
    if isinstance(fill_value, Tracer):
        return broadcast_to(astype(fill_value, dt), shape)
    return _np.full(shape, fill_value, dt)


def zeros(shape, dtype=float):
    return _np.zeros(shape, dtype)


def ones(shape, dtype=float):
    return _np.ones(shape, dtype)


def full(shape, fill_value, dtype=None):
    if isinstance(fill_value, Tracer):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return broadcast_to(fill_value if dtype is None else astype(fill_value, dtype), shape)
    return _np.full(shape, fill_value, dtype)


def eye(N, M=None, k=0, dtype=float):
    return _np.eye(N, M, k, dtype=dtype)


def arange(*args, dtype=None):
    return _np.arange(*[operator.index(a) if isinstance(a, Tracer) else a for a in args], dtype=dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """NumPy's ``linspace``; differentiable in ``start`` and ``stop`` (``num`` is static)."""
    if not (isinstance(start, Tracer) or isinstance(stop, Tracer)):
        return _np.linspace(start, stop, num, endpoint=endpoint, retstep=retstep, dtype=dtype,
                            axis=axis)
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"linspace: number of samples, {num}, must be non-negative")
    div = (num - 1) if endpoint else num
    # (Python numbers stay Python numbers: weakly typed, so a float32 endpoint stays float32)
    delta = subtract(stop, start)
    step = divide(delta, div) if div > 0 else multiply(delta, 0.0)
    shape = (num,) + (1,) * len(_np.broadcast_shapes(_shape_of(start), _shape_of(stop)))
    ramp = _np.arange(num, dtype=dtype_of(step)).reshape(shape)       # float32 stays float32
    y = add(multiply(ramp, step), start)                              # as NumPy
    if endpoint and num > 1:                               # the last sample is stop exactly
        y = concatenate([y[:-1], expand_dims(broadcast_to(astype(stop, dtype_of(y)),
                                                          _shape_of(y)[1:]), 0)])
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        if _np.issubdtype(dtype, _np.integer):
            y = floor(y)                      # NumPy 2 rounds down for integer dtypes
        y = astype(y, dtype)
    return (y, step if div > 0 else _np.nan) if retstep else y


def shape(x):
    return _shape_of(x)


def ndim(x):
    return len(_shape_of(x))


def size(x):
    return int(_np.prod(_shape_of(x), dtype=_np.int64))


# --------------------------------------------------------------- indexing ---
def _concrete(x, what):
    try:
        return to_concrete(x)
    except ConcretizationError:
        raise ConcretizationError(
            f"{what} needs concrete values: the output shape depends on them, and under "
            "jit/make_jaxpr/vmap they are not known. Use fnp.where(mask, x, 0) to keep the shape "
            "fixed, or compute the mask outside the transformed function.") from None


def _separates(items: list, k: int) -> bool:
    """Does component ``k`` stand between advanced indices (index arrays, and integers
    when arrays are present)?"""
    if not builtins.any(isinstance(c, (Tracer, _np.ndarray)) for c in items):
        return False
    adv = [j for j, c in enumerate(items) if isinstance(c, (Tracer, _np.ndarray, int, _np.integer))]
    return bool(adv) and adv[0] < k < adv[-1]


def _normalize_index(idx, shape_: tuple) -> tuple[tuple, list, int | None]:
    """User index -> (static index tuple, index arrays, unit axis to drop) for the
    gather/scatter primitives.

    NumPy puts the dimensions of advanced indices first when a slice, ``None`` or
    ``...`` stands between them, even a ``...`` that covers no axis.  Such an empty
    ``...`` becomes a ``None`` here (it separates them as well) whose unit axis the
    caller drops: the third value, its position in the result, else None.
    """
    if not isinstance(idx, tuple):
        idx = (idx,)
    items: list = []
    masks: dict = {}      # position in items of a mask's first index array -> the mask's shape
    for c in idx:
        if isinstance(c, list):
            c = _np.asarray(c)
            if c.dtype == _np.float64 and c.size == 0:
                c = c.astype(_np.intp)
        if isinstance(c, Tracer) and c.dtype == _np.bool_:
            c = _concrete(c, "boolean mask indexing x[mask]")
        if isinstance(c, _np.ndarray) and c.dtype == _np.bool_:
            masks[len(items)] = c.shape
            items.extend(_np.nonzero(c))
            continue
        items.append(c)
    n_ell = builtins.sum(1 for c in items if c is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = builtins.sum(1 for c in items if c is not None and c is not Ellipsis)
    nd = len(shape_)
    if consumed > nd:
        raise IndexError(f"too many indices for an array of shape {shape_}: {consumed} were given")
    index: list = []
    arrays: list = []
    axis = 0              # the axis of x that the next component indexes
    separator = None      # position in index of the None standing for an empty "..."
    for k, c in enumerate(items):
        if k in masks and tuple(shape_[axis:axis + len(masks[k])]) != masks[k]:
            raise IndexError(f"boolean index did not match the indexed array: the mask has shape "
                             f"{masks[k]}, the axes it indexes have shape "
                             f"{tuple(shape_[axis:axis + len(masks[k])])} (array shape {shape_})")
        if c is Ellipsis:
            if nd == consumed and _separates(items, k):
                separator = len(index)
                index.append(("n",))
            index.extend([_ix.SLICE_ALL] * (nd - consumed))
            axis += nd - consumed
        elif c is None:
            index.append(("n",))
        elif isinstance(c, slice):
            index.append(("s",) + tuple(None if v is None else operator.index(v)
                                        for v in (c.start, c.stop, c.step)))
            axis += 1
        elif isinstance(c, (int, _np.integer)):
            index.append(("i", int(c)))
            axis += 1
        elif isinstance(c, (Tracer, _np.ndarray)):
            if c.dtype.kind not in "iu":
                raise IndexError(f"arrays used as indices must be of integer (or boolean) type, "
                                 f"got {c.dtype}")
            n = shape_[axis]
            if type(c) is _np.ndarray and c.size and (c.max() >= n or c.min() < -n):
                # known now: say so while tracing, not later when the graph runs
                bad = c[(c >= n) | (c < -n)].ravel()[0]
                raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n} "
                                 f"(array shape {shape_})")
            index.append(("a", len(arrays)))
            arrays.append(c)
            axis += 1
        else:
            raise IndexError(f"invalid index component of type {type(c).__name__}; use integers, "
                             "slices, None, Ellipsis, or integer/boolean arrays")
    drop = None
    if separator is not None:   # its unit axis comes after the advanced dims and the basic ones before it
        basic_before = builtins.sum(1 for c in index[:separator] if c[0] in ("s", "n"))
        drop = len(_np.broadcast_shapes(*[_shape_of(a) for a in arrays])) + basic_before
    return tuple(index), arrays, drop


def _is_bool_scalar(c) -> bool:
    return isinstance(c, (bool, _np.bool_)) or (
        isinstance(c, _np.ndarray) and c.dtype == _np.bool_ and c.ndim == 0)


def _bool_scalars(idx, shape_: tuple):
    """``x[..., True, ...]``: NumPy reads a boolean scalar as a 0-d mask, an advanced
    index on a new axis of length 1 that it keeps (True) or empties (False).  Returns
    ``(index, shape)``: the index with each such scalar replaced by an integer array
    over a unit axis inserted there, and the shape with those axes; or None if the
    index has no boolean scalar."""
    if not isinstance(idx, tuple):
        if not _is_bool_scalar(idx):
            return None                  # the common single index: nothing more to check
        idx = (idx,)
    elif not builtins.any(_is_bool_scalar(c) for c in idx):
        return None

    def consumed(c):                   # input axes a component indexes
        if c is None or c is Ellipsis or _is_bool_scalar(c):
            return 0
        if isinstance(c, list):
            c = _np.asarray(c)
        if isinstance(c, (_np.ndarray, Tracer)) and c.dtype == _np.bool_:
            return c.ndim
        return 1
    rest = len(shape_) - builtins.sum(consumed(c) for c in idx)
    new_idx, new_shape, axis = [], [], 0
    for c in idx:
        if _is_bool_scalar(c):
            new_shape.append(1)
            new_idx.append(_np.zeros(1 if c else 0, _np.intp))
            continue
        n = builtins.max(rest, 0) if c is Ellipsis else consumed(c)
        new_shape.extend(shape_[axis:axis + n])
        axis += n
        new_idx.append(c)
    new_shape.extend(shape_[axis:])
    return tuple(new_idx), tuple(new_shape)


def _getitem(x, idx):
    expanded = _bool_scalars(idx, _shape_of(x))
    if expanded is not None:
        idx, shape_ = expanded
        x = reshape(x, shape_)
    index, arrays, drop = _normalize_index(idx, _shape_of(x))
    if not arrays and builtins.all(c == _ix.SLICE_ALL for c in index):
        return x
    out = bind(_ix.gather_p, x, *arrays, index=index)
    if drop is not None:
        s_ = _shape_of(out)
        out = reshape(out, s_[:drop] + s_[drop + 1:])
    return out


def take(x, indices, axis=None):
    if axis is None:
        return _getitem(ravel(x), indices)
    ax = _axes(x, axis, "take")[0]
    return _getitem(x, (slice(None),) * ax + (indices,))


class _IndexUpdateRef:
    __slots__ = ("x", "idx")

    def __init__(self, x, idx):
        self.x, self.idx = x, idx

    def _scatter(self, v, mode, unique_indices=False):
        x, idx = self.x, self.idx
        expanded = _bool_scalars(idx, _shape_of(x))
        if expanded is not None:             # x.at[True]: update through the unit axes
            idx, shape_ = expanded
            out = _IndexUpdateRef(reshape(x, shape_), idx)._scatter(v, mode, unique_indices)
            return reshape(out, _shape_of(x))
        index, arrays, drop = _normalize_index(idx, _shape_of(x))
        if drop is not None:        # v in NumPy's layout: give it the separator's unit axis
            region = _ix.gather_p.abstract_eval(
                _get_aval(x), *[_get_aval(a) for a in arrays], index=index).shape
            v = reshape(broadcast_to(v, region[:drop] + region[drop + 1:]), region)
        return _ix.scatter(x, v, arrays, index, mode, bool(unique_indices))

    def set(self, values, *, unique_indices=False):
        """A copy of x with ``x[idx] = values`` (``unique_indices`` is accepted, as in JAX,
        and not needed)."""
        return self._scatter(values, "set")

    def add(self, values, *, unique_indices=False):
        """A copy of x with ``values`` added at ``idx`` (repeated indices accumulate;
        ``unique_indices`` is accepted, as in JAX, and not needed)."""
        return self._scatter(values, "add")

    def multiply(self, values, *, unique_indices=False):
        """A copy of x with ``x[idx]`` multiplied by ``values``.  The derivative in
        ``values`` needs each position hit once: checked for concrete indices; for traced
        ones (under jit or vmap) promise it with ``unique_indices=True``, as in JAX."""
        return self._scatter(values, "mul", unique_indices)

    def divide(self, values, *, unique_indices=False):
        """A copy of x with ``x[idx]`` divided by ``values``: ``multiply`` by ``1 / values``,
        as JAX does it (repeated indices divide repeatedly)."""
        return self._scatter(divide(1, values), "mul", unique_indices)

    def get(self):
        return _getitem(self.x, self.idx)

    def __getattr__(self, name):
        raise AttributeError(
            f"x.at[...].{name} is not supported by funcgrad (it has set, add, multiply, divide "
            "and get); for positions hit once, x.at[idx].set(fnp.minimum(x[idx], v)) and the like "
            "give min, max, power and apply")


class _IndexUpdateHelper:
    """``x.at[idx]``: functional updates, as in JAX (arrays are never mutated)."""

    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x

    def __getitem__(self, idx):
        return _IndexUpdateRef(self.x, idx)


def at(x):
    """``fnp.at(x)[idx].set(v)``: the ``.at`` updates for plain NumPy arrays too."""
    return _IndexUpdateHelper(x)


# ufuncs called on tracers (np.sin(tracer), ndarray * tracer) dispatch here
_UFUNCS = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "divmod": divmod,
    "true_divide": divide, "negative": negative, "power": power, "square": square,
    "sqrt": sqrt, "exp": exp, "log": log, "log1p": log1p, "expm1": expm1, "sin": sin,
    "cos": cos, "tan": tan, "tanh": tanh, "arctan": arctan, "sinh": sinh, "cosh": cosh,
    "absolute": abs, "sign": sign, "maximum": maximum, "minimum": minimum, "equal": equal,
    "not_equal": not_equal, "less": less, "less_equal": less_equal, "greater": greater,
    "greater_equal": greater_equal, "logical_and": logical_and, "logical_or": logical_or,
    "logical_not": logical_not, "bitwise_and": bitwise_and, "bitwise_or": bitwise_or,
    "bitwise_xor": bitwise_xor, "invert": invert, "isfinite": isfinite, "isnan": isnan, "matmul": matmul,
    "logaddexp": logaddexp, "floor": floor, "floor_divide": floor_divide, "ceil": ceil,
    "trunc": trunc, "rint": rint,
    "remainder": remainder,
}



# ----------------------------------------------- tracers behave like arrays ---
def _reshape_method(x, *shape, order="C", **kw):
    """``x.reshape(2, 3)``, ``x.reshape((2, 3))`` or ``x.reshape(shape=(2, 3))``."""
    if kw.keys() - {"shape"} or (kw and shape):
        raise TypeError(f"reshape: give the new shape once, positionally or as shape=...; got "
                        f"{shape or ''} {kw}".replace("  ", " "))
    if "shape" in kw:
        shape = kw["shape"]
    elif len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    elif not shape:
        raise TypeError("reshape: the new shape is missing (x.reshape(2, 3) or "
                        "x.reshape((2, 3)))")
    return reshape(x, shape, order)


def _install_tracer_methods() -> None:
    """Give :class:`~funcgrad.core.Tracer` NumPy's operators and methods, mapped to this facade."""
    T = Tracer
    T.__neg__ = negative
    T.__pos__ = lambda s: s
    T.__abs__ = abs
    for name, fn in (("add", add), ("sub", subtract), ("mul", multiply), ("truediv", divide),
                     ("pow", power), ("matmul", matmul), ("floordiv", floor_divide),
                     ("mod", remainder), ("divmod", divmod), ("and", bitwise_and),
                     ("or", bitwise_or), ("xor", bitwise_xor)):
        setattr(T, f"__{name}__", fn)                                 # x + y
        setattr(T, f"__r{name}__", lambda s, o, fn=fn: fn(o, s))      # y + x, y not a tracer
    T.__lt__ = less
    T.__le__ = less_equal
    T.__gt__ = greater
    T.__ge__ = greater_equal
    T.__eq__ = equal
    T.__ne__ = not_equal
    T.__invert__ = invert
    T.__getitem__ = _getitem
    T.T = property(lambda s: transpose(s))
    T.at = property(_IndexUpdateHelper)
    # (axis, keepdims) positionally, as the facade functions; dtype, where, initial by keyword
    T.sum = lambda s, axis=None, keepdims=False, **kw: sum(s, axis, keepdims, **kw)
    T.mean = lambda s, axis=None, keepdims=False, **kw: mean(s, axis, keepdims, **kw)
    T.max = lambda s, axis=None, keepdims=False, **kw: max(s, axis, keepdims, **kw)
    T.min = lambda s, axis=None, keepdims=False, **kw: min(s, axis, keepdims, **kw)
    T.prod = lambda s, axis=None, keepdims=False, **kw: prod(s, axis, keepdims, **kw)
    T.round = round
    T.__round__ = lambda s, ndigits=None: round(s, ndigits or 0)   # an array, as in JAX
    T.var = lambda s, axis=None, ddof=0, keepdims=False: var(s, axis, ddof=ddof, keepdims=keepdims)
    T.std = lambda s, axis=None, ddof=0, keepdims=False: std(s, axis, ddof=ddof, keepdims=keepdims)
    T.argmax = lambda s, axis=None: argmax(s, axis)
    T.argmin = lambda s, axis=None: argmin(s, axis)
    T.ravel = ravel
    T.flatten = ravel
    T.squeeze = lambda s, axis=None: squeeze(s, axis)
    T.dot = dot
    T.clip = lambda s, a_min=None, a_max=None, **kw: clip(s, a_min, a_max, **kw)
    T.astype = astype
    T.reshape = _reshape_method
    T.transpose = lambda s, *axes: transpose(
        s, (tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)
        or None)


_install_tracer_methods()


# what ``from funcgrad.numpy import *`` gives: the NumPy-named functions and constants, not
# the machinery this module uses
__all__ = sorted(n for n, v in list(globals().items()) if not n.startswith("_") and n not in {
    "annotations", "builtins", "operator", "Tracer", "bind", "dtype_of", "to_concrete",
    "valid_value", "ConcretizationError"})
