"""The examples of the MLP/backpropagation lecture, as tests.

Written with ``funcgrad.numpy`` and ``fg.grad`` only, the way the slides write
them: the computation graph f = (x + y) z, the logistic-regression graph with
its sigmoid, the hand-set XOR network, and a small MLP trained on XOR by plain
gradient descent.  Also: the log-sum-exp / log-softmax / sigmoid compositions
used in classifiers keep finite gradients at inputs of +-1000.
"""

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad.test_util import check_grads
from funcgrad.tree_util import tree_leaves, tree_map

# --------------------------------------------------- f(x, y, z) = (x + y) z ---


def test_backprop_through_computation_graph():
    def f(x, y, z):
        q = x + y
        return q * z

    val, (dx, dy, dz) = fg.value_and_grad(f, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)
    assert float(val) == -12.0
    assert (float(dx), float(dy), float(dz)) == (-4.0, -4.0, 3.0)
    # the same by forward mode, one input direction at a time
    for i, expected in enumerate((-4.0, -4.0, 3.0)):
        tangents = tuple(1.0 if j == i else 0.0 for j in range(3))
        assert float(fg.jvp(f, (-2.0, 5.0, -4.0), tangents)[1]) == expected


# ------------------------------------------- logistic-regression graph ---

def sigmoid(t):
    """The slide's sigmoid, 1 / (1 + e^-t), composed from primitives."""
    return 1.0 / (1.0 + fnp.exp(-t))


def logistic(w, x):
    return sigmoid(w[0] * x[0] + w[1] * x[1] + w[2])


def test_logistic_regression_graph_gradients():
    w = np.array([2.0, -3.0, -3.0])
    x = np.array([-1.0, -2.0])
    dw, dx = fg.grad(logistic, argnums=(0, 1))(w, x)
    np.testing.assert_array_equal(np.round(dw, 2), [-0.20, -0.39, 0.20])
    np.testing.assert_array_equal(np.round(dx, 2), [0.39, -0.59])
    # exactly: the local gradient sigma(1) (1 - sigma(1)) times the inputs of the sum
    s = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(dw, s * (1 - s) * np.array([-1.0, -2.0, 1.0]), rtol=1e-14)
    np.testing.assert_allclose(dx, s * (1 - s) * np.array([2.0, -3.0]), rtol=1e-14)
    assert float(logistic(w, x)) == pytest.approx(0.7310585786)
    check_grads(logistic, (w, x), order=2)


def test_sigmoid_derivative_is_sigmoid_times_one_minus_sigmoid():
    ts = np.linspace(-6, 6, 25)
    d = fg.vmap(fg.grad(sigmoid))(ts)
    s = sigmoid(ts)
    np.testing.assert_allclose(d, s * (1 - s), rtol=1e-12)
    for t in (-2.0, 0.0, 0.5, 3.0):
        st = float(sigmoid(t))
        assert float(fg.grad(sigmoid)(t)) == pytest.approx(st * (1 - st), rel=1e-13)
    _, tangent = fg.jvp(sigmoid, (ts,), (np.ones_like(ts),))
    np.testing.assert_allclose(tangent, s * (1 - s), rtol=1e-12)


# ----------------------------------------------------------------- XOR ---

X_XOR = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y_XOR = np.array([-1.0, 1.0, 1.0, -1.0])


def relu(t):
    return fnp.maximum(t, 0.0)


def test_slide_xor_network():
    U = np.array([[1.0, 1.0], [1.0, 1.0]])
    c = np.array([0.0, -1.0])
    w = np.array([2.0, -4.0])
    b = -1.0

    def predict(x):
        z = U @ x + c
        h = relu(z)
        return fnp.dot(h, w) + b

    preds = np.array([predict(x) for x in X_XOR])
    np.testing.assert_array_equal(preds, Y_XOR)
    # the same, batched: one row per example
    np.testing.assert_array_equal(relu(X_XOR @ U.T + c) @ w + b, Y_XOR)
    np.testing.assert_array_equal(fg.vmap(predict)(X_XOR), Y_XOR)
    # hidden layer values of the slide
    np.testing.assert_array_equal(relu(X_XOR @ U.T + c), [[0, 0], [1, 0], [1, 0], [2, 1]])


def init_mlp(sizes, seed):
    """A list of {"W", "b"} layers with scaled normal weights."""
    r = np.random.default_rng(seed)
    return [{"W": r.standard_normal((m, n)) / np.sqrt(m), "b": np.zeros(n)}
            for m, n in zip(sizes[:-1], sizes[1:])]


def mlp(params, x):
    *hidden, last = params
    for layer in hidden:
        x = fnp.tanh(x @ layer["W"] + layer["b"])
    return (x @ last["W"] + last["b"])[..., 0]


def mse(params, x, y):
    return fnp.mean((mlp(params, x) - y) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_fits_xor_by_gradient_descent(seed):
    params = init_mlp([2, 8, 1], seed)
    lr = 0.2
    step_grad = fg.grad(mse)
    first = float(mse(params, X_XOR, Y_XOR))
    for _ in range(300):
        g = step_grad(params, X_XOR, Y_XOR)
        params = tree_map(lambda p, d: p - lr * d, params, g)
    final = float(mse(params, X_XOR, Y_XOR))
    pred = mlp(params, X_XOR)
    assert np.all(np.sign(pred) == Y_XOR), f"XOR not fitted: predictions {pred}"
    assert final < 0.05 * first
    # the pytree structure is kept through training
    assert isinstance(params, list) and set(params[0]) == {"W", "b"}
    assert all(isinstance(p, np.ndarray) for p in tree_leaves(params))


def test_mlp_gradient_matches_handwritten_backprop():
    params = init_mlp([2, 3, 1], 7)
    g = fg.grad(mse)(params, X_XOR, Y_XOR)
    W1, b1, W2, b2 = params[0]["W"], params[0]["b"], params[1]["W"], params[1]["b"]
    h = np.tanh(X_XOR @ W1 + b1)
    yhat = (h @ W2 + b2)[:, 0]
    dy = 2 * (yhat - Y_XOR) / 4
    dW2 = h.T @ dy[:, None]
    db2 = dy.sum(keepdims=True)
    dz = dy[:, None] @ W2.T * (1 - h ** 2)
    np.testing.assert_allclose(g[1]["W"], dW2)
    np.testing.assert_allclose(g[1]["b"], db2)
    np.testing.assert_allclose(g[0]["W"], X_XOR.T @ dz)
    np.testing.assert_allclose(g[0]["b"], dz.sum(0))


# ------------------------------------------------- stability at +-1000 ---

BIG = np.array([1000.0, -1000.0, 0.0, 999.0])


def log_softmax(x):
    return x - fnp.logsumexp(x, axis=-1, keepdims=True)


def stable_sigmoid(t):
    """sigma(t) as 1/(1+e^-t) for t >= 0 and e^t/(1+e^t) below, each branch fed a safe input.

    (The "double where": the branch not taken still runs, and its gradient is
    multiplied by 0, so it must not see the inputs where it would overflow.)
    """
    pos = t >= 0
    tp = fnp.where(pos, t, 0.0)
    tn = fnp.where(pos, 0.0, t)
    return fnp.where(pos, 1.0 / (1.0 + fnp.exp(-tp)), fnp.exp(tn) / (1.0 + fnp.exp(tn)))


def sigmoid_via_logaddexp(t):
    return fnp.exp(-fnp.logaddexp(0.0, -t))


def sigmoid_via_tanh(t):
    return 0.5 * (fnp.tanh(0.5 * t) + 1.0)


def _finite(tree):
    return all(np.all(np.isfinite(leaf)) for leaf in tree_leaves(tree))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logsumexp_gradient_finite_at_1000(dtype):
    x = BIG.astype(dtype)
    val = fnp.logsumexp(x)
    assert np.isfinite(val) and float(val) == pytest.approx(1000.0 + np.log1p(np.exp(-1.0)))
    g = fg.grad(fnp.logsumexp)(x)
    assert _finite(g) and g.dtype == dtype
    e = np.exp(BIG - BIG.max())
    # float32: the output 1000.31 is rounded to a 6e-5 grid, and exp(x - out) inherits that
    np.testing.assert_allclose(g, e / e.sum(), rtol=1e-6 if dtype == np.float64 else 2e-4)
    assert _finite(fg.hessian(fnp.logsumexp)(x))
    assert _finite(fg.grad(lambda x: fnp.logsumexp(x * -1.0))(x))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_softmax_gradient_finite_at_1000(dtype):
    x = np.stack([BIG, -BIG]).astype(dtype)
    ls = log_softmax(x)
    assert _finite(ls)
    labels = np.array([0, 1])

    def nll(x):
        return -fnp.mean(log_softmax(x)[np.arange(2), labels])

    g = fg.grad(nll)(x)
    assert _finite(g) and g.dtype == dtype
    p = np.exp(ls.astype(np.float64))
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(g, (p - onehot) / 2, atol=1e-6)
    assert _finite(fg.jacrev(log_softmax)(x[0]))
    assert _finite(fg.jacfwd(log_softmax)(x[0]))


@pytest.mark.parametrize("sig", [stable_sigmoid, sigmoid_via_logaddexp, sigmoid_via_tanh])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_sigmoid_gradient_finite_at_1000(sig, dtype):
    t = BIG.astype(dtype)
    s = sig(t)
    np.testing.assert_allclose(s, [1.0, 0.0, 0.5, 1.0], atol=1e-7)
    g = fg.vmap(fg.grad(sig))(t)
    assert _finite(g) and g.dtype == dtype
    np.testing.assert_allclose(g, [0.0, 0.0, 0.25, 0.0], atol=1e-7)
    assert _finite(fg.vmap(fg.grad(fg.grad(sig)))(t))
    # agrees with the slide's sigmoid where that one is fine
    ts = np.linspace(-5, 5, 11).astype(dtype)
    np.testing.assert_allclose(fg.vmap(fg.grad(sig))(ts), fg.vmap(fg.grad(sigmoid))(ts),
                               rtol=1e-5, atol=1e-7)


def test_binary_logistic_loss_finite_at_1000():
    # log(sigma(t)) written stably as -logaddexp(0, -t)
    t = BIG
    y = np.array([1.0, 1.0, 0.0, 0.0])

    def loss(t):
        return fnp.mean(y * fnp.logaddexp(0.0, -t) + (1 - y) * fnp.logaddexp(0.0, t))

    assert np.isfinite(loss(t))
    g = fg.grad(loss)(t)
    assert _finite(g)
    s = np.array([1.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(g, (s - y) / 4, atol=1e-12)
