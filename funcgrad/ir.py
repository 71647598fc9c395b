"""The graph IR: a typed, jaxpr-like program, how to build it by tracing, and how to run it.

A :class:`Jaxpr` has input variables, constants (arrays the function closed
over), literals (Python scalars, stored inline), a list of equations
(``outputs = primitive[params] inputs``) and output atoms.  It is built by
running the user's function on :class:`JaxprTracer` s: each primitive applied
to a tracer appends one equation instead of computing anything.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcgrad.core import (
    Primitive,
    ShapedArray,
    Trace,
    Tracer,
    bind,
    check_callable,
    check_output,
    check_thread,
    get_aval,
    new_trace,
    unsupported_type_message,
    valid_value,
)
from funcgrad.tree_util import PyTreeDef, tree_flatten, tree_unflatten

__all__ = ["Var", "Literal", "Eqn", "Jaxpr", "make_jaxpr", "eval_jaxpr", "trace_to_jaxpr"]


class Var:
    """A value produced inside the graph (an input, a constant or an equation output)."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    def __repr__(self) -> str:
        return f"Var({self.aval.str_short()})"


class Literal:
    """A Python or NumPy scalar stored inline in an equation."""

    __slots__ = ("val", "aval")

    def __init__(self, val: Any, aval: ShapedArray):
        self.val = val
        self.aval = aval

    def __repr__(self) -> str:
        return f"Literal({self.val!r})"


Atom = Var | Literal


class Eqn:
    """One equation: ``outputs = primitive[params](*inputs)``."""

    __slots__ = ("primitive", "inputs", "outputs", "params")

    def __init__(self, primitive: Primitive, inputs: list, outputs: list, params: dict):
        self.primitive = primitive
        self.inputs = inputs
        self.outputs = outputs
        self.params = params

    def __repr__(self) -> str:
        return f"Eqn({self.primitive.name}, {len(self.inputs)} inputs)"


class Jaxpr:
    """A traced program.  ``str(jaxpr)`` gives the readable listing."""

    def __init__(self, constvars: list[Var], consts: list, invars: list[Var], eqns: list[Eqn],
                 outvars: list, in_tree: PyTreeDef | None = None, out_tree: PyTreeDef | None = None):
        self.constvars = constvars
        self.consts = consts
        self.invars = invars
        self.eqns = eqns
        self.outvars = outvars
        self.in_tree = in_tree
        self.out_tree = out_tree

    @property
    def in_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.invars]

    @property
    def out_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.outvars]

    def replace(self, **changes: Any) -> Jaxpr:
        fields = dict(constvars=self.constvars, consts=self.consts, invars=self.invars,
                      eqns=self.eqns, outvars=self.outvars, in_tree=self.in_tree,
                      out_tree=self.out_tree)
        fields.update(changes)
        return Jaxpr(**fields)

    def __str__(self) -> str:
        return pretty_print(self)

    __repr__ = __str__

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(str(self))


# ---------------------------------------------------------------- printing ---

def _names() -> Callable[[Var], str]:
    table: dict[int, str] = {}

    def name(v: Var) -> str:
        key = id(v)
        if key not in table:
            n, s = len(table), ""
            while True:
                s = chr(ord("a") + n % 26) + s
                n = n // 26 - 1
                if n < 0:
                    break
            table[key] = s
        return table[key]
    return name


def _fmt_index(index: tuple) -> str:
    from funcgrad.primitives.indexing import index_parts
    n = sum(1 for c in index if c[0] == "a")
    return "[" + ", ".join(index_parts(index, [f"#{j}" for j in range(n)])) + "]"


def _fmt_param(k: str, v: Any) -> str:
    if k == "index":
        return f"index={_fmt_index(v)}"
    if isinstance(v, np.dtype):
        return f"{k}={v.name}"
    return f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"


def _fmt_atom(a: Atom, name: Callable) -> str:
    """A variable's name; a literal's value, with its type when it has its own dtype (a
    NumPy scalar: ``1.0:f32[]``).  A Python number prints bare: it takes the dtype of
    the arrays it meets."""
    if isinstance(a, Literal):
        v = a.val
        if isinstance(v, np.generic):
            return f"{v.item()!r}:{a.aval.str_short()}"
        return repr(v)
    return name(a)


def pretty_print(jaxpr: Jaxpr) -> str:
    name = _names()
    decl = lambda v: f"{name(v)}:{v.aval.str_short()}"  # noqa: E731
    head = "{ lambda " + " ".join(decl(v) for v in jaxpr.constvars) + "; " + \
        " ".join(decl(v) for v in jaxpr.invars) + ". let"
    lines = [head]
    for e in jaxpr.eqns:
        params = " ".join(_fmt_param(k, v) for k, v in sorted(e.params.items()))
        prim = e.primitive.name + (f"[{params}]" if params else "")
        outs = " ".join(decl(v) for v in e.outputs)
        ins = " ".join(_fmt_atom(a, name) for a in e.inputs)
        lines.append(f"    {outs} = {prim} {ins}")
    outs = ", ".join(_fmt_atom(a, name) for a in jaxpr.outvars)
    lines.append(f"  in ({outs}{',' if len(jaxpr.outvars) == 1 else ''}) }}")
    return "\n".join(lines)


# ------------------------------------------------------------- tracing ---

class JaxprTracer(Tracer):
    # the graph variable is ``_var``: a public ``var`` would hide the ``x.var()`` method
    __slots__ = ("aval", "_var")

    def __init__(self, trace: JaxprTrace, aval: ShapedArray, var: Var):
        self._trace = trace
        self.aval = aval
        self._var = var

    shape = property(lambda self: self.aval.shape)
    dtype = property(lambda self: self.aval.dtype)


class JaxprTrace(Trace):
    """Records every primitive applied to its tracers as an equation."""

    name = "jit/make_jaxpr"

    def __init__(self, level: int, name: str | None = None):
        super().__init__(level)
        if name:
            self.name = name
        self.eqns: list[Eqn] = []
        self.constvars: list[Var] = []
        self.consts: list = []
        self._const_ids: dict[int, Var] = {}

    def new_arg(self, aval: ShapedArray) -> JaxprTracer:
        return JaxprTracer(self, aval, Var(aval))

    def atom(self, x: Any, prim_name: str = "", i: int = 0) -> Atom:
        """The graph atom for ``x``: its variable, a literal, or a captured constant."""
        if isinstance(x, JaxprTracer) and x._trace is self:
            return x._var
        if isinstance(x, Tracer):
            check_output(x)     # an outer tracer is a constant; a leaked one is an error
        if isinstance(x, (list, tuple)):
            x = _asarray_or_self(x)
        if not valid_value(x):
            raise TypeError(unsupported_type_message(prim_name, i, x))
        if isinstance(x, (bool, int, float, complex, np.generic)):
            return Literal(x, get_aval(x))
        v = self._const_ids.get(id(x))
        if v is None:
            v = Var(get_aval(x))
            self._const_ids[id(x)] = v
            self.constvars.append(v)
            self.consts.append(x)
        return v

    def process_primitive(self, prim: Primitive, args: tuple, params: dict) -> Any:
        check_thread(self)      # another thread's op would be recorded in this graph
        inputs = [self.atom(a, prim.name, i) for i, a in enumerate(args)]
        aval = prim.abstract_eval(*[a.aval for a in inputs], **params)
        # weakly typed exactly when evaluation gives a Python number (core.weak_inputs)
        weak = not aval.shape and "dtype" not in params and all(a.aval.weak_type for a in inputs)
        if weak != aval.weak_type:
            aval = ShapedArray(aval.shape, aval.dtype, weak)
        out = Var(aval)
        self.eqns.append(Eqn(prim, inputs, [out], params))
        return JaxprTracer(self, aval, out)


def _asarray_or_self(x: Any) -> Any:
    try:
        return np.asarray(x)
    except (TypeError, ValueError):   # ragged or odd sequences: reported as unsupported
        return x


def _check_leaf(x: Any, where: str, i: int) -> Any:
    if isinstance(x, Tracer):
        check_output(x)
    if isinstance(x, (list, tuple)):
        x = _asarray_or_self(x)
    if not valid_value(x):
        what = type(x).__name__ + (f" of dtype {x.dtype}" if isinstance(x, (np.ndarray, np.generic))
                                   else "")
        raise TypeError(f"{where}: argument leaf {i} has unsupported type {what}; "
                        "transformed functions take NumPy arrays, Python numbers and pytrees "
                        "(tuples, lists, dicts) of them. Mark other arguments static with "
                        "static_argnums.")
    return x


def check_keyword_leaves(kwargs: dict, where: str) -> None:
    """Keyword arguments are traced: one that holds no array cannot be made static by
    ``static_argnums`` unless passed by position, so say that (and ``functools.partial``)."""
    for k, v in kwargs.items():
        for x in tree_flatten(v)[0]:
            try:
                _check_leaf(x, where, 0)
            except TypeError:
                raise TypeError(f"{where}: keyword argument {k!r} holds a value of type "
                                f"{type(x).__name__}, and keyword arguments are traced like "
                                "arrays; bind it with functools.partial(f, " + k + "=...), or "
                                "list its parameter's position in static_argnums"
                                ) from None


def dynamic_call(fun: Callable, merge: Callable, dyn: tuple, kwargs: dict,
                 where: str) -> tuple[list, PyTreeDef, Callable]:
    """(leaves, structure, the function of them to trace) for ``fun`` called on the dynamic
    positional arguments ``dyn`` (``merge`` puts the static ones back) and ``kwargs``,
    which are traced too, after the positional ones."""
    if kwargs:
        check_keyword_leaves(kwargs, where)
        flat, in_tree = tree_flatten((dyn, kwargs))
        return flat, in_tree, lambda d, kw: fun(*merge(d), **kw)
    flat, in_tree = tree_flatten(dyn)
    return flat, in_tree, lambda *d: fun(*merge(d))


def trace_to_jaxpr(fun: Callable, in_avals: Sequence[ShapedArray], in_tree: PyTreeDef,
                   name: str = "make_jaxpr") -> Jaxpr:
    """Trace ``fun`` (taking the pytree ``in_tree`` of arrays with ``in_avals``) into a Jaxpr."""
    with new_trace(JaxprTrace, name) as trace:
        tracers = [trace.new_arg(a) for a in in_avals]
        out = fun(*tree_unflatten(in_tree, tracers))
        out_flat, out_tree = tree_flatten(out)
        outvars = [trace.atom(_check_leaf(o, f"{name} output", i), "output", i)
                   for i, o in enumerate(out_flat)]
    return Jaxpr(trace.constvars, trace.consts, [t._var for t in tracers], trace.eqns, outvars,
                 in_tree, out_tree)


def split_static(args: tuple, static_argnums: tuple, where: str) -> tuple[tuple, Callable]:
    """Split ``args`` into dynamic ones and a function re-inserting the static ones."""
    n = len(args)
    static = set()
    for k in static_argnums:
        if not -n <= k < n:
            raise ValueError(f"{where}: static_argnums {static_argnums} out of range for "
                             f"{n} positional arguments")
        static.add(k % n)
    dyn = tuple(a for i, a in enumerate(args) if i not in static)

    def merge(dyn_args: tuple) -> tuple:
        it = iter(dyn_args)
        return tuple(args[i] if i in static else next(it) for i in range(n))
    return dyn, merge


def static_positions(fun: Callable, static: tuple, n: int, where: str) -> tuple:
    """The entries of ``static`` that name one of the ``n`` arguments given.  One past them
    is ignored where ``fun`` has a parameter there (a default is used, as in JAX); one past
    ``fun``'s parameters is an error."""
    if all(-n <= s < n for s in static):
        return static
    try:
        params = list(inspect.signature(fun).parameters.values())
        limit = math.inf if any(p.kind is p.VAR_POSITIONAL for p in params) else sum(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    except (TypeError, ValueError):      # no signature (a builtin): only what was given
        limit = n
    for s in static:
        if not -n <= s < limit:
            raise ValueError(f"{where}: static_argnums {static} out of range for {n} positional "
                             f"arguments")
    return tuple(s for s in static if -n <= s < n)


def static_keywords_as_positions(fun: Callable, static: tuple, args: tuple,
                                 kwargs: dict) -> tuple[tuple, dict]:
    """A ``static_argnums`` parameter passed by keyword (``f(x, n=3)`` with
    ``static_argnums=1``) is moved to its position, so it stays static (as in JAX)."""
    top = max((s for s in static if s >= len(args)), default=-1)
    if top < 0 or not kwargs:
        return args, kwargs
    try:
        names = [p.name for p in inspect.signature(fun).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return args, kwargs
    kwargs = dict(kwargs)
    while len(args) <= top and len(args) < len(names) and names[len(args)] in kwargs:
        args = args + (kwargs.pop(names[len(args)]),)
    return args, kwargs


def _static_tuple(static_argnums: int | Sequence[int]) -> tuple:
    nums = (static_argnums,) if isinstance(static_argnums, (int, np.integer)) else static_argnums
    if not isinstance(nums, (tuple, list)) or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in nums):
        raise TypeError(f"static_argnums must be an int or a tuple of ints (positions of "
                        f"positional arguments), got {static_argnums!r}")
    return tuple(int(k) for k in nums)


def make_jaxpr(fun: Callable, static_argnums: int | Sequence[int] = ()) -> Callable[..., Jaxpr]:
    """``make_jaxpr(f)(*args)`` traces ``f`` at ``args``' shapes and dtypes into a graph."""
    check_callable(fun, "make_jaxpr")
    static_argnums = _static_tuple(static_argnums)

    def traced(*args: Any, **kwargs: Any) -> Jaxpr:
        # keyword arguments are traced inputs (after the positional ones), as in JAX, unless
        # static_argnums names them; a static position past the arguments given (a default)
        # is ignored
        args, kwargs = static_keywords_as_positions(fun, static_argnums, args, kwargs)
        dyn, merge = split_static(
            args, static_positions(fun, static_argnums, len(args), "make_jaxpr"), "make_jaxpr")
        flat, in_tree, call = dynamic_call(fun, merge, dyn, kwargs, "make_jaxpr")
        flat = [_check_leaf(x, "make_jaxpr", i) for i, x in enumerate(flat)]
        return trace_to_jaxpr(call, [get_aval(x) for x in flat], in_tree)
    return traced


# ------------------------------------------------------------- evaluation ---

def eval_jaxpr_flat(jaxpr: Jaxpr, consts: Sequence, args: Sequence) -> list:
    """Run ``jaxpr`` on flat lists of constants and arguments; returns flat outputs.

    Uses :func:`bind`, so evaluating a graph under another transformation
    transforms it.  A plain loop: no recursion however long the graph.
    """
    env: dict[Var, Any] = {}
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for e in jaxpr.eqns:
        vals = [env[a] if type(a) is Var else a.val for a in e.inputs]
        env[e.outputs[0]] = bind(e.primitive, *vals, **e.params)
    return [env[a] if type(a) is Var else a.val for a in jaxpr.outvars]


def _dtype_fits(x: Any, aval: ShapedArray) -> bool:
    """An input for a graph variable: its dtype, or a Python number of a fitting kind
    (a weakly typed variable, traced from a Python number, takes any array of its kind)."""
    kinds = {bool: "b", int: "iuf", float: "f", complex: "c"}.get(type(x))
    if kinds is not None:
        return aval.dtype.kind in kinds
    dt = get_aval(x).dtype
    return dt == aval.dtype or (aval.weak_type and dt.kind == aval.dtype.kind)


def eval_jaxpr(jaxpr: Jaxpr, *args: Any) -> Any:
    """Run a graph on arguments shaped like the ones it was traced with."""
    if not isinstance(jaxpr, Jaxpr):
        raise TypeError(f"eval_jaxpr takes a graph (the result of fg.make_jaxpr(f)(*args)) as its "
                        f"first argument, got {type(jaxpr).__name__}")
    flat, tree = tree_flatten(args)
    if len(flat) != len(jaxpr.invars):
        raise ValueError(f"eval_jaxpr: the graph takes {len(jaxpr.invars)} input arrays, "
                         f"got {len(flat)}")
    if jaxpr.in_tree is not None and tree != jaxpr.in_tree and \
            tree != tree_flatten(tuple(flat))[1]:
        raise ValueError(f"eval_jaxpr: the arguments have structure {tree}, but the graph was "
                         f"traced with {jaxpr.in_tree}; pass arguments of that structure (or "
                         "its leaves, in order)")
    for i, (x, v) in enumerate(zip(flat, jaxpr.invars)):
        shape = x.shape if isinstance(x, Tracer) else np.shape(x)
        if shape != v.aval.shape:
            raise ValueError(f"eval_jaxpr: input {i} has shape {shape}, the graph expects "
                             f"{v.aval.shape}")
        if not _dtype_fits(x, v.aval):
            raise TypeError(f"eval_jaxpr: input {i} has dtype {get_aval(x).dtype}, the graph "
                            f"expects {v.aval.dtype}; convert it (x.astype(...)) or trace the "
                            "graph again with this dtype")
        if type(x) in (bool, int, float) and not v.aval.weak_type:
            # a Python number for a typed input takes the graph's dtype (an i8 graph wraps)
            try:
                flat[i] = np.asarray(x, v.aval.dtype)
            except OverflowError:
                raise ValueError(f"eval_jaxpr: input {i} is {x!r}, which does not fit the "
                                 f"graph's dtype {v.aval.dtype}") from None
    out = eval_jaxpr_flat(jaxpr, jaxpr.consts, flat)
    if jaxpr.out_tree is None:
        return out
    return tree_unflatten(jaxpr.out_tree, out)
