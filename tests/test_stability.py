"""Numerical stability of the log/exp family at extreme inputs, in float32 and float64.

``fg.nn.sigmoid``, ``softplus``, ``logsumexp``, ``log_softmax``, ``softmax_cross_entropy``
and ``fnp.logaddexp``, and their first and second derivatives, are compared with
references computed in 60-digit decimal arithmetic (Python's ``decimal``) at inputs
of +-1e30, +-1000, the edges of exp's range, tiny and subnormal numbers.  Results must be
finite and accurate to a few units in the last place of their dtype (or below its
smallest normal number where the true value underflows).

NaN and infinite inputs must propagate as NumPy does: NaN and +-inf in the same positions
as NumPy's evaluation of the same formula (for derivatives: of the derivative's formula),
and never an exception.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import nn

CTX = decimal.Context(prec=60, Emin=-10 ** 9, Emax=10 ** 9)
DTYPES = [np.float64, np.float32]


# ------------------------------------------------------ high-precision references ---

def D(x: float) -> Decimal:
    return CTX.create_decimal(float(x))


def dexp(u: Decimal) -> Decimal:
    return CTX.exp(u) if u > -10 ** 8 else Decimal(0)      # below that, 0 to any precision


def dlog1p(u: Decimal) -> Decimal:
    """ln(1 + u), exact to 60 digits also for tiny u (where 1 + u would round to 1)."""
    if abs(u) < Decimal("1e-25"):
        return CTX.subtract(u, CTX.multiply(u, u) / 2)
    return CTX.ln(CTX.add(1, u))


def dsigmoid(x: Decimal) -> Decimal:
    if x >= 0:
        return CTX.divide(1, CTX.add(1, dexp(-x)))
    e = dexp(x)
    return CTX.divide(e, CTX.add(1, e))


def dsoftplus(x: Decimal) -> Decimal:
    return CTX.add(max(x, Decimal(0)), dlog1p(dexp(-abs(x))))


def dlogaddexp(x: Decimal, y: Decimal) -> Decimal:
    big, small = max(x, y), min(x, y)
    return CTX.add(big, dlog1p(dexp(CTX.subtract(small, big))))


def dlogsumexp(v: list) -> Decimal:
    m = max(v)
    return CTX.add(m, CTX.ln(sum((dexp(CTX.subtract(a, m)) for a in v), Decimal(0))))


def dsoftmax(v: list) -> list:
    lse = dlogsumexp(v)
    return [dexp(CTX.subtract(a, lse)) for a in v]


def assert_accurate(got, want, dtype, ulps: float = 8, scale: float = 0.0, what: str = "") -> None:
    """``got`` (in ``dtype``) equals the exact ``want`` to ``ulps`` units in the last place
    of ``|want| + scale``.

    ``scale`` is the natural size of a quantity that passes through zero (a derivative
    bounded by 1 is accurate to ``ulps`` ulps of 1 near its zeros).  Where the true value
    is below the smallest normal number of ``dtype`` it may have underflowed to zero or a
    subnormal: an absolute error of that size is allowed.
    """
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert np.all(np.isfinite(got)), f"{what}: not finite: {got}"
    fi = np.finfo(dtype)
    want = np.asarray(want, np.float64)
    err = np.abs(got.astype(np.float64) - want)
    tol = ulps * fi.eps * (np.abs(want) + scale) + 2 * float(fi.tiny)
    bad = err > tol
    assert not np.any(bad), (f"{what} ({np.dtype(dtype).name}): got {got[bad]}, exact "
                             f"{want[bad]}, error {err[bad]} > {tol[bad]}")


# ------------------------------------------------------------ elementwise cases ---

def extreme_points(dtype) -> np.ndarray:
    """Extreme finite inputs that ``dtype`` can hold (both signs)."""
    fi = np.finfo(dtype)
    mags = [1e30, 1e4, 1000.0, 745.0, 710.0, 100.0, 88.0, 87.0, 40.0, 20.0, 1.5, 1e-3, 1e-8,
            1e-30, 1e-300, float(fi.tiny), float(fi.smallest_subnormal), 0.0]
    pts = sorted({float(dtype(m)) for m in mags} | {-float(dtype(m)) for m in mags})
    return np.array(pts, dtype)


def d_sigmoid(x: Decimal) -> tuple:
    s = dsigmoid(x)
    t = dsigmoid(-x)                       # 1 - s without cancellation
    return s, s * t, s * t * (t - s)


def d_softplus(x: Decimal) -> tuple:
    s, t = dsigmoid(x), dsigmoid(-x)
    return dsoftplus(x), s, s * t


def d_logaddexp_with(c: float) -> Callable:
    def ref(x: Decimal) -> tuple:
        s, t = dsigmoid(x - D(c)), dsigmoid(D(c) - x)
        return dlogaddexp(x, D(c)), s, s * t
    return ref


ELEMENTWISE: dict[str, tuple[Callable, Callable]] = {
    "sigmoid": (nn.sigmoid, d_sigmoid),
    "softplus": (nn.softplus, d_softplus),
    "logaddexp(x, 0)": (lambda x: fnp.logaddexp(x, 0.0), d_logaddexp_with(0.0)),
    "logaddexp(-3, x)": (lambda x: fnp.logaddexp(-3.0, x), d_logaddexp_with(-3.0)),
    "logaddexp(x, 700)": (lambda x: fnp.logaddexp(x, 700.0), d_logaddexp_with(700.0)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_values_and_derivatives_at_extremes(name: str, dtype) -> None:
    f, ref = ELEMENTWISE[name]
    x = extreme_points(dtype)
    exact = [ref(D(v)) for v in x]
    for order, got in enumerate([f(x), fg.vmap(fg.grad(f))(x), fg.vmap(fg.grad(fg.grad(f)))(x)]):
        want = [float(e[order]) for e in exact]
        assert_accurate(got, want, dtype, ulps=16, scale=0.0 if order == 0 else 1.0,
                        what=f"{name} derivative {order}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_logaddexp_of_equal_and_nearly_equal_arguments(dtype) -> None:
    """At x == y the second derivative is 1/4 (no kink), the mixed one -1/4."""
    x = extreme_points(dtype)
    f = lambda a, b: fnp.logaddexp(a, b)  # noqa: E731
    assert_accurate(f(x, x), [float(dlogaddexp(D(v), D(v))) for v in x], dtype,
                    what="logaddexp(x, x)")
    gx, gy = fg.vmap(fg.grad(f, argnums=(0, 1)))(x, x)
    assert_accurate(gx, np.full(x.shape, 0.5), dtype, what="d/dx at x == y")
    assert_accurate(gy, np.full(x.shape, 0.5), dtype, what="d/dy at x == y")
    hxx = fg.vmap(fg.grad(fg.grad(f)))(x, x)
    hxy = fg.vmap(fg.grad(fg.grad(f), argnums=1))(x, x)
    assert_accurate(hxx, np.full(x.shape, 0.25), dtype, what="d2/dx2 at x == y")
    assert_accurate(-hxy, np.full(x.shape, 0.25), dtype, what="d2/dxdy at x == y")
    # one ulp apart
    y = np.nextafter(x, dtype(np.inf))
    want = [float(dlogaddexp(D(a), D(b))) for a, b in zip(x, y)]
    assert_accurate(f(x, y), want, dtype, what="logaddexp(x, nextafter(x))")


# -------------------------------------------------------------- softmax family ---

def rows(dtype) -> list[np.ndarray]:
    big = float(dtype(1e30))
    return [np.array(r, dtype) for r in (
        [1000.0, 0.0, -1000.0], [big, -big, 0.0], [-1000.0, -1000.0, -1000.0], [745.0, 744.0, -745.0],
        [1e-300, -1e-300, 0.0], [710.0, 710.0, 709.0], [-big, -big, -big], [88.0, -88.0, 87.5],
        [big, big, 1.0], [3.0, 1e-30, -2.0])]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_logsumexp_value_gradient_and_hessian(dtype) -> None:
    for v in rows(dtype):
        dv = [D(a) for a in v]
        p = [float(a) for a in dsoftmax(dv)]
        want = float(dlogsumexp(dv))
        assert_accurate(nn.logsumexp(v), want, dtype, what=f"lse {v}")
        assert_accurate(fnp.logsumexp(v), want, dtype, what=f"fnp lse {v}")
        assert_accurate(nn.logsumexp(v[None], axis=1), [want], dtype, what=f"lse axis {v}")
        assert_accurate(fg.grad(nn.logsumexp)(v), p, dtype, scale=1.0, what=f"grad lse {v}")
        # the primitive's own rule, exp(x - lse(x)), carries the rounding of lse(x): ~eps |x|
        assert_accurate(fg.grad(fnp.logsumexp)(v), p, dtype, scale=1.0 + abs(want),
                        what=f"grad fnp.logsumexp {v}")
        H = fg.hessian(nn.logsumexp)(v)
        pp = np.asarray(p)
        assert_accurate(H, np.diag(pp) - np.outer(pp, pp), dtype, ulps=32, scale=1.0,
                        what=f"hessian lse {v}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_log_softmax_value_and_derivatives(dtype) -> None:
    w = np.array([0.5, -1.0, 2.0], dtype)
    for v in rows(dtype):
        dv = [D(a) for a in v]
        lse = dlogsumexp(dv)
        p = np.array([float(a) for a in dsoftmax(dv)])
        want = [float(a - lse) for a in dv]
        assert_accurate(nn.log_softmax(v), want, dtype, scale=1.0, what=f"log_softmax {v}")
        assert_accurate(nn.softmax(v), p, dtype, scale=1.0, what=f"softmax {v}")
        loss = lambda z: fnp.sum(w * nn.log_softmax(z))  # noqa: E731
        assert_accurate(fg.grad(loss)(v), w - p * float(np.sum(w, dtype=np.float64)), dtype,
                        ulps=32, scale=float(np.sum(np.abs(w))), what=f"grad log_softmax {v}")
        H = fg.hessian(loss)(v)
        want_h = -float(np.sum(w, dtype=np.float64)) * (np.diag(p) - np.outer(p, p))
        assert_accurate(H, want_h, dtype, ulps=64, scale=float(np.sum(np.abs(w))),
                        what=f"hessian log_softmax {v}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_softmax_cross_entropy_at_extreme_logits(dtype) -> None:
    for v in rows(dtype):
        logits = np.stack([v, v[::-1]])
        labels = np.array([0, 2])
        dl = [[D(a) for a in r] for r in logits]
        want = [float(dlogsumexp(r) - r[k]) for r, k in zip(dl, labels)]
        assert_accurate(nn.softmax_cross_entropy(logits, labels, reduction="none"), want, dtype,
                        scale=1.0, what=f"cross-entropy {logits}")
        p = np.array([[float(a) for a in dsoftmax(r)] for r in dl])
        g = fg.grad(lambda z: nn.softmax_cross_entropy(z, labels, reduction="sum"))(logits)
        assert_accurate(g, p - np.eye(3)[labels], dtype, ulps=32, scale=1.0,
                        what=f"grad cross-entropy {logits}")
        H = fg.hessian(lambda z: nn.softmax_cross_entropy(z[None], labels[:1], reduction="sum"))(
            logits[0])
        assert_accurate(H, np.diag(p[0]) - np.outer(p[0], p[0]), dtype, ulps=64, scale=1.0,
                        what=f"hessian cross-entropy {logits[0]}")


# ------------------------------------------------------------ NaN and infinity ---

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, 1000.0, -1000.0, 2.0])


def np_logsumexp(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.squeeze(np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m, axis)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# name: (funcgrad function of one array, NumPy formula of the value,
#        NumPy formula of the derivative of sum(f(x)) with respect to x)
SPECIAL_CASES: dict[str, tuple[Callable, Callable, Callable]] = {
    "sigmoid": (nn.sigmoid, np_sigmoid, lambda x: np_sigmoid(x) * np_sigmoid(-x)),
    "softplus": (nn.softplus, lambda x: np.logaddexp(x, 0.0), np_sigmoid),
    # d/dx logaddexp(x, y) = sigmoid(x - y)
    "logaddexp(x, 0)": (lambda x: fnp.logaddexp(x, 0.0), lambda x: np.logaddexp(x, 0.0), np_sigmoid),
    "logaddexp(x, x[::-1])": (lambda x: fnp.logaddexp(x, x[::-1]),
                              lambda x: np.logaddexp(x, x[::-1]),
                              lambda x: 2 * np_sigmoid(x - x[::-1])),
}


def _same_specials(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got = np.asarray(got, np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN at {got} vs NumPy {want}"
    assert np.array_equal(np.isposinf(got), np.isposinf(want)), f"{what}: +inf {got} vs {want}"
    assert np.array_equal(np.isneginf(got), np.isneginf(want)), f"{what}: -inf {got} vs {want}"
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-30, err_msg=what)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(SPECIAL_CASES))
def test_nan_and_inf_propagate_as_in_numpy(name: str, dtype) -> None:
    f, value, deriv = SPECIAL_CASES[name]
    x = SPECIAL.astype(dtype)
    with np.errstate(all="ignore"):
        want_v = value(x.astype(np.float64))
        want_d = deriv(x.astype(np.float64))
    _same_specials(f(x), want_v, f"{name} value")
    _same_specials(fg.jit(f)(x), want_v, f"jit {name} value")
    _same_specials(fg.grad(lambda z: fnp.sum(f(z)))(x), want_d, f"{name} derivative")
    # second derivatives: NaN in, NaN out; never an exception
    d2 = fg.vmap(fg.grad(fg.grad(lambda z: fnp.sum(f(z[None])))))(x)
    assert np.isnan(np.asarray(d2)[0]), f"{name}: second derivative at NaN is {d2[0]}"


ROW_SPECIALS = [
    [np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [-np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf],
    [np.inf, np.inf, 0.0], [np.inf, -np.inf, 0.0], [1000.0, np.nan, -1000.0],
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_nan_and_inf_in_softmax_family_propagate_as_in_numpy(dtype) -> None:
    x = np.array(ROW_SPECIALS, dtype)
    x64 = x.astype(np.float64)
    labels = np.zeros(len(x), np.intp)
    with np.errstate(all="ignore"):
        lse = np_logsumexp(x64)
        soft = np.exp(x64 - lse[:, None])
        ce = lse - x64[:, 0]
    _same_specials(nn.logsumexp(x, axis=-1), lse, "logsumexp")
    _same_specials(fg.jit(lambda z: nn.logsumexp(z, axis=-1))(x), lse, "jit logsumexp")
    _same_specials(nn.log_softmax(x), x64 - lse[:, None], "log_softmax")
    _same_specials(nn.softmax(x), soft, "softmax")
    _same_specials(nn.softmax_cross_entropy(x, labels, reduction="none"), ce, "cross-entropy")
    _same_specials(fg.grad(lambda z: fnp.sum(nn.logsumexp(z, axis=-1)))(x), soft, "grad logsumexp")
    with np.errstate(all="ignore"):
        want_g = soft - np.eye(3)[labels]
    _same_specials(fg.grad(lambda z: nn.softmax_cross_entropy(z, labels, reduction="sum"))(x),
                   want_g, "grad cross-entropy")
    for r in range(len(x)):
        H = fg.hessian(lambda z: nn.logsumexp(z))(x[r])
        if np.isnan(x[r]).any():
            assert np.isnan(H).any(), f"hessian of logsumexp at {x[r]} hides the NaN: {H}"
