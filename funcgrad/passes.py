"""Graph optimisation passes.  Each is a pure ``Jaxpr -> Jaxpr`` function.

- :func:`dce` -- dead-code elimination: drop equations whose outputs are unused;
- :func:`cse` -- common-subexpression elimination: reuse an equation computing
  the same primitive, params and inputs as an earlier one;
- :func:`fold_constants` -- evaluate equations whose inputs are all known now;
- :func:`simplify` -- algebraic identities (``x*1``, ``x+0``, ``--x``,
  double transpose, reshape/convert/broadcast that change nothing, ...).

:func:`optimize` runs them to a fixed point.  All walks are loops over the
equation list, never recursive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcgrad.core import ShapedArray
from funcgrad.ir import Eqn, Jaxpr, Literal, Var

__all__ = ["dce", "cse", "fold_constants", "simplify", "optimize"]


def dce(jaxpr: Jaxpr) -> Jaxpr:
    """Remove equations whose outputs no output depends on, and unused constants."""
    live = {id(v) for v in jaxpr.outvars if isinstance(v, Var)}
    kept: list[Eqn] = []
    for e in reversed(jaxpr.eqns):
        if any(id(o) in live for o in e.outputs):
            kept.append(e)
            live.update(id(a) for a in e.inputs if isinstance(a, Var))
    kept.reverse()
    cv, cs = [], []
    for v, c in zip(jaxpr.constvars, jaxpr.consts):
        if id(v) in live:
            cv.append(v)
            cs.append(c)
    return jaxpr.replace(eqns=kept, constvars=cv, consts=cs)


def _param_key(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ("nd", id(v))
    return v


def _atom_key(a: Any) -> Any:
    if isinstance(a, Literal):
        return ("lit", type(a.val), a.val if not isinstance(a.val, np.generic) else a.val.item(),
                a.aval.dtype, a.aval.weak_type)
    return ("var", id(a))


def _substitute(jaxpr: Jaxpr, eqns: list[Eqn], subst: dict[int, Any]) -> Jaxpr:
    def sub(a: Any) -> Any:
        while isinstance(a, Var) and id(a) in subst:
            a = subst[id(a)]
        return a
    new_eqns = []
    for e in eqns:
        ins = [sub(a) for a in e.inputs]
        new_eqns.append(e if all(x is y for x, y in zip(ins, e.inputs))
                        else Eqn(e.primitive, ins, e.outputs, e.params))
    return jaxpr.replace(eqns=new_eqns, outvars=[sub(a) for a in jaxpr.outvars])


def cse(jaxpr: Jaxpr) -> Jaxpr:
    """Merge equations with the same primitive, params and inputs."""
    seen: dict[Any, Var] = {}
    subst: dict[int, Any] = {}
    kept: list[Eqn] = []
    # identical constants (same array object) are already one var; identical values too:
    const_seen: dict[Any, Var] = {}
    for v, c in zip(jaxpr.constvars, jaxpr.consts):
        if isinstance(c, np.ndarray) and c.size <= 64:
            key = (c.dtype.str, c.shape, c.tobytes())
            if key in const_seen:
                subst[id(v)] = const_seen[key]
            else:
                const_seen[key] = v
    for e in jaxpr.eqns:
        ins = []
        for a in e.inputs:
            while isinstance(a, Var) and id(a) in subst:
                a = subst[id(a)]
            ins.append(a)
        try:
            key = (e.primitive.name, tuple(_atom_key(a) for a in ins),
                   tuple(sorted((k, _param_key(v)) for k, v in e.params.items())))
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in seen:
            subst[id(e.outputs[0])] = seen[key]
            continue
        if key is not None:
            seen[key] = e.outputs[0]
        kept.append(e)
    return dce(_substitute(jaxpr, kept, subst))


def _literal(val: Any, aval: ShapedArray) -> Literal | None:
    """A literal for a folded scalar value (only 0-d results become literals)."""
    if aval.shape == ():
        return Literal(np.asarray(val, aval.dtype)[()], ShapedArray((), aval.dtype))
    return None


_FOLD_LIMIT = 1 << 16   # don't materialise large folded arrays as constants


def fold_constants(jaxpr: Jaxpr) -> Jaxpr:
    """Evaluate equations whose inputs are all literals or constants."""
    known: dict[int, Any] = {id(v): c for v, c in zip(jaxpr.constvars, jaxpr.consts)
                             if not hasattr(c, "_trace")}
    subst: dict[int, Any] = {}
    kept: list[Eqn] = []
    new_cv, new_c = list(jaxpr.constvars), list(jaxpr.consts)
    for e in jaxpr.eqns:
        vals = []
        ok = True
        for a in e.inputs:
            while isinstance(a, Var) and id(a) in subst:
                a = subst[id(a)]
            if isinstance(a, Literal):
                vals.append(a.val)
            elif id(a) in known:
                vals.append(known[id(a)])
            else:
                ok = False
                break
        out = e.outputs[0]
        if ok and out.aval.size <= _FOLD_LIMIT and e.primitive.name != "scatter":
            with np.errstate(all="ignore"):
                val = e.primitive.impl(*vals, **e.params)
            lit = _literal(val, out.aval)
            if lit is not None:
                subst[id(out)] = lit
            else:
                val = np.asarray(val, out.aval.dtype)
                known[id(out)] = val
                new_cv.append(out)
                new_c.append(val)
            continue
        kept.append(e)
    return dce(_substitute(jaxpr.replace(constvars=new_cv, consts=new_c), kept, subst))


def _is_lit(a: Any, value: float) -> bool:
    if not isinstance(a, Literal):
        return False
    v = a.val
    return np.ndim(v) == 0 and not isinstance(v, (bool, np.bool_)) and v == value


def _same_aval(a: Any, out: Var) -> bool:
    return a.aval.shape == out.aval.shape and a.aval.dtype == out.aval.dtype


def simplify(jaxpr: Jaxpr) -> Jaxpr:
    """Rewrite algebraic identities that leave a value unchanged."""
    producer: dict[int, Eqn] = {}
    subst: dict[int, Any] = {}
    kept: list[Eqn] = []
    for e in jaxpr.eqns:
        ins = []
        for a in e.inputs:
            while isinstance(a, Var) and id(a) in subst:
                a = subst[id(a)]
            ins.append(a)
        e = Eqn(e.primitive, ins, e.outputs, e.params)
        out = e.outputs[0]
        name = e.primitive.name
        repl = None
        if name in ("add", "sub") and _is_lit(ins[1], 0) and _same_aval(ins[0], out):
            repl = ins[0]
        elif name == "add" and _is_lit(ins[0], 0) and _same_aval(ins[1], out):
            repl = ins[1]
        elif name in ("mul", "div") and _is_lit(ins[1], 1) and _same_aval(ins[0], out):
            repl = ins[0]
        elif name == "mul" and _is_lit(ins[0], 1) and _same_aval(ins[1], out):
            repl = ins[1]
        elif name == "pow" and _is_lit(ins[1], 1) and _same_aval(ins[0], out):
            repl = ins[0]
        elif name in ("reshape", "broadcast_to", "convert", "stop_gradient") and \
                isinstance(ins[0], Var) and _same_aval(ins[0], out):
            repl = ins[0]
        elif name == "transpose" and e.params["perm"] == tuple(range(len(e.params["perm"]))):
            repl = ins[0]
        elif name in ("neg", "transpose", "reshape") and isinstance(ins[0], Var) \
                and id(ins[0]) in producer:
            inner = producer[id(ins[0])]
            if name == "neg" and inner.primitive.name == "neg":
                repl = inner.inputs[0]
            elif name == "transpose" and inner.primitive.name == "transpose":
                p1, p2 = inner.params["perm"], e.params["perm"]
                perm = tuple(p1[i] for i in p2)
                if perm == tuple(range(len(perm))):
                    repl = inner.inputs[0]
                else:
                    e = Eqn(e.primitive, [inner.inputs[0]], e.outputs, {"perm": perm})
            elif name == "reshape" and inner.primitive.name == "reshape":
                src = inner.inputs[0]
                if src.aval.shape == out.aval.shape:
                    repl = src
                else:
                    e = Eqn(e.primitive, [src], e.outputs, e.params)
        if repl is not None and (not isinstance(repl, Literal) or repl.aval.shape == out.aval.shape):
            subst[id(out)] = repl
            continue
        producer[id(out)] = e
        kept.append(e)
    return dce(_substitute(jaxpr, kept, subst))


def optimize(jaxpr: Jaxpr, max_rounds: int = 4) -> Jaxpr:
    """Run all passes until the graph stops shrinking."""
    for _ in range(max_rounds):
        n = len(jaxpr.eqns)
        jaxpr = dce(simplify(cse(fold_constants(jaxpr))))
        if len(jaxpr.eqns) == n:
            break
    return jaxpr

