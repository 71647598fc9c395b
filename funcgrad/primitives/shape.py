"""Shape primitives: reshape, transpose, broadcast_to, concatenate.

``squeeze``, ``expand_dims``, ``ravel``, ``swapaxes``, ``moveaxis``, ``stack``
and ``split`` are composed from these (and from slicing) in the facade.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcgrad.core import Primitive, ShapedArray, bind, binder
from funcgrad.primitives._base import move_to_front, ndim_of, register, shape_of


# ---- reshape -------------------------------------------------------------------
def _reshape_aval(aval: ShapedArray, *, shape: tuple) -> ShapedArray:
    size = aval.size
    if math.prod(shape) != size or any(n < 0 for n in shape):
        raise ValueError(f"reshape: cannot reshape an array of shape {aval.shape} "
                         f"(size {size}) into shape {shape}")
    return ShapedArray(shape, aval.dtype)   # NumPy returns an array: never weakly typed


def _reshape_impl(x, shape):
    try:
        return x.reshape(shape)
    except AttributeError:
        return np.reshape(x, shape)


reshape_p = register(Primitive("reshape", _reshape_impl, _reshape_aval))
reshape_p.codegen = "{0}.reshape({shape})"
reshape_p.jvp = lambda primals, tangents, *, shape: (
    bind(reshape_p, primals[0], shape=shape), bind(reshape_p, tangents[0], shape=shape))
reshape_p.vjp = lambda ct, out, primals, needed, *, shape: [reshape(ct, shape_of(primals[0]))]


def _reshape_batch(args, bdims, *, shape):
    x = move_to_front(args[0], bdims[0], 0)
    return bind(reshape_p, x, shape=(shape_of(x)[0],) + tuple(shape)), 0


reshape_p.batch = _reshape_batch


def resolve_shape(shape: Any, size: int, old: tuple) -> tuple:
    """Replace a single -1 in ``shape`` by the size that fits (NumPy's rule)."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(n) for n in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: can only specify one unknown dimension (-1), got {shape}")
    if -1 in shape:
        known = math.prod([n for n in shape if n != -1])
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape an array of shape {old} (size {size}) "
                             f"into shape {shape}")
        shape = tuple(size // known if n == -1 else n for n in shape)
    return shape


_reshape = binder(reshape_p, -1)


def reshape(x: Any, shape: tuple) -> Any:
    shape = tuple(shape)
    if shape_of(x) == shape:
        return x
    if -1 in shape:
        shape = resolve_shape(shape, math.prod(shape_of(x)), shape_of(x))
    return _reshape(x, shape=shape)


# ---- transpose -----------------------------------------------------------------
def _transpose_aval(aval: ShapedArray, *, perm: tuple) -> ShapedArray:
    if sorted(perm) != list(range(aval.ndim)):
        raise ValueError(f"transpose: axes {perm} are not a permutation of the "
                         f"{aval.ndim} axes of an array of shape {aval.shape}")
    return ShapedArray(tuple(aval.shape[p] for p in perm), aval.dtype)


def _transpose_impl(x, perm):
    try:
        return x.transpose(perm)
    except AttributeError:
        return np.transpose(x, perm)


transpose_p = register(Primitive("transpose", _transpose_impl, _transpose_aval))
transpose_p.codegen = "{0}.transpose({perm})"
transpose_p.jvp = lambda primals, tangents, *, perm: (
    bind(transpose_p, primals[0], perm=perm), bind(transpose_p, tangents[0], perm=perm))
transpose_p.vjp = lambda ct, out, primals, needed, *, perm: [
    bind(transpose_p, ct, perm=tuple(int(i) for i in np.argsort(perm)))]


def _transpose_batch(args, bdims, *, perm):
    x = move_to_front(args[0], bdims[0], 0)
    return bind(transpose_p, x, perm=(0,) + tuple(p + 1 for p in perm)), 0


transpose_p.batch = _transpose_batch


_transpose = binder(transpose_p, -1)


def transpose(x: Any, perm: tuple) -> Any:
    perm = tuple(perm)
    if perm == tuple(range(len(perm))):
        return x
    return _transpose(x, perm=perm)


# ---- broadcast_to ------------------------------------------------------------------
def _broadcast_aval(aval: ShapedArray, *, shape: tuple) -> ShapedArray:
    ok = len(shape) >= aval.ndim and all(
        a == b or a == 1 for a, b in zip(aval.shape[::-1], shape[::-1]))
    if not ok:
        raise ValueError(f"broadcast_to: cannot broadcast an array of shape {aval.shape} "
                         f"to shape {shape}")
    return ShapedArray(shape, aval.dtype)   # NumPy returns an array: never weakly typed


def _broadcast_impl(x, shape):
    """``np.broadcast_to`` as a zero-stride view, built directly for contiguous inputs.

    NumPy's own ``broadcast_to`` is a Python-level wrapper costing several
    microseconds; gradients of sums and means broadcast on every call.
    """
    x = np.asarray(x)
    nd = x.ndim
    if nd == 0:
        return np.ndarray(shape, x.dtype, x, 0, (0,) * len(shape))
    off = len(shape) - nd
    if off >= 0 and x.flags.c_contiguous and x.size:
        strides = [0] * off
        for n, m, st in zip(x.shape, shape[off:], x.strides):
            if n != m:
                if n != 1:
                    return np.broadcast_to(x, shape)    # let NumPy raise its error
                st = 0
            strides.append(st)
        return np.ndarray(shape, x.dtype, x, 0, tuple(strides))
    return np.broadcast_to(x, shape)


broadcast_to_p = register(Primitive("broadcast_to", _broadcast_impl, _broadcast_aval))
broadcast_to_p.codegen = "_broadcast({0}, {shape})"
broadcast_to_p.jvp = lambda primals, tangents, *, shape: (
    bind(broadcast_to_p, primals[0], shape=shape), bind(broadcast_to_p, tangents[0], shape=shape))


def _broadcast_vjp(ct, out, primals, needed, *, shape):
    from funcgrad.primitives._base import unbroadcast
    return [unbroadcast(ct, primals[0])]


broadcast_to_p.vjp = _broadcast_vjp


def _broadcast_batch(args, bdims, *, shape):
    x = move_to_front(args[0], bdims[0], 0)
    r = ndim_of(x) - 1
    s = shape_of(x)
    x = reshape(x, (s[0],) + (1,) * (len(shape) - r) + s[1:])
    return bind(broadcast_to_p, x, shape=(s[0],) + tuple(shape)), 0


broadcast_to_p.batch = _broadcast_batch


_broadcast_to = binder(broadcast_to_p, -1)


def broadcast_to(x: Any, shape: tuple) -> Any:
    shape = tuple(shape)
    if shape_of(x) == shape and not isinstance(x, (int, float, bool, complex)):
        return x
    return _broadcast_to(x, shape=shape)


# ---- concatenate ---------------------------------------------------------------------
def _concat_aval(*avals: ShapedArray, axis: int) -> ShapedArray:
    first = avals[0]
    for a in avals:
        if a.ndim != first.ndim or any(
                n != m for i, (n, m) in enumerate(zip(a.shape, first.shape)) if i != axis):
            raise ValueError("concatenate: all arrays must have the same shape except along "
                             f"axis {axis}; got shapes {', '.join(str(b.shape) for b in avals)}")
    if not 0 <= axis < first.ndim:
        raise ValueError(f"concatenate: axis {axis} is out of range for arrays of rank {first.ndim}")
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in avals)
    return ShapedArray(tuple(shape), np.result_type(*[a.dtype for a in avals]))


concatenate_p = register(Primitive(
    "concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_aval))
concatenate_p.codegen = "np.concatenate(({args},), axis={axis})"


def _concat_jvp(primals, tangents, *, axis):
    from funcgrad.primitives import elementwise as ew
    out = bind(concatenate_p, *primals, axis=axis)
    ts = [t if t is not None else np.zeros(shape_of(p), ew.dtype_of(out))
          for p, t in zip(primals, tangents)]
    return out, bind(concatenate_p, *ts, axis=axis)


def _concat_vjp(ct, out, primals, needed, *, axis):
    from funcgrad.primitives import indexing as ix
    res: list = [None] * len(primals)
    start = 0
    for i, p in enumerate(primals):
        n = shape_of(p)[axis]
        if i in needed:
            index = (ix.SLICE_ALL,) * axis + (("s", start, start + n, None),)
            res[i] = ix.gather(ct, (), index)
        start += n
    return res


def _concat_batch(args, bdims, *, axis):
    from funcgrad.primitives._base import batch_size
    size = batch_size(args, bdims)
    xs = [move_to_front(x, d, size) for x, d in zip(args, bdims)]
    return bind(concatenate_p, *xs, axis=axis + 1), 0


concatenate_p.jvp, concatenate_p.vjp, concatenate_p.batch = _concat_jvp, _concat_vjp, _concat_batch
