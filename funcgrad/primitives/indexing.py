"""Indexing primitives: ``gather`` (``x[idx]``) and ``scatter`` (``x.at[idx].set/add/multiply``).

An index is kept as a static, hashable tuple with one entry per component:
``("s", start, stop, step)`` a slice, ``("i", k)`` an integer, ``("n",)`` a new
axis, ``("a", j)`` the ``j``-th integer index array, which is passed as an
operand (so index arrays may be traced and batched).  The facade normalises
user indices (Ellipsis, lists, boolean masks) into this form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from funcgrad.core import Primitive, ShapedArray, Tracer, bind
from funcgrad.primitives import elementwise as ew
from funcgrad.primitives import shape as sh
from funcgrad.primitives._base import batch_size, move_to_front, ndim_of, register, shape_of, unbroadcast

SLICE_ALL = ("s", None, None, None)


def to_numpy_index(index: tuple, arrays: Sequence) -> tuple:
    out: list = []
    for c in index:
        tag = c[0]
        if tag == "s":
            out.append(slice(c[1], c[2], c[3]))
        elif tag == "i":
            out.append(c[1])
        elif tag == "n":
            out.append(None)
        else:
            out.append(arrays[c[1]])
    return tuple(out)


def index_parts(index: tuple, array_names: Sequence[str]) -> list[str]:
    """The components of ``index`` as Python source (``1:3``, ``None``, an array's name)."""
    parts = []
    for c in index:
        if c[0] == "s":
            a, b, s = ("" if v is None else str(v) for v in c[1:])
            parts.append(f"{a}:{b}" + (f":{s}" if s else ""))
        elif c[0] == "i":
            parts.append(str(c[1]))
        elif c[0] == "n":
            parts.append("None")
        else:
            parts.append(array_names[c[1]])
    return parts


def has_arrays(index: tuple) -> bool:
    return any(c[0] == "a" for c in index)


def _adv_layout(index: tuple) -> tuple[bool, int]:
    """(advanced components adjacent?, output dims produced before them)."""
    pos = [k for k, c in enumerate(index) if c[0] in "ai"]
    adjacent = pos == list(range(pos[0], pos[-1] + 1))
    pre = sum(1 for c in index[:pos[0]] if c[0] in "sn")
    return adjacent, pre


# ---- gather ---------------------------------------------------------------------
def _gather_impl(x, *arrays, index):
    return np.asarray(x)[to_numpy_index(index, arrays)]


def _indexed_shape(x: ShapedArray, arrays: Sequence[ShapedArray], index: tuple) -> tuple:
    for a in arrays:
        if a.dtype.kind not in "iu":
            raise IndexError(f"index arrays must hold integers (or be boolean masks), got dtype {a.dtype}")
    dummy = sh._broadcast_impl(np.zeros((), x.dtype), x.shape)   # a zero-stride view
    try:
        return dummy[to_numpy_index(index, [np.zeros(a.shape, np.intp) for a in arrays])].shape
    except IndexError as e:
        raise IndexError(f"indexing an array of shape {x.shape}: {e}") from None


def _gather_aval(x: ShapedArray, *arrays: ShapedArray, index: tuple) -> ShapedArray:
    return ShapedArray(_indexed_shape(x, arrays, index), x.dtype)   # an array: not weak


gather_p = register(Primitive("gather", _gather_impl, _gather_aval))
gather_p.label = "indexing (gather)"


def gather(x: Any, arrays: Sequence, index: tuple) -> Any:
    return bind(gather_p, x, *arrays, index=index)


def zeros_like_value(x: Any) -> Any:
    return sh.broadcast_to(np.zeros((), ew.dtype_of(x)), shape_of(x))


def _gather_jvp(primals, tangents, *, index):
    x, arrays = primals[0], primals[1:]
    return gather(x, arrays, index), gather(tangents[0], arrays, index)


def _gather_vjp(ct, out, primals, needed, *, index):
    x, arrays = primals[0], primals[1:]
    return [scatter(zeros_like_value(x), ct, arrays, index, "add")] + [None] * len(arrays)


def _gather_batch(args, bdims, *, index):
    x, arrays = args[0], args[1:]
    dx, darrs = bdims[0], bdims[1:]
    if all(d is None for d in darrs):
        x = move_to_front(x, dx, 0)
        out = gather(x, arrays, (SLICE_ALL,) + index)
        if has_arrays(index) and not _adv_layout(index)[0]:
            return out, len(np.broadcast_shapes(*[shape_of(a) for a in arrays]))
        return out, 0
    size = batch_size(args, bdims)
    x = move_to_front(x, dx, size)
    k_max = max(ndim_of(a) - (d is not None) for a, d in zip(arrays, darrs))
    new_arrays: list = [np.arange(size).reshape((size,) + (1,) * k_max)]
    for a, d in zip(arrays, darrs):
        if d is not None:
            a = move_to_front(a, d, 0)
            s = shape_of(a)
            if len(s) - 1 < k_max:
                a = sh.reshape(a, (s[0],) + (1,) * (k_max - len(s) + 1) + s[1:])
        new_arrays.append(a)
    new_index = (("a", 0),) + tuple(("a", c[1] + 1) if c[0] == "a" else c for c in index)
    out = gather(x, new_arrays, new_index)
    adjacent, pre = _adv_layout(index)
    if adjacent and pre:
        n = ndim_of(out)
        adv = range(1, 1 + k_max)
        perm = (0,) + tuple(range(1 + k_max, 1 + k_max + pre)) + tuple(adv) + tuple(
            range(1 + k_max + pre, n))
        out = sh.transpose(out, perm)
    return out, 0


gather_p.jvp, gather_p.vjp, gather_p.batch = _gather_jvp, _gather_vjp, _gather_batch


# ---- scatter --------------------------------------------------------------------
def _scatter_impl(x, v, *arrays, index, mode, unique_indices=False):
    y = np.array(x, copy=True)
    idx = to_numpy_index(index, arrays)
    if mode == "set":
        y[idx] = v
    elif mode == "add":
        if arrays:
            np.add.at(y, idx, v)
        else:
            y[idx] += v
    else:
        if arrays:
            np.multiply.at(y, idx, v)
        else:
            y[idx] *= v
    return y


_MODE_NAME = {"set": "set", "add": "add", "mul": "multiply"}


def _scatter_aval(x: ShapedArray, v: ShapedArray, *arrays: ShapedArray, index: tuple,
                  mode: str, unique_indices: bool = False) -> ShapedArray:
    region = _indexed_shape(x, arrays, index)
    try:
        ok = np.broadcast_shapes(v.shape, region) == region
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"x.at[...].{_MODE_NAME[mode]}: a value of shape {v.shape} cannot be "
                         f"broadcast to the indexed region of shape {region} (x has shape {x.shape})")
    return ShapedArray(x.shape, x.dtype)


scatter_p = register(Primitive("scatter", _scatter_impl, _scatter_aval))
scatter_p.label = ".at[] update (scatter)"


def scatter(x: Any, v: Any, arrays: Sequence, index: tuple, mode: str,
            unique_indices: bool = False) -> Any:
    """``x.at[index].<mode>(v)``; ``unique_indices=True`` (a param only when set) is the
    caller's promise that the index arrays hit each position once, as in JAX."""
    if unique_indices:
        return bind(scatter_p, x, v, *arrays, index=index, mode=mode, unique_indices=True)
    return bind(scatter_p, x, v, *arrays, index=index, mode=mode)


def _check_unique_for_mul(x: Any, arrays: Sequence, index: tuple, unique_indices: bool) -> None:
    """The derivative of ``.at[idx].multiply(v)`` in ``v`` assumes each position is hit once.

    Concrete index arrays are checked, and repeated positions refused, instead of
    giving a wrong derivative.  Traced ones cannot be checked: as in JAX, the
    caller must promise ``unique_indices=True``.
    """
    if not arrays or unique_indices:
        return
    if any(isinstance(a, Tracer) for a in arrays):
        raise NotImplementedError(
            "x.at[idx].multiply(v): the derivative with respect to v needs indices that hit "
            "each position once, and idx is traced (an argument under jit or vmap), so this "
            "cannot be checked. If the positions are distinct, say so with "
            "x.at[idx].multiply(v, unique_indices=True); otherwise pass idx as a concrete "
            "array (closed over, or static).")
    counts = _scatter_impl(np.zeros(shape_of(x), np.int64), 1, *arrays, index=index, mode="add")
    if counts.size and counts.max() > 1:
        raise NotImplementedError(
            "x.at[idx].multiply(v): the derivative with respect to v is only implemented for "
            "indices that hit each position once; idx repeats positions. Multiply the repeated "
            "factors together first (for example with x.at[idx].add on a log scale or fnp.prod).")


def _set_winners(x: Any, arrays: Sequence, index: tuple) -> Any:
    """For ``.at[idx].set(v)`` with repeated positions: a mask of the updates that are kept."""
    region = _indexed_shape(ShapedArray(shape_of(x), np.float64),
                            [ShapedArray(shape_of(a), np.intp) for a in arrays], index)
    ids = np.arange(math.prod(region)).reshape(region)
    winners = scatter(np.full(shape_of(x), -1, np.int64), ids, arrays, index, "set")
    return ew.eq(gather(winners, arrays, index), ids)


def _scatter_jvp(primals, tangents, *, index, mode, unique_indices=False):
    x, v, arrays = primals[0], primals[1], primals[2:]
    tx, tv = tangents[0], tangents[1]
    if mode == "mul" and tv is not None:
        _check_unique_for_mul(x, arrays, index, unique_indices)
    out = scatter(x, v, arrays, index, mode, unique_indices)
    if mode in ("set", "add"):
        if mode == "add" and tv is None:
            return out, tx
        base = tx if tx is not None else zeros_like_value(out)
        return out, scatter(base, tv if tv is not None else 0, arrays, index, mode)
    t = None if tx is None else scatter(tx, v, arrays, index, "mul")
    if tv is not None:
        t2 = scatter(zeros_like_value(out), ew.mul(gather(x, arrays, index), tv), arrays, index, "add")
        t = t2 if t is None else ew.add(t, t2)
    return out, t


def _scatter_vjp(ct, out, primals, needed, *, index, mode, unique_indices=False):
    x, v, arrays = primals[0], primals[1], primals[2:]
    res: list = [None] * len(primals)
    if 0 in needed:
        if mode == "set":
            res[0] = scatter(ct, 0, arrays, index, "set")
        elif mode == "add":
            res[0] = ct
        else:
            res[0] = scatter(ct, v, arrays, index, "mul")
    if 1 in needed:
        g = gather(ct, arrays, index)
        if mode == "mul":
            _check_unique_for_mul(x, arrays, index, unique_indices)
            g = ew.mul(g, gather(x, arrays, index))
        elif mode == "set" and arrays:   # repeated positions: only the kept update gets ct
            g = ew.select(_set_winners(x, arrays, index), g, 0)
        res[1] = unbroadcast(g, v)
    return res


def _scatter_batch(args, bdims, *, index, mode, unique_indices=False):
    x, v, arrays = args[0], args[1], args[2:]
    dx, dv, darrs = bdims[0], bdims[1], bdims[2:]
    size = batch_size(args, bdims)
    x_shape = shape_of(x)[:dx] + shape_of(x)[dx + 1:] if dx is not None else shape_of(x)
    x = move_to_front(x, dx, size)
    region = gather_p.abstract_eval(
        ShapedArray(x_shape, np.float64), *[ShapedArray(
            shape_of(a)[:d] + shape_of(a)[d + 1:] if d is not None else shape_of(a), np.intp)
            for a, d in zip(arrays, darrs)], index=index).shape
    if dv is not None:
        v = move_to_front(v, dv, size)
        v = sh.broadcast_to(sh.reshape(v, (size,) + (1,) * (len(region) - ndim_of(v) + 1)
                                       + shape_of(v)[1:]), (size,) + region)
    if all(d is None for d in darrs):
        new_index = (SLICE_ALL,) + index
        if has_arrays(index) and not _adv_layout(index)[0]:
            # NumPy puts the advanced-index dims first: the batch axis lands after them
            n_adv = len(np.broadcast_shapes(*[shape_of(a) for a in arrays]))
            if dv is not None:
                v = sh.transpose(v, tuple(range(1, n_adv + 1)) + (0,) + tuple(
                    range(n_adv + 1, len(region) + 1)))
            else:
                v = sh.broadcast_to(v, region)
                v = sh.reshape(v, region[:n_adv] + (1,) + region[n_adv:])
        return scatter(x, v, arrays, new_index, mode, unique_indices), 0
    # batched index arrays: scatter into each example's flattened positions
    n = math.prod(x_shape)
    iota = np.arange(n).reshape(x_shape)
    pos, dpos = _gather_batch((iota,) + tuple(arrays), (None,) + tuple(darrs), index=index)
    pos = move_to_front(pos, dpos, size)
    rows = np.arange(size).reshape((size,) + (1,) * len(region))
    flat = sh.reshape(x, (size, n))
    if dv is None:
        v = sh.broadcast_to(v, region)
    out = scatter(flat, v, (rows, pos), (("a", 0), ("a", 1)), mode, unique_indices)
    return sh.reshape(out, (size,) + x_shape), 0


scatter_p.jvp, scatter_p.vjp, scatter_p.batch = _scatter_jvp, _scatter_vjp, _scatter_batch
