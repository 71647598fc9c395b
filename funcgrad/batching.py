"""vmap: vectorising a function over a batch axis.

A :class:`BatchTracer` holds the whole batch of values plus ``bdim``, the axis
that indexes examples.  Each primitive's ``batch`` rule computes the batched
result directly (moving the batch axis, never looping), so the graph of
``vmap(f)`` has the same number of equations whatever the batch size.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from threading import get_ident
from typing import Any

import numpy as np

from funcgrad.core import (
    Primitive,
    ShapedArray,
    Trace,
    Tracer,
    _short,
    check_callable,
    check_thread,
    dtype_of,
    get_aval,
    new_trace,
    unsupported_type_message,
    valid_value,
)
from funcgrad.primitives import shape as sh
from funcgrad.primitives._base import shape_of
from funcgrad.tree_util import _child_keys, _node, tree_flatten, tree_unflatten

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
        if self.thread != get_ident():
            check_thread(self)        # a tracer handed to another thread
        if prim.batch is None:
            raise NotImplementedError(f"vmap: primitive {prim.name} has no batching rule")
        try:
            if len(args) == 1:
                a = args[0]          # bind sent it here, so it is this trace's tracer
                out, d = prim.batch((a.val,), (a.bdim,), **params)
            else:
                vals, dims = [], []
                for a in args:
                    if type(a) is BatchTracer and a._trace is self:
                        vals.append(a.val)
                        dims.append(a.bdim)
                    else:
                        vals.append(a)
                        dims.append(None)
                out, d = prim.batch(tuple(vals), tuple(dims), **params)
        except (ValueError, TypeError, IndexError) as e:
            raise self._per_example_error(prim, args, params, e) from None
        if d is None:
            return out
        return BatchTracer(self, out, d)

    def _per_example_error(self, prim: Primitive, args: tuple, params: dict,
                           err: Exception) -> Exception:
        """The error of ``prim`` on one example's shapes (the shapes the user wrote), if
        it has one; a batched shape in the message would name arrays the user never saw."""
        avals = [a.aval if type(a) is BatchTracer and a._trace is self else get_aval(a)
                 for a in args]
        try:
            prim.abstract_eval(*avals, **params)
        except (ValueError, TypeError, IndexError) as e:
            return type(e)(f"{e} (in vmap over a batch of {self.axis_size}; the shapes are "
                           "those of one example)")
        try:                   # a value error (an index out of bounds): say whose shapes these are
            return type(err)(f"{err} (in vmap over a batch of {self.axis_size}; these shapes "
                             "and axes include the batch axis)")
        except TypeError:      # an exception class with another signature: leave it as it is
            return err


def _broadcast_prefix(prefix: Any, tree: Any, what: str, names: list[str] | None = None,
                      root: str = "") -> list:
    """Per-leaf ``(axis, leaf name)`` for ``prefix``, a pytree prefix of ``tree``.

    An int/None applies to a whole subtree; any pytree node (tuple, dict, namedtuple,
    registered class, ...) must match the node of ``tree`` in type, metadata and length.
    ``tree`` is a tuple whose entries are named by ``names`` (argument names); without
    ``names`` the whole tree is called ``root``.  The names let error messages say
    which argument or output a bad axis belongs to.
    """
    out: list = []
    stack = [(prefix, tree, what, root if names is None else None)]
    while stack:
        p, t, path, name = stack.pop()
        if p is None or isinstance(p, (int, np.integer)):
            ax = None if p is None else int(p)
            if name is None:    # the whole argument tuple: name each argument
                out.extend((ax, n) for a, nm in zip(t, names or ()) for n in _leaf_names(a, nm))
            else:
                out.extend((ax, n) for n in _leaf_names(t, name))
            continue
        pn, tn = _node(p), _node(t)
        if pn is None or tn is None or pn[0] is not tn[0] or pn[1] != tn[1] \
                or len(pn[2]) != len(tn[2]):
            target = f"the structure of {name}" if name else "the structure of the arguments"
            raise ValueError(
                f"vmap: {path} has structure {_describe(p)}, which is not a prefix of "
                f"{target}, {_describe(t)}. Give one axis (int or None) per "
                f"{'argument' if what == 'in_axes' else 'output'}, or a container of the same "
                "structure (same type, keys and length).")
        keys = _child_keys(pn[0], pn[1], len(pn[2]))
        for k, pc, tc in reversed(list(zip(keys, pn[2], tn[2]))):
            child = names[k] if name is None and names is not None else f"{name}[{k!r}]"
            stack.append((pc, tc, f"{path}[{k!r}]", child))
    return out


def _check_axes_spec(spec: Any, what: str) -> None:
    """``spec`` (in_axes or out_axes) must be an int, None, or a pytree with int/None leaves:
    raise naming the first bad entry, as JAX does when vmap is created."""
    stack = [(spec, "")]
    while stack:
        p, path = stack.pop()
        if p is None or (isinstance(p, (int, np.integer)) and not isinstance(p, bool)):
            continue
        node = _node(p)
        if node is None:
            bad = f"{what}{path} is {_short(p)} of type {type(p).__name__}" if path else \
                f"got {_short(p)} of type {type(p).__name__}"
            raise TypeError(f"vmap: {what} entries must be ints or None, but {bad}; {what} must "
                            "be an int, None, or a container (tuple, list, dict, namedtuple, "
                            "registered pytree) of them")
        keys = _child_keys(node[0], node[1], len(node[2]))
        stack.extend(reversed([(c, f"{path}[{k!r}]") for k, c in zip(keys, node[2])]))


def _prefix_axes(prefix: Any, treedef: Any) -> list | None:
    """Per-leaf axes for the common prefixes (one int/None for everything, or one per
    argument of the argument tuple ``treedef``); ``None`` for anything else, which
    :func:`_broadcast_prefix` handles."""
    if prefix is None or type(prefix) is int:
        return [prefix] * treedef.num_leaves
    if type(prefix) is tuple and treedef.node_type is tuple and len(prefix) == len(
            treedef._children) and all(p is None or type(p) is int for p in prefix):
        out: list = []
        for p, c in zip(prefix, treedef._children):
            out.extend([p] * c.num_leaves)
        return out
    return None


def _leaf_names(tree: Any, root: str) -> list[str]:
    """Names like ``params[0]['W']`` for the leaves of ``tree``, in flattening order."""
    node = _node(tree)
    if node is None:
        return [root]
    node_type, aux, children = node
    keys = _child_keys(node_type, aux, len(children))
    return [n for k, c in zip(keys, children) for n in _leaf_names(c, f"{root}[{k!r}]")]


def _arg_names(fun: Callable, n: int) -> list[str]:
    """Names of the first ``n`` positional arguments of ``fun`` (``argument i`` if unknown)."""
    names = [f"argument {i}" for i in range(n)]
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        return names
    i = 0
    for prm in params:
        if i >= n:
            break
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD):
            names[i] = prm.name
            i += 1
        elif prm.kind == prm.VAR_POSITIONAL:
            for j in range(i, n):
                names[j] = f"{prm.name}[{j - i}]"
            break
    return names


def _describe(x: Any) -> str:
    return str(tree_flatten(x, is_leaf=lambda v: v is None)[1]).replace("PyTreeDef", "")


def _unmappable_message(name: str, ax: int, x: Any) -> str:
    """Why argument ``name`` (a leaf of unsupported type ``x``) cannot be mapped over."""
    what = type(x).__name__ + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else "")
    return (f"vmap: argument {name} has unsupported type {what}, but in_axes={ax} maps over it; "
            "vmap maps over arrays (numeric NumPy arrays, or pytrees of them: tuples, lists, "
            "dicts, registered classes). Pass other values with in_axes=None, or close over them")


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
    positional-argument tuple (its containers may be any pytree nodes: dicts,
    namedtuples, registered classes; its leaves ints or ``None``); negative
    axes count from the end.  Keyword
    arguments are mapped over axis 0 (as in JAX).  ``out_axes`` likewise for
    the outputs (``None`` for outputs that do not vary over the batch).
    ``axis_size`` is needed only when no argument is batched.
    """
    check_callable(fun, "vmap")
    if not (in_axes is None or isinstance(in_axes, (int, np.integer, tuple, list, dict))):
        raise TypeError(f"vmap: in_axes must be an int, None, or a tuple/list/dict of them (one "
                        f"entry per positional argument), got {type(in_axes).__name__}")
    for spec, what in ((in_axes, "in_axes"), (out_axes, "out_axes")):
        if not (spec is None or type(spec) is int):
            _check_axes_spec(spec, what)
    if axis_size is not None and (not isinstance(axis_size, (int, np.integer))
                                  or isinstance(axis_size, bool) or axis_size < 0):
        raise (TypeError if not isinstance(axis_size, (int, np.integer)) else ValueError)(
            f"vmap: axis_size must be a non-negative int (the batch size), got {axis_size!r}")
    return _vmap(fun, in_axes, out_axes, axis_size, None)


def _vmap(fun: Callable, in_axes: Any, out_axes: Any, axis_size: int | None,
          _names: list[str] | None) -> Callable:
    def batched(*args: Any, **kwargs: Any) -> Any:
        if isinstance(in_axes, (tuple, list)) and len(in_axes) != len(args):
            raise ValueError(f"vmap: in_axes has {len(in_axes)} entries but the function was called "
                             f"with {len(args)} positional arguments; give one axis per argument "
                             "(keyword arguments are always mapped over axis 0)")
        if kwargs:   # keyword arguments are mapped over their leading axis, as in JAX
            pos = len(args)
            spec = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * pos
            return _vmap(lambda *a: fun(*a[:pos], **dict(zip(kwargs, a[pos:]))),
                         spec + (0,) * len(kwargs), out_axes, axis_size,
                         _arg_names(fun, pos) + list(kwargs))(*args, *kwargs.values())
        spec = tuple(in_axes) if isinstance(in_axes, list) else in_axes
        flat, in_tree = tree_flatten(args)
        axes = _prefix_axes(spec, in_tree)
        named = None          # (axis, leaf name) per leaf: worked out only for messages

        def leaf_names() -> list:
            return _broadcast_prefix(spec, args, "in_axes", _names or _arg_names(fun, len(args)))

        if axes is None:      # a pytree prefix (or a bad one, which raises naming it)
            named = leaf_names()
            axes = [a for a, _ in named]
        size, sizes_seen = axis_size, []
        norm = []
        for i, (x, ax) in enumerate(zip(flat, axes)):
            if ax is None:
                norm.append(None)
                continue
            if type(x) is np.ndarray and x.dtype.kind in "biufc":     # the common case
                shp = x.shape
            elif valid_value(x):
                shp = shape_of(x)
            else:
                name = (named or leaf_names())[i][1]
                raise TypeError(_unmappable_message(name, ax, x))
            if not -len(shp) <= ax < len(shp):
                name = (named or leaf_names())[i][1]
                valid = f"valid axes are {-len(shp)}..{len(shp) - 1}" if shp else \
                    "a 0-d value has no axis to map over; use in_axes=None for it"
                raise ValueError(f"vmap: in_axes={ax} for argument {name} of shape {shp} is out of "
                                 f"range for an array of rank {len(shp)} ({valid})")
            ax %= len(shp)
            norm.append(ax)
            sizes_seen.append((i, ax, shp[ax]))
        if sizes_seen:
            distinct = {n for _, _, n in sizes_seen}
            if len(distinct) > 1 or (axis_size is not None and axis_size not in distinct):
                named = named or leaf_names()
                sizes_seen = [(named[i][1], ax, n) for i, ax, n in sizes_seen]
                seen = "; ".join(f"argument {name} has size {n} along axis {ax}"
                                 for name, ax, n in sizes_seen)
                what = (f"axis_size={axis_size} does not match the size of the mapped axes"
                        if len(distinct) == 1 else "the mapped axes have different sizes")
                if axis_size is not None and len(distinct) > 1:
                    what += f" (and axis_size={axis_size} was given)"
                raise ValueError(f"vmap: {what}: {seen}. All mapped axes (and axis_size, if "
                                 "given) must have the same size.")
            size = sizes_seen[0][2]
        elif size is None:
            raise ValueError("vmap: no argument is batched (all in_axes are None), so the batch "
                             "size is unknown; pass axis_size=...")
        with new_trace(BatchTrace, size) as trace:
            ins = [x if ax is None else BatchTracer(trace, x, ax) for x, ax in zip(flat, norm)]
            out = fun(*tree_unflatten(in_tree, ins))
            out_flat, out_tree = tree_flatten(out)
            oaxes = _prefix_axes(out_axes, out_tree) if out_axes is None or type(out_axes) is int \
                else None
            if oaxes is None:   # raises the error that names the mismatch
                oaxes = [a for a, _ in _broadcast_prefix(out_axes, out, "out_axes", root="output")]
            onames = None
            res = []
            for k, (o, oa) in enumerate(zip(out_flat, oaxes)):
                if type(o) is BatchTracer and o._trace is trace and oa == 0:
                    res.append(o.val if o.bdim == 0 else _move_axis(o.val, o.bdim, 0, size))
                    continue            # the common case
                if onames is None:
                    onames = [n for _, n in _broadcast_prefix(out_axes, out, "out_axes",
                                                              root="output")]
                oname = onames[k]
                if type(o) is BatchTracer and o._trace is trace:
                    val, bd = o.val, o.bdim
                else:
                    val, bd = o, None
                    if not valid_value(val):
                        raise TypeError(unsupported_type_message(f"vmap: {oname}", 0, val))
                if oa is None:
                    if bd is not None:
                        raise ValueError(f"vmap: out_axes=None for {oname} of shape "
                                         f"{shape_of(val)[:bd] + shape_of(val)[bd + 1:]}, but that "
                                         "output varies over the batch; give it an axis (e.g. 0)")
                    res.append(val)
                    continue
                rank = len(shape_of(val)) + (bd is None)
                if not -rank <= oa < rank:
                    raise ValueError(f"vmap: out_axes={oa} is out of range for {oname}, of rank "
                                     f"{rank} with the batch axis")
                res.append(_move_axis(val, bd, oa, size))
        from funcgrad.ad import _as_output
        return tree_unflatten(out_tree, [_as_output(r) for r in res])

    batched.__name__ = f"vmap({getattr(fun, '__name__', 'fun')})"
    batched.__doc__ = fun.__doc__
    return batched
