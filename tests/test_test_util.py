"""Tests of funcgrad.test_util.check_grads: it passes on correct derivatives and,
just as important, fails (naming mode and order) on wrong ones."""

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.core import Primitive, ShapedArray, bind
from funcgrad.primitives import elementwise as ew
from funcgrad.test_util import check_grads, default_tolerance, numerical_jvp

rng = np.random.default_rng(0)


def _sin_aval(a: ShapedArray) -> ShapedArray:
    return ShapedArray(a.shape, a.dtype)


def _sin_like(name: str, jvp_factor: float = 1.0, vjp_factor: float = 1.0,
              second_order_bug: bool = False) -> Primitive:
    """A throwaway sine primitive (not in the registry) whose rules may be wrong on purpose."""
    p = Primitive(name, np.sin, _sin_aval)

    def deriv(x):
        d = ew.cos(x)
        return fg.stop_gradient(d) if second_order_bug else d

    def jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return bind(p, x), ew.mul(ew.mul(t, deriv(x)), jvp_factor)

    def vjp(ct, out, primals, needed):
        (x,) = primals
        return [ew.mul(ew.mul(ct, deriv(x)), vjp_factor)]

    p.jvp, p.vjp = jvp, vjp
    return p


def test_passes_on_correct_functions():
    x = rng.standard_normal((3, 4))
    y = rng.standard_normal(4)
    check_grads(lambda x: fnp.sin(x) * fnp.exp(x), (x,), order=3)
    check_grads(lambda x, y: fnp.sum(x * y ** 2), (x, y))
    check_grads(lambda x, y: fnp.tanh(x @ y), (x, y), modes=("rev",))
    check_grads(lambda x, y: fnp.tanh(x @ y), (x, y), modes="fwd")


def test_correct_throwaway_primitive_passes():
    p = _sin_like("good_sin")
    check_grads(lambda x: bind(p, x), (rng.standard_normal(5),), order=1)


def test_pytree_args_and_outputs():
    params = {"W": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2), 0.5]}
    x = rng.standard_normal((4, 3))

    def f(params, x):
        h = fnp.tanh(x @ params["W"] + params["b"][0]) * params["b"][1]
        return {"sum": fnp.sum(h ** 2), "h": h}

    check_grads(f, (params, x), order=2)


def test_python_scalars_and_integer_args():
    check_grads(lambda x, n: x ** 3 * n, (1.3, 2))
    idx = np.array([2, 0, 1])
    check_grads(lambda x, i: fnp.sum(x[i] * x[:3]), (rng.standard_normal(4), idx))


def test_float32_uses_looser_defaults():
    e64, atol64, rtol64 = default_tolerance((np.zeros(2),))
    e32, atol32, rtol32 = default_tolerance((np.zeros(2, np.float32), np.zeros(2)))
    assert e32 > e64 and atol32 > atol64 and rtol32 > rtol64
    x = rng.standard_normal((3, 3)).astype(np.float32)
    check_grads(lambda x: fnp.sum(fnp.tanh(x) @ x), (x,), order=2)


def test_numerical_jvp_matches_derivative():
    x = np.array([0.3, -1.2])
    v = np.array([1.0, 2.0])
    t = numerical_jvp(fnp.sin, (x,), (v,), 1e-5)
    np.testing.assert_allclose(t, np.cos(x) * v, rtol=1e-8)


def test_wrong_jvp_rule_is_caught_in_fwd_mode():
    p = _sin_like("bad_jvp_sin", jvp_factor=1.5)
    x = rng.standard_normal(4)
    with pytest.raises(AssertionError) as e:
        check_grads(lambda x: bind(p, x), (x,), order=1, modes=("fwd",))
    msg = str(e.value)
    assert "fwd mode" in msg and "order 1" in msg
    assert "max abs error" in msg and "max rel error" in msg
    # reverse mode alone is fine: the vjp rule is right and never compared with jvp
    check_grads(lambda x: bind(p, x), (x,), order=1, modes=("rev",))


def test_wrong_vjp_rule_is_caught_in_rev_mode():
    p = _sin_like("bad_vjp_sin", vjp_factor=-1.0)
    x = rng.standard_normal(4)
    check_grads(lambda x: bind(p, x), (x,), order=1, modes=("fwd",))
    with pytest.raises(AssertionError, match=r"rev mode at order 1.*max abs error"):
        check_grads(lambda x: bind(p, x), (x,), order=1, modes=("rev",))


def test_rules_wrong_in_the_same_way_are_caught_by_finite_differences():
    # jvp and vjp agree with each other (consistent) but both are twice too large
    p = _sin_like("consistent_but_wrong_sin", jvp_factor=2.0, vjp_factor=2.0)
    x = rng.standard_normal(3)
    with pytest.raises(AssertionError, match="finite differences"):
        check_grads(lambda x: bind(p, x), (x,), order=1)


def test_jvp_vjp_inconsistency_is_reported():
    p = _sin_like("inconsistent_sin", vjp_factor=1.0 + 1e-3)
    x = rng.standard_normal(3)
    with pytest.raises(AssertionError, match="rev mode at order 1"):
        check_grads(lambda x: bind(p, x), (x,), order=1)


@pytest.mark.parametrize("mode, chain", [("fwd", "JVP"), ("rev", "VJP")])
def test_second_order_error_needs_order_2(mode, chain):
    # first derivative right, but it is not itself differentiable correctly
    p = _sin_like(f"bad_second_order_sin_{mode}", second_order_bug=True)
    x = rng.standard_normal(3) + 0.5
    check_grads(lambda x: bind(p, x), (x,), order=1, modes=(mode,))
    with pytest.raises(AssertionError) as e:
        check_grads(lambda x: bind(p, x), (x,), order=2, modes=(mode,))
    msg = str(e.value)
    assert f"{mode} mode at order 2" in msg and f"derivative of: {chain}" in msg


def test_wrong_pytree_gradient_is_caught():
    p = _sin_like("bad_tree_sin", jvp_factor=0.0, vjp_factor=0.0)
    args = ({"a": rng.standard_normal(2), "b": rng.standard_normal(3)},)

    def f(d):
        return fnp.sum(d["a"] ** 2) + fnp.sum(bind(p, d["b"]))

    for mode in ("fwd", "rev"):
        with pytest.raises(AssertionError, match=f"{mode} mode"):
            check_grads(f, args, order=1, modes=(mode,))


def test_wrong_float32_rule_is_caught_despite_looser_tolerance():
    p = _sin_like("bad_f32_sin", jvp_factor=1.1, vjp_factor=1.1)
    x = rng.standard_normal(6).astype(np.float32)
    with pytest.raises(AssertionError, match="fwd mode at order 1"):
        check_grads(lambda x: bind(p, x), (x,), order=1)


def test_explicit_tolerances_are_used():
    p = _sin_like("slightly_off_sin", jvp_factor=1.001, vjp_factor=1.001)
    x = rng.standard_normal(3)
    with pytest.raises(AssertionError):
        check_grads(lambda x: bind(p, x), (x,), order=1)
    check_grads(lambda x: bind(p, x), (x,), order=1, atol=1e-2, rtol=1e-2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown modes"):
        check_grads(fnp.sin, (1.0,), modes=("forward",))
    with pytest.raises(TypeError, match="tuple"):
        check_grads(fnp.sin, np.ones(2))
    with pytest.raises(ValueError, match="order"):
        check_grads(fnp.sin, (1.0,), order=0)
    for eps in (0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="eps must be a positive number"):
            check_grads(fnp.sin, (np.ones(2),), eps=eps)
    with pytest.raises(TypeError, match="no floating-point argument"):
        check_grads(lambda x: x * 2, (np.arange(3),))
    with pytest.raises(TypeError, match="complex result"):
        check_grads(lambda x: x * (1 + 1j), (np.ones(2),))
    check_grads(lambda x, n: x * n, (np.ones(2), 3))      # integer arguments ride along


def test_works_through_jit_and_vmap():
    x = rng.standard_normal((3, 2))
    check_grads(fg.jit(lambda x: fnp.sum(fnp.sin(x) ** 2, axis=1)), (x,), order=2)
    check_grads(fg.vmap(lambda r: fnp.tanh(r) @ r), (x,), order=2)
    check_grads(fg.grad(lambda x: fnp.sum(fnp.exp(x) * x)), (x,), order=2)
