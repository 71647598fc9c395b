"""fg.nn: activations against NumPy references and hand-derived derivatives, losses, MLP helpers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import nn
from funcgrad.test_util import check_grads

EXTREME = np.array([-1000.0, -745.0, -100.0, -30.0, -1.5, -1e-3, 0.0, 1e-3, 1.5, 30.0, 100.0,
                    745.0, 1000.0])


def np_sigmoid(x):
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def np_softplus(x):
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def elementwise_grad(f):
    return fg.vmap(fg.grad(f))


floats = hnp.arrays(np.float64, st.integers(1, 6),
                    elements=st.floats(-30, 30, allow_nan=False, allow_infinity=False))


# ------------------------------------------------------------ activations ---

@pytest.mark.parametrize("f, ref, dref", [
    (nn.sigmoid, np_sigmoid, lambda x: np_sigmoid(x) * np_sigmoid(-x)),
    (nn.softplus, np_softplus, np_sigmoid),
    (nn.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    (nn.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
])
def test_activation_values_and_derivatives_at_extremes(f, ref, dref):
    v = f(EXTREME)
    d = elementwise_grad(f)(EXTREME)
    dd = elementwise_grad(fg.grad(f))(EXTREME)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(d)) and np.all(np.isfinite(dd))
    np.testing.assert_allclose(v, ref(EXTREME), rtol=1e-13, atol=0)
    np.testing.assert_allclose(d, dref(EXTREME), rtol=1e-12, atol=1e-300)


def test_sigmoid_tails_keep_relative_accuracy():
    # naive 1 / (1 + exp(-x)) is accurate for x >= 0; exp(x) is the exact tail for x << 0
    x = np.array([-700.0, -300.0, -40.0])
    np.testing.assert_allclose(nn.sigmoid(x), np.exp(x), rtol=1e-14)
    np.testing.assert_allclose(nn.softplus(x), np.exp(x), rtol=1e-14)
    assert nn.sigmoid(1000.0) == 1.0 and nn.softplus(1000.0) == 1000.0


def test_second_derivatives_exact_at_zero():
    # the kink of |x| inside the stable forms must not leak into derivatives
    assert fg.grad(nn.sigmoid)(0.0) == pytest.approx(0.25)
    assert fg.grad(fg.grad(nn.softplus))(0.0) == pytest.approx(0.25)
    assert fg.grad(fg.grad(nn.sigmoid))(0.0) == pytest.approx(0.0)
    assert fg.grad(nn.softplus)(0.0) == pytest.approx(0.5)
    assert fg.grad(nn.relu)(0.0) == 0.0


def test_relu_keeps_nan_like_np_maximum():
    x = np.array([-1.0, 0.0, 2.0, np.nan, -np.inf, np.inf])
    np.testing.assert_array_equal(nn.relu(x), np.maximum(x, 0))
    np.testing.assert_array_equal(fg.jit(nn.relu)(x), np.maximum(x, 0))


@given(floats)
def test_activations_match_naive_formulas(x):
    np.testing.assert_allclose(nn.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(nn.softplus(x), np.logaddexp(x, 0), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(nn.relu(x), np.maximum(x, 0))


@pytest.mark.parametrize("f", [nn.sigmoid, nn.softplus, nn.tanh, nn.relu,
                               lambda x: nn.softmax(x, axis=0), lambda x: nn.log_softmax(x, axis=1),
                               lambda x: nn.logsumexp(x, axis=1)])
def test_check_grads(f):
    x = np.random.default_rng(0).normal(size=(3, 4)) * 3
    x[np.abs(x) < 0.05] = 0.3   # keep clear of relu's kink
    check_grads(f, (x,), order=2)


@pytest.mark.parametrize("f", [nn.sigmoid, nn.softplus, nn.tanh, nn.relu, nn.softmax,
                               nn.log_softmax, nn.logsumexp])
def test_float32_stays_float32(f):
    x = np.linspace(-5, 5, 6, dtype=np.float32)
    assert f(x).dtype == np.float32
    assert fg.grad(lambda x: fnp.sum(f(x)))(x).dtype == np.float32


def test_softmax_family_stable_and_correct():
    x = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0], [-1000.0, -1000.0, -1000.0]])
    p = nn.softmax(x)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    np.testing.assert_allclose(p[2], [1 / 3] * 3)
    ls = nn.log_softmax(x)
    np.testing.assert_allclose(ls[0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(nn.logsumexp(x, axis=1),
                               [1000.0, np.log(np.exp([1, 2, 3]).sum()), -1000 + np.log(3)])
    np.testing.assert_allclose(nn.logsumexp(x[1]), np.log(np.exp([1, 2, 3]).sum()))
    assert nn.logsumexp(x, axis=0, keepdims=True).shape == (1, 3)
    # axis argument and derivatives finite at the extremes
    np.testing.assert_allclose(nn.softmax(x, axis=0).sum(axis=0), 1.0)
    g = fg.grad(lambda x: fnp.sum(nn.log_softmax(x)[:, 0]))(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(fg.grad(lambda x: nn.logsumexp(x))(x[1]), p[1])


def test_activations_under_jit_and_vmap():
    x = np.random.default_rng(1).normal(size=(5, 3))
    for f in (nn.sigmoid, nn.softplus, nn.softmax, nn.log_softmax):
        np.testing.assert_allclose(fg.jit(f)(x), f(x), rtol=1e-14)
        np.testing.assert_allclose(fg.vmap(f)(x), f(x), rtol=1e-14)


def test_one_hot():
    np.testing.assert_array_equal(nn.one_hot(np.array([0, 2]), 3), [[1, 0, 0], [0, 0, 1]])
    assert nn.one_hot(np.array([1]), 2, dtype=np.float32).dtype == np.float32


# ----------------------------------------------------------------- losses ---

def test_mse():
    p, t = np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 1.0])
    assert nn.mse(p, t) == pytest.approx((0 + 4 + 9) / 3)
    assert nn.mse(p, t, reduction="sum") == pytest.approx(13)
    np.testing.assert_allclose(nn.mse(p, t, reduction="none"), [0, 4, 9])
    np.testing.assert_allclose(fg.grad(nn.mse)(p, t), 2 * (p - t) / 3)
    with pytest.raises(ValueError, match="shape"):
        nn.mse(p, t[:2])
    with pytest.raises(ValueError, match="reduction"):
        nn.mse(p, t, reduction="avg")


def naive_ce(logits, labels):
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


def test_softmax_cross_entropy_values_and_grad():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2, 0])
    assert nn.softmax_cross_entropy(logits, labels) == pytest.approx(naive_ce(logits, labels).mean())
    np.testing.assert_allclose(nn.softmax_cross_entropy(logits, labels, reduction="none"),
                               naive_ce(logits, labels))
    g = fg.grad(nn.softmax_cross_entropy)(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(g, (p - np.eye(4)[labels]) / 6, atol=1e-12)
    check_grads(lambda z: nn.softmax_cross_entropy(z, labels), (logits,), order=2)


def test_softmax_cross_entropy_extreme_logits():
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    labels = np.array([1, 1])
    loss = nn.softmax_cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(loss, [2000.0, 0.0])
    g = fg.grad(nn.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(g, [[0.5, -0.5], [0.0, 0.0]])


def test_softmax_cross_entropy_bad_labels():
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        nn.softmax_cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\].*-1"):
        nn.softmax_cross_entropy(logits, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):       # also under grad (labels concrete)
        fg.grad(nn.softmax_cross_entropy)(logits, np.array([0, 9, 1]))
    with pytest.raises(TypeError, match="integer"):
        nn.softmax_cross_entropy(logits, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        nn.softmax_cross_entropy(logits, np.array([0, 1]))


def test_softmax_cross_entropy_under_vmap_and_jit():
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(5, 3)), np.array([0, 1, 2, 2, 1])
    per = fg.vmap(nn.softmax_cross_entropy)(logits, labels)   # one example at a time
    np.testing.assert_allclose(per, naive_ce(logits, labels))
    np.testing.assert_allclose(fg.jit(nn.softmax_cross_entropy)(logits, labels),
                               naive_ce(logits, labels).mean())


def test_binary_logistic_loss():
    s = np.array([2.0, -1.0, 0.5, -1000.0, 1000.0])
    y = np.array([1.0, 1.0, -1.0, 1.0, 1.0])
    expected = np.log1p(np.exp(-y[:3] * s[:3]))
    loss = nn.binary_logistic_loss(s, y, reduction="none")
    np.testing.assert_allclose(loss[:3], expected)
    np.testing.assert_allclose(loss[3:], [1000.0, 0.0])
    g = fg.grad(nn.binary_logistic_loss)(s, y)
    np.testing.assert_allclose(g, -y * np_sigmoid(-y * s) / 5)
    with pytest.raises(ValueError, match=r"-1 or \+1"):
        nn.binary_logistic_loss(s, np.array([0.0, 1.0, 1.0, 0.0, 1.0]))


def test_hinge_loss():
    s = np.array([2.0, 0.5, -0.5, 3.0])
    y = np.array([1, 1, 1, -1])
    np.testing.assert_allclose(nn.hinge_loss(s, y, reduction="none"), [0.0, 0.5, 1.5, 4.0])
    assert nn.hinge_loss(s, y) == pytest.approx(1.5)
    np.testing.assert_allclose(fg.grad(nn.hinge_loss)(s, y), [0.0, -0.25, -0.25, 0.25])
    with pytest.raises(ValueError, match="-1 or"):
        nn.hinge_loss(s, np.array([1, 2, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        nn.hinge_loss(s, y[:2])


# -------------------------------------------------------------------- MLP ---

def test_init_mlp_shapes_determinism_and_dtype():
    p = nn.init_mlp([3, 5, 2], seed=7)
    assert [(l["W"].shape, l["b"].shape) for l in p] == [((3, 5), (5,)), ((5, 2), (2,))]
    q = nn.init_mlp([3, 5, 2], seed=7)
    r = nn.init_mlp([3, 5, 2], seed=8)
    for a, b in zip(fg.tree_util.tree_leaves(p), fg.tree_util.tree_leaves(q)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(p[0]["W"], r[0]["W"])
    assert all(np.all(l["b"] == 0) for l in p)
    assert all(x.dtype == np.float64 for x in fg.tree_util.tree_leaves(p))
    p32 = nn.init_mlp([3, 5, 2], seed=7, dtype=np.float32)
    assert all(x.dtype == np.float32 for x in fg.tree_util.tree_leaves(p32))


def test_init_mlp_scaling():
    he = nn.init_mlp([400, 300], seed=0)[0]["W"]
    glorot = nn.init_mlp([400, 300], seed=0, activation=nn.tanh)[0]["W"]
    assert he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert glorot.std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    assert nn.init_mlp([400, 300], seed=0, activation="relu")[0]["W"].std() == pytest.approx(he.std())


@pytest.mark.parametrize("sizes", [[3], [], [3, 0, 2], [3, -1]])
def test_init_mlp_bad_sizes(sizes):
    with pytest.raises(ValueError, match="init_mlp"):
        nn.init_mlp(sizes, seed=0)


def test_init_mlp_bad_types():
    with pytest.raises(TypeError, match="integers"):
        nn.init_mlp([3, 2.5], seed=0)
    with pytest.raises(ValueError, match="floating"):
        nn.init_mlp([3, 2], seed=0, dtype=np.int32)


def test_mlp_matches_numpy_forward():
    p = nn.init_mlp([4, 6, 5, 3], seed=1)
    x = np.random.default_rng(4).normal(size=(7, 4))
    h = x
    for i, l in enumerate(p):
        h = h @ l["W"] + l["b"]
        if i < 2:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(nn.mlp(p, x), h)
    t = np.tanh(x @ p[0]["W"] + p[0]["b"])
    t = np.tanh(t @ p[1]["W"] + p[1]["b"])
    np.testing.assert_allclose(nn.mlp(p, x, activation=nn.tanh), t @ p[2]["W"] + p[2]["b"])
    np.testing.assert_allclose(nn.mlp(p, x[0]), h[0])      # a single example works too
    assert (nn.mlp(p, x) < 0).any()                         # no activation on the output layer


def test_mlp_gradients_and_transformations():
    p = nn.init_mlp([3, 4, 2], seed=2, activation=nn.tanh)
    x = np.random.default_rng(5).normal(size=(6, 3))
    labels = np.array([0, 1, 1, 0, 1, 0])
    loss = lambda p: nn.softmax_cross_entropy(nn.mlp(p, x, activation=nn.tanh), labels)
    check_grads(loss, (p,), order=1)
    g = fg.grad(loss)(p)
    assert fg.tree_util.tree_structure(g) == fg.tree_util.tree_structure(p)
    gj = fg.jit(fg.grad(loss))(p)
    for a, b in zip(fg.tree_util.tree_leaves(g), fg.tree_util.tree_leaves(gj)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # per-example gradients sum to n * the mean gradient
    per = fg.vmap(fg.grad(lambda p, xi, yi: nn.softmax_cross_entropy(
        nn.mlp(p, xi, activation=nn.tanh), yi)), in_axes=(None, 0, 0))(p, x, labels)
    np.testing.assert_allclose(per[0]["W"].sum(axis=0), 6 * g[0]["W"], atol=1e-12)


def test_mlp_empty_params():
    with pytest.raises(ValueError, match="init_mlp"):
        nn.mlp([], np.zeros(3))


# ------------------------------------------------- errors that teach (bad input) ---

def test_mlp_activation_names_and_callables():
    p = nn.init_mlp([3, 4, 2], seed=0)
    x = np.random.default_rng(6).normal(size=(5, 3))
    for name, f in [("relu", nn.relu), ("sigmoid", nn.sigmoid), ("tanh", nn.tanh),
                    ("softplus", nn.softplus)]:
        np.testing.assert_array_equal(nn.mlp(p, x, activation=name), nn.mlp(p, x, activation=f))
    np.testing.assert_allclose(nn.mlp(p, x, activation=np.tanh), nn.mlp(p, x, activation="tanh"))
    with pytest.raises(ValueError, match=r"mlp: unknown activation 'gelu'.*'relu', 'sigmoid', "
                                         r"'tanh', 'softplus'.*function"):
        nn.mlp(p, x, activation="gelu")
    with pytest.raises(TypeError, match=r"mlp: activation must be a function.*'relu'.*NoneType"):
        nn.mlp(p, x, activation=None)
    with pytest.raises(ValueError, match=r"init_mlp: unknown activation 'gelu'.*'tanh'"):
        nn.init_mlp([3, 2], activation="gelu")


def test_mlp_malformed_params_name_the_layer_and_structure():
    p = nn.init_mlp([3, 4, 2], seed=0)
    x = np.ones((5, 3))
    layers = r'\[\{"W": \(in, out\) array, "b": \(out,\) array\}, \.\.\.\]'
    with pytest.raises(ValueError, match=rf"mlp: layer 1 of params has no 'W'.*\['b'\].*{layers}"):
        nn.mlp([p[0], {"b": p[1]["b"]}], x)
    with pytest.raises(ValueError, match=r"mlp: layer 0 of params has no 'b'"):
        nn.mlp([{"W": p[0]["W"]}, p[1]], x)
    with pytest.raises(TypeError, match=rf"mlp: params must be a list of layers {layers}.*got "
                                        r"dict.*\[layer\]"):
        nn.mlp(p[0], x)                                   # one layer, not a list of layers
    with pytest.raises(TypeError, match=rf"mlp: params must be a list of layers {layers}.*NoneType"):
        nn.mlp(None, x)
    with pytest.raises(TypeError, match=rf"mlp: layer 0 of params is a list, not a dict.*{layers}"):
        nn.mlp([[p[0]["W"], p[0]["b"]]], x)
    with pytest.raises(TypeError, match=r"mlp: layer 0: W has unsupported type NoneType"):
        nn.mlp([{"W": None, "b": p[0]["b"]}], x)
    with pytest.raises(ValueError, match=r"mlp: layer 1: b has shape \(3,\) but W has shape "
                                         r"\(4, 2\); b must have shape \(2,\)"):
        nn.mlp([p[0], {"W": p[1]["W"], "b": np.zeros(3)}], x)
    with pytest.raises(TypeError, match=r"mlp: x has unsupported type str"):
        nn.mlp(p, "abc")
    with pytest.raises(ValueError, match="mlp: layer 1 of params has no 'W'"):   # under grad too
        fg.grad(lambda q: fnp.sum(nn.mlp(q, x)))([p[0], {"b": p[1]["b"]}])


@pytest.mark.parametrize("mode", ["eager", "grad", "jit", "vmap"])
def test_mlp_width_mismatch_names_layer_and_shapes(mode):
    p = nn.init_mlp([3, 4, 2], seed=0)
    x = np.ones((5, 4))
    run = {"eager": lambda: nn.mlp(p, x),
           "grad": lambda: fg.grad(lambda q: fnp.sum(nn.mlp(q, x)))(p),
           "jit": lambda: fg.jit(nn.mlp)(p, x),
           "vmap": lambda: fg.vmap(lambda xi: nn.mlp(p, xi))(x)}[mode]
    shape = r"\(4,\)" if mode == "vmap" else r"\(5, 4\)"
    with pytest.raises(ValueError, match=rf"mlp: layer 0: x has shape {shape} but W has shape "
                                         r"\(3, 4\).*x must have shape \(\.\.\., 3\)"):
        run()


def test_mlp_width_mismatch_in_a_hidden_layer():
    p = nn.init_mlp([3, 4, 2], seed=0)
    bad = [p[0], {"W": np.ones((5, 2)), "b": np.zeros(2)}]
    with pytest.raises(ValueError, match=r"mlp: layer 1: its input has shape \(6, 4\) but W has "
                                         r"shape \(5, 2\).*layer 0 outputs 4 features"):
        nn.mlp(bad, np.ones((6, 3)))


@pytest.mark.parametrize("f", [nn.relu, nn.sigmoid, nn.softplus, nn.tanh])
@pytest.mark.parametrize("x", ["a", None, ["a", "b"], np.array(["a"]), {"x": 1.0}])
def test_activations_reject_non_numeric_input(f, x):
    with pytest.raises(TypeError, match=rf"{f.__name__}: argument 0 has unsupported type "
                                        r".*numeric NumPy arrays, NumPy scalars or Python numbers"):
        f(x)


@pytest.mark.parametrize("f", [nn.relu, nn.sigmoid, nn.softplus, nn.tanh])
def test_activations_accept_numeric_lists_like_funcgrad_numpy(f):
    np.testing.assert_array_equal(f([-1.0, 0.5, 2.0]), f(np.array([-1.0, 0.5, 2.0])))


def test_one_hot_num_classes_must_be_an_integer():
    with pytest.raises(TypeError, match=r"one_hot: num_classes must be an integer, got 2\.0.*"
                                        r"float.*int\(num_classes\)"):
        nn.one_hot(np.array([0, 1]), 2.0)
    with pytest.raises(ValueError, match="one_hot: num_classes must be non-negative, got -1"):
        nn.one_hot(np.array([0, 1]), -1)
    np.testing.assert_array_equal(nn.one_hot(np.array([1]), np.int64(2)), [[0.0, 1.0]])


@pytest.mark.parametrize("loss", [nn.binary_logistic_loss, nn.hinge_loss])
@pytest.mark.parametrize("ldtype", [np.int64, np.int32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pm1_losses_keep_float32_scores_dtype(loss, ldtype, reduction):
    s = np.array([2.0, -0.5, 0.25], np.float32)
    y = np.array([1, -1, -1], ldtype)
    out = loss(s, y, reduction=reduction)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, loss(s.astype(np.float64), y.astype(np.float64),
                                         reduction=reduction), rtol=1e-6)
    assert fg.grad(loss)(s, y).dtype == np.float32
    assert fg.jit(loss, static_argnums=2)(s, y, reduction).dtype == np.float32


def test_mse_integer_targets_keep_float32():
    p = np.array([1.5, 2.0], np.float32)
    assert nn.mse(p, np.array([1, 2])).dtype == np.float32
    assert nn.mse(np.array([1, 2]), p).dtype == np.float32
    assert nn.mse(p, np.array([1.0, 2.0])).dtype == np.float64      # float64 target: promotes
    assert nn.mse(p, np.array([1, 2])) == pytest.approx(0.125)
    assert fg.grad(nn.mse)(p, np.array([1, 2])).dtype == np.float32
