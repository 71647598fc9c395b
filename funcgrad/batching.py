"""vmap: vectorising a function over a batch axis.

A :class:`BatchTracer` holds the whole batch of values plus ``bdim``, the axis
that indexes examples.  Each primitive's ``batch`` rule computes the batched
result directly (moving the batch axis, never looping), so the graph of
``vmap(f)`` has the same number of equations whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from funcgrad.core import Primitive, ShapedArray, Trace, Tracer, dtype_of, new_trace
from funcgrad.primitives import shape as sh
from funcgrad.primitives._base import shape_of
from funcgrad.tree_util import tree_flatten, tree_unflatten

__all__ = ["vmap"]


class BatchTracer(Tracer):
    __slots__ = ("val", "bdim")

    def __init__(self, trace: BatchTrace, val: Any, bdim: int):
        self._trace = trace
        self.val = val
        self.bdim = bdim

    @property
    def aval(self) -> ShapedArray:
        s = shape_of(self.val)
        return ShapedArray(s[:self.bdim] + s[self.bdim + 1:], dtype_of(self.val))

    @property
    def shape(self) -> tuple:
        s = shape_of(self.val)
        return s[:self.bdim] + s[self.bdim + 1:]

    dtype = property(lambda self: dtype_of(self.val))


class BatchTrace(Trace):
    name = "vmap"

    def __init__(self, level: int, axis_size: int):
        super().__init__(level)
        self.axis_size = axis_size

    def process_primitive(self, prim: Primitive, args: tuple, params: dict) -> Any:
        vals, dims = [], []
        for a in args:
            if type(a) is BatchTracer and a._trace is self:
                vals.append(a.val)
                dims.append(a.bdim)
            else:
                vals.append(a)
                dims.append(None)
        if prim.batch is None:
            raise NotImplementedError(f"vmap: primitive {prim.name} has no batching rule")
        out, d = prim.batch(tuple(vals), tuple(dims), **params)
        if d is None:
            return out
        return BatchTracer(self, out, d)


def _broadcast_prefix(prefix: Any, tree: Any, what: str) -> list:
    """Per-leaf values of ``prefix``, a pytree prefix of ``tree`` (an int/None applies to a subtree)."""
    out: list = []
    stack = [(prefix, tree, what)]
    while stack:
        p, t, path = stack.pop()
        if p is None or isinstance(p, int):
            out.append((p, len(tree_flatten(t)[0]), path))
            continue
        t_flat = _children(t)
        p_flat = _children(p)
        if t_flat is None or p_flat is None or type(p) is not type(t) or len(p_flat) != len(t_flat) \
                or (isinstance(p, dict) and sorted(p) != sorted(t)):
            raise ValueError(
                f"vmap: {path} has structure {_describe(p)}, which is not a prefix of the "
                f"structure of the arguments it applies to, {_describe(t)}. Give one axis "
                "(int or None) per argument, or a container of the same structure.")
        for k, pc, tc in reversed(list(zip(_keys(p), p_flat, t_flat))):
            stack.append((pc, tc, f"{path}[{k!r}]"))
    res: list = []
    for p, n, _ in out:
        res.extend([p] * n)
    return res


def _children(x: Any) -> list | None:
    if isinstance(x, dict):
        return [x[k] for k in sorted(x)]
    if isinstance(x, (tuple, list)):
        return list(x)
    return None


def _keys(x: Any) -> list:
    return sorted(x) if isinstance(x, dict) else list(range(len(x)))


def _describe(x: Any) -> str:
    return str(tree_flatten(x, is_leaf=lambda v: v is None)[1]).replace("PyTreeDef", "")


def _move_axis(x: Any, src: int | None, dst: int, size: int) -> Any:
    """Put the batch axis of ``x`` (at ``src``, or absent) at ``dst``."""
    if src is None:
        x = sh.broadcast_to(x, (size,) + shape_of(x))
        src = 0
    n = len(shape_of(x))
    dst = dst % n
    if src == dst:
        return x
    perm = [i for i in range(n) if i != src]
    perm.insert(dst, src)
    return sh.transpose(x, tuple(perm))


def vmap(fun: Callable, in_axes: Any = 0, out_axes: Any = 0, axis_size: int | None = None) -> Callable:
    """Vectorise ``fun`` over axis ``in_axes`` of its arguments.

    ``in_axes``: an int, ``None`` (not batched), or a pytree prefix of the
    argument tuple; negative axes count from the end.  ``out_axes`` likewise
    for the outputs (``None`` for outputs that do not vary over the batch).
    ``axis_size`` is needed only when no argument is batched.
    """
    if not (in_axes is None or isinstance(in_axes, (int, tuple, list, dict))):
        raise TypeError(f"vmap: in_axes must be an int, None, or a tuple/list/dict of them, "
                        f"got {type(in_axes).__name__}")

    def batched(*args: Any) -> Any:
        if isinstance(in_axes, tuple) and len(in_axes) != len(args):
            raise ValueError(f"vmap: in_axes has {len(in_axes)} entries but the function was called "
                             f"with {len(args)} positional arguments; give one axis per argument")
        spec = tuple(in_axes) if isinstance(in_axes, list) and len(in_axes) == len(args) else in_axes
        axes = _broadcast_prefix(spec, args, "in_axes")
        flat, in_tree = tree_flatten(args)
        size, sizes_seen = axis_size, []
        norm = []
        for i, (x, ax) in enumerate(zip(flat, axes)):
            if ax is None:
                norm.append(None)
                continue
            shp = shape_of(x)
            if not -len(shp) <= ax < len(shp):
                raise ValueError(f"vmap: in_axes={ax} for argument leaf {i} of shape {shp}: the axis "
                                 f"is out of range for an array of rank {len(shp)}")
            ax %= len(shp)
            norm.append(ax)
            sizes_seen.append((i, shp[ax]))
        if sizes_seen:
            distinct = {n for _, n in sizes_seen}
            if len(distinct) > 1 or (axis_size is not None and axis_size not in distinct):
                seen = ", ".join(f"leaf {i}: {n}" for i, n in sizes_seen)
                raise ValueError(f"vmap: batched arguments have different sizes along their mapped "
                                 f"axes ({seen}"
                                 + (f"; axis_size={axis_size}" if axis_size is not None else "")
                                 + "); all mapped axes must have the same size")
            size = sizes_seen[0][1]
        elif size is None:
            raise ValueError("vmap: no argument is batched (all in_axes are None), so the batch "
                             "size is unknown; pass axis_size=...")
        with new_trace(BatchTrace, size) as trace:
            ins = [x if ax is None else BatchTracer(trace, x, ax) for x, ax in zip(flat, norm)]
            out = fun(*tree_unflatten(in_tree, ins))
            out_flat, out_tree = tree_flatten(out)
            oaxes = _broadcast_prefix(out_axes, out, "out_axes")
            res = []
            for j, (o, oa) in enumerate(zip(out_flat, oaxes)):
                if type(o) is BatchTracer and o._trace is trace:
                    val, bd = o.val, o.bdim
                else:
                    val, bd = o, None
                if oa is None:
                    if bd is not None:
                        raise ValueError(f"vmap: out_axes=None for output leaf {j}, but that output "
                                         "varies over the batch; give it an axis (e.g. 0)")
                    res.append(val)
                    continue
                rank = len(shape_of(val)) + (bd is None)
                if not -rank <= oa < rank:
                    raise ValueError(f"vmap: out_axes={oa} is out of range for output leaf {j} of "
                                     f"batched rank {rank}")
                res.append(_move_axis(val, bd, oa, size))
        from funcgrad.ad import _as_output
        return tree_unflatten(out_tree, [_as_output(r) for r in res])

    batched.__name__ = f"vmap({getattr(fun, '__name__', 'fun')})"
    batched.__doc__ = fun.__doc__
    return batched
