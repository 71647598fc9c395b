"""Graph optimisation passes.  Each is a pure ``Jaxpr -> Jaxpr`` function.

- :func:`dce` -- dead-code elimination: drop equations whose outputs are unused;
- :func:`cse` -- common-subexpression elimination: reuse an equation computing
  the same primitive, params and inputs as an earlier one (operands of
  commutative operations in either order);
- :func:`fold_constants` -- evaluate equations whose inputs are all known now;
- :func:`simplify` -- algebraic identities (``x*1``, ``x+0``, ``x-0``, ``x/1``,
  ``x**1``, ``--x``, ``x + -y``, double transpose, reshape of reshape,
  broadcasts and uniform constants feeding elementwise operations, reshape /
  convert / broadcast / reduction that change nothing, ...).

:func:`optimize` runs them to a fixed point.  Every pass keeps what the graph
computes: the same values, shapes and dtypes (NaN and infinity included: no
``x*0 -> 0``, no ``x-x -> 0``).  The one liberty, as in XLA, is the sign of a
zero: ``x + 0 -> x`` turns ``-0.0 + 0`` into ``-0.0`` instead of ``0.0``.
Graphs stay differentiable after optimisation (``stop_gradient`` is kept), so
``eval_jaxpr`` of an optimised graph may still be transformed.  Constants are
only looked at by value (folded, merged when equal, replaced by the one value
they hold) when nobody can change them in place: read-only arrays (such as the
constants folding makes) and broadcast views; a writable array the function
closed over stays that array.

No pass ever adds equations, and all walks are loops over the equation list,
never recursive, so graphs of any length are fine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcgrad.core import ShapedArray, bind, get_aval
from funcgrad.ir import Eqn, Jaxpr, Literal, Var
from funcgrad.primitives._base import registry

__all__ = ["dce", "cse", "fold_constants", "simplify", "optimize"]

# elementwise operations with several operands: an operand's broadcasting may be left to NumPy
_NARY = frozenset({"add", "sub", "mul", "div", "pow", "max", "min", "eq", "ne", "lt", "le",
                   "gt", "ge", "and", "or", "select"})
# a op b == b op a exactly, bit for bit (max/min are left out: signed zeros)
_COMMUTATIVE = frozenset({"add", "mul", "eq", "ne", "and", "or"})
# operations :func:`_identity` knows something about
_IDENTITIES = frozenset({"add", "sub", "mul", "div", "pow", "max", "min", "and", "or", "select", "neg",
                         "not", "convert", "reshape", "transpose", "broadcast_to", "reduce_sum",
                         "reduce_max", "reduce_min", "reduce_prod", "gather"})
_UNIFORM_CHECK_LIMIT = 1 << 20   # constants larger than this are not scanned for uniformity


def _resolve(a: Any, subst: dict[int, Any]) -> Any:
    while isinstance(a, Var) and id(a) in subst:
        a = subst[id(a)]
    return a


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
        # repr, not ==: 0.0 and -0.0 are different literals (x*0.0 != x*-0.0), NaN equals itself
        return ("lit", type(a.val).__name__, repr(a.val), a.aval.dtype.str, a.aval.weak_type)
    return ("var", id(a))


def _finish(jaxpr: Jaxpr, eqns: list[Eqn], subst: dict[int, Any], **changes: Any) -> Jaxpr:
    """The graph with ``eqns`` (inputs already resolved) and its outputs resolved through ``subst``."""
    return jaxpr.replace(eqns=eqns, outvars=[_resolve(a, subst) for a in jaxpr.outvars], **changes)


def _with_inputs(e: Eqn, ins: list) -> Eqn:
    return e if all(x is y for x, y in zip(ins, e.inputs)) else Eqn(e.primitive, ins, e.outputs, e.params)


def cse(jaxpr: Jaxpr) -> Jaxpr:
    """Merge equations with the same primitive, params and inputs (and equal small constants)."""
    return dce(_cse(jaxpr))


def _cse(jaxpr: Jaxpr) -> Jaxpr:
    seen: dict[Any, Var] = {}
    subst: dict[int, Any] = {}
    kept: list[Eqn] = []
    # identical constants (same array object) are already one var; identical values too:
    const_seen: dict[Any, Var] = {}
    for v, c in zip(jaxpr.constvars, jaxpr.consts):
        if _immutable(c) and c.size <= 64:
            key = (c.dtype.str, c.shape, c.tobytes())
            if key in const_seen:
                subst[id(v)] = const_seen[key]
            else:
                const_seen[key] = v
    for e in jaxpr.eqns:
        ins = [_resolve(a, subst) for a in e.inputs]
        name = e.primitive.name
        try:
            in_keys = tuple(a if type(a) is Var else _atom_key(a) for a in ins)
            if name in _COMMUTATIVE and e.outputs[0].aval.dtype.kind != "c":
                # (complex a * b and b * a can differ in the last bit in NumPy)
                in_keys = tuple(sorted(in_keys, key=hash))   # equal keys, equal hashes
            params = e.params
            key = (name, in_keys, tuple(sorted((k, _param_key(v)) for k, v in params.items()))
                   if params else ())
            hit = seen.get(key)
        except TypeError:   # unhashable params: never merged
            key = hit = None
        if hit is not None:
            subst[id(e.outputs[0])] = hit
            continue
        if key is not None:
            seen[key] = e.outputs[0]
        kept.append(_with_inputs(e, ins))
    return _finish(jaxpr, kept, subst)


def _literal(val: Any) -> Literal | None:
    """A literal for a folded 0-d value, typed exactly as the value is (None for arrays).

    A Python number stays one (weakly typed), a NumPy value becomes a NumPy
    scalar of its dtype: either way the rest of the graph computes what it did.
    """
    if type(val) in (bool, int, float, complex):
        return Literal(val, get_aval(val))
    a = np.asarray(val)
    if a.ndim == 0:
        return Literal(a[()], ShapedArray((), a.dtype))
    return None


_FOLD_LIMIT = 1 << 16   # don't materialise large folded arrays as constants


def fold_constants(jaxpr: Jaxpr) -> Jaxpr:
    """Evaluate equations whose inputs are all literals or immutable constants.

    0-d results become literals, others new constants (read-only, so that no
    caller can change a cached graph through a result that shares its memory).
    A writable array the function closed over is not folded: the graph keeps
    reading it when it runs.
    """
    return dce(_fold_constants(jaxpr))


def _fold_constants(jaxpr: Jaxpr) -> Jaxpr:
    known: dict[int, Any] = {id(v): c for v, c in zip(jaxpr.constvars, jaxpr.consts)
                             if _immutable(c)}
    subst: dict[int, Any] = {}
    kept: list[Eqn] = []
    new_cv, new_c = list(jaxpr.constvars), list(jaxpr.consts)
    for e in jaxpr.eqns:
        ins = [_resolve(a, subst) for a in e.inputs]
        vals = []
        ok = True
        for a in ins:
            if isinstance(a, Literal):
                vals.append(a.val)
            elif id(a) in known:
                vals.append(known[id(a)])
            else:
                ok = False
                break
        out = e.outputs[0]
        if ok and out.aval.size <= _FOLD_LIMIT and e.primitive.name != "scatter":
            try:
                with np.errstate(all="ignore"):
                    val = bind(e.primitive, *vals, **e.params)   # exactly what evaluation gives
            except Exception:   # noqa: BLE001 - leave it to run time, which reports it properly
                kept.append(_with_inputs(e, ins))
                continue
            lit = _literal(val)
            if lit is not None:
                subst[id(out)] = lit
            else:
                val = np.asarray(val).view()   # a view: never flip a user's array to read-only
                val.flags.writeable = False
                cv = out if get_aval(val) == out.aval else Var(get_aval(val))
                if cv is not out:
                    subst[id(out)] = cv
                known[id(cv)] = val
                new_cv.append(cv)
                new_c.append(val)
            continue
        kept.append(_with_inputs(e, ins))
    return _finish(jaxpr, kept, subst, constvars=new_cv, consts=new_c)


# ------------------------------------------------------------------ simplify ---

def _is_lit(a: Any, value: float) -> bool:
    if not isinstance(a, Literal):
        return False
    v = a.val
    return getattr(v, "ndim", 0) == 0 and not isinstance(v, (bool, np.bool_)) and v == value


def _same_aval(a: Any, out: Var) -> bool:
    """``a`` may stand for ``out``: same shape and dtype, and not weakly typed.

    A weakly typed value (a Python number, where NumPy would compute a NumPy
    scalar) could change the dtype NumPy picks downstream, so it never replaces
    a computed value.
    """
    aval = a.aval
    return aval.shape == out.aval.shape and aval.dtype == out.aval.dtype and not aval.weak_type


def _strong_literal(val: Any, dtype: np.dtype) -> Literal:
    """A NumPy-scalar literal: combines with arrays as a ``dtype`` array would (NEP 50)."""
    return Literal(np.asarray(val, dtype)[()], ShapedArray((), dtype))


def _immutable(c: Any) -> bool:
    """A constant nobody changes in place: read-only, or a broadcast view (zero strides).

    Only such constants are looked at by value (merged when equal, folded,
    replaced by the scalar they hold).  An ordinary writable array the function
    closed over stays the object it is, so the graph keeps using whatever it
    holds when it runs.
    """
    return isinstance(c, np.ndarray) and (not c.flags.writeable or (0 in c.strides and c.size > 1))


def _uniform_literal(c: Any) -> Literal | None:
    """For an immutable constant whose elements are all one value, that value as a literal."""
    if not _immutable(c) or c.size == 0 or c.dtype.kind not in "biuf":
        return None
    first = c.flat[0]
    if all(s == 0 or n == 1 for s, n in zip(c.strides, c.shape)):
        return _strong_literal(first, c.dtype)     # a broadcast scalar: no need to look
    if c.size > _UNIFORM_CHECK_LIMIT or not (c.flat[-1] == first) or not (c == first).all():
        return None    # (NaN is never equal to itself: not uniform)
    if c.dtype.kind == "f" and not (np.signbit(c) == np.signbit(first)).all():
        return None   # 0.0 and -0.0 mixed
    return _strong_literal(first, c.dtype)


def _shape_of_operands(ins: list) -> tuple | None:
    try:
        return np.broadcast_shapes(*[a.aval.shape for a in ins])
    except ValueError:
        return None


def _unbroadcast_operands(prim: Any, ins: list, params: dict, out: Var, producer: dict,
                          uniform: dict) -> list:
    """Operands of an elementwise op, with explicit broadcasts that NumPy would do anyway removed.

    An operand that is ``broadcast_to(y)`` becomes ``y``, and a constant array
    holding one value everywhere becomes that scalar, whenever the other
    operands still give the output its shape.  Values and dtypes are unchanged
    (the replacements are NumPy scalars or arrays of the same dtype).
    """
    new = list(ins)
    for i, a in enumerate(ins):
        if not isinstance(a, Var):
            continue
        cand = uniform.get(id(a))
        if cand is None:
            p = producer.get(id(a))
            if p is not None and p.primitive.name == "broadcast_to":
                y = p.inputs[0]
                if isinstance(y, Literal):
                    cand = _strong_literal(y.val, a.aval.dtype)
                elif not y.aval.weak_type and y.aval.dtype == a.aval.dtype:
                    cand = y
            elif p is not None and p.primitive.name == "pow" and _is_lit(p.inputs[1], 0) and \
                    a.aval.dtype.kind in "iuf" and not a.aval.weak_type:
                cand = _strong_literal(1, a.aval.dtype)    # x ** 0 is 1 everywhere, NaN included
        if cand is None:
            continue
        trial = new[:i] + [cand] + new[i + 1:]
        if _shape_of_operands(trial) == out.aval.shape and _keeps_aval(prim, trial, params, out):
            new = trial
    return new


def _keeps_aval(prim: Any, ins: list, params: dict, out: Any) -> bool:
    """The shape rule gives ``prim(*ins)`` exactly ``out``'s type (weak typing included)."""
    try:
        aval = prim.abstract_eval(*[a.aval for a in ins], **params)
    except (TypeError, ValueError, IndexError):
        return False
    return (aval.shape, aval.dtype, aval.weak_type) == (out.aval.shape, out.aval.dtype,
                                                          out.aval.weak_type)


def _exact_roundtrip(a: np.dtype, b: np.dtype) -> bool:
    """Converting ``a -> b -> a`` gives back every value of dtype ``a``."""
    if a.kind == "b":
        return True
    return a.kind == b.kind and b.itemsize >= a.itemsize and a.kind in "iufc"


def _identity(name: str, ins: list, params: dict, out: Var, producer: dict) -> Any:
    """An existing atom equal to ``name(*ins)``, or None."""
    x = ins[0]
    if name in ("add", "sub") and _is_lit(ins[1], 0) and _same_aval(x, out):
        return x
    if name == "add" and _is_lit(x, 0) and _same_aval(ins[1], out):
        return ins[1]
    # (not for complex: in NumPy (inf+0j) * 1 is inf+nanj)
    if name in ("mul", "div", "pow") and _is_lit(ins[1], 1) and _same_aval(x, out) \
            and out.aval.dtype.kind != "c":
        return x
    if name == "mul" and _is_lit(x, 1) and _same_aval(ins[1], out) and out.aval.dtype.kind != "c":
        return ins[1]
    if name in ("max", "min", "and", "or") and x is ins[1] and _same_aval(x, out):
        return x
    if name == "select" and ins[1] is ins[2] and _same_aval(ins[1], out):
        return ins[1]
    if not isinstance(x, Var):
        return None   # unary ops of literals are folded instead
    if name in ("reshape", "broadcast_to", "convert", "reduce_sum", "reduce_max", "reduce_min",
                "reduce_prod", "transpose") and _same_aval(x, out):
        if name != "transpose" or params["perm"] == tuple(range(len(params["perm"]))):
            return x
    if name == "gather" and len(ins) == 1 and _same_aval(x, out) and all(
            c == ("s", None, None, None) for c in params["index"]):
        return x
    inner = producer.get(id(x))
    if inner is None:
        return None
    iname = inner.primitive.name
    src = inner.inputs[0]
    if name == iname and name in ("neg", "not") and _same_aval(src, out):
        return src
    if name == "convert" and iname == "convert" and _same_aval(src, out) and \
            _exact_roundtrip(src.aval.dtype, x.aval.dtype):
        return src
    if name in ("reshape", "transpose", "broadcast_to") and iname == name and _same_aval(src, out):
        if name != "transpose" or tuple(inner.params["perm"][i] for i in params["perm"]) == \
                tuple(range(len(params["perm"]))):
            return src
    return None


def _exact_negation(a: Any, b: Var, out: Var) -> bool:
    """Is ``b = -a`` exact where it meets ``out``'s dtype?  Floats negate exactly; integers
    wrap (int8 -(-128) is -128, uint8 -1 is 255), which matches ``x - a`` only when no
    promotion follows (``b`` already has ``out``'s dtype)."""
    if a.aval.weak_type or a.aval.dtype != b.aval.dtype:
        return False
    return b.aval.dtype.kind == "f" or b.aval.dtype == out.aval.dtype


def _rewrite(e: Eqn, ins: list, producer: dict) -> Eqn | None:
    """``e`` (with inputs ``ins``) in a form that uses fewer equations once dead code goes."""
    name = e.primitive.name
    x = ins[0]
    inner = producer.get(id(x)) if isinstance(x, Var) else None
    iname = inner.primitive.name if inner is not None else None
    if name == iname and name in ("reshape", "broadcast_to") and not inner.inputs[0].aval.weak_type:
        # (a shape op straight on a Python number would evaluate to a Python number)
        return Eqn(e.primitive, [inner.inputs[0]], e.outputs, e.params)
    if name == iname == "transpose" and not inner.inputs[0].aval.weak_type:
        perm = tuple(inner.params["perm"][i] for i in e.params["perm"])
        return Eqn(e.primitive, [inner.inputs[0]], e.outputs, {"perm": perm})
    if name in ("add", "sub"):
        # x + (-y) == x - y, (-x) + y == y - x and x - (-y) == x + y, exactly
        y = ins[1]
        yp = producer.get(id(y)) if isinstance(y, Var) else None
        if yp is not None and yp.primitive.name == "neg" and _exact_negation(
                yp.inputs[0], y, e.outputs[0]):
            other = registry["sub" if name == "add" else "add"]
            return Eqn(other, [x, yp.inputs[0]], e.outputs, e.params)
        if name == "add" and iname == "neg" and _exact_negation(inner.inputs[0], x, e.outputs[0]):
            return Eqn(registry["sub"], [y, inner.inputs[0]], e.outputs, e.params)
    return None


def simplify(jaxpr: Jaxpr) -> Jaxpr:
    """Rewrite algebraic identities so that fewer equations compute the same values."""
    return dce(_simplify(jaxpr))


def _simplify(jaxpr: Jaxpr) -> Jaxpr:
    uniform: dict[int, Literal] = {}
    for v, c in zip(jaxpr.constvars, jaxpr.consts):
        lit = _uniform_literal(c)
        if lit is not None:
            uniform[id(v)] = lit
    producer: dict[int, Eqn] = {}
    subst: dict[int, Any] = {}
    kept: list[Eqn] = []
    for e in jaxpr.eqns:
        ins = [_resolve(a, subst) for a in e.inputs]
        out = e.outputs[0]
        name = e.primitive.name
        if name in _NARY:
            ins = _unbroadcast_operands(e.primitive, ins, e.params, out, producer, uniform)
        repl = _identity(name, ins, e.params, out, producer) if name in _IDENTITIES else None
        # the type check uses the inputs as they are now (folded literals carry their exact type)
        if repl is not None and _keeps_aval(e.primitive, ins, e.params, repl):
            subst[id(out)] = repl
            continue
        new = _rewrite(e, ins, producer)
        if new is not None and _keeps_aval(new.primitive, new.inputs, new.params, out):
            e = new
        else:
            e = _with_inputs(e, ins)
        producer[id(out)] = e
        kept.append(e)
    return _finish(jaxpr, kept, subst)


def optimize(jaxpr: Jaxpr, max_rounds: int = 4) -> Jaxpr:
    """Run all passes until the graph stops shrinking."""
    for _ in range(max_rounds):
        n = len(jaxpr.eqns)
        jaxpr = dce(_simplify(_cse(_fold_constants(jaxpr))))
        if len(jaxpr.eqns) == n:
            break
    return jaxpr
