"""Linear algebra primitives: ``matmul`` (NumPy semantics) and ``einsum``.

``dot``, ``tensordot``, ``outer`` and ``vdot``-like products are composed in
the facade.  ``matmul`` is kept separate from ``einsum`` because it is the hot
path of every MLP and maps straight onto BLAS.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcgrad.core import Primitive, ShapedArray, bind, binder
from funcgrad.primitives import elementwise as ew
from funcgrad.primitives import shape as sh
from funcgrad.primitives._base import (
    align_batched,
    move_to_front,
    ndim_of,
    register,
    result_dtype,
    shape_of,
    unbroadcast,
)

# ---- matmul --------------------------------------------------------------------------
_mm_cache: dict = {}


def _matmul_aval(a: ShapedArray, b: ShapedArray) -> ShapedArray:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must be at least 1-d, got shapes {a.shape} and {b.shape} "
                         "(use multiply for scalars)")
    sa = (1,) + a.shape if a.ndim == 1 else a.shape
    sb = b.shape + (1,) if b.ndim == 1 else b.shape
    if sa[-1] != sb[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned: "
                         f"{sa[-1]} (last axis of the first) != {sb[-2]} "
                         f"({'only' if b.ndim == 1 else 'second-to-last'} axis of the second)")
    try:
        batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of shapes {a.shape} and {b.shape} "
                         "cannot be broadcast together") from None
    shape = batch + ((sa[-2],) if a.ndim > 1 else ()) + ((sb[-1],) if b.ndim > 1 else ())
    dt, weak = result_dtype(lambda x, y: np.multiply(x, y), (a, b), {}, _mm_cache)
    return ShapedArray(shape, dt, weak)


_EINSUM_MIN = 4096
_DOT_MAX_F64 = 200_000     # float64 outer products above this size: OpenBLAS is slower than einsum
_ROWS_MIN = 16_384         # per-example float32 outer products at least this big: one GEMM each


def _outer_kernel(sa: tuple, da: np.dtype, sb: tuple, db: np.dtype) -> str:
    """Which kernel computes ``a @ b`` fastest for a contraction of size 1 (outer products).

    Measured on one BLAS thread: a 2-d outer product is fastest as a BLAS
    ``np.dot`` ("dot": 1.5-3x a broadcast multiply; for float64 only up to
    ``_DOT_MAX_F64`` elements); a stack of big float32 ones (per-example
    gradients of a dense layer) as one ``np.dot`` per matrix into the result
    ("rows": about 20% faster than einsum's loop); otherwise "einsum" (big) or a
    broadcast "multiply" (small).  Used per call by the impl and once by jit.
    """
    size = math.prod(sa) * sb[-1]
    if da == db and da.kind == "f":
        if len(sa) == 2 and len(sb) == 2 and (da.itemsize == 4 or size <= _DOT_MAX_F64):
            return "dot"
        if len(sa) == 3 and len(sb) == 3 and da.itemsize == 4 and sa[0] == sb[0] \
                and sa[1] * sb[2] >= _ROWS_MIN:
            return "rows"
    return "einsum" if size >= _EINSUM_MIN else "multiply"


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a contraction of size 1, by the kernel :func:`_outer_kernel` picks."""
    kernel = _outer_kernel(a.shape, a.dtype, b.shape, b.dtype)
    if kernel == "dot":
        return np.dot(a, b)
    if kernel == "rows":
        out = np.empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
        dot = np.dot
        for k in range(a.shape[0]):
            dot(a[k], b[k], out=out[k])
        return out
    if kernel == "einsum":
        return np.einsum("...ik,...kj->...ij", a, b)
    return np.multiply(a, b)


def _matmul_impl(a: Any, b: Any) -> Any:
    """``np.matmul``, with two shapes NumPy handles slowly sent to faster equivalents.

    A contraction of size 1 is an outer product (see :func:`_outer`) instead of a
    loop of rank-1 GEMMs; a stack of matrices times one matrix is one GEMM on the
    stacked rows instead of a loop.
    """
    try:
        na, nb = a.ndim, b.ndim
    except AttributeError:
        return np.matmul(a, b)
    if na >= 2 and nb >= 2 and a.shape[-1] == 1 and b.shape[-2] == 1:
        return _outer(a, b)
    if na > 2 and nb == 2 and a.flags.c_contiguous:
        return np.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[1:])
    return np.matmul(a, b)


matmul_p = register(Primitive("matmul", _matmul_impl, _matmul_aval))


def _matmul_codegen(args: list, avals: list) -> str | None:
    """jit's choice, made once from the shapes, of what ``_matmul_impl`` decides per call."""
    a, b = avals
    if a.weak_type or b.weak_type:
        return None
    if a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == 1 and b.shape[-2] == 1:
        kernel = _outer_kernel(a.shape, a.dtype, b.shape, b.dtype)   # chosen once
        return {"dot": f"np.dot({args[0]}, {args[1]})", "rows": None,
                "einsum": f"np.einsum('...ik,...kj->...ij', {args[0]}, {args[1]})",
                "multiply": f"np.multiply({args[0]}, {args[1]})"}[kernel]
    if a.ndim > 2 and b.ndim == 2:
        return None           # the stacked case reshapes only when contiguous: leave it to impl
    return f"{args[0]} @ {args[1]}"


matmul_p.codegen = _matmul_codegen


matmul = binder(matmul_p, 2)


def _swap(x: Any) -> Any:
    n = ndim_of(x)
    return sh.transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


def _matmul_jvp(primals, tangents):
    a, b = primals
    ta, tb = tangents
    out = matmul(a, b)
    t = None
    if ta is not None:
        t = matmul(ta, b)
    if tb is not None:
        t2 = matmul(a, tb)
        t = t2 if t is None else ew.add(t, t2)
    return out, t


def _matmul_vjp(ct, out, primals, needed):
    a, b = primals
    na, nb = ndim_of(a), ndim_of(b)
    if na == 2 and nb == 2:                               # (m, k) @ (k, n): the dense layer
        return [unbroadcast(matmul(ct, _swap(b)), a) if 0 in needed else None,
                unbroadcast(matmul(_swap(a), ct), b) if 1 in needed else None]
    res: list = [None, None]
    if na <= 2 and nb <= 2 and (na == 1 or nb == 1):     # vector cases, without reshapes
        if na == 1 and nb == 1:                           # inner product
            return [ew.mul(ct, b) if 0 in needed else None, ew.mul(ct, a) if 1 in needed else None]
        # outer products as matmuls with a contraction of size 1 (impl/jit pick the fastest
        # way: a broadcast multiply for small ones, einsum for big or batched ones)
        if nb == 1:                                       # (m, k) @ (k,) -> (m,)
            if 0 in needed:
                res[0] = matmul(sh.reshape(ct, (shape_of(ct)[0], 1)),
                                sh.reshape(b, (1, shape_of(b)[0])))
            if 1 in needed:
                res[1] = matmul(ct, a)
        else:                                             # (k,) @ (k, n) -> (n,)
            if 0 in needed:
                res[0] = matmul(b, ct)
            if 1 in needed:
                res[1] = matmul(sh.reshape(a, (shape_of(a)[0], 1)),
                                sh.reshape(ct, (1, shape_of(ct)[0])))
        return [r if r is None else unbroadcast(r, p) for r, p in zip(res, primals)]
    a_vec, b_vec = na == 1, nb == 1
    a2 = sh.reshape(a, (1,) + shape_of(a)) if a_vec else a
    b2 = sh.reshape(b, shape_of(b) + (1,)) if b_vec else b
    cshape = shape_of(ct)
    if a_vec:
        cshape = cshape[:-1] + (1,) + cshape[-1:] if not b_vec else cshape + (1,)
    if b_vec:
        cshape = cshape + (1,)
    ct2 = sh.reshape(ct, cshape)
    if 0 in needed:
        ga = matmul(ct2, _swap(b2))
        res[0] = unbroadcast(sh.reshape(ga, shape_of(ga)[:-2] + shape_of(a)[-1:]) if a_vec else ga, a)
    if 1 in needed:
        gb = matmul(_swap(a2), ct2)
        res[1] = unbroadcast(sh.reshape(gb, shape_of(gb)[:-2] + shape_of(b)[:1]) if b_vec else gb, b)
    return res


def _matmul_batch(args, bdims):
    """Batched matmul as few BLAS calls as possible.

    With one operand unbatched and at most 2-d, the batch is folded into the
    other operand's rows (one GEMM instead of a loop of GEMVs); with a
    contraction of size 1 (per-example outer products, as in the gradient of
    a dense layer) it is a broadcast product, not a loop of rank-1 matmuls.
    """
    a, b = args
    da, db = bdims
    size = shape_of(a)[da] if da is not None else shape_of(b)[db]
    if db is None and ndim_of(b) <= 2 and ndim_of(a) >= 2:
        a = move_to_front(a, da, size)
        s = shape_of(a)
        rows = math.prod(s[:-1])
        out = matmul(sh.reshape(a, (rows, s[-1])), b)           # (B * rows, n) or (B * rows,)
        return sh.reshape(out, s[:-1] + shape_of(b)[1:]), 0
    if da is None and ndim_of(a) <= 2 and ndim_of(b) == 2:      # per-example vectors b
        b = move_to_front(b, db, size)
        out = matmul(a, sh.transpose(b, (1, 0)))                # (m, B) or (B,)
        return (sh.transpose(out, (1, 0)), 0) if ndim_of(a) == 2 else (out, 0)
    squeeze = []
    if da is not None and ndim_of(a) == 2:      # per-example vector -> (B, 1, k)
        a = move_to_front(a, da, size)
        a = sh.reshape(a, (size, 1, shape_of(a)[1]))
        da = 0
        squeeze.append(-2)
    if db is not None and ndim_of(b) == 2:      # per-example vector -> (B, k, 1)
        b = move_to_front(b, db, size)
        b = sh.reshape(b, (size, shape_of(b)[1], 1))
        db = 0
        squeeze.append(-1)
    if da is None and ndim_of(a) == 1:
        a = sh.reshape(a, (1,) + shape_of(a))
        squeeze.append(-2)
    if db is None and ndim_of(b) == 1:
        b = sh.reshape(b, shape_of(b) + (1,))
        squeeze.append(-1)
    a, b = align_batched((a, b), (da, db))
    if da is not None and db is not None and shape_of(a)[-1] == 1 == shape_of(b)[-2]:  # outer products
        sa, sb = shape_of(a), shape_of(b)
        if len(sa) == len(sb) == 3:
            out = einsum("ab,ac->abc", sh.reshape(a, sa[:2]), sh.reshape(b, (sb[0], sb[2])))
        else:
            out = ew.mul(a, b)
    else:
        out = matmul(a, b)
    if squeeze:
        s = shape_of(out)
        keep = [i for i in range(len(s)) if i - len(s) not in squeeze]
        out = sh.reshape(out, tuple(s[i] for i in keep))
    return out, 0


matmul_p.jvp, matmul_p.vjp, matmul_p.batch = _matmul_jvp, _matmul_vjp, _matmul_batch


# ---- einsum ---------------------------------------------------------------------------
_SUBSCRIPTS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def parse_einsum(spec: str, ndims: list[int]) -> tuple[list[str], str]:
    """Normalise an einsum spec to explicit form: (input subscripts, output subscripts)."""
    if not isinstance(spec, str):
        raise TypeError(f"einsum: the first argument must be a subscripts string such as "
                        f"'ij,jk->ik', got {type(spec).__name__} (the sublist form "
                        "einsum(a, [0, 1], b, [1, 2]) is not supported)")
    spec = spec.replace(" ", "")
    if spec.count("->") > 1:
        raise ValueError(f"einsum: spec {spec!r} has more than one '->'")
    if "->" in spec:
        lhs, out = spec.split("->")
    else:
        lhs, out = spec, None
    if any(part.replace("...", "").count(".") for part in spec.split("->")):
        raise ValueError(f"einsum: spec {spec!r} has a '.' outside an ellipsis '...'")
    ins = lhs.split(",")
    if len(ins) != len(ndims):
        raise ValueError(f"einsum: spec {spec!r} names {len(ins)} operands but {len(ndims)} were given")
    used = set("".join(ins).replace(".", ""))
    bad = sorted((used | set((out or "").replace(".", ""))) - set(_SUBSCRIPTS))
    if bad:
        raise ValueError(f"einsum: invalid subscript {bad[0]!r} in {spec!r}; subscripts must be "
                         "letters (a-z, A-Z)")
    free = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    ell: str | None = None
    parsed = []
    for sub, nd in zip(ins, ndims):
        if "..." in sub:
            n = nd - (len(sub) - 3)
            if ell is None:
                ell = "".join(next(free) for _ in range(max(n, 0)))
            sub = sub.replace("...", ell[len(ell) - n:] if n > 0 else "")
        if len(sub) != nd:
            raise ValueError(f"einsum: subscripts {sub!r} do not match an operand of rank {nd}")
        parsed.append(sub)
    if out is None:
        letters = "".join(parsed)
        out = (ell or "") + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                           and c not in (ell or "")))
    elif "..." in out:
        out = out.replace("...", ell or "")
    letters = set("".join(parsed))
    for c in out:
        if c not in letters:
            raise ValueError(f"einsum: output subscript {c!r} in {spec!r} does not appear in "
                             "the inputs")
        if out.count(c) > 1:
            raise ValueError(f"einsum: output subscript {c!r} appears more than once in {spec!r}")
    return parsed, out


def _einsum_impl(*xs, spec):
    if spec == "ab,ac->abc" and type(xs[0]) is np.ndarray and type(xs[1]) is np.ndarray:
        a, b = xs     # per-example outer products (vmap of a dense layer's gradient)
        return _outer(a[:, :, None], b[:, None, :])
    return np.einsum(spec, *xs, optimize=len(xs) > 2)


def _einsum_aval(*avals: ShapedArray, spec: str) -> ShapedArray:
    ins, out = spec.split("->")
    sizes: dict = {}
    for sub, a in zip(ins.split(","), avals):
        for c, n in zip(sub, a.shape):
            if sizes.setdefault(c, n) != n:
                if n == 1 or sizes[c] == 1:
                    sizes[c] = max(n, sizes[c])
                    continue
                raise ValueError(f"einsum: index {c!r} has sizes {sizes[c]} and {n} in spec {spec!r}")
    dt = np.result_type(*[a.dtype for a in avals])
    return ShapedArray(tuple(sizes[c] for c in out), dt)


einsum_p = register(Primitive("einsum", _einsum_impl, _einsum_aval))
einsum_p.codegen = lambda args, avals, spec: (   # outer products: the impl picks the kernel
    None if spec == "ab,ac->abc" else f"np.einsum({spec!r}, {', '.join(args)})")


def einsum(spec: str, *xs: Any) -> Any:
    return bind(einsum_p, *xs, spec=spec)


def _einsum_jvp(primals, tangents, *, spec):
    out = einsum(spec, *primals)
    t = None
    for i, ti in enumerate(tangents):
        if ti is None:
            continue
        ops = list(primals)
        ops[i] = ti
        term = einsum(spec, *ops)
        t = term if t is None else ew.add(t, term)
    return out, t


def _einsum_vjp(ct, out, primals, needed, *, spec):
    ins_s, out_s = spec.split("->")
    ins = ins_s.split(",")
    res: list = [None] * len(primals)
    for i in needed:
        sub = ins[i]
        shape = shape_of(primals[i])
        uniq = "".join(dict.fromkeys(sub))      # a repeated index ('ii') appears once
        size = {c: shape[sub.index(c)] for c in uniq}
        others = [s for j, s in enumerate(ins) if j != i]
        avail = set(out_s).union(*others) if others else set(out_s)
        kept = "".join(c for c in uniq if c in avail)
        g = einsum(",".join([out_s] + others) + "->" + kept, ct,
                   *[p for j, p in enumerate(primals) if j != i])
        if kept != uniq:
            g = sh.reshape(g, tuple(size[c] if c in avail else 1 for c in uniq))
            g = sh.broadcast_to(g, tuple(size[c] for c in uniq))
        if uniq != sub:
            # put g on the diagonal: later occurrences of a letter get a fresh letter tied to
            # the first by an identity matrix
            fresh = iter(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         if c not in spec)
            seen: set = set()
            new_sub, ties = "", []
            for c in sub:
                if c in seen:
                    f = next(fresh)
                    new_sub += f
                    ties.append(c + f)
                else:
                    seen.add(c)
                    new_sub += c
            eyes = [np.eye(size[t[0]], dtype=ew.dtype_of(g)) for t in ties]
            g = einsum(",".join([uniq] + ties) + "->" + new_sub, g, *eyes)
        res[i] = unbroadcast(g, primals[i])
    return res


def _einsum_batch(args, bdims, *, spec):
    ins_s, out_s = spec.split("->")
    ins = ins_s.split(",")
    b = next(c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in spec)
    xs = [x if d is None else move_to_front(x, d, 0) for x, d in zip(args, bdims)]
    new_ins = [(b + s) if d is not None else s for s, d in zip(ins, bdims)]
    return einsum(",".join(new_ins) + "->" + b + out_s, *xs), 0


einsum_p.jvp, einsum_p.vjp, einsum_p.batch = _einsum_jvp, _einsum_vjp, _einsum_batch
