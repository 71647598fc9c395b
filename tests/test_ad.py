"""The differentiation transformations: jvp, vjp, grad, value_and_grad, jacfwd,
jacrev, hessian, stop_gradient -- over pytrees, in any composition, with the
bad-input errors of the contract.  Oracles are hand-derived NumPy formulas."""

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.test_util import check_grads

rng = np.random.default_rng(0)


# ---------------------------------------------------------------- jvp / vjp ---

def test_jvp_matches_analytic():
    x = rng.standard_normal((2, 3))
    v = rng.standard_normal((2, 3))
    out, t = fg.jvp(lambda x: fnp.sin(x) * x, (x,), (v,))
    np.testing.assert_allclose(out, np.sin(x) * x)
    np.testing.assert_allclose(t, (np.cos(x) * x + np.sin(x)) * v)
    assert isinstance(out, np.ndarray) and isinstance(t, np.ndarray)


def test_jvp_pytrees():
    p = {"w": rng.standard_normal(3), "b": [1.5, rng.standard_normal(3)]}
    tp = {"w": np.ones(3), "b": [np.asarray(2.0), np.zeros(3)]}

    def f(p):
        return {"y": p["w"] * p["b"][0] + p["b"][1], "s": fnp.sum(p["w"] ** 2)}

    out, t = fg.jvp(f, (p,), (tp,))
    np.testing.assert_allclose(out["y"], p["w"] * 1.5 + p["b"][1])
    np.testing.assert_allclose(t["y"], 1.5 + 2.0 * p["w"])
    np.testing.assert_allclose(t["s"], 2 * np.sum(p["w"]))


def test_jvp_output_independent_of_input_gives_zero_tangent():
    out, t = fg.jvp(lambda x: np.ones(3), (np.ones(2),), (np.ones(2),))
    np.testing.assert_array_equal(t, np.zeros(3))


def test_vjp_basic_and_has_aux():
    x = rng.standard_normal(3)
    y = rng.standard_normal(3)
    out, vjp_fn = fg.vjp(lambda x, y: x * y + fnp.exp(x), x, y)
    ct = rng.standard_normal(3)
    gx, gy = vjp_fn(ct)
    np.testing.assert_allclose(out, x * y + np.exp(x))
    np.testing.assert_allclose(gx, ct * (y + np.exp(x)))
    np.testing.assert_allclose(gy, ct * x)
    out, vjp_fn, aux = fg.vjp(lambda x: (fnp.sin(x), {"c": fnp.cos(x)}), x, has_aux=True)
    np.testing.assert_allclose(aux["c"], np.cos(x))
    assert isinstance(aux["c"], np.ndarray)
    (g,) = vjp_fn(np.ones(3))
    np.testing.assert_allclose(g, np.cos(x))


def test_vjp_pytree_inputs_and_outputs():
    params = [{"W": rng.standard_normal((3, 2))}, {"W": rng.standard_normal((2, 1))}]
    x = rng.standard_normal((4, 3))

    def f(params, x):
        h = fnp.tanh(x @ params[0]["W"])
        return {"h": h, "y": h @ params[1]["W"]}

    out, vjp_fn = fg.vjp(f, params, x)
    ct = {"h": np.zeros((4, 2)), "y": np.ones((4, 1))}
    gp, gx = vjp_fn(ct)
    h = np.tanh(x @ params[0]["W"])
    dh = np.ones((4, 1)) @ params[1]["W"].T * (1 - h ** 2)
    np.testing.assert_allclose(gp[1]["W"], h.T @ np.ones((4, 1)))
    np.testing.assert_allclose(gp[0]["W"], x.T @ dh)
    np.testing.assert_allclose(gx, dh @ params[0]["W"].T)


def test_vjp_fn_checks_cotangent():
    _, vjp_fn = fg.vjp(lambda x: x * 2, np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        vjp_fn(np.ones(4))
    with pytest.raises(ValueError, match="structure"):
        vjp_fn((np.ones(3),))


def test_jvp_checks_tangents():
    with pytest.raises(ValueError, match="shape"):
        fg.jvp(fnp.sin, (np.ones(3),), (np.ones(2),))
    with pytest.raises(ValueError, match="structure"):
        fg.jvp(lambda a, b: a * b, (np.ones(3), np.ones(3)), (np.ones(3),))


# ------------------------------------------------------ grad / value_and_grad ---

def test_grad_argnums_int_and_tuple():
    x, y = rng.standard_normal(3), rng.standard_normal(3)

    def f(x, y):
        return fnp.sum(x ** 2 * y)

    np.testing.assert_allclose(fg.grad(f)(x, y), 2 * x * y)
    np.testing.assert_allclose(fg.grad(f, argnums=1)(x, y), x ** 2)
    gx, gy = fg.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 2 * x * y)
    np.testing.assert_allclose(gy, x ** 2)
    g = fg.grad(f, argnums=(1,))(x, y)
    assert isinstance(g, tuple) and len(g) == 1
    np.testing.assert_allclose(fg.grad(f, argnums=-1)(x, y), x ** 2)


def test_value_and_grad_and_has_aux():
    x = rng.standard_normal(4)

    def loss(x, scale):
        y = fnp.sum(fnp.tanh(x) * scale)
        return y, {"pred": fnp.tanh(x)}

    (val, aux), g = fg.value_and_grad(loss, has_aux=True)(x, 2.0)
    np.testing.assert_allclose(val, 2 * np.sum(np.tanh(x)))
    np.testing.assert_allclose(aux["pred"], np.tanh(x))
    np.testing.assert_allclose(g, 2 * (1 - np.tanh(x) ** 2))
    g2, aux2 = fg.grad(loss, has_aux=True)(x, 2.0)
    np.testing.assert_allclose(g2, g)
    np.testing.assert_allclose(aux2["pred"], np.tanh(x))
    (val, aux), (gx, gs) = fg.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, 2.0)
    np.testing.assert_allclose(gs, np.sum(np.tanh(x)))
    v, g = fg.value_and_grad(lambda x: fnp.sum(x ** 3))(x)
    np.testing.assert_allclose(v, np.sum(x ** 3))
    np.testing.assert_allclose(g, 3 * x ** 2)
    assert isinstance(v, (np.ndarray, np.generic))


def test_grad_over_pytrees():
    params = {"W": rng.standard_normal((3, 2)), "bs": [rng.standard_normal(2), np.asarray(0.3)]}
    x = rng.standard_normal((5, 3))

    def loss(p, x):
        return fnp.mean((x @ p["W"] + p["bs"][0]) ** 2) * p["bs"][1]

    g = fg.grad(loss)(params, x)
    assert set(g) == {"W", "bs"} and isinstance(g["bs"], list)
    z = x @ params["W"] + params["bs"][0]
    dz = 2 * z / z.size * 0.3
    np.testing.assert_allclose(g["W"], x.T @ dz)
    np.testing.assert_allclose(g["bs"][0], dz.sum(0))
    np.testing.assert_allclose(g["bs"][1], np.mean(z ** 2))
    assert g["bs"][1].shape == ()
    check_grads(loss, (params, x), order=2)


def test_grad_kwargs_pass_through():
    g = fg.grad(lambda x, *, k: fnp.sum(x * k))(np.ones(2), k=3.0)
    np.testing.assert_array_equal(g, [3.0, 3.0])


def test_grad_of_constant_function_is_zero_with_input_dtype():
    for dt in (np.float64, np.float32):
        g = fg.grad(lambda x: 3.0)(np.ones(3, dt))
        assert g.dtype == dt
        np.testing.assert_array_equal(g, np.zeros(3))


def test_grad_python_scalar_input():
    g = fg.grad(lambda x: x ** 3)(2.0)
    assert float(g) == 12.0
    assert isinstance(g, (np.ndarray, np.generic))


# ------------------------------------------------------------------ dtypes ---

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_keep_input_dtype(dtype):
    x = rng.standard_normal((3, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)

    def f(x, b):
        return fnp.sum(fnp.tanh(x * 2.0 + b) ** 2) / 3 + fnp.logsumexp(x) + fnp.max(x * 0.5)

    gx, gb = fg.grad(f, argnums=(0, 1))(x, b)
    assert gx.dtype == dtype and gb.dtype == dtype
    assert gx.shape == x.shape and gb.shape == b.shape
    assert fg.value_and_grad(f)(x, b)[0].dtype == dtype
    assert fg.jvp(f, (x, b), (x, b))[1].dtype == dtype
    assert fg.jacfwd(lambda x: fnp.sin(x) * 2.0)(b).dtype == dtype
    assert fg.jacrev(lambda x: fnp.sin(x) * 2.0)(b).dtype == dtype
    assert fg.hessian(lambda x: fnp.sum(x ** 3))(b).dtype == dtype


def test_float32_gradient_value_matches_float64():
    x = rng.standard_normal(5)
    g64 = fg.grad(lambda x: fnp.sum(fnp.exp(fnp.sin(x))))(x)
    g32 = fg.grad(lambda x: fnp.sum(fnp.exp(fnp.sin(x))))(x.astype(np.float32))
    np.testing.assert_allclose(g32, g64, rtol=1e-5)


def test_mixed_dtype_args_each_gradient_has_its_dtype():
    x32 = np.ones(3, np.float32)
    y64 = np.ones(3) * 2
    gx, gy = fg.grad(lambda x, y: fnp.sum(x * y), argnums=(0, 1))(x32, y64)
    assert gx.dtype == np.float32 and gy.dtype == np.float64


@pytest.mark.parametrize("fun", [lambda x: fnp.sin(fnp.tanh(x)),            # unary steps only
                                 lambda x: fnp.exp(x) * x,                   # binary steps too
                                 lambda x: fnp.sin(fnp.sum(fnp.sin(x)))])    # a 0-d output
def test_vjp_cotangent_of_another_dtype_gives_gradient_of_input_dtype(fun):
    x = rng.standard_normal(3).astype(np.float32)
    y, pullback = fg.vjp(fun, x)
    for ct in (np.ones(np.shape(y)), np.ones(np.shape(y), np.float32)):
        (g,) = pullback(ct)
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, pullback(ct.astype(np.float32))[0], rtol=1e-6)


# ------------------------------------------------------------- broadcasting ---

def test_broadcasting_undone_in_gradients():
    a = rng.standard_normal((4, 1, 3))
    b = rng.standard_normal((2, 1))
    c = rng.standard_normal(3).astype(np.float32)
    s = np.float64(1.5)

    def f(a, b, c, s):
        return fnp.sum(a * b + c * s - b / (2.0 + c ** 2))

    ga, gb, gc, gs = fg.grad(f, argnums=(0, 1, 2, 3))(a, b, c, s)
    for g, x in ((ga, a), (gb, b), (gc, c), (gs, s)):
        assert np.shape(g) == np.shape(x) and np.asarray(g).dtype == np.asarray(x).dtype
    c64 = c.astype(np.float64)
    np.testing.assert_allclose(ga, np.full(a.shape, b.sum()))
    np.testing.assert_allclose(gb, np.full((2, 1), a.sum() - 4 * np.sum(1 / (2 + c64 ** 2))))
    np.testing.assert_allclose(gc, 8 * s + 4 * b.sum() * 2 * c64 / (2 + c64 ** 2) ** 2, rtol=1e-6)
    np.testing.assert_allclose(gs, 8 * c64.sum(), rtol=1e-6)
    check_grads(f, (a, b, c.astype(np.float64), s), order=2)


# --------------------------------------------------------------- Jacobians ---

def test_jacobian_shapes_out_plus_in():
    x = rng.standard_normal((2, 3))

    def f(x):
        return fnp.sin(x).T @ x      # (3, 3)

    for jac in (fg.jacfwd, fg.jacrev):
        J = jac(f)(x)
        assert J.shape == (3, 3, 2, 3)
    Jf, Jr = fg.jacfwd(f)(x), fg.jacrev(f)(x)
    np.testing.assert_allclose(Jf, Jr, atol=1e-12)
    # entry check by finite differences
    eps = 1e-6
    e = np.zeros_like(x)
    e[1, 2] = eps
    np.testing.assert_allclose(Jf[..., 1, 2], (f(x + e) - f(x - e)) / (2 * eps), atol=1e-7)


def test_jacobian_elementwise_is_diagonal():
    x = rng.standard_normal(4)
    np.testing.assert_allclose(fg.jacfwd(fnp.tanh)(x), np.diag(1 - np.tanh(x) ** 2))
    np.testing.assert_allclose(fg.jacrev(fnp.tanh)(x), np.diag(1 - np.tanh(x) ** 2))


def test_jacobian_scalar_in_and_out():
    J = fg.jacrev(lambda x: x ** 2)(3.0)
    assert np.shape(J) == () and float(J) == 6.0
    J = fg.jacfwd(lambda x: fnp.stack([x, x ** 2]))(3.0)
    np.testing.assert_allclose(J, [1.0, 6.0])


def test_jacobian_pytrees_both_sides_and_argnums():
    p = {"a": rng.standard_normal(2), "b": rng.standard_normal((2, 2))}
    z = rng.standard_normal(2)

    def f(p, z):
        return {"u": p["b"] @ p["a"], "v": [fnp.sum(p["a"] * z)]}

    for jac in (fg.jacfwd, fg.jacrev):
        J = jac(f)(p, z)
        assert J["u"]["a"].shape == (2, 2) and J["u"]["b"].shape == (2, 2, 2)
        assert J["v"][0]["a"].shape == (2,) and J["v"][0]["b"].shape == (2, 2)
        np.testing.assert_allclose(J["u"]["a"], p["b"])
        np.testing.assert_allclose(J["v"][0]["a"], z)
        np.testing.assert_allclose(J["v"][0]["b"], np.zeros((2, 2)))
        expected_ub = np.zeros((2, 2, 2))
        for i in range(2):
            expected_ub[i, i, :] = p["a"]
        np.testing.assert_allclose(J["u"]["b"], expected_ub)
        Jt = jac(f, argnums=(0, 1))(p, z)
        assert isinstance(Jt["u"], tuple) and len(Jt["u"]) == 2
        np.testing.assert_allclose(Jt["v"][0][1], p["a"])
        np.testing.assert_allclose(Jt["u"][1], np.zeros((2, 2)))


def test_hessian_matches_analytic():
    A = rng.standard_normal((4, 4))
    x = rng.standard_normal(4)
    H = fg.hessian(lambda x: x @ A @ x)(x)
    np.testing.assert_allclose(H, A + A.T, atol=1e-12)

    def rosen(x):
        return fnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    x = rng.standard_normal(5)
    H = fg.hessian(rosen)(x)
    Hn = np.zeros((5, 5))
    for i in range(4):
        Hn[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        Hn[i + 1, i + 1] += 200
        Hn[i, i + 1] += -400 * x[i]
        Hn[i + 1, i] += -400 * x[i]
    np.testing.assert_allclose(H, Hn, rtol=1e-10, atol=1e-9)


def test_hessian_shape_matrix_input_and_pytree():
    x = rng.standard_normal((2, 3))
    H = fg.hessian(lambda x: fnp.sum(x ** 3))(x)
    assert H.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(H.reshape(6, 6), np.diag(6 * x.ravel()))
    p = {"a": np.array([1.0, 2.0]), "b": np.asarray(3.0)}
    H = fg.hessian(lambda p: fnp.sum(p["a"] ** 2) * p["b"])(p)
    np.testing.assert_allclose(H["a"]["a"], 2 * 3.0 * np.eye(2))
    np.testing.assert_allclose(H["a"]["b"], 2 * p["a"])
    np.testing.assert_allclose(H["b"]["a"], 2 * p["a"])
    assert H["b"]["b"].shape == () and float(H["b"]["b"]) == 0.0


def test_all_jacobian_compositions_agree():
    x = rng.standard_normal(3)

    def f(x):
        return fnp.sum(fnp.sin(x) * x[::-1]) * fnp.prod(x)

    H1 = fg.jacfwd(fg.jacrev(f))(x)
    H2 = fg.jacrev(fg.jacfwd(f))(x)
    H3 = fg.jacfwd(fg.jacfwd(f))(x)
    H4 = fg.jacrev(fg.jacrev(f))(x)
    H5 = fg.jacfwd(fg.grad(f))(x)
    for H in (H2, H3, H4, H5):
        np.testing.assert_allclose(H, H1, atol=1e-12)
    np.testing.assert_allclose(H1, H1.T, atol=1e-12)


# ------------------------------------------------------------ higher order ---

def test_third_derivative_of_sin():
    d3 = fg.grad(fg.grad(fg.grad(fnp.sin)))
    for x in (0.0, 0.7, -2.3):
        np.testing.assert_allclose(d3(x), -np.cos(x), atol=1e-15)
    xs = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(fg.vmap(d3)(xs), -np.cos(xs), atol=1e-15)
    # mixed modes
    d3_mixed = fg.jacfwd(fg.grad(fg.jacrev(fnp.sin)))
    np.testing.assert_allclose(d3_mixed(0.7), -np.cos(0.7), atol=1e-15)
    d4 = fg.grad(d3)
    np.testing.assert_allclose(d4(0.7), np.sin(0.7), atol=1e-15)


def test_no_perturbation_confusion():
    # d/dx [x * d/dy (x * y)] = d/dx [x * x] = 2x
    def f(x):
        return x * fg.grad(lambda y: x * y)(3.0)
    assert float(fg.grad(f)(1.5)) == 3.0
    # the classic one: d/dx (x * (d/dy (x + y))|y=1) = 1
    assert float(fg.grad(lambda x: x * fg.grad(lambda y: x + y)(1.0))(2.0)) == 1.0
    # nested closures through forward mode too
    def g(x):
        return x * fg.jvp(lambda y: x * y, (3.0,), (1.0,))[1]
    assert float(fg.jvp(g, (1.5,), (1.0,))[1]) == 3.0
    assert float(fg.grad(g)(1.5)) == 3.0


def test_grad_of_grad_nested_closure_over_arrays():
    a = rng.standard_normal(3)

    def outer(x):
        inner = fg.grad(lambda y: fnp.sum(fnp.sin(x * y)))
        return fnp.sum(inner(a) * x)   # sum_i x_i^2 cos(x_i a_i)

    x = rng.standard_normal(3)
    expected = 2 * x * np.cos(x * a) - x ** 2 * a * np.sin(x * a)
    np.testing.assert_allclose(fg.grad(outer)(x), expected)
    check_grads(outer, (x,), order=2)


# ------------------------------------------------------------ control flow ---

def _piecewise(x):
    if x > 0:
        return x ** 2
    return -3.0 * x


@pytest.mark.parametrize("x, expected", [(2.0, 4.0), (-1.0, -3.0)])
def test_python_control_flow_under_grad_jvp_vjp(x, expected):
    assert float(fg.grad(_piecewise)(x)) == expected
    assert float(fg.jvp(_piecewise, (x,), (1.0,))[1]) == expected
    assert float(fg.vjp(_piecewise, x)[1](1.0)[0]) == expected
    assert float(fg.grad(fg.grad(_piecewise))(x)) == (2.0 if x > 0 else 0.0)


def test_control_flow_on_array_values_and_loops():
    def f(x):
        y = x
        while fnp.sum(y ** 2) < 100.0:   # data-dependent loop count
            y = y * 2.0
        return fnp.sum(y) if fnp.max(x) > 0 else -fnp.sum(y)

    x = np.array([0.5, 1.0])
    # y = 16 x (after 4 doublings: sum 1.25*256 = 320 >= 100), derivative 16
    np.testing.assert_allclose(fg.grad(f)(x), [16.0, 16.0])
    np.testing.assert_allclose(fg.jvp(f, (x,), (np.ones(2),))[1], 32.0)


def test_float_of_a_differentiated_value_raises_instead_of_dropping_its_derivative():
    # float(x) would make x a constant: its derivative would silently be 0 (JAX raises too)
    def f(x):
        return float(x) * x
    for run, name in [(lambda: fg.grad(f)(2.0), "grad"),
                      (lambda: fg.jvp(f, (2.0,), (1.0,)), "jvp"),
                      (lambda: fg.vjp(f, np.float32(2.0)), "grad/vjp"),
                      (lambda: fg.grad(fg.grad(lambda x: x * x * float(x)))(2.0), "grad"),
                      (lambda: fg.vmap(fg.grad(f))(np.ones(3)), "grad")]:
        with pytest.raises(fg.ConcretizationError, match="stop_gradient") as info:
            run()
        msg = str(info.value)
        assert msg.startswith(name) and "float(x)" in msg and "drop its derivative" in msg
    with pytest.raises(fg.ConcretizationError, match=r"complex\(x\) would turn"):
        fg.grad(lambda x: complex(x).real * x)(1.0)


def test_int_bool_and_item_of_a_differentiated_value_are_constants():
    # allowed as in JAX: the results are Python values, constants to the derivative
    assert fg.grad(lambda x: int(x) * x)(2.5) == 2.0
    assert fg.grad(lambda x: x.item() * x)(2.5) == 2.5          # Python-float primal
    assert fg.grad(lambda x: x.item() * x)(np.float32(2.5)) == 2.5
    assert fg.grad(lambda x: x * 3.0 if bool(x > 1) else x)(2.0) == 3.0
    # float() of something that is not being differentiated still works under grad
    assert fg.grad(lambda x, n: x * float(n))(2.0, 3.0) == 3.0
    assert fg.grad(lambda x: x * float(fg.stop_gradient(x)))(2.0) == 2.0


def test_concretization_error_names_the_trace_that_has_no_value():
    # vmap outside grad: it is vmap, not grad, that cannot give x.item() one value
    with pytest.raises(fg.ConcretizationError, match=r"^vmap: x\.item\(\)"):
        fg.vmap(fg.grad(lambda x: x.item() * x))(np.ones(2))
    with pytest.raises(fg.ConcretizationError, match=r"^jit: int\(x\)"):
        fg.jit(fg.grad(lambda x: int(x) * x))(1.0)


def test_control_flow_under_make_jaxpr_raises():
    with pytest.raises(fg.ConcretizationError, match="where"):
        fg.make_jaxpr(fg.grad(_piecewise))(1.0)


# ---------------------------------------------------------- stop_gradient ---

def test_stop_gradient_over_pytrees():
    x = rng.standard_normal(3)
    tree = {"a": x, "b": [x * 2]}
    out = fg.stop_gradient(tree)
    np.testing.assert_array_equal(out["b"][0], x * 2)

    def f(x):
        t = fg.stop_gradient({"a": x, "b": [x ** 2]})
        return fnp.sum(x * t["a"] + t["b"][0])

    np.testing.assert_allclose(fg.grad(f)(x), x)
    np.testing.assert_allclose(fg.jvp(f, (x,), (np.ones(3),))[1], np.sum(x))
    np.testing.assert_allclose(fg.hessian(f)(x), np.zeros((3, 3)))


# ------------------------------------------------------------- the graph ---

def test_make_jaxpr_of_grad():
    def f(x, y):
        return fnp.sum(fnp.tanh(x @ y) ** 2)

    x, y = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    jaxpr = fg.make_jaxpr(fg.grad(f, argnums=(0, 1)))(x, y)
    assert len(jaxpr.invars) == 2 and len(jaxpr.outvars) == 2
    names = {e.primitive.name for e in jaxpr.eqns}
    assert {"matmul", "tanh"} <= names
    text = str(jaxpr)
    assert "matmul" in text and "f64[2,3]" in text
    gx, gy = fg.eval_jaxpr(jaxpr, x, y)
    ex, ey = fg.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, ex)
    np.testing.assert_allclose(gy, ey)
    # second order too
    h = fg.make_jaxpr(fg.hessian(lambda x: fnp.sum(fnp.sin(x) ** 2)))(rng.standard_normal(3))
    assert h.outvars and h.eqns


def test_jit_and_vmap_of_grad():
    def f(w, x):
        return fnp.sum(fnp.tanh(x @ w) ** 2)

    w = rng.standard_normal(3)
    xs = rng.standard_normal((5, 3))
    per_ex = fg.vmap(fg.grad(f), in_axes=(None, 0))(w, xs)
    assert per_ex.shape == (5, 3)
    for i in range(5):
        np.testing.assert_allclose(per_ex[i], fg.grad(f)(w, xs[i]))
    np.testing.assert_allclose(fg.jit(fg.grad(f))(w, xs[0]), fg.grad(f)(w, xs[0]))


# ------------------------------------------------------------ bad input ---

def test_grad_of_non_scalar_output_is_a_type_error():
    with pytest.raises(TypeError) as e:
        fg.grad(lambda x: x * 2)(np.ones(3))
    msg = str(e.value)
    assert "(3,)" in msg and "float64" in msg and "jacrev" in msg and "vjp" in msg
    with pytest.raises(TypeError, match="jacrev"):
        fg.value_and_grad(lambda x: (x, x))(1.0)
    with pytest.raises(TypeError) as e:
        fg.grad(lambda x: fnp.sum(x > 0))(np.ones(3))     # integer scalar output
    assert "int" in str(e.value) and "jacrev" in str(e.value)


@pytest.mark.parametrize("arg", [np.arange(3), 3, np.array([True, False]), True, np.int32(2)])
def test_grad_integer_or_boolean_inputs_are_type_errors(arg):
    with pytest.raises(TypeError) as e:
        fg.grad(lambda x: fnp.sum(x * 1.0))(arg)
    msg = str(e.value)
    assert "float" in msg and str(np.asarray(arg).dtype) in msg


def test_integer_args_outside_argnums_are_fine():
    g = fg.grad(lambda x, n: x ** n)(2.0, 3)
    assert float(g) == 12.0
    with pytest.raises(TypeError):
        fg.grad(lambda x, n: x ** n, argnums=(0, 1))(2.0, 3)
    with pytest.raises(TypeError, match="int"):
        fg.jacrev(lambda x: x * 1.0)(np.arange(3))


def test_argnums_out_of_range_is_a_value_error():
    with pytest.raises(ValueError) as e:
        fg.grad(lambda x, y: x * y, argnums=2)(1.0, 2.0)
    msg = str(e.value)
    assert "argnums" in msg and "2 positional arguments" in msg
    with pytest.raises(ValueError, match="1 positional argument"):
        fg.value_and_grad(lambda x: x, argnums=(0, 1))(1.0)
    with pytest.raises(ValueError, match="3 positional arguments"):
        fg.jacfwd(lambda x, y, z: x, argnums=-4)(1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="argnums"):
        fg.jacrev(lambda x: x, argnums=1)(np.ones(2))


def test_has_aux_must_return_a_pair():
    with pytest.raises(TypeError, match="pair"):
        fg.grad(lambda x: x ** 2, has_aux=True)(1.0)


# ------------------------------------------------------------------ complex ---

@pytest.mark.parametrize("f", [
    lambda x: fnp.sum(fnp.abs(x * (1 + 2j)) ** 2),          # was silently -6x, not 10x
    lambda x: x * (1 + 2j),                                   # jacrev dropped the imaginary part
    lambda x: fnp.sum(fnp.abs(fnp.exp(1j * x))),              # |e^ix| = 1: was non-zero
    lambda x: fnp.sum(x.astype(np.complex128)).astype(np.float64),
])
def test_complex_intermediates_from_differentiated_values_raise(f):
    x = np.array([1.0, 2.0, -3.0])
    for run in (fg.grad, fg.jacfwd, fg.jacrev, fg.hessian,
                lambda f: lambda x: fg.jvp(f, (x,), (x,)), lambda f: lambda x: fg.vjp(f, x),
                lambda f: fg.jit(fg.grad(f)), lambda f: fg.vmap(fg.grad(f))):
        with pytest.raises(TypeError, match="complex result from a value being differentiated"):
            run(f)(x)


def test_complex_values_not_depending_on_the_inputs_are_fine():
    c = np.array([1 + 2j, 3 - 1j])
    f = lambda x: x * fnp.sum(fnp.abs(c * c)).astype(np.float64)    # noqa: E731
    assert fg.grad(f)(2.0) == pytest.approx(15.0)
    assert fg.jvp(f, (2.0,), (1.0,))[1] == pytest.approx(15.0)


# ------------------------------------------------ gradients keep input dtypes ---

_X64 = np.linspace(0.5, 1.5, 3)
_M64 = np.arange(9.0).reshape(3, 3) / 9.0


@pytest.mark.parametrize("f", [
    lambda y: fnp.sum(fnp.concatenate([_X64, y])),
    lambda y: fnp.sum(fnp.stack([_X64, y])),
    lambda y: fnp.sum(fnp.hstack([_X64, y])),
    lambda y: fnp.dot(_X64, y),
    lambda y: _X64 @ y,
    lambda y: fnp.sum(_M64 @ y),
    lambda y: fnp.sum(y @ _M64),
    lambda y: fnp.einsum("i,i->", _X64, y),
    lambda y: fnp.sum(fnp.tensordot(_M64, y, axes=1)),
    lambda y: fnp.sum(fnp.where(y > 0.85, _X64, y)),
    lambda y: fnp.sum(fnp.outer(_X64, y)),
    lambda y: y @ _M64 @ y,
], ids=["concatenate", "stack", "hstack", "dot-1d", "matmul-1d", "matvec", "vecmat", "einsum",
        "tensordot", "where", "outer", "quadratic"])
def test_a_float32_input_mixed_with_float64_constants_gets_a_float32_gradient(f):
    y32 = np.linspace(0.7, 1.3, 3).astype(np.float32)
    want = fg.grad(f)(y32.astype(np.float64))           # the same function in float64
    for g in (fg.grad(f)(y32), fg.jit(fg.grad(f))(y32),
              fg.vmap(fg.grad(f))(np.stack([y32, y32]))[0], fg.vjp(f, y32)[1](1.0)[0]):
        assert g.dtype == np.float32 and g.shape == (3,)
        np.testing.assert_allclose(g, want, rtol=1e-6)
    fg.test_util.check_grads(f, (y32,), order=2, modes=("rev",))


def test_jacobians_with_no_arrays_on_one_side_are_empty_structures():
    # as grad of a function of None gives None: nothing to differentiate, nothing to raise
    x = np.ones(3)
    assert fg.grad(lambda x: 1.0)(None) is None
    for jac in (fg.jacfwd, fg.jacrev):
        assert jac(lambda x: None)(x) is None
        assert jac(lambda x: 1.0)(None) is None
        assert jac(lambda x: (1.0, 2.0))([]) == ([], [])
        out = jac(lambda x: {"a": x, "n": None})(x)
        assert out["n"] is None and np.array_equal(out["a"], np.eye(3))
    assert fg.hessian(lambda x: 1.0)(None) is None


def test_maximum_and_minimum_split_a_tie_at_the_same_infinity():
    inf = np.inf
    with np.errstate(invalid="ignore"):
        for f in (lambda x, y: fnp.maximum(x, y), lambda x, y: fnp.minimum(x, y)):
            for v in (inf, -inf):
                assert fg.grad(f, argnums=(0, 1))(v, v) == (0.5, 0.5)
        assert fg.grad(lambda x: fnp.clip(x, 0.0, inf))(inf) == 0.5
        for run in (fg.grad, lambda f: fg.jit(fg.grad(f))):
            g = run(lambda x: fnp.sum(fnp.maximum(x, -inf)))(np.array([1.0, -inf]))
            np.testing.assert_array_equal(g, [1.0, 0.5])
        big = np.full(2000, inf)                         # the large-array step path too
        np.testing.assert_array_equal(
            fg.grad(lambda x: fnp.sum(fnp.maximum(x, big)))(big.copy()), np.full(2000, 0.5))


@pytest.mark.parametrize("y, want", [(-1.0, np.nan), (np.nan, np.nan), (0.0, 0.0), (2.0, 0.0)])
def test_exponent_derivative_at_a_zero_base(y, want):
    # d/dy 0 ** y: 0 where 0 ** y is flat (y >= 0), NaN where it is infinite or NaN (as JAX)
    with np.errstate(divide="ignore", invalid="ignore"):
        for f in (lambda y: 0.0 ** y, lambda y: fnp.power(np.array(0.0), y),
                  lambda y: fnp.sum(fnp.power(np.array([0.0, 2.0]), y)) - 2.0 ** y):
            np.testing.assert_array_equal(fg.grad(f)(y), want)
            np.testing.assert_array_equal(fg.jit(fg.grad(f))(y), want)


def test_linspace_is_differentiable_in_its_endpoints():
    assert fg.grad(lambda a: fnp.sum(fnp.linspace(0.0, a, 5)))(2.0) == 2.5
    assert fg.grad(lambda a: fnp.sum(fnp.linspace(a, 1.0, 4, endpoint=False)))(2.0) == 2.5
    for a, b, n, ep in [(0.3, 3.0, 7, True), (-1.7, 2.2, 11, False), (5.0, 5.0, 3, True),
                        (0.1, 0.7, 1, True), (1.0, 2.0, 0, True)]:
        np.testing.assert_array_equal(fg.jit(lambda s: fnp.linspace(s, b, n, endpoint=ep))(
            np.float64(a)), np.linspace(a, b, n, endpoint=ep))
    got = fg.jit(lambda s: fnp.linspace(s, s + 1.0, 3, axis=1))(np.array([0.0, 10.0]))
    np.testing.assert_array_equal(got, np.linspace([0.0, 10.0], [1.0, 11.0], 3, axis=1))
    ys, step = fg.jit(lambda s: fnp.linspace(s, 2.0, 5, retstep=True))(np.float64(0.0))
    assert step == 0.5 and np.array_equal(ys, np.linspace(0.0, 2.0, 5))
    np.testing.assert_allclose(fg.vmap(lambda s: fnp.linspace(s, 1.0, 3))(np.array([0.0, 0.5])),
                               [[0.0, 0.5, 1.0], [0.5, 0.75, 1.0]])
