"""Shared machinery for declaring primitives: the registry, generic rules.

The generic pieces live here once: undoing broadcasting in gradients
(:func:`unbroadcast`), the derivative and batching rules of every elementwise
primitive (:func:`elementwise`), and small helpers to move batch dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FunctionType, ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from funcgrad.core import Primitive, ShapedArray, bind, dtype_of

registry: dict[str, Primitive] = {}
_add_reduce = np.add.reduce

# The primitive modules, bound by funcgrad/primitives/__init__.py once they are all
# defined (the generic rules below call their binders; importing here would be circular).
ew: Any = None
red: Any = None
sh: Any = None


def register(prim: Primitive) -> Primitive:
    if prim.name in registry:
        raise ValueError(f"primitive {prim.name} declared twice")
    registry[prim.name] = prim
    return prim


def shape_of(x: Any) -> tuple:
    if type(x) is np.ndarray:
        return x.shape
    s = getattr(x, "shape", None)
    if s is not None:
        return tuple(s)
    if isinstance(x, (list, tuple)):   # lists: NumPy's shape (ragged ones are rejected by bind)
        try:
            return np.shape(x)
        except ValueError:
            return ()
    return ()


def ndim_of(x: Any) -> int:
    if type(x) is np.ndarray:
        return x.ndim
    return len(shape_of(x))


# ------------------------------------------------------------ sample dtypes ---

def sample(aval: ShapedArray) -> Any:
    """A tiny value with ``aval``'s dtype (a Python scalar for weak types)."""
    if aval.weak_type:
        return {"b": True, "i": 1, "u": 1, "f": 1.0, "c": 1.0 + 0j}[aval.dtype.kind]
    return np.ones((), aval.dtype)


def result_dtype(fn: Callable, avals: tuple, params: dict, cache: dict) -> tuple:
    """dtype (and weakness) of ``fn`` applied to values of ``avals``, by running it on 0-d samples.

    The result is weakly typed when every operand is and no ``dtype`` is asked for:
    evaluated, such an op gives a Python number (see ``core.weak_inputs``).
    """
    key = tuple((a.dtype, a.weak_type) for a in avals) + tuple(sorted(
        (k, v) for k, v in params.items() if not isinstance(v, np.ndarray)))
    hit = cache.get(key)
    if hit is None:
        with np.errstate(all="ignore"):
            out = fn(*[sample(a) for a in avals], **params)
        hit = (dtype_of(out), bool(avals) and all(a.weak_type for a in avals) and "dtype" not in params)
        cache[key] = hit
    return hit


# ------------------------------------------------- undoing broadcasting once ---

def unbroadcast(g: Any, like: Any) -> Any:
    """Sum ``g`` down to the shape of ``like`` and cast it to its dtype.

    This is the single place where the broadcasting of an operation is undone
    for its gradient: every rule returns the cotangent of the broadcast result
    and calls this to bring it back to the operand's shape.
    """
    concrete = type(g) is np.ndarray
    if concrete and type(like) is np.ndarray and g.shape == like.shape and g.dtype == like.dtype:
        return g          # the common case: nothing to undo
    # a concrete cotangent gives a concrete result whatever ``like`` is (only its shape
    # and dtype are used): then NumPy directly, else the (traceable) primitives
    target, dt = tuple(shape_of(like)), dtype_of(like)
    gshape = shape_of(g)
    if gshape != target:
        lead = len(gshape) - len(target)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(target) if n == 1 and gshape[i + lead] != 1)
        if axes:
            g = _add_reduce(g, axes) if concrete else red.reduce_sum(g, axes, False)
        if shape_of(g) != target:
            g = np.reshape(g, target) if concrete else sh.reshape(g, target)
    if dtype_of(g) != dt and dt.kind in "fc":
        g = np.asarray(g).astype(dt, copy=False) if concrete else ew.convert(g, dt)
    return g


# ------------------------------------------------------------- batching ---

def move_to_front(x: Any, bdim: int | None, size: int) -> Any:
    """Batch dimension of ``x`` moved to axis 0 (broadcast in if unbatched)."""
    if bdim is None:
        return sh.broadcast_to(x, (size,) + shape_of(x))
    if bdim == 0:
        return x
    perm = (bdim,) + tuple(i for i in range(ndim_of(x)) if i != bdim)
    return sh.transpose(x, perm)


def batch_size(args: tuple, bdims: tuple) -> int:
    for x, d in zip(args, bdims):
        if d is not None:
            return shape_of(x)[d]
    raise AssertionError("batch rule called with no batched argument")


def align_batched(args: tuple, bdims: tuple) -> list:
    """Make batched operands broadcast correctly against unbatched ones.

    Each batched operand gets its batch axis at 0 and, if its per-example rank is
    below the largest one, size-1 axes after it; unbatched operands are left as
    they are (NumPy's right-aligned broadcasting then does the rest).
    """
    ranks = [ndim_of(x) - (d is not None) for x, d in zip(args, bdims)]
    top = max(ranks)
    out = []
    for x, d, r in zip(args, bdims, ranks):
        if d is None:
            out.append(x)
            continue
        x = move_to_front(x, d, 0)
        if r < top:
            s = shape_of(x)
            x = sh.reshape(x, (s[0],) + (1,) * (top - r) + s[1:])
        out.append(x)
    return out


# --------------------------------------------------- elementwise primitives ---

def ident_term(t: Any, out: Any, *args: Any, **params: Any) -> Any:
    """The derivative term of an operand that passes its cotangent through (``x + y``)."""
    return t


def _linear_term(coef: int) -> Callable:
    if coef == 1:
        return ident_term
    return lambda t, out, *args, **p: ew.neg(t)


def elementwise(name: str, impl: Callable, terms: tuple | None = None, *,
                linear: tuple | None = None, vjp_terms: tuple | None = None,
                zero_derivative: bool = False, codegen: str | None = None,
                dtype_hint: str = "") -> Primitive:
    """Declare an elementwise (broadcasting) primitive.

    Its derivative is given per operand ``i`` as ``terms[i](t, out, *args)``:
    the local partial derivative times ``t``.  Since the Jacobian of an
    elementwise op is diagonal, the same term serves forward mode (``t`` a
    tangent) and reverse mode (``t`` a cotangent, then :func:`unbroadcast`).
    ``linear`` gives constant coefficients (+1/-1) instead.  ``dtype_hint`` ends
    the error for operand dtypes NumPy does not support.
    """
    prim = Primitive(name, impl)
    cache: dict = {}

    def abstract_eval(*avals: ShapedArray, **params: Any) -> ShapedArray:
        shapes = [a.shape for a in avals]
        try:
            shape = np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(
                f"{prim.label}: operands with shapes {' and '.join(map(str, shapes))} cannot be "
                "broadcast together (NumPy broadcasting compares shapes from the last axis; "
                "each pair of sizes must be equal or one of them 1)") from None
        try:
            dt, weak = result_dtype(impl, avals, params, cache)
        except TypeError:      # NumPy has no loop for these dtypes
            raise TypeError(f"{prim.label}: not defined for operands of dtype "
                            f"{' and '.join(str(a.dtype) for a in avals)}{dtype_hint}") from None
        return ShapedArray(shape, dt, weak)

    prim.abstract_eval = abstract_eval
    prim.codegen = codegen
    register(prim)

    if zero_derivative:
        prim.zero_derivative = True
    else:
        if linear is not None:
            terms = tuple(_linear_term(c) for c in linear)
        assert terms is not None
        back = vjp_terms or terms

        def jvp(primals: list, tangents: list, **params: Any):
            out = bind(prim, *primals, **params)
            t_out = None
            for i, t in enumerate(tangents):
                if t is None or terms[i] is None:     # None: no derivative (select's condition)
                    continue
                term = terms[i](t, out, *primals, **params)
                t_out = term if t_out is None else bind(registry["add"], t_out, term)
            if t_out is not None and shape_of(t_out) != shape_of(out):
                t_out = bind(registry["broadcast_to"], t_out, shape=shape_of(out))
            return out, t_out

        def vjp(ct: Any, out: Any, primals: list, needed: tuple, **params: Any):
            res: list = [None] * len(primals)
            for i in needed:
                if back[i] is not None:
                    res[i] = unbroadcast(back[i](ct, out, *primals, **params), primals[i])
            return res

        prim.vjp_terms = back    # the eager backward pass calls these directly
        prim.jvp = jvp
        prim.vjp = vjp

    def batch(args: tuple, bdims: tuple, **params: Any):
        if len(args) == 1:            # the shape is kept: so is the batch axis
            return bind(prim, args[0], **params), bdims[0]
        if len(args) == 2:
            (a, b), (da, db) = args, bdims
            if da == db and ndim_of(a) == ndim_of(b):   # batched alike: nothing to align
                return bind(prim, a, b, **params), da
            if da == 0 and db is None and ndim_of(b) < ndim_of(a):
                return bind(prim, a, b, **params), 0    # right-aligned broadcasting does it
            if db == 0 and da is None and ndim_of(a) < ndim_of(b):
                return bind(prim, a, b, **params), 0
        return bind(prim, *align_batched(args, bdims), **params), 0

    prim.batch = batch
    return prim


def _numpy_variant(fn: Callable, cache: dict) -> Callable:
    """``fn`` compiled against its module's globals with every binder replaced by the
    NumPy function it calls on concrete arrays (``mul`` -> ``np.multiply``), also
    behind a primitives module (``ew.neg`` -> ``np.negative``).

    The derivative stays declared once; this variant skips the binders' tracer
    dispatch and result checks (about 0.3 us a call), which is safe only when
    every value is concrete.  A function that calls no binder is returned as is.
    """
    glb = fn.__globals__
    ns = cache.get(id(glb))
    if ns is None:
        swaps: dict[str, Any] = {}
        for k, v in glb.items():
            if hasattr(v, "raw"):
                swaps[k] = v.raw
            elif isinstance(v, ModuleType) and v.__name__.startswith("funcgrad.primitives."):
                swaps[k] = SimpleNamespace(**{a: getattr(b, "raw", b) for a, b in vars(v).items()})
        ns = cache[id(glb)] = (dict(glb, **swaps), swaps)
    new_globals, swaps = ns
    if not any(name in swaps for name in fn.__code__.co_names):
        return fn
    return FunctionType(fn.__code__, new_globals, fn.__name__, fn.__defaults__, fn.__closure__)


def make_numpy_terms() -> None:
    """Give every elementwise primitive ``raw_terms``: its ``vjp_terms`` as NumPy code.

    Called once all primitive modules exist.  The eager backward pass uses these
    when the forward pass ran on concrete values (no outer transformation) and
    the cotangents are concrete, i.e. when nothing can be a tracer.
    """
    cache: dict = {}
    for prim in registry.values():
        if prim.vjp_terms is not None:
            prim.raw_terms = tuple(None if t is None else _numpy_variant(t, cache)
                                   for t in prim.vjp_terms)
