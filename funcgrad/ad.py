"""Automatic differentiation: forward mode (jvp) and reverse mode (vjp, grad).

Forward mode carries a tangent next to every value (:class:`JVPTracer`); each
primitive's ``jvp`` rule maps input tangents to the output tangent.

Reverse mode records a tape while the function runs on concrete values
(one :class:`VJPTracer` per primitive applied), then walks the
tape backwards calling each primitive's ``vjp`` rule.  Rules are written with
primitives, so the backward pass is itself traceable: ``grad(grad(f))``,
``jit(grad(f))`` and ``vmap(grad(f))`` need no special cases.

``jacfwd`` and ``jacrev`` push a whole standard basis through one ``vmap`` of
``jvp`` / of the pullback; ``hessian = jacfwd(jacrev(f))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from threading import get_ident
from typing import Any

import numpy as np

from funcgrad.core import (
    Primitive,
    Trace,
    Tracer,
    _op_error,
    bind,
    check_callable,
    check_output,
    check_thread,
    dtype_of,
    get_aval,
    is_float,
    new_trace,
    unsupported_type_message,
    valid_value,
)
from funcgrad.primitives import elementwise as ew
from funcgrad.primitives._base import ident_term, shape_of, unbroadcast
from funcgrad.tree_util import tree_flatten, tree_map, tree_unflatten

__all__ = ["jvp", "vjp", "grad", "value_and_grad", "jacfwd", "jacrev", "hessian", "stop_gradient"]


def zeros_like_value(x: Any) -> Any:
    """Zeros with ``x``'s shape and dtype (traced if ``x`` is a tracer)."""
    if type(x) is np.ndarray:
        return np.zeros(x.shape, x.dtype)
    if isinstance(x, Tracer):
        from funcgrad.primitives.shape import broadcast_to
        return broadcast_to(np.zeros((), x.dtype), x.shape)
    return np.zeros(np.shape(x), dtype_of(x))


def _as_output(x: Any) -> Any:
    """Outputs of transformations are NumPy values, never Python scalars or broadcast views."""
    if type(x) is np.ndarray:
        if x.base is not None and 0 in x.strides and x.size > 1:
            return x.copy()  # a zero-stride view (from broadcasting): give the caller its own array
        return x
    if isinstance(x, Tracer):
        check_output(x)    # a tracer of a finished transformation (or another thread) escaping
    if isinstance(x, (bool, int, float, complex)):
        return np.asarray(x)
    return x


# ------------------------------------------------------------- forward mode ---

class JVPTracer(Tracer):
    __slots__ = ("primal", "tangent")

    def __init__(self, trace: JVPTrace, primal: Any, tangent: Any):
        self._trace = trace
        self.primal = primal
        self.tangent = tangent

    aval = property(lambda self: get_aval(self.primal))
    shape = property(lambda self: shape_of(self.primal))
    dtype = property(lambda self: dtype_of(self.primal))

    def concrete(self) -> Any:
        return self.primal


class JVPTrace(Trace):
    name = "jvp"
    differentiates = True

    def process_primitive(self, prim: Primitive, args: tuple, params: dict) -> Any:
        if self.thread != get_ident():
            check_thread(self)        # a tracer handed to another thread
        primals, tangents, any_t = [], [], False
        for a in args:
            if type(a) is JVPTracer and a._trace is self:
                primals.append(a.primal)
                tangents.append(a.tangent)
                any_t = True
            else:
                primals.append(a)
                tangents.append(None)
        if prim.zero_derivative or not any_t:
            return bind(prim, *primals, **params)
        if prim.jvp is None:
            raise NotImplementedError(f"jvp: primitive {prim.name} has no forward-mode rule")
        out, t = prim.jvp(primals, tangents, **params)
        if t is None or not is_float(out):
            return out
        if dtype_of(out).kind == "c":
            raise _complex_error(self, prim)
        return JVPTracer(self, out, t)


def _output_type_message(where: str, o: Any) -> str:
    return (f"{where}: fun returned a value of type {type(o).__name__} ({o!r:.40}) among its "
            "outputs; differentiated functions must return numeric arrays, numbers, or pytrees "
            "of them" + (" (return other values as auxiliary output with has_aux=True)"
                         if where == "vjp" else ""))


def _complex_error(trace: Trace, prim: Primitive) -> TypeError:
    return TypeError(
        f"{trace.name}: {prim.label} gave a complex result from a value being differentiated; "
        "funcgrad differentiates real-valued computations only (complex intermediates are not "
        "supported, so no derivative rule handles them). Keep the computation real, e.g. "
        "write |a + ib|**2 as a**2 + b**2.")


def _check_tangent(p: Any, t: Any, i: int) -> None:
    for what, v in (("primal", p), ("tangent", t)):
        if not valid_value(v):
            raise TypeError(unsupported_type_message(f"jvp: {what}", i, v))
    if is_float(p) and dtype_of(t).kind not in "fc":
        raise TypeError(f"jvp: tangent {i} has dtype {dtype_of(t)} but its primal is floating point "
                        f"({dtype_of(p)}); pass floating-point tangents of the primal's dtype")
    if shape_of(p) != shape_of(t):
        raise ValueError(f"jvp: tangent {i} has shape {shape_of(t)} but its primal has shape "
                         f"{shape_of(p)}; each tangent must match its primal's shape")
    if is_float(p) and dtype_of(t) != dtype_of(p) and not isinstance(p, (float, int)):
        raise TypeError(f"jvp: tangent {i} has dtype {dtype_of(t)} but its primal has dtype "
                        f"{dtype_of(p)}; pass tangents of the primal's dtype")


def jvp(fun: Callable, primals: Sequence, tangents: Sequence) -> tuple[Any, Any]:
    """Evaluate ``fun(*primals)`` and its directional derivative along ``tangents``."""
    check_callable(fun, "jvp")
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (or lists) with one entry per "
                        f"argument of fun, got {type(primals).__name__} and {type(tangents).__name__}")
    flat_p, tree_p = tree_flatten(tuple(primals))
    flat_t, tree_t = tree_flatten(tuple(tangents))
    if tree_p != tree_t:
        raise ValueError(f"jvp: primals and tangents must have the same structure, got {tree_p} "
                         f"and {tree_t}")
    for i, (p, t) in enumerate(zip(flat_p, flat_t)):
        _check_tangent(p, t, i)
    with new_trace(JVPTrace) as trace:
        ins = [JVPTracer(trace, p, t) if is_float(p) else p for p, t in zip(flat_p, flat_t)]
        out = fun(*tree_unflatten(tree_p, ins))
        out_flat, out_tree = tree_flatten(out)
        ps, ts = [], []
        for o in out_flat:
            if type(o) is JVPTracer and o._trace is trace:
                ps.append(o.primal)
                ts.append(o.tangent)
            else:
                if not valid_value(o):
                    raise TypeError(_output_type_message("jvp", o))
                ps.append(o)
                ts.append(None)
    ts = [zeros_like_value(p) if t is None else t for p, t in zip(ps, ts)]
    return (tree_unflatten(out_tree, [_as_output(p) for p in ps]),
            tree_unflatten(out_tree, [_as_output(t) for t in ts]))


# ------------------------------------------------------------- reverse mode ---

_NO_PARAMS: dict = {}    # shared by input tracers, never mutated


class VJPTracer(Tracer):
    """A value under reverse mode, and its step on the tape.

    The tracer is its own tape entry (one object per primitive applied, not
    two).  ``step`` is ``(prim, params, primals, parents, needed)``: ``prim``
    applied to ``primals`` gave ``primal``; ``parents`` are the tracers among the
    arguments and ``needed`` their argument indices (the cotangents the rule must
    give).  One tuple, built in C, costs less than five attributes.  Inputs
    have ``step=None``; ``pos`` is the index on the tape (inputs count back
    from the end: -1, -2, ...).
    """

    __slots__ = ("primal", "step", "pos")

    def __init__(self, trace: VJPTrace, primal: Any, step: tuple | None, pos: int):
        self._trace = trace
        self.primal = primal
        self.step = step
        self.pos = pos

    aval = property(lambda self: get_aval(self.primal))
    shape = property(lambda self: shape_of(self.primal))
    dtype = property(lambda self: dtype_of(self.primal))

    def concrete(self) -> Any:
        return self.primal


class VJPTrace(Trace):
    """Runs the function on concrete values, recording each primitive applied.

    ``tape`` lists the resulting tracers in execution order, which is a
    topological order: the backward pass walks it in reverse, with no graph
    search.
    """

    name = "grad/vjp"
    differentiates = True

    def __init__(self, level: int):
        super().__init__(level)
        self.tape: list[VJPTracer] = []

    def process_primitive(self, prim: Primitive, args: tuple, params: dict) -> Any:
        if self.thread != get_ident():
            check_thread(self)        # a tracer handed to another thread
        n = len(args)
        if n == 1:                         # the common unary case, without the loop
            a = args[0]                    # (bind chose this trace, so a is one of ours)
            primals, parents, needed = (a.primal,), args, _FIRST
        elif n == 2:                       # binary: at least one of the two is ours
            a, b = args
            if type(a) is VJPTracer and a._trace is self:
                if type(b) is VJPTracer and b._trace is self:
                    primals, parents, needed = (a.primal, b.primal), args, _BOTH
                else:
                    primals, parents, needed = (a.primal, b), (a,), _FIRST
            else:
                primals, parents, needed = (a, b.primal), (b,), _SECOND
        else:
            primals, parents, needed = [], [], []
            i = 0
            for a in args:
                if type(a) is VJPTracer and a._trace is self:
                    primals.append(a.primal)
                    parents.append(a)
                    needed.append(i)
                else:
                    primals.append(a)
                i += 1
            needed = tuple(needed)
        # at level 1 no outer transformation exists, so the primals are concrete
        if self.level > 1 and any(isinstance(p, Tracer) for p in primals):
            out = bind(prim, *primals, **params)
        else:
            try:
                out = prim.impl(*primals, **params) if params else prim.impl(*primals)
            except Exception as e:
                raise _op_error(prim, tuple(primals), params, e) from None
        if prim.vjp is None:               # zero-derivative primitives have no rule
            if prim.zero_derivative or not parents:
                return out
            raise NotImplementedError(f"grad: primitive {prim.name} has no reverse-mode rule")
        kind = out.dtype.kind if type(out) is np.ndarray else getattr(out, "dtype", _F64).kind
        if kind != "f" or not parents:
            if kind == "c" and parents:
                raise _complex_error(self, prim)
            return out
        tape = self.tape
        t = _new(VJPTracer)     # VJPTracer(...) without the __init__ call: the hot path
        t._trace = self
        t.primal = out
        t.step = (prim, params, primals, parents, needed)
        t.pos = len(tape)
        tape.append(t)
        return t


_new = object.__new__
_F64 = np.dtype(np.float64)
_FIRST, _SECOND, _BOTH = (0,), (1,), (0, 1)


def _in_dtype(c: Any, x: Any, concrete: bool) -> Any:
    """Cotangent ``c`` in its operand ``x``'s dtype: a float32 operand of a float64 result
    (``concatenate([x64, y32])``, ``dot(x64, y32)``) gets a float32 gradient.  Undone
    here once for every rule; elementwise rules get it from ``unbroadcast``."""
    if type(c) is np.ndarray and type(x) is np.ndarray and c.dtype is x.dtype:
        return c
    if type(x) in (float, int):          # Python numbers are weakly typed: no dtype to keep
        return c
    dx = dtype_of(x)
    if dx.kind != "f" or dtype_of(c) == dx:
        return c
    return np.asarray(c).astype(dx, copy=False) if concrete else ew.convert(c, dx)


def backward_pass(tape: list[VJPTracer], roots: list[VJPTracer], cts: list,
                  n_inputs: int) -> list:
    """Propagate output cotangents back through ``tape``.

    A plain loop over the tape in reverse (no recursion, however deep the graph);
    steps that received no cotangent are skipped.  Cotangents live in a list
    indexed by each tracer's ``pos``: the tape's steps first, then the
    ``n_inputs`` inputs (negative positions), whose entries are the result.
    """
    # Nothing can be a tracer when the forward pass ran at level 1 (no outer
    # transformation) and the cotangents are concrete: then the elementwise terms
    # run as plain NumPy (raw_terms), without the binders' dispatch
    concrete = bool(tape) and tape[0]._trace.level == 1
    if concrete:
        for c in cts:
            if isinstance(c, Tracer):
                concrete = False
    add = np.add if concrete else ew.add
    acc: list = [None] * (len(tape) + n_inputs)
    for r, ct in zip(roots, cts):
        prev = acc[r.pos]
        acc[r.pos] = ct if prev is None else add(prev, ct)
    for n in reversed(tape):
        k = n.pos
        g = acc[k]
        if g is None:
            continue
        acc[k] = None                  # freed as soon as it is used
        prim, params, primals, parents, needed = n.step
        terms = prim.raw_terms if concrete else prim.vjp_terms
        if len(parents) == 1:          # the common case: one traced operand
            if terms is not None and not params:     # elementwise: its term, then unbroadcast
                i = needed[0]
                term = terms[i]
                if term is None:
                    continue
                if len(primals) == 1:   # unary: the term keeps the operand's shape and dtype
                    c = term(g, n.primal, primals[0])
                else:
                    x = primals[i]
                    c = g if term is ident_term else term(g, n.primal, *primals)
                    if not (type(c) is np.ndarray and type(x) is np.ndarray
                            and c.shape == x.shape and c.dtype is x.dtype):
                        c = unbroadcast(c, x)
            else:
                i = needed[0]
                c = (prim.vjp(g, n.primal, primals, needed, **params) if params
                     else prim.vjp(g, n.primal, primals, needed))[i]
                if c is not None:
                    c = _in_dtype(c, primals[i], concrete)
            if c is not None:
                k = parents[0].pos
                prev = acc[k]
                acc[k] = c if prev is None else add(prev, c)
            continue
        if terms is not None and not params:   # elementwise with several traced operands
            primal = n.primal
            for i, p in zip(needed, parents):
                term = terms[i]
                if term is None:
                    continue
                x = primals[i]
                c = g if term is ident_term else term(g, primal, *primals)
                if not (type(c) is np.ndarray and type(x) is np.ndarray and c.shape == x.shape
                        and c.dtype is x.dtype):
                    c = unbroadcast(c, x)
                k = p.pos
                prev = acc[k]
                acc[k] = c if prev is None else add(prev, c)
            continue
        in_cts = (prim.vjp(g, n.primal, primals, needed, **params) if params
                  else prim.vjp(g, n.primal, primals, needed))
        for i, p in zip(needed, parents):
            c = in_cts[i]
            if c is None:
                continue
            c = _in_dtype(c, primals[i], concrete)
            k = p.pos
            prev = acc[k]
            acc[k] = c if prev is None else add(prev, c)
    return acc


def _strip(x: Any, trace: VJPTrace) -> Any:
    return x.primal if type(x) is VJPTracer and x._trace is trace else x


def vjp(fun: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """``(fun(*primals), vjp_fn)``, with ``vjp_fn(ct)`` the cotangent for each primal.

    With ``has_aux=True``, ``fun`` returns ``(output, aux)`` and the result is
    ``(output, vjp_fn, aux)``.
    """
    check_callable(fun, "vjp")
    flat, in_tree = tree_flatten(primals)
    return _vjp(fun, flat, in_tree, has_aux)


def _vjp(fun: Callable, flat: list, in_tree: Any, has_aux: bool) -> tuple:
    """``vjp`` on already flattened primals (``in_tree`` is the tuple of arguments)."""
    out_primals, out_tree, bwd, aux = _vjp_flat(fun, flat, in_tree, has_aux)

    def vjp_fn(ct: Any) -> tuple:
        ct_flat, ct_tree = tree_flatten(ct)
        if ct_tree != out_tree:
            raise ValueError(f"vjp_fn: the cotangent must have the structure of fun's output, "
                             f"{out_tree}, got {ct_tree}")
        for i, (c, o) in enumerate(zip(ct_flat, out_primals)):
            if not valid_value(c):
                raise TypeError(unsupported_type_message("vjp_fn: cotangent", i, c))
            if shape_of(c) != shape_of(o):
                raise ValueError(f"vjp_fn: cotangent {i} has shape {shape_of(c)}, the output "
                                 f"has shape {shape_of(o)}")
        # a cotangent takes its output's dtype (so float32 gradients stay float32)
        ct_flat = [c if type(c) in (int, float) or dtype_of(c) == dtype_of(o)
                   else ew.convert(c, dtype_of(o)) for c, o in zip(ct_flat, out_primals)]
        return tuple(tree_unflatten(in_tree, bwd(ct_flat)))

    primal_out = tree_unflatten(out_tree, out_primals)
    if has_aux:
        return primal_out, vjp_fn, aux
    return primal_out, vjp_fn


def _vjp_flat(fun: Callable, flat: list, in_tree: Any, has_aux: bool,
              check_outputs: bool = True) -> tuple:
    """Run ``fun`` on VJP tracers: ``(flat outputs, output tree, bwd, aux)``, where
    ``bwd(flat cotangents)`` gives the flat input cotangents.  ``bwd`` trusts its
    input (one cotangent per output, of its shape and dtype): ``vjp_fn`` checks
    what users pass, ``grad`` makes its own."""
    with new_trace(VJPTrace) as trace:
        tracers = []
        for x in flat:
            if x.dtype.kind in "fc" if type(x) is np.ndarray else is_float(x):
                tracers.append(VJPTracer(trace, x, None, -1 - len(tracers)))
            else:
                tracers.append(x)
        out = fun(*tree_unflatten(in_tree, tracers))
        aux = None
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                got = (f"a single array of shape {shape_of(out)}" if isinstance(out, Tracer)
                       else f"a {type(out).__name__}" + (
                           f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
                raise TypeError("vjp/grad with has_aux=True: fun must return a pair (output, aux), "
                                f"got {got}")
            out, aux = out
            aux = tree_map(lambda a: _as_output(_strip(a, trace)), aux)
        out_flat, out_tree = tree_flatten(out)
        roots = [o if type(o) is VJPTracer and o._trace is trace else None for o in out_flat]
        for o, r in zip(out_flat, roots) if check_outputs else ():   # (grad checks its own)
            if r is None and not valid_value(o):
                raise TypeError(_output_type_message("vjp", o))
        tape, trace.tape = trace.tape, []     # the tape's tracers point to the trace: no cycle
        out_primals = [_as_output(o.primal if r is not None else o) for o, r in zip(out_flat, roots)]

    def bwd(ct_flat: list) -> list:
        if len(roots) == 1:             # one output (grad): no pairing
            r = roots[0]
            rs, cs = ([r], ct_flat) if r is not None else ([], [])
        else:
            rs = [r for r in roots if r is not None]
            cs = [c for r, c in zip(roots, ct_flat) if r is not None]
        got = backward_pass(tape, rs, cs, len(flat))
        res = []
        for x, t in zip(flat, tracers):
            g = got[t.pos] if type(t) is VJPTracer else None
            res.append(zeros_like_value(x) if g is None else _as_output(g))
        return res

    return out_primals, out_tree, bwd, aux


# ------------------------------------------------------------------- grad ---

def _plain_argnums(argnums: Any) -> Any:
    """A NumPy integer ``argnums`` as the int it is (it selects a single argument)."""
    return int(argnums) if isinstance(argnums, np.integer) else argnums


def _argnums_tuple(argnums: int | Sequence[int], nargs: int, where: str) -> tuple[int, ...]:
    if type(argnums) is int and 0 <= argnums < nargs:
        return _SINGLE[argnums] if argnums < len(_SINGLE) else (argnums,)   # the common case
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if not isinstance(nums, (tuple, list, range)) or not all(
            isinstance(k, (int, np.integer)) for k in nums):
        raise TypeError(f"{where}: argnums must be an int or a tuple of ints (positions of "
                        f"positional arguments), got {argnums!r}")
    if not nums:
        raise ValueError(f"{where}: argnums must name at least one argument")
    for k in nums:
        if not -nargs <= k < nargs:
            raise ValueError(f"{where}: argnums={argnums!r} is out of range: the function was "
                             f"called with {nargs} positional argument{'s' if nargs != 1 else ''}")
    res = tuple(int(k) % nargs for k in nums)
    if len(set(res)) != len(res):
        raise ValueError(f"{where}: argnums={argnums!r} names an argument twice; list each "
                         "argument once")
    return res


_SINGLE = tuple((k,) for k in range(16))


def _flatten_diff_args(args: tuple, nums: tuple, where: str) -> tuple[list, Any]:
    """Flatten the differentiated arguments once, checking every leaf is a float array."""
    flat, in_tree = tree_flatten(tuple(args[k] for k in nums))
    for x in flat:                      # the common case: float arrays only, nothing to say
        t = type(x)
        if not (x.dtype.kind == "f" if t is np.ndarray else t is np.float64 or t is np.float32):
            break
    else:
        return flat, in_tree
    i = 0
    for k, child in zip(nums, in_tree.children()):
        for x in flat[i:i + child.num_leaves]:
            dt = x.dtype if type(x) is np.ndarray else get_aval(x).dtype if isinstance(
                x, (Tracer, np.generic, bool, int, float, complex)) else None
            if dt is None:
                raise TypeError(f"{where}: argument {k} contains a value of type "
                                f"{type(x).__name__}, which cannot be differentiated; pass arrays "
                                "(or pytrees of arrays), and mark other arguments static or leave "
                                "them out of argnums")
            if dt.kind not in "f":
                raise TypeError(f"{where} requires real-valued floating-point inputs, but argument "
                                f"{k} has dtype {dt}. Convert it with x.astype(float) (or "
                                "np.float32/np.float64), or differentiate with respect to other "
                                "arguments via argnums.")
        i += child.num_leaves
    return flat, in_tree


def _partial(fun: Callable, args: tuple, nums: tuple) -> Callable:
    def f(*dyn: Any) -> Any:
        full = list(args)
        for k, d in zip(nums, dyn):
            full[k] = d
        return fun(*full)
    return f


def value_and_grad(fun: Callable, argnums: int | Sequence[int] = 0,
                   has_aux: bool = False) -> Callable:
    """``fun``'s value and its gradient with respect to argument(s) ``argnums``.

    Returns ``(value, grad)``, or ``((value, aux), grad)`` with ``has_aux=True``.
    """
    return _value_and_grad(fun, argnums, has_aux, "value_and_grad")


def _value_and_grad(fun: Callable, argnums: int | Sequence[int], has_aux: bool,
                    where: str) -> Callable:
    check_callable(fun, where)
    argnums = _plain_argnums(argnums)
    def vg(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums_tuple(argnums, len(args), where)
        flat, in_tree = _flatten_diff_args(args, nums, where)
        f = _partial((lambda *a: fun(*a, **kwargs)) if kwargs else fun, args, nums)
        outs, out_tree, bwd, aux = _vjp_flat(f, flat, in_tree, has_aux, False)
        out = outs[0] if out_tree.node_type == "leaf" else tree_unflatten(out_tree, outs)
        if not (type(out) is np.ndarray and out.shape == () and out.dtype.kind == "f"):
            _check_scalar_output(out, where, has_aux)
        g = tree_unflatten(in_tree, bwd([out.dtype.type(1)]))   # a NumPy scalar: a literal
        g = g[0] if isinstance(argnums, int) else tuple(g)           # in traced graphs
        return ((out, aux), g) if has_aux else (out, g)
    vg.__name__ = f"value_and_grad({getattr(fun, '__name__', 'fun')})"
    vg.__doc__ = fun.__doc__
    return vg


def _check_scalar_output(out: Any, where: str, has_aux: bool) -> None:
    """``grad`` differentiates real scalars only: say so, and what to use instead."""
    aval = get_aval(out) if valid_value(out) else None     # None, str, containers: no
    if aval is None or aval.shape != () or aval.dtype.kind != "f":
        desc = (f"shape {aval.shape} and dtype {aval.dtype}" if aval is not None
                else f"a {type(out).__name__}")
        raise TypeError(f"{where} requires fun to return a real scalar (a 0-d floating-point "
                        f"array), but it returned {desc}. For non-scalar outputs use "
                        "fg.jacrev (the full Jacobian) or fg.vjp (a vector-Jacobian product)"
                        + (", and has_aux=True to return extra values" if not has_aux else ""))


def grad(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of scalar-valued ``fun`` with respect to argument(s) ``argnums``.

    The result has the pytree structure (and dtypes) of the differentiated
    argument; with a tuple ``argnums`` it is a tuple of such gradients.
    """
    vg = _value_and_grad(fun, argnums, has_aux, "grad")

    def g(*args: Any, **kwargs: Any) -> Any:
        (val, grads) = vg(*args, **kwargs)
        return (grads, val[1]) if has_aux else grads
    g.__name__ = f"grad({getattr(fun, '__name__', 'fun')})"
    g.__doc__ = fun.__doc__
    return g


def stop_gradient(x: Any) -> Any:
    """``x`` unchanged, but treated as a constant by differentiation."""
    from funcgrad.primitives.elementwise import stop_gradient_p
    return tree_map(lambda a: bind(stop_gradient_p, a), x)


# -------------------------------------------------------------- Jacobians ---

def _std_basis(leaves: list) -> list:
    """One batched one-hot tangent per leaf: leaf i gets shape ``(N,) + leaf.shape``."""
    sizes = [math.prod(shape_of(x)) for x in leaves]
    n = sum(sizes)
    out, start = [], 0
    for x, s in zip(leaves, sizes):
        b = np.zeros((n, s), dtype_of(x))
        b[np.arange(start, start + s), np.arange(s)] = 1
        out.append(b.reshape((n,) + shape_of(x)))
        start += s
    return out


def _split_rows(y: Any, leaves: list, axis: int) -> list:
    """Split axis ``axis`` of ``y`` (length = total size of ``leaves``) per leaf, reshaped."""
    from funcgrad import numpy as fnp
    res, start = [], 0
    ys = shape_of(y)
    ax = axis % len(ys)
    for x in leaves:
        s = math.prod(shape_of(x))
        idx = (slice(None),) * ax + (slice(start, start + s),)
        part = fnp._getitem(y, idx) if (start, s) != (0, ys[ax]) else y
        res.append(fnp.reshape(part, ys[:ax] + shape_of(x) + ys[ax + 1:]))
        start += s
    return res


def _no_jacobian(y: Any, in_tree: Any, argnums: Any) -> Any:
    """The Jacobian when the input or the output holds no arrays (as ``grad`` of ``None``):
    the output's structure, each leaf holding the (empty) input structure."""
    flat_out, out_tree = tree_flatten(y)
    empty = tree_unflatten(in_tree, [None] * in_tree.num_leaves) if flat_out else None
    per = empty[0] if isinstance(argnums, int) and flat_out else empty
    return tree_unflatten(out_tree, [per] * len(flat_out))


def jacfwd(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian by forward mode: one batched ``jvp`` over the input's standard basis.

    Output shape per leaf: ``out.shape + in.shape``.
    """
    from funcgrad.batching import vmap

    check_callable(fun, "jacfwd")
    argnums = _plain_argnums(argnums)

    def jac(*args: Any) -> Any:
        nums = _argnums_tuple(argnums, len(args), "jacfwd")
        flat_in, in_tree = _flatten_diff_args(args, nums, "jacfwd")
        f = _partial(fun, args, nums)
        dyn = tuple(args[k] for k in nums)
        if not flat_in:                  # nothing to differentiate: the empty structure
            return _no_jacobian(f(*dyn), in_tree, argnums)
        basis = _std_basis(flat_in)

        def push(*ts: Any) -> Any:
            return jvp(f, dyn, tree_unflatten(in_tree, ts))[1]
        out_t = vmap(push, in_axes=0, out_axes=-1)(*basis)
        out_flat, out_tree = tree_flatten(out_t)
        per_out = [tree_unflatten(in_tree, _split_rows(y, flat_in, -1)) for y in out_flat]
        if isinstance(argnums, int):
            per_out = [p[0] for p in per_out]
        return tree_unflatten(out_tree, per_out)
    return jac


def jacrev(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian by reverse mode: one ``vmap`` of the pullback over the output's basis."""
    from funcgrad.batching import vmap

    check_callable(fun, "jacrev")
    argnums = _plain_argnums(argnums)

    def jac(*args: Any) -> Any:
        nums = _argnums_tuple(argnums, len(args), "jacrev")
        flat_in, in_tree = _flatten_diff_args(args, nums, "jacrev")
        y, pullback = _vjp(_partial(fun, args, nums), flat_in, in_tree, False)
        flat_out, out_tree = tree_flatten(y)
        if not flat_in or not flat_out:  # nothing to differentiate, or nothing to: empty
            return _no_jacobian(y, in_tree, argnums)
        basis = _std_basis(flat_out)
        cts = vmap(lambda *c: pullback(tree_unflatten(out_tree, c)))(*basis)
        flat_ct, in_tree = tree_flatten(cts)           # leaves: (M,) + in.shape
        # per input leaf, split the leading M axis per output leaf
        split = [_split_rows(g, flat_out, 0) for g in flat_ct]
        per_out = []
        for j in range(len(flat_out)):
            tree = tree_unflatten(in_tree, [s[j] for s in split])
            per_out.append(tree[0] if isinstance(argnums, int) else tree)
        return tree_unflatten(out_tree, per_out)
    return jac


def hessian(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Hessian of scalar ``fun``: ``jacfwd(jacrev(fun))``."""
    check_callable(fun, "hessian")
    argnums = _plain_argnums(argnums)
    h = jacfwd(jacrev(fun, argnums), argnums)

    def hess(*args: Any) -> Any:
        # bad argnums or inputs are reported as hessian's, not the inner jacfwd's
        _flatten_diff_args(args, _argnums_tuple(argnums, len(args), "hessian"), "hessian")
        return h(*args)
    return hess
