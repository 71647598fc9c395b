"""Reductions: sum, max, min, prod, argmax, argmin and logsumexp.

``axes`` is a tuple of non-negative axes (the facade normalises user input)
and ``keepdims`` a bool.  ``mean``, ``var`` and ``std`` are composed from
these in ``funcgrad.numpy``.  ``logsumexp`` stays a primitive because its
numerics matter: it is evaluated with the max subtracted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from funcgrad.core import Primitive, ShapedArray, bind, binder
from funcgrad.primitives import elementwise as ew
from funcgrad.primitives import shape as sh
from funcgrad.primitives._base import move_to_front, ndim_of, register, result_dtype, shape_of


def _reduced_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _reduction_aval(name: str, impl: Callable) -> Callable:
    cache: dict = {}

    label = name.removeprefix("reduce_")

    def rule(aval: ShapedArray, *, axes: tuple, keepdims: bool) -> ShapedArray:
        for a in axes:
            if not 0 <= a < aval.ndim:
                raise ValueError(f"{label}: axis {a} is out of range for an array of rank {aval.ndim}")
        for a in axes:
            if aval.shape[a] == 0 and name in ("reduce_max", "reduce_min"):
                raise ValueError(f"{label}: zero-size axis {a} has no identity (an empty array "
                                 "has no maximum or minimum)")
        dt, _ = result_dtype(lambda x: impl(x, (), False), (aval,), {}, cache)
        return ShapedArray(_reduced_shape(aval.shape, axes, keepdims), dt)
    return rule


def keep(y: Any, x_shape: tuple, axes: tuple, keepdims: bool) -> Any:
    """``y`` reshaped as if the reduction had used ``keepdims=True``."""
    if keepdims or not axes:
        return y
    return sh.reshape(y, _reduced_shape(x_shape, axes, True))


def _reduction_batch(prim: Primitive) -> Callable:
    def batch(args: tuple, bdims: tuple, *, axes: tuple, keepdims: bool):
        x = move_to_front(args[0], bdims[0], 0)
        return bind(prim, x, axes=tuple(a + 1 for a in axes), keepdims=keepdims), 0
    return batch


def _declare(name: str, impl: Callable, codegen: str | None) -> Primitive:
    prim = register(Primitive(name, impl, _reduction_aval(name, impl)))
    prim.label = name.removeprefix("reduce_")       # error messages say sum, not reduce_sum
    prim.batch = _reduction_batch(prim)
    prim.codegen = codegen
    return prim


def _weighted_rules(prim: Primitive, weights: Callable) -> None:
    """AD rules for a reduction whose derivative is ``sum(t * weights(x, out))``."""

    def jvp(primals, tangents, *, axes, keepdims):
        (x,), (t,) = primals, tangents
        out = bind(prim, x, axes=axes, keepdims=keepdims)
        w = weights(x, keep(out, shape_of(x), axes, keepdims), axes)
        return out, reduce_sum(ew.mul(t, w), axes, keepdims)

    def vjp(ct, out, primals, needed, *, axes, keepdims):
        (x,) = primals
        shape = shape_of(x)
        w = weights(x, keep(out, shape, axes, keepdims), axes)
        return [ew.mul(keep(ct, shape, axes, keepdims), w)]

    prim.jvp, prim.vjp = jvp, vjp


# ---- sum ---------------------------------------------------------------------
def _method(name: str, fn: Callable) -> Callable:
    """``x.name(axis=, keepdims=)``: the ndarray method skips NumPy's Python-level wrapper."""
    def impl(x, axes, keepdims):
        try:
            return getattr(x, name)(axis=axes, keepdims=keepdims)
        except AttributeError:   # Python scalars
            return fn(x, axis=axes, keepdims=keepdims)
    return impl


reduce_sum_p = _declare("reduce_sum", _method("sum", np.sum), "{0}.sum(axis={axes}, keepdims={keepdims})")


def _sum_jvp(primals, tangents, *, axes, keepdims):
    return (bind(reduce_sum_p, primals[0], axes=axes, keepdims=keepdims),
            bind(reduce_sum_p, tangents[0], axes=axes, keepdims=keepdims))


def _sum_vjp(ct, out, primals, needed, *, axes, keepdims):
    (x,) = primals
    shape = shape_of(x)
    if not keepdims and axes == tuple(range(len(axes))):
        return [sh.broadcast_to(ct, shape)]     # leading axes: broadcasting puts them back
    return [sh.broadcast_to(keep(ct, shape, axes, keepdims), shape)]


reduce_sum_p.jvp, reduce_sum_p.vjp = _sum_jvp, _sum_vjp


# ---- max / min ---------------------------------------------------------------
def _argext_weights(x, out_k, axes):
    """Where x attains the max (min): ties share the derivative equally, as in JAX."""
    mask = ew.convert(ew.eq(x, out_k), x.dtype if hasattr(x, "dtype") else np.float64)
    return ew.div(mask, reduce_sum(mask, axes, True))


reduce_max_p = _declare("reduce_max", _method("max", np.max), "{0}.max(axis={axes}, keepdims={keepdims})")
reduce_min_p = _declare("reduce_min", _method("min", np.min), "{0}.min(axis={axes}, keepdims={keepdims})")
_weighted_rules(reduce_max_p, _argext_weights)
_weighted_rules(reduce_min_p, _argext_weights)


# ---- prod ----------------------------------------------------------------------
def _exclusive_prefix_products(x: Any) -> Any:
    """``out[..., j] = prod(x[..., :j])`` along the last axis, by log-step doubling.

    Built from multiplications only (no division), so it is exact where x has
    zeros and its own derivatives, to any order, are right.
    """
    from funcgrad.primitives import indexing as ix
    shape = shape_of(x)
    lead, n = shape[:-1], shape[-1]
    keep_lead = (ix.SLICE_ALL,) * len(lead)
    one = np.ones((), ew.dtype_of(x))

    def shifted(a, k):    # a moved k places along the last axis, ones shifted in
        body = ix.gather(a, (), keep_lead + (("s", None, n - k, None),))
        return bind(sh.concatenate_p, sh.broadcast_to(one, lead + (k,)), body, axis=len(lead))

    incl, k = x, 1
    while k < n:
        incl = ew.mul(incl, shifted(incl, k))
        k *= 2
    return shifted(incl, 1)


def _prod_weights(x, out_k, axes):
    """Product of the other elements, ``prod_{i != j} x_i``: prefix times suffix products.

    Exact where x contains zeros, and differentiable again (the second derivative
    with respect to two zeros is the product of the rest, not 0).
    """
    from funcgrad.primitives import indexing as ix
    shape = shape_of(x)
    rest = tuple(i for i in range(len(shape)) if i not in axes)
    n = math.prod([shape[a] for a in axes])
    if n <= 1:
        return sh.broadcast_to(np.ones((), ew.dtype_of(x)), shape)
    perm = rest + tuple(axes)
    lead = tuple(shape[i] for i in rest)
    flat = sh.reshape(sh.transpose(x, perm), lead + (n,))
    rev = (ix.SLICE_ALL,) * len(lead) + (("s", None, None, -1),)
    before = _exclusive_prefix_products(flat)
    after = ix.gather(_exclusive_prefix_products(ix.gather(flat, (), rev)), (), rev)
    others = sh.reshape(ew.mul(before, after), tuple(shape[i] for i in perm))
    return sh.transpose(others, tuple(int(i) for i in np.argsort(perm)))


reduce_prod_p = _declare("reduce_prod", _method("prod", np.prod),
                         "{0}.prod(axis={axes}, keepdims={keepdims})")
_weighted_rules(reduce_prod_p, _prod_weights)


# ---- logsumexp -------------------------------------------------------------------
def _logsumexp_impl(x, axes, keepdims):
    x = np.asarray(x)
    if not axes:
        return x + 0
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axes)
    return out


logsumexp_p = _declare("logsumexp", _logsumexp_impl, None)
_weighted_rules(logsumexp_p, lambda x, out_k, axes: ew.exp(ew.sub(x, out_k)))


# ---- argmax / argmin: integer results, no derivative ---------------------------
def _arg_aval(name):
    def rule(aval: ShapedArray, *, axis: int | None, keepdims: bool) -> ShapedArray:
        if axis is None:
            shape = (1,) * aval.ndim if keepdims else ()
        else:
            if not 0 <= axis < aval.ndim:
                raise ValueError(f"{name}: axis {axis} is out of range for an array of rank {aval.ndim}")
            shape = _reduced_shape(aval.shape, (axis,), keepdims)
        if aval.size == 0:
            raise ValueError(f"{name}: attempt to get {name} of an empty array")
        return ShapedArray(shape, np.dtype(np.intp))
    return rule


def _declare_arg(name: str, fn: Callable) -> Primitive:
    prim = register(Primitive(name, lambda x, axis, keepdims: fn(x, axis=axis, keepdims=keepdims),
                              _arg_aval(name)))
    prim.zero_derivative = True
    prim.codegen = f"np.{name}({{0}}, axis={{axis}}, keepdims={{keepdims}})"

    def batch(args, bdims, *, axis, keepdims):
        x = move_to_front(args[0], bdims[0], 0)
        b, rest = shape_of(x)[0], shape_of(x)[1:]
        if b == 0:   # an empty batch: nothing to search, but each example's result has a shape
            out = _arg_aval(name)(ShapedArray(rest, np.float64), axis=axis, keepdims=keepdims)
            return np.zeros((0,) + out.shape, np.intp), 0
        if axis is None:
            n = ndim_of(x) - 1
            flat = sh.reshape(x, (b, math.prod(rest)))
            out = bind(prim, flat, axis=1, keepdims=False)
            if keepdims:
                out = sh.reshape(out, (shape_of(x)[0],) + (1,) * n)
            return out, 0
        return bind(prim, x, axis=axis + 1, keepdims=keepdims), 0

    prim.batch = batch
    return prim


argmax_p = _declare_arg("argmax", np.argmax)
argmin_p = _declare_arg("argmin", np.argmin)


# ---- binders ------------------------------------------------------------------------
_reduce_sum = binder(reduce_sum_p, -1)


def reduce_sum(x: Any, axes: tuple, keepdims: bool = False) -> Any:
    return _reduce_sum(x, axes=tuple(axes), keepdims=keepdims)


def reduce_prod(x: Any, axes: tuple, keepdims: bool = False) -> Any:
    return bind(reduce_prod_p, x, axes=tuple(axes), keepdims=keepdims)
