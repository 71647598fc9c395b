"""jit: trace once per signature, optimise the graph, compile it to straight-line Python.

The cache key is (pytree structure of the arguments, shape/dtype of every
leaf, static argument values).  On a miss the function is traced to a
:class:`~funcgrad.ir.Jaxpr`, optimised (:mod:`funcgrad.passes`) and compiled:
the graph becomes the source of one Python function with one NumPy call per
equation, so running it costs about what the same NumPy code typed by hand
costs.

Called with tracers of another transformation (``grad(jit(f))``,
``vmap(jit(f))``, ``jit`` inside ``jit``), a jitted function is inlined into
the outer trace: the outer transformation then sees ``f``'s primitives
directly.  This keeps every composition correct; for speed, put ``jit``
outermost (``jit(grad(f))``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcgrad.core import Tracer, get_aval
from funcgrad.ir import Jaxpr, Literal, _check_leaf, _static_tuple, split_static, trace_to_jaxpr
from funcgrad.passes import optimize
from funcgrad.primitives.indexing import index_parts
from funcgrad.primitives.shape import _broadcast_impl
from funcgrad.tree_util import tree_flatten, unflattener

__all__ = ["jit", "compile_jaxpr"]


def _py(v: Any) -> Any:
    """A 0-d NumPy value as a Python number (results of Python-scalar-only equations)."""
    return v.item() if isinstance(v, (np.ndarray, np.generic)) else v


def _src_literal(lit: Literal, ns: dict, like: list) -> str:
    """A name for a literal, bound to a 0-d array of the dtype it takes in its equation.

    NumPy multiplies an array by a 0-d array about twice as fast as by a Python
    float (no scalar conversion per call).  A Python scalar (weakly typed) takes
    the dtype NEP 50 gives it against the equation's strongly typed inputs
    (``like``), so float32 stays float32; a NumPy scalar keeps its own dtype.
    """
    val = lit.val
    if lit.aval.weak_type and (isinstance(val, bool) or not like):
        if isinstance(val, (bool, int)) or (isinstance(val, float) and math.isfinite(val)):
            return repr(val)
        name = f"_lit{len(ns)}"
        ns[name] = val
        return name
    dt = np.result_type(*like, val) if lit.aval.weak_type else lit.aval.dtype
    name = f"_lit{len(ns)}"
    ns[name] = np.asarray(val, dt)
    return name


def _ufunc_name(u: np.ufunc, ns: dict) -> str:
    """The name the compiled code calls ufunc ``u`` by (bound in its globals)."""
    name = f"_np_{u.__name__}"
    ns[name] = u
    return name


def _index_src(index: tuple, arr_srcs: list[str]) -> str:
    parts = index_parts(index, arr_srcs)
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


# Primitives whose NumPy implementation returns a new array (never a view of an input):
# their outputs may be overwritten in place once dead.  Views (reshape, transpose,
# broadcast_to, basic gather, convert to the same dtype) alias their input instead.
_VIEW_PRIMS = frozenset({"reshape", "transpose", "broadcast_to", "gather", "stop_gradient", "convert"})


def _is_view(e: Any) -> bool:
    """Does equation ``e`` return a view of its first input?  (One-operand ``einsum`` can:
    ``np.einsum('ii->i', x)`` is a writable view of ``x``.)"""
    name = e.primitive.name
    return name in _VIEW_PRIMS or (name == "einsum" and len(e.inputs) == 1)
_DEL_MIN_SIZE = 4096     # dead intermediates at least this big are deleted at once (memory)


def _liveness(jaxpr: Jaxpr) -> tuple[dict[int, int], dict[int, int]]:
    """(last equation index using each var's buffer, alias root of each var)."""
    root: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, e in enumerate(jaxpr.eqns):
        for a in e.inputs:
            if not isinstance(a, Literal):
                r = root.get(id(a), id(a))
                last[r] = k
        out = id(e.outputs[0])
        if _is_view(e) and not isinstance(e.inputs[0], Literal):
            root[out] = root.get(id(e.inputs[0]), id(e.inputs[0]))
        else:
            root[out] = out
    end = len(jaxpr.eqns)
    for a in jaxpr.outvars:
        if not isinstance(a, Literal):
            last[root.get(id(a), id(a))] = end
    return last, root


def compile_jaxpr(jaxpr: Jaxpr) -> Callable[[Sequence], list]:
    """Python source for ``jaxpr`` as one function ``f(args) -> outputs``, compiled.

    One line per equation.  A ufunc whose operand is an intermediate that dies
    with it writes its result into that operand (``np.multiply(a, b, a)``, the
    ``out`` argument given positionally, which NumPy parses fastest), so memory
    is reused instead of reallocated; large intermediates are deleted after
    their last use.
    """
    ns: dict[str, Any] = {"np": np, "dtype": np.dtype, "_broadcast": _broadcast_impl, "_py": _py}
    names: dict[int, str] = {}

    def src(a: Any, like: list | None = None) -> str:
        if isinstance(a, Literal):
            return _src_literal(a, ns, like or [])
        return names[id(a)]

    last, root = _liveness(jaxpr)
    owned: set[int] = set()          # buffers this function allocated (safe to overwrite)
    # a closed-over tracer of an outer transformation among the constants makes the
    # intermediates tracers too, which have no buffers to write into
    inplace = not any(isinstance(c, Tracer) for c in jaxpr.consts)
    lines = []
    for i, (v, c) in enumerate(zip(jaxpr.constvars, jaxpr.consts)):
        names[id(v)] = f"c{i}"
        ns[f"c{i}"] = c
    params = ", ".join(f"a{i}" for i in range(len(jaxpr.invars)))
    for i, v in enumerate(jaxpr.invars):
        names[id(v)] = f"a{i}"
    lines.append(f"def _compiled({params}):")
    for k, e in enumerate(jaxpr.eqns):
        out = f"v{k}"
        ov = e.outputs[0]
        like = [a.aval.dtype for a in e.inputs if not a.aval.weak_type]   # strongly typed inputs
        args = [src(a, like) for a in e.inputs]
        prim = e.primitive
        reuse = None
        if inplace and isinstance(prim.impl, np.ufunc) and ov.aval.ndim and not e.params \
                and len(e.inputs) == prim.impl.nin:
            for a in e.inputs:
                if (not isinstance(a, Literal) and id(a) in owned and root.get(id(a)) == id(a)
                        and last.get(id(a)) == k and a.aval == ov.aval):
                    reuse = a
                    break
        if reuse is not None:
            # positional out: NumPy parses it faster than out=, which matters for small arrays
            # (np.maximum/np.minimum deprecate a third positional argument)
            out_arg = names[id(reuse)]
            if prim.impl in (np.maximum, np.minimum):
                out_arg = f"out={out_arg}"
            expr = f"{_ufunc_name(prim.impl, ns)}({', '.join(args)}, {out_arg})"
            owned.discard(id(reuse))
        elif isinstance(prim.impl, np.ufunc) and not e.params:
            # the ufunc itself, bound to a global: a direct call costs less than the operator
            # (x * y goes through ndarray.__mul__ first) or np.<name> (an attribute lookup)
            expr = f"{_ufunc_name(prim.impl, ns)}({', '.join(args)})"
        elif prim.name == "gather":
            expr = f"{args[0]}[{_index_src(e.params['index'], args[1:])}]"
        elif callable(prim.codegen) and (code := prim.codegen(
                args, [a.aval for a in e.inputs], **e.params)) is not None:
            expr = code          # a rule that picks the expression from the operand shapes
        elif isinstance(prim.codegen, str) and all(
                isinstance(v, (bool, int, float, str, tuple, np.dtype, type(None)))
                for v in e.params.values()) and not (
                prim.codegen.startswith("{0}.") and not isinstance(e.inputs[0], Literal)
                and e.inputs[0].aval.weak_type):     # a Python scalar input has no ndarray methods
            expr = prim.codegen.format(*args, args=", ".join(args), **e.params)
        else:
            fn = f"_f{k}"
            ns[fn] = functools.partial(prim.impl, **e.params) if e.params else prim.impl
            expr = f"{fn}({', '.join(args)})"
        if ov.aval.weak_type and not ov.aval.shape:
            expr = f"_py({expr})"      # Python scalars in, Python scalar out (weak type)
        lines.append(f"    {out} = {expr}")
        names[id(ov)] = out
        if not _is_view(e):
            owned.add(id(ov))
        dead = [names[id(a)] for a in {id(a): a for a in e.inputs}.values()
                if not isinstance(a, Literal) and names[id(a)].startswith("v")
                and a.aval.size >= _DEL_MIN_SIZE and last.get(root.get(id(a), id(a))) == k
                and root.get(id(a), id(a)) == id(a) and a is not reuse]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    # an output that is an input or a (cached) constant is copied: callers get fresh arrays,
    # so mutating a result can never change a later call's answer
    # 0-d results (NumPy scalars, Python numbers, literals) are returned as 0-d arrays
    direct = {id(v) for v in jaxpr.invars} | {id(v) for v in jaxpr.constvars}
    outs = ", ".join(f"np.array({src(a)})" if id(a) in direct else
                     f"np.asarray({src(a)})" if isinstance(a, Literal) or not a.aval.shape else src(a)
                     for a in jaxpr.outvars)
    lines.append(f"    return [{outs}]")
    code = "\n".join(lines)
    exec(compile(code, "<funcgrad.jit>", "exec"), ns)  # noqa: S102 - our own generated source
    fn = ns["_compiled"]
    fn.source = code  # type: ignore[attr-defined]
    return fn


def _leaf_key(x: Any) -> tuple:
    if isinstance(x, np.ndarray):
        return (x.shape, x.dtype, False)
    a = get_aval(x)
    return (a.shape, a.dtype, a.weak_type)


class _Entry:
    __slots__ = ("jaxpr", "fn", "out_tree", "unflatten")

    def __init__(self, jaxpr: Jaxpr, fn: Callable, out_tree: Any):
        self.jaxpr = jaxpr
        self.fn = fn
        self.out_tree = out_tree
        self.unflatten = unflattener(out_tree)


_INLINE = object()
_SCALAR_KEY = {bool: "b", int: "i", float: "f", complex: "c"}


def _signature(args: tuple, static: tuple) -> Any:
    """(flat leaves, hashable key) for plain pytrees of arrays in one pass; ``_INLINE`` if a
    tracer is among them; ``None`` where the general path is needed.

    The key holds the container types and sizes, dict keys, each array's shape
    and dtype (a Python scalar's type only: its value is not part of the
    signature), and the static arguments' values.
    """
    flat: list = []
    key: list = []
    n = len(args)
    if static:
        st = {s % n for s in static if -n <= s < n}
        if len(st) != len(static):
            return None
        for k in sorted(st):
            v = args[k]
            try:
                hash(v)
            except TypeError:
                return None           # the general path raises the teaching error
            key.append(("static", k, type(v), v))
        stack = [a for i, a in enumerate(args) if i not in st][::-1]
        key.append(n)
    else:
        stack = list(args[::-1])
        key.append(n)
    while stack:
        x = stack.pop()
        t = type(x)
        if t is np.ndarray:
            if x.dtype.kind not in "biufc":
                return None
            flat.append(x)
            key.append(x.shape)
            key.append(x.dtype)
        elif t is tuple or t is list:
            key.append(t)
            key.append(len(x))
            stack.extend(x[::-1])
        elif t is dict:
            try:
                ks = sorted(x)
            except TypeError:
                return None
            key.append(tuple(ks))
            stack.extend(x[k] for k in reversed(ks))
        elif t in _SCALAR_KEY:
            flat.append(x)
            key.append(_SCALAR_KEY[t])
        elif x is None:
            key.append(None)
        elif isinstance(x, Tracer):
            return _INLINE
        elif isinstance(x, np.generic) and x.dtype.kind in "biufc":
            flat.append(x)
            key.append(())
            key.append(x.dtype)
        else:
            return None
    try:
        return flat, tuple(key)
    except TypeError:
        return None


def jit(fun: Callable, static_argnums: int | Sequence[int] = ()) -> Callable:
    """Compile ``fun``: trace once per argument signature, cache, and rerun fast.

    The returned function has ``trace_count`` (how many times ``fun`` was
    traced), ``cache_size()``, ``clear_cache()`` and ``lower(*args)`` (the
    optimised graph for those arguments).
    """
    static = _static_tuple(static_argnums)
    cache: dict[Any, _Entry] = {}

    def _prepare(args: tuple) -> tuple:
        dyn, merge = split_static(args, static, "jit")
        static_vals = []
        for k in sorted({s % len(args) for s in static}):
            v = args[k]
            try:
                hash(v)
            except TypeError:
                raise TypeError(f"jit: static argument {k} (in static_argnums) has unhashable type "
                                f"{type(v).__name__}; static arguments must be hashable (use a "
                                "tuple instead of a list, or pass arrays as regular arguments)") \
                    from None
            static_vals.append((k, type(v), v))
        flat, in_tree = tree_flatten(dyn)
        return flat, in_tree, merge, tuple(static_vals)

    def _entry(flat: list, in_tree: Any, merge: Callable, static_vals: tuple) -> _Entry:
        try:
            key = (in_tree, tuple(_leaf_key(x) for x in flat), static_vals)
        except TypeError:   # a leaf that is no array: say which, and suggest static_argnums
            for i, x in enumerate(flat):
                _check_leaf(x, "jit", i)
            raise
        try:
            entry = cache.get(key)
        except TypeError:   # static value hashable but not comparable
            entry = None
        if entry is None:
            flat = [_check_leaf(x, "jit", i) for i, x in enumerate(flat)]
            wrapped.trace_count += 1
            jaxpr = trace_to_jaxpr(lambda *d: fun(*merge(d)), [get_aval(x) for x in flat],
                                   in_tree, name="jit")
            jaxpr = optimize(jaxpr)
            entry = _Entry(jaxpr, compile_jaxpr(jaxpr), jaxpr.out_tree)
            cache[key] = entry
        return entry

    fast: dict[Any, _Entry] = {}     # the same entries, keyed by _signature (no PyTreeDef)

    @functools.wraps(fun)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"jit: keyword arguments ({', '.join(kwargs)}) are not supported; pass "
                            "them positionally (static ones via static_argnums) or fix them with "
                            "functools.partial before jit")
        sig = _signature(args, static)
        if sig is _INLINE:
            return fun(*args)       # inside another transformation: inline
        if sig is not None:
            flat, key = sig
            entry = fast.get(key)
            if entry is None:
                flat, in_tree, merge, static_vals = _prepare(args)
                entry = fast[key] = _entry(flat, in_tree, merge, static_vals)
        else:                       # namedtuples, registered classes, odd leaves: the general path
            flat, in_tree, merge, static_vals = _prepare(args)
            for x in flat:
                if isinstance(x, Tracer):
                    return fun(*args)
            entry = _entry(flat, in_tree, merge, static_vals)
        return entry.unflatten(entry.fn(*flat))

    def lower(*args: Any) -> Jaxpr:
        flat, in_tree, merge, static_vals = _prepare(args)
        return _entry(flat, in_tree, merge, static_vals).jaxpr

    wrapped.trace_count = 0  # type: ignore[attr-defined]
    wrapped.cache_size = lambda: len(cache)  # type: ignore[attr-defined]
    wrapped.clear_cache = lambda: (cache.clear(), fast.clear())  # type: ignore[attr-defined]
    wrapped.lower = lower  # type: ignore[attr-defined]
    return wrapped

