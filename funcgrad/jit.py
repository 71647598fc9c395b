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

from funcgrad.core import Tracer, check_callable, get_aval
from funcgrad.ir import (
    Jaxpr,
    Literal,
    _check_leaf,
    _static_tuple,
    dynamic_call,
    eval_jaxpr_flat,
    split_static,
    static_keywords_as_positions,
    static_positions,
    trace_to_jaxpr,
)
from funcgrad.passes import optimize
from funcgrad.primitives.indexing import index_parts
from funcgrad.primitives.shape import _broadcast_impl
from funcgrad.tree_util import unflattener

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
    try:
        arr = np.asarray(val, dt)
    except OverflowError:        # x < 300 for uint8 x: NumPy compares the Python int exactly
        return repr(val)
    name = f"_lit{len(ns)}"
    ns[name] = arr
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


# ------------------------------------------------------ horizontal stacking ---
# A graph often holds many independent equations of one ufunc on small arrays of one
# shape: in the gradient of a chain of elementwise ops, cos(x_i) and t_i * t_i for every
# step i depend only on the forward pass.  NumPy costs about as much per call on 16
# numbers as on 1000, so such a group runs as one call on the stacked operands.  The
# operands are stacked for free: each is written by its producer straight into a row
# of a buffer (``np.tanh(e, b0_3)``), and the stacked result is unpacked into row views
# for the equations that use the members one by one.  Only equations whose inputs are
# ready before the group's first member are stacked, so no equation moves past one it
# depends on; the values are those of the unstacked calls (same ufunc, same operands).

_STACK_MIN = 4           # calls a group must save (members minus copies into its buffer)
_STACK_MAX_SIZE = 4096   # per member: on bigger arrays the per-call cost no longer matters


class _Buffer:
    """Rows filled by their producers (or copied in), allocated when the function starts."""

    __slots__ = ("vars", "aval", "name")

    def __init__(self, vars_: list, aval: Any):
        self.vars, self.aval, self.name = vars_, aval, ""


class _Group:
    """Equations ``members`` (in row order) of one ufunc, run as one call at ``place``.

    ``slots`` holds, per operand, ``None`` where each member has its own value (taken
    from rows ``lo:hi`` of ``src``, a :class:`_Buffer` or an earlier group) or the atom
    every member shares.
    """

    __slots__ = ("members", "slots", "prim", "place", "src", "lo", "hi", "name", "unpack", "first")

    def __init__(self, members: list, slots: tuple, prim: Any, place: int):
        self.members, self.slots, self.prim, self.place = members, slots, prim, place
        self.src: Any = None
        self.lo = self.hi = 0
        self.name = ""
        self.unpack = False      # some member's result is used on its own
        self.first: Any = None   # the var in the first row of a buffer source


def _stack_key(e: Any, produced: set) -> tuple | None:
    """What equations must share to be stacked together, or None if ``e`` cannot be."""
    prim = e.primitive
    out = e.outputs[0].aval
    if not _plain_ufunc(e) or not out.ndim or out.weak_type or out.size > _STACK_MAX_SIZE:
        return None
    ins = e.inputs
    # the varying operand: the only input, an intermediate, or both operands alike (t * t)
    if len(ins) == 1 or all(a is ins[0] for a in ins):
        vary = ins[0]
    else:
        inter = [a for a in ins if not isinstance(a, Literal) and id(a) in produced]
        if len(inter) != 1:
            return None
        vary = inter[0]
    if isinstance(vary, Literal) or vary.aval != out:
        return None
    slots = tuple(None if a is vary else
                  ("lit", type(a.val), repr(a.val), a.aval.dtype, a.aval.weak_type)
                  if isinstance(a, Literal) else ("var", id(a)) for a in ins)
    return (prim.name, out.shape, out.dtype, slots)


def _stack_plan(jaxpr: Jaxpr) -> tuple[dict, dict]:
    """Groups to run stacked: ``(group of each member eqn, buffer of each var written or
    copied into a buffer row)``."""
    eqns = jaxpr.eqns
    produced = {id(e.outputs[0]): k for k, e in enumerate(eqns)}
    cands: dict[tuple, list] = {}
    for k, e in enumerate(eqns):
        key = _stack_key(e, produced)
        if key is not None:
            cands.setdefault(key, []).append(k)
    groups: list[_Group] = []
    member_of: dict[int, _Group] = {}
    row_of: dict[int, _Buffer] = {}       # var id -> the buffer it is written or copied into
    row_in_group: dict[int, _Group] = {}  # var id -> group whose stacked result holds it
    avail = dict(produced)                # where each intermediate is ready
    for key, members in sorted(((k, m) for k, m in cands.items() if len(m) >= _STACK_MIN),
                               key=lambda km: km[1][0]):
        place = members[0]
        e0 = eqns[place]
        slot_v = key[3].index(None)
        varying = [eqns[k].inputs[slot_v] for k in members]
        if len({id(v) for v in varying}) != len(varying) or any(
                avail.get(id(v), -1) >= place for v in varying) or any(
                id(eqns[k].outputs[0]) in row_of for k in members):
            continue
        g = _Group(members, tuple(None if a is varying[0] else a for a in e0.inputs),
                   e0.primitive, place)
        if not _place_rows(g, varying, eqns, produced, row_of, row_in_group):
            continue
        groups.append(g)
        for k in g.members:
            member_of[k] = g
            avail[id(eqns[k].outputs[0])] = place
            row_in_group[id(eqns[k].outputs[0])] = g
    # a member's result is unpacked unless every use is as another group's stacked operand
    for k, e in enumerate(eqns):
        g2 = member_of.get(k)
        for i, a in enumerate(e.inputs):
            g = row_in_group.get(id(a))
            if g is not None and not (g2 is not None and g2.src is g and g2.slots[i] is None):
                g.unpack = True
    for a in jaxpr.outvars:
        g = row_in_group.get(id(a))
        if g is not None:
            g.unpack = True
    for g in groups:
        if isinstance(g.src, _Buffer):
            g.lo = next(i for i, v in enumerate(g.src.vars) if v is g.first)
            g.hi = g.lo + len(g.members)
    return member_of, row_of


def _place_rows(g: _Group, varying: list, eqns: list, produced: dict, row_of: dict,
                row_in_group: dict) -> bool:
    """Find or make rows holding ``varying`` contiguously; order ``g.members`` to match."""
    order = {id(v): k for v, k in zip(varying, g.members)}
    owners = {id(row_in_group[id(v)]) if id(v) in row_in_group else None for v in varying}
    if None not in owners and len(owners) == 1:            # all results of one earlier group
        h = row_in_group[id(varying[0])]
        rows = {id(eqns[k].outputs[0]): r for r, k in enumerate(h.members)}
        idx = sorted(rows[id(v)] for v in varying)
        if idx != list(range(idx[0], idx[0] + len(idx))):
            return False
        g.src, g.lo, g.hi = h, idx[0], idx[-1] + 1
        g.members = [order[id(eqns[k].outputs[0])] for k in h.members[g.lo:g.hi]]
        return True
    if any(id(v) in row_in_group for v in varying):
        return False
    placed = [v for v in varying if id(v) in row_of]
    new = sorted((v for v in varying if id(v) not in row_of), key=lambda v: produced.get(id(v), -1))
    copies = sum(1 for v in new   # arguments and constants are copied in, as are results
                 if id(v) not in produced or not _plain_ufunc(eqns[produced[id(v)]]))
    if len(varying) - copies < _STACK_MIN:
        return False
    if not placed:
        buf = _Buffer(new, varying[0].aval)
    else:
        buf = row_of[id(placed[0])]
        if any(row_of[id(v)] is not buf for v in placed):
            return False
        pos = {id(v): i for i, v in enumerate(buf.vars)}
        idx = sorted(pos[id(v)] for v in placed)
        if idx != list(range(idx[0], idx[0] + len(idx))):
            return False
        if not new:
            pass
        elif idx[-1] == len(buf.vars) - 1:
            buf.vars.extend(new)
        elif idx[0] == 0:
            buf.vars[:0] = new
        else:
            return False
    for v in new:
        row_of[id(v)] = buf
    pos = {id(v): i for i, v in enumerate(buf.vars)}
    g.src = buf               # rows lo:hi are set once every buffer is final (rows may be
    g.members = [order[id(v)] for v in sorted(varying, key=lambda v: pos[id(v)])]  # prepended)
    g.first = varying[min(range(len(varying)), key=lambda i: pos[id(varying[i])])]
    return True


def _source_literal(v: Any) -> bool:
    """Whether ``str(v)`` is ``v`` as Python source (so a template may paste it).

    Anything else (a string, a float such as ``nan``, an object) goes to the impl
    as a bound argument instead: a parameter's text never becomes code.
    """
    if isinstance(v, tuple):
        return all(_source_literal(x) for x in v)
    return v is None or isinstance(v, (bool, int, np.integer, np.bool_, np.dtype))


def _plain_ufunc(e: Any) -> bool:
    """Is equation ``e`` a ufunc called on its operands alone, so that it can take an
    ``out`` (a dead operand's buffer, or a row of a stacking buffer)?"""
    return (isinstance(e.primitive.impl, np.ufunc) and not e.params
            and len(e.inputs) == e.primitive.impl.nin)


def _c_ordered(jaxpr: Jaxpr) -> set[int]:
    """Vars whose arrays are C-ordered whatever the arguments' layouts: C-ordered
    constants, results of matmul (NumPy allocates them in C order), of ufuncs, ``step``
    and reductions whose operands of rank >= 2 are themselves C-ordered (NumPy keeps its
    operands' order), and reshapes and scatters (copies) of C-ordered arrays.
    Writing into such a buffer in place keeps the layout eager NumPy would give."""
    known = {id(v) for v, c in zip(jaxpr.constvars, jaxpr.consts)
             if type(c) is np.ndarray and c.flags.c_contiguous}

    def c(a: Any) -> bool:
        return isinstance(a, Literal) or a.aval.ndim < 2 or id(a) in known

    for e in jaxpr.eqns:
        name = e.primitive.name
        if name == "matmul" or (
                (_plain_ufunc(e) or name == "step" or name.startswith("reduce_"))
                and all(c(a) for a in e.inputs)) or (
                name in ("reshape", "scatter") and c(e.inputs[0])):   # a C view; a C copy
            known.add(id(e.outputs[0]))
    return known


def _liveness(jaxpr: Jaxpr, member_of: dict, row_of: dict) -> tuple[dict[int, int], dict[int, int]]:
    """(last step using each buffer, alias root of each var), with stacked groups run at
    their place: a var written into a buffer row is that buffer's alias, a group member's
    result an alias of the group's stacked result."""
    root: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, e in enumerate(jaxpr.eqns):
        g = member_of.get(k)
        if g is not None:
            if k != g.place:
                continue
            uses = [id(g.src)] + [id(a) for a in g.slots if a is not None and not isinstance(a, Literal)]
            for u in uses:
                last[root.get(u, u)] = k
            root[id(g)] = id(g)
            for m in g.members:
                root[id(jaxpr.eqns[m].outputs[0])] = id(g)
            continue
        for a in e.inputs:
            if not isinstance(a, Literal):
                r = root.get(id(a), id(a))
                last[r] = k
        out = id(e.outputs[0])
        buf = row_of.get(out)
        if buf is not None and _plain_ufunc(e):
            root[out] = id(buf)
        elif _is_view(e) and not isinstance(e.inputs[0], Literal):
            root[out] = root.get(id(e.inputs[0]), id(e.inputs[0]))
        else:
            root[out] = out
    end = len(jaxpr.eqns)
    for a in jaxpr.outvars:
        if not isinstance(a, Literal):
            last[root.get(id(a), id(a))] = end
    return last, root


def _ufunc_call(u: np.ufunc, args: list, out: str, ns: dict) -> str:
    """``u(*args)`` writing into ``out``, given positionally: NumPy parses that faster
    than ``out=``, which matters for small arrays (``np.maximum``/``np.minimum``
    deprecate a third positional argument)."""
    if u in (np.maximum, np.minimum):
        out = f"out={out}"
    return f"{_ufunc_name(u, ns)}({', '.join(args)}, {out})"


def _emit_buffers(row_of: dict, names: dict, ns: dict, lines: list, owned: set) -> dict:
    """Allocate the stacking buffers, unpack their rows and copy arguments in; returns
    the row name of each var that goes into a buffer."""
    bufs = list({id(b): b for b in row_of.values()}.values())
    rows: dict[int, str] = {}
    if bufs:
        ns["_np_empty"], ns["_copyto"] = np.empty, np.copyto
    for j, b in enumerate(bufs):
        b.name = f"b{j}"
        ns[f"_dt{j}"] = b.aval.dtype
        n = len(b.vars)
        lines.append(f"    {b.name} = _np_empty({(n,) + tuple(b.aval.shape)!r}, _dt{j})")
        names_j = [f"{b.name}_{i}" for i in range(n)]
        lines.append(f"    {', '.join(names_j)}{',' if n == 1 else ''} = {b.name}")
        owned.add(id(b))
        for v, r in zip(b.vars, names_j):
            rows[id(v)] = r
            if id(v) in names:                   # an argument or a constant
                lines.append(f"    _copyto({r}, {names[id(v)]})")
    return rows


def _emit_group(g: _Group, eqns: list, src: Callable, names: dict, ns: dict, lines: list,
                owned: set, last: dict, root: dict) -> None:
    """One ufunc call for the stacked group ``g``, then its rows for their users."""
    k = g.place
    e0 = eqns[g.members[0]]
    like = [a.aval.dtype for a in e0.inputs if not a.aval.weak_type]
    n_src = len(g.src.vars) if isinstance(g.src, _Buffer) else len(g.src.members)
    whole = (g.lo, g.hi) == (0, n_src)
    stacked = g.src.name if whole else f"{g.src.name}[{g.lo}:{g.hi}]"
    args = [stacked if a is None else src(a, like) for a in g.slots]
    g.name = f"s{k}"
    if whole and id(g.src) in owned and last.get(id(g.src)) == k and root.get(id(g.src), id(g.src)) \
            == id(g.src):
        expr = _ufunc_call(g.prim.impl, args, g.src.name, ns)    # the stacked operand is dead
        owned.discard(id(g.src))
    else:
        expr = f"{_ufunc_name(g.prim.impl, ns)}({', '.join(args)})"
    lines.append(f"    {g.name} = {expr}")
    owned.add(id(g))
    outs = [f"v{m}" for m in g.members]
    for m, name in zip(g.members, outs):
        names[id(eqns[m].outputs[0])] = name
    if g.unpack:
        lines.append(f"    {', '.join(outs)}{',' if len(outs) == 1 else ''} = {g.name}")


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

    # a closed-over tracer of an outer transformation among the constants makes the
    # intermediates tracers too, which have no buffers to write into
    inplace = not any(isinstance(c, Tracer) for c in jaxpr.consts)
    member_of, row_of = _stack_plan(jaxpr) if inplace else ({}, {})
    last, root = _liveness(jaxpr, member_of, row_of)
    c_ordered = _c_ordered(jaxpr) if inplace else set()
    owned: set[int] = set()          # buffers this function allocated (safe to overwrite)
    lines = []
    for i, (v, c) in enumerate(zip(jaxpr.constvars, jaxpr.consts)):
        names[id(v)] = f"c{i}"
        ns[f"c{i}"] = c
    params = ", ".join(f"a{i}" for i in range(len(jaxpr.invars)))
    for i, v in enumerate(jaxpr.invars):
        names[id(v)] = f"a{i}"
    lines.append(f"def _compiled({params}):")
    rows = _emit_buffers(row_of, names, ns, lines, owned)
    for k, e in enumerate(jaxpr.eqns):
        g = member_of.get(k)
        if g is not None:
            if k == g.place:
                _emit_group(g, jaxpr.eqns, src, names, ns, lines, owned, last, root)
            continue
        out = f"v{k}"
        ov = e.outputs[0]
        like = [a.aval.dtype for a in e.inputs if not a.aval.weak_type]   # strongly typed inputs
        args = [src(a, like) for a in e.inputs]
        prim = e.primitive
        reuse = None
        row = rows.get(id(ov))
        if row is not None and root.get(id(ov)) != id(ov):   # written into its buffer row
            lines.append(f"    {out} = {_ufunc_call(prim.impl, args, row, ns)}")
            names[id(ov)] = out
            continue
        if inplace and ov.aval.ndim and _plain_ufunc(e):
            for a in e.inputs:
                if (not isinstance(a, Literal) and id(a) in owned and root.get(id(a)) == id(a)
                        and last.get(id(a)) == k and a.aval == ov.aval):
                    reuse = a
                    break
        if reuse is not None:
            buf = names[id(reuse)]
            expr = _ufunc_call(prim.impl, args, buf, ns)
            if reuse.aval.ndim >= 2 and id(reuse) not in c_ordered:
                # NumPy gives a new result C order unless every operand is Fortran-ordered
                # (a ufunc of x.T); writing into a Fortran buffer would change the layout, and
                # with it the summation order of a later reduction: reuse C buffers only
                # (checked at run time where the layout depends on the arguments')
                expr = (f"{expr} if {buf}.flags.c_contiguous else "
                        f"{_ufunc_name(prim.impl, ns)}({', '.join(args)})")
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
                _source_literal(v) for v in e.params.values()) and not (
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
        if row is not None:                 # a producer that cannot write into its row
            lines.append(f"    _copyto({row}, {out})")
        if not _is_view(e):
            owned.add(id(ov))
        dead = [names[id(a)] for a in {id(a): a for a in e.inputs}.values()
                if not isinstance(a, Literal) and names[id(a)].startswith("v")
                and a.aval.size >= _DEL_MIN_SIZE and last.get(root.get(id(a), id(a))) == k
                and root.get(id(a), id(a)) == id(a) and a is not reuse]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    # an output that is an input or a (cached) constant, or a view of one (after the graph
    # passes, (a * 1.0).T is a.T), is copied: callers get fresh arrays, so mutating a result
    # can never change a later call's answer or the caller's arguments
    # 0-d results (NumPy scalars, Python numbers, literals) are returned as 0-d arrays
    direct = {id(v) for v in jaxpr.invars} | {id(v) for v in jaxpr.constvars}
    # (two outputs merged by CSE, f = lambda x: (x * 2, x * 2), are two arrays too)
    outs, returned = [], set()
    for a in jaxpr.outvars:
        r = root.get(id(a), id(a))
        if isinstance(a, Literal) or r in direct or r in returned:
            outs.append(f"np.array({src(a)})")
        else:
            outs.append(f"np.asarray({src(a)})" if not a.aval.shape else src(a))
            returned.add(r)
    lines.append(f"    return [{', '.join(outs)}]")
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
    __slots__ = ("jaxpr", "fn", "out_tree", "unflatten", "cached")

    def __init__(self, jaxpr: Jaxpr, fn: Callable, out_tree: Any, cached: bool = True):
        self.jaxpr = jaxpr
        self.fn = fn
        self.out_tree = out_tree
        self.unflatten = unflattener(out_tree)
        self.cached = cached


def _interpreter(jaxpr: Jaxpr) -> Callable:
    """Run ``jaxpr`` through ``bind``, equation by equation (see ``_entry``)."""
    def run(*flat: Any) -> list:
        return eval_jaxpr_flat(jaxpr, jaxpr.consts, flat)
    return run


def _named_error(entry: _Entry, flat: list, err: Exception) -> Exception:
    """The error of a compiled call, as the graph's interpreter reports it: naming the
    operation that failed and its operands' shapes (the generated code knows neither)."""
    try:
        eval_jaxpr_flat(entry.jaxpr, entry.jaxpr.consts, flat)
    except Exception as named:
        return named
    return err


_INLINE = object()
_ndarray = np.ndarray
_SCALAR_KEY = {bool: "b", int: "i", float: "f", complex: "c"}


def _signature(args: tuple, static: tuple) -> Any:
    """(flat leaves, hashable key) for plain pytrees of arrays in one pass; ``_INLINE`` if a
    tracer is among them; ``None`` where the general path is needed.

    The key holds the container types and sizes, dict keys, each array's shape
    and dtype (a Python scalar's type only: its value is not part of the
    signature), and the static arguments' values.  This runs on every call, so
    it is one recursive walk (trees are shallow; one deeper than Python's
    recursion limit takes the general, iterative path).
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
        args = tuple(a for i, a in enumerate(args) if i not in st)
    key.append(n)
    try:
        found = _walk(args, flat.append, key.append)
    except RecursionError:
        return None
    if found is not True:
        return found                  # _INLINE or None
    try:
        return flat, tuple(key)
    except TypeError:
        return None


def _walk(xs: Any, leaf: Callable, put: Callable) -> Any:
    """:func:`_signature`'s walk over the items of container ``xs``: True when done."""
    for x in xs:
        t = type(x)
        if t is _ndarray:
            dt = x.dtype
            if dt.kind not in "biufc":
                return None
            leaf(x)
            put(x.shape)
            put(dt)
        elif t is tuple or t is list:
            put(t)
            put(len(x))
            found = _walk(x, leaf, put)
            if found is not True:
                return found
        elif t is dict:
            try:
                ks = sorted(x)
            except TypeError:
                return None
            put(tuple(ks))
            found = _walk([x[k] for k in ks], leaf, put)
            if found is not True:
                return found
        elif t in _SCALAR_KEY:
            leaf(x)
            put(_SCALAR_KEY[t])
        elif x is None:
            put(None)
        elif isinstance(x, Tracer):
            return _INLINE
        elif isinstance(x, np.generic) and x.dtype.kind in "biufc":
            leaf(x)
            put(())
            put(x.dtype)
        else:
            return None
    return True


def jit(fun: Callable, static_argnums: int | Sequence[int] = ()) -> Callable:
    """Compile ``fun``: trace once per argument signature, cache, and rerun fast.

    The returned function has ``trace_count`` (how many times ``fun`` was
    traced), ``cache_size()``, ``clear_cache()`` and ``lower(*args)`` (the
    optimised graph for those arguments).
    """
    check_callable(fun, "jit")
    static = _static_tuple(static_argnums)
    cache: dict[Any, _Entry] = {}

    def _prepare(args: tuple, kwargs: dict | None = None) -> tuple:
        """(flat dynamic leaves, their structure, the function of the dynamic values to
        trace, the static values for the key).  Keyword arguments are dynamic, as in JAX;
        a static position past the arguments given (a default) is ignored."""
        args, kwargs = static_keywords_as_positions(fun, static, args, kwargs or {})
        n = len(args)
        st = static_positions(fun, static, n, "jit")
        dyn, merge = split_static(args, st, "jit")
        static_vals = [("kwargs", n)] if kwargs else []
        for k in sorted({s % n for s in st}):
            v = args[k]
            try:
                hash(v)
            except TypeError:
                raise TypeError(f"jit: static argument {k} (in static_argnums) has unhashable type "
                                f"{type(v).__name__}; static arguments must be hashable (use a "
                                "tuple instead of a list, or pass arrays as regular arguments)") \
                    from None
            static_vals.append((k, type(v), v))
        flat, in_tree, call = dynamic_call(fun, merge, dyn, kwargs, "jit")
        return flat, in_tree, call, tuple(static_vals)

    def _entry(flat: list, in_tree: Any, call: Callable, static_vals: tuple) -> _Entry:
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
            jaxpr = trace_to_jaxpr(call, [get_aval(x) for x in flat], in_tree, name="jit")
            if any(isinstance(c, Tracer) for c in jaxpr.consts):
                # fun closes over a value of an outer transformation (a jit made inside
                # grad): NumPy code cannot take it, so the graph runs through bind and the
                # outer transformation sees each operation, as if inlined.  Not cached:
                # the tracer belongs to this one call of the outer transformation.
                return _Entry(jaxpr, _interpreter(jaxpr), jaxpr.out_tree, cached=False)
            jaxpr = optimize(jaxpr)
            entry = _Entry(jaxpr, compile_jaxpr(jaxpr), jaxpr.out_tree)
            cache[key] = entry
        return entry

    fast: dict[Any, _Entry] = {}     # the same entries, keyed by _signature (no PyTreeDef)

    @functools.wraps(fun)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        sig = _signature(args, static) if not kwargs else None
        if sig is _INLINE:
            return fun(*args)       # inside another transformation: inline
        if sig is not None:
            flat, key = sig
            entry = fast.get(key)
            if entry is None:
                flat, in_tree, call, static_vals = _prepare(args)
                entry = _entry(flat, in_tree, call, static_vals)
                if entry.cached:
                    fast[key] = entry
        else:            # keywords, namedtuples, registered classes, odd leaves: the general path
            flat, in_tree, call, static_vals = _prepare(args, kwargs)
            for x in flat:
                if isinstance(x, Tracer):
                    return fun(*args, **kwargs)
            entry = _entry(flat, in_tree, call, static_vals)
        try:
            out = entry.fn(*flat)
        except Exception as err:       # (a try costs nothing until it catches)
            raise _named_error(entry, flat, err) from None
        return entry.unflatten(out)

    def lower(*args: Any, **kwargs: Any) -> Jaxpr:
        flat, in_tree, call, static_vals = _prepare(args, kwargs)
        return _entry(flat, in_tree, call, static_vals).jaxpr

    wrapped.trace_count = 0  # type: ignore[attr-defined]
    wrapped.cache_size = lambda: len(cache)  # type: ignore[attr-defined]
    wrapped.clear_cache = lambda: (cache.clear(), fast.clear())  # type: ignore[attr-defined]
    wrapped.lower = lower  # type: ignore[attr-defined]
    return wrapped

