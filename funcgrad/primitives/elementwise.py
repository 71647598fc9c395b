"""Elementwise primitives: arithmetic, transcendental functions, comparisons, select.

Each line declares one primitive: its NumPy implementation, its local
derivative (as ``partial * t``) and, for jit, a Python expression template.
Broadcasting, batching and the reverse-mode sum over broadcast axes are
generic (see ``_base.elementwise``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcgrad.core import bind, binder, dtype_of
from funcgrad.primitives._base import elementwise, ident_term

# ---- arithmetic --------------------------------------------------------------
add_p = elementwise("add", np.add, linear=(1, 1), codegen="{0} + {1}")
sub_p = elementwise("sub", np.subtract, linear=(1, -1), codegen="{0} - {1}")
neg_p = elementwise("neg", np.negative, linear=(-1,), codegen="-{0}")
mul_p = elementwise("mul", np.multiply, (
    lambda t, out, x, y: mul(t, y),
    lambda t, out, x, y: mul(x, t)), codegen="{0} * {1}")
div_p = elementwise("div", np.true_divide, (
    lambda t, out, x, y: div(t, y),
    lambda t, out, x, y: neg(div(mul(t, out), y))), codegen="{0} / {1}")


def _pow_base(t, out, x, y):
    # a Python exponent stays a Python number (weakly typed): np.subtract(3, 1) would give a
    # strong int64 that silently upcasts float32 x
    # y == 0: the derivative is 0, not 0 * x**-1 (nan at x == 0, e.g. in the 3rd derivative of x**2)
    if type(y) in (int, float):
        return mul(t, 0.0) if y == 0 else mul(t, mul(y, pow_(x, y - 1)))
    y_zero = eq(y, 0)
    return mul(t, select(y_zero, 0, mul(select(y_zero, 1, y), pow_(x, sub(y, 1)))))


def _pow_exponent(t, out, x, y):
    # at a zero base the factor log(x) is taken as 0, so the term is 0 * 0 ** y: 0 where
    # 0 ** y is finite (y >= 0), NaN where it is infinite or NaN (y < 0, y NaN), as in JAX
    if type(x) in (int, float):
        # a Python base stays weakly typed (np.where/np.log on it give strong float64,
        # which upcast the float32 derivative of 2.0 ** y)
        return mul(t, mul(0.0 if x == 0 else math.log(x) if x > 0 else math.nan, out))
    return mul(t, mul(log(select(eq(x, 0), 1, x)), out))


pow_p = elementwise("pow", np.power, (_pow_base, _pow_exponent), codegen="{0} ** {1}")


def _extremum_term(first: bool, is_max: bool):
    """d max(x, y)/dx = step(x - y): 1 where x wins, 1/2 at ties (as JAX), 0 elsewhere.

    One ``step`` (``np.heaviside``) instead of comparisons and selects: for
    ``maximum(z, 0)`` (ReLU) the derivative costs two array operations, as by hand.
    """
    def term(t, out, x, y):
        a, b = (x, y) if first == is_max else (y, x)
        if type(b) in (int, float) and b == 0:     # relu: step(a), nothing to subtract
            return mul(t, step(a))
        # a tie at the same infinity (inf - inf is NaN) splits too, as JAX does
        return mul(t, select(eq(a, b), 0.5, step(sub(a, b))))
    return term


max_p = elementwise("max", np.maximum, (_extremum_term(True, True), _extremum_term(False, True)),
                    codegen="np.maximum({0}, {1})")
min_p = elementwise("min", np.minimum, (_extremum_term(True, False), _extremum_term(False, False)),
                    codegen="np.minimum({0}, {1})")

# ---- transcendental ---------------------------------------------------------
exp_p = elementwise("exp", np.exp, (lambda t, out, x: mul(t, out),), codegen="np.exp({0})")
log_p = elementwise("log", np.log, (lambda t, out, x: div(t, x),), codegen="np.log({0})")
log1p_p = elementwise("log1p", np.log1p, (lambda t, out, x: div(t, add(x, 1)),), codegen="np.log1p({0})")
expm1_p = elementwise("expm1", np.expm1, (lambda t, out, x: mul(t, add(out, 1)),), codegen="np.expm1({0})")
sqrt_p = elementwise("sqrt", np.sqrt, (lambda t, out, x: div(mul(t, 0.5), out),), codegen="np.sqrt({0})")
sin_p = elementwise("sin", np.sin, (lambda t, out, x: mul(t, cos(x)),), codegen="np.sin({0})")
cos_p = elementwise("cos", np.cos, (lambda t, out, x: neg(mul(t, sin(x))),), codegen="np.cos({0})")
tan_p = elementwise("tan", np.tan, (lambda t, out, x: mul(t, add(1, mul(out, out))),), codegen="np.tan({0})")
tanh_p = elementwise("tanh", np.tanh, (lambda t, out, x: mul(t, sub(1, mul(out, out))),),
                     codegen="np.tanh({0})")
sinh_p = elementwise("sinh", np.sinh, (lambda t, out, x: mul(t, cosh(x)),), codegen="np.sinh({0})")
cosh_p = elementwise("cosh", np.cosh, (lambda t, out, x: mul(t, sinh(x)),), codegen="np.cosh({0})")
arctan_p = elementwise("arctan", np.arctan, (lambda t, out, x: div(t, add(1, mul(x, x))),),
                       codegen="np.arctan({0})")
abs_p = elementwise("abs", np.abs, (lambda t, out, x: mul(t, sign(x)),), codegen="np.abs({0})")
# x % y = x - y * floor(x / y) (NumPy's remainder: the sign of y); where it is smooth,
# d/dx = 1 and d/dy = -floor(x / y)
rem_p = elementwise("rem", np.remainder, (
    ident_term,
    lambda t, out, x, y: neg(mul(t, floor_divide(x, y)))), codegen="{0} % {1}")

# ---- derivative zero almost everywhere --------------------------------------
sign_p = elementwise("sign", np.sign, zero_derivative=True, codegen="np.sign({0})")
floor_p = elementwise("floor", np.floor, zero_derivative=True, codegen="np.floor({0})")
ceil_p = elementwise("ceil", np.ceil, zero_derivative=True, codegen="np.ceil({0})")
trunc_p = elementwise("trunc", np.trunc, zero_derivative=True, codegen="np.trunc({0})")
rint_p = elementwise("rint", np.rint, zero_derivative=True, codegen="np.rint({0})")  # half to even
floor_divide_p = elementwise("floor_divide", np.floor_divide, zero_derivative=True,
                             codegen="{0} // {1}")
eq_p = elementwise("eq", np.equal, zero_derivative=True, codegen="{0} == {1}")
ne_p = elementwise("ne", np.not_equal, zero_derivative=True, codegen="{0} != {1}")
lt_p = elementwise("lt", np.less, zero_derivative=True, codegen="{0} < {1}")
le_p = elementwise("le", np.less_equal, zero_derivative=True, codegen="{0} <= {1}")
gt_p = elementwise("gt", np.greater, zero_derivative=True, codegen="{0} > {1}")
ge_p = elementwise("ge", np.greater_equal, zero_derivative=True, codegen="{0} >= {1}")
and_p = elementwise("and", np.logical_and, zero_derivative=True, codegen="np.logical_and({0}, {1})")
or_p = elementwise("or", np.logical_or, zero_derivative=True, codegen="np.logical_or({0}, {1})")
not_p = elementwise("not", np.logical_not, zero_derivative=True, codegen="np.logical_not({0})")
# &, |, ^, ~ as NumPy has them: bitwise on integers, logical on booleans (floats: TypeError)
_BITWISE_HINT = ("; &, |, ^ and ~ are bitwise on integers and logical on booleans, as in NumPy: "
                 "compare floats first ((x > 0) & (y > 0)) or use fnp.logical_and/logical_or")
bitwise_and_p = elementwise("bitwise_and", np.bitwise_and, zero_derivative=True, codegen="{0} & {1}",
                            dtype_hint=_BITWISE_HINT)
bitwise_or_p = elementwise("bitwise_or", np.bitwise_or, zero_derivative=True, codegen="{0} | {1}",
                           dtype_hint=_BITWISE_HINT)
bitwise_xor_p = elementwise("bitwise_xor", np.bitwise_xor, zero_derivative=True, codegen="{0} ^ {1}",
                            dtype_hint=_BITWISE_HINT)
invert_p = elementwise("invert", np.invert, zero_derivative=True, codegen="~{0}",
                       dtype_hint=_BITWISE_HINT)
isfinite_p = elementwise("isfinite", np.isfinite, zero_derivative=True, codegen="np.isfinite({0})")
def _step_impl(x: Any) -> Any:
    """0, 1/2, 1 where x <, ==, > 0 and NaN where x is NaN: ``np.heaviside(x, 0.5)``,
    computed with comparisons for large arrays (where ``np.heaviside`` is ~10x slower)."""
    x = np.asarray(x)
    if x.size < 1024:                       # small: one ufunc call is cheapest
        return np.heaviside(x, 0.5)
    dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    out = (x > 0).astype(dt)
    ties = x == 0
    if ties.any():
        out[ties] = 0.5
    if dt.kind == "f":
        nans = x != x
        if nans.any():
            out[nans] = np.nan                # NaN in, NaN out, as np.heaviside
    return out


step_p = elementwise("step", _step_impl, zero_derivative=True)
step_p.codegen = lambda args, avals: (                 # jit picks by size, once
    f"np.heaviside({args[0]}, 0.5)" if avals[0].size < 1024 else None)
stop_gradient_p = elementwise("stop_gradient", lambda x: x, zero_derivative=True, codegen="{0}")

# ---- select (where) --------------------------------------------------------
select_p = elementwise("select", np.where, (
    None,
    lambda t, out, c, x, y: select(c, t, 0),
    lambda t, out, c, x, y: select(c, 0, t)), codegen="np.where({0}, {1}, {2})")


# ---- dtype conversion --------------------------------------------------------
def _convert_impl(x: Any, dtype: np.dtype) -> Any:
    return np.asarray(x).astype(dtype, copy=False)


convert_p = elementwise(
    "convert", _convert_impl,
    (lambda t, out, x, dtype: convert(t, dtype),),
    vjp_terms=(lambda ct, out, x, dtype: ct,),  # unbroadcast casts back to x's dtype
    codegen="np.asarray({0}).astype({dtype!r}, copy=False)")


# ---- binders used by rules and the facade (bind specialised per primitive) ----
# how error messages name these: the facade function (and operator) a user called
for _p, _label in [(add_p, "add (+)"), (sub_p, "subtract (-)"), (neg_p, "negative (-x)"),
                   (mul_p, "multiply (*)"), (div_p, "divide (/)"), (pow_p, "power (**)"),
                   (max_p, "maximum"), (min_p, "minimum"), (rem_p, "remainder (%)"),
                   (floor_divide_p, "floor_divide (//)"), (eq_p, "equal (==)"),
                   (ne_p, "not_equal (!=)"), (lt_p, "less (<)"), (le_p, "less_equal (<=)"),
                   (gt_p, "greater (>)"), (ge_p, "greater_equal (>=)"), (and_p, "logical_and"),
                   (or_p, "logical_or"), (not_p, "logical_not"), (bitwise_and_p, "bitwise_and (&)"),
                   (bitwise_or_p, "bitwise_or (|)"), (bitwise_xor_p, "bitwise_xor (^)"),
                   (invert_p, "invert (~)"), (select_p, "where"), (convert_p, "astype")]:
    _p.label = _label

add = binder(add_p, 2)
sub = binder(sub_p, 2)
neg = binder(neg_p, 1)
mul = binder(mul_p, 2)
div = binder(div_p, 2)
pow_ = binder(pow_p, 2)
maximum = binder(max_p, 2)
minimum = binder(min_p, 2)
exp = binder(exp_p, 1)
log = binder(log_p, 1)
log1p = binder(log1p_p, 1)
sin = binder(sin_p, 1)
cos = binder(cos_p, 1)
tanh = binder(tanh_p, 1)
sinh = binder(sinh_p, 1)
cosh = binder(cosh_p, 1)
sign = binder(sign_p, 1)
floor_divide = binder(floor_divide_p, 2)
step = binder(step_p, 1)
eq = binder(eq_p, 2)
gt = binder(gt_p, 2)
lt = binder(lt_p, 2)


select = binder(select_p, 3)


def convert(x: Any, dtype: Any) -> Any:
    dtype = np.dtype(dtype)
    if dtype_of(x) == dtype and not isinstance(x, (int, float, bool, complex)):
        return x
    return bind(convert_p, x, dtype=dtype)
