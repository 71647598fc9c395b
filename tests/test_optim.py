"""fg.optim against the textbook update formulas, computed by hand with NumPy over several steps."""

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import nn, optim
from funcgrad.tree_util import tree_leaves, tree_map, tree_structure

STEPS = 6


def make_params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {"w": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype),
            "layers": [rng.normal(size=4).astype(dtype)]}


def grad_at(step, params):
    """A deterministic 'gradient' that varies with the step and the parameters."""
    return tree_map(lambda p: np.sin(p * (step + 1)) + 0.1 * step, params)


def run(opt, params, steps=STEPS):
    state = opt.init(params)
    history = []
    for t in range(steps):
        g = grad_at(t, params)
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        history.append(params)
    return history, state


def by_hand(params, step_fn, steps=STEPS):
    """Apply ``step_fn(t, p, g, slot) -> (p, slot)`` leaf by leaf with plain NumPy."""
    leaves = [np.array(p, dtype=np.float64) for p in tree_leaves(params)]
    slots = [None] * len(leaves)
    tree = tree_structure(params)
    history = []
    for t in range(steps):
        current = tree.unflatten(leaves)
        gs = tree_leaves(grad_at(t, tree_map(lambda x: x, current)))
        for i, (p, g) in enumerate(zip(leaves, gs)):
            leaves[i], slots[i] = step_fn(t, p, np.asarray(g, np.float64), slots[i])
        history.append(tree.unflatten(list(leaves)))
    return history


def assert_history_close(got, want, rtol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert tree_structure(g) == tree_structure(w)
        for a, b in zip(tree_leaves(g), tree_leaves(w)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14)


def test_sgd_textbook():
    lr = 0.1
    got, state = run(optim.sgd(lr), make_params())
    want = by_hand(make_params(), lambda t, p, g, s: (p - lr * g, None))
    assert_history_close(got, want)
    assert int(state.count) == STEPS


def test_momentum_textbook():
    lr, beta = 0.05, 0.8

    def step(t, p, g, v):
        v = g if v is None else beta * v + g
        return p - lr * v, v
    got, _ = run(optim.momentum(lr, beta=beta), make_params())
    assert_history_close(got, by_hand(make_params(), step))


def test_momentum_default_beta():
    assert_history_close(run(optim.momentum(0.1), make_params())[0],
                         run(optim.momentum(0.1, beta=0.9), make_params())[0])


@pytest.mark.parametrize("b1, b2, eps", [(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3)])
def test_adam_textbook(b1, b2, eps):
    lr = 0.01

    def step(t, p, g, slot):
        m, v = slot if slot is not None else (0.0, 0.0)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** (t + 1))
        vhat = v / (1 - b2 ** (t + 1))
        return p - lr * mhat / (np.sqrt(vhat) + eps), (m, v)
    got, state = run(optim.adam(lr, b1=b1, b2=b2, eps=eps), make_params())
    assert_history_close(got, by_hand(make_params(), step))
    assert int(state.count) == STEPS


def test_adam_first_step_is_lr_times_sign():
    # with bias correction the first update is -lr * g / (|g| + eps)
    params = {"x": np.array([1.0, -2.0, 3.0])}
    g = {"x": np.array([0.5, -4.0, 1e-3])}
    opt = optim.adam(0.1)
    updates, _ = opt.update(g, opt.init(params), params)
    np.testing.assert_allclose(updates["x"], -0.1 * g["x"] / (np.abs(g["x"]) + 1e-8))


def test_schedule():
    lr = lambda t: 0.1 / (1 + t)
    got, _ = run(optim.sgd(lr), make_params())
    want = by_hand(make_params(), lambda t, p, g, s: (p - 0.1 / (1 + t) * g, None))
    assert_history_close(got, want)


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1), lambda: optim.momentum(0.1),
                                  lambda: optim.adam(0.1)])
def test_float32_and_purity(make):
    params = make_params(np.float32)
    before = tree_map(np.copy, params)
    opt = make()
    state = opt.init(params)
    g = grad_at(0, params)
    updates, new_state = opt.update(g, state, params)
    new = optim.apply_updates(params, updates)
    assert all(x.dtype == np.float32 for x in tree_leaves(updates))
    assert all(x.dtype == np.float32 for x in tree_leaves(new))
    for a, b in zip(tree_leaves(params), tree_leaves(before)):   # nothing mutated
        np.testing.assert_array_equal(a, b)
    assert int(state.count) == 0 and int(new_state.count) == 1


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.05), lambda: optim.momentum(0.05),
                                  lambda: optim.adam(0.05)])
def test_jitted_training_step_matches_eager(make):
    x = np.random.default_rng(1).normal(size=(8, 3))
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    params = nn.init_mlp([3, 5, 2], seed=0)
    opt = make()
    loss = lambda p: nn.softmax_cross_entropy(nn.mlp(p, x), y)

    def step(p, s):
        l, g = fg.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optim.apply_updates(p, u), s, l

    jstep = fg.jit(step)
    pe, se = params, opt.init(params)
    pj, sj = params, opt.init(params)
    losses = []
    for _ in range(5):
        pe, se, le = step(pe, se)
        pj, sj, lj = jstep(pj, sj)
        losses.append(lj)
        assert le == pytest.approx(lj, rel=1e-12)
    assert jstep.trace_count == 1
    assert losses[-1] < losses[0]
    for a, b in zip(tree_leaves(pe), tree_leaves(pj)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_training_decreases_loss_quadratic():
    # minimise |x - 3|^2 from 0
    for opt in (optim.sgd(0.1), optim.momentum(0.05), optim.adam(0.3)):
        x = {"x": np.zeros(2)}
        s = opt.init(x)
        for _ in range(200):
            g = fg.grad(lambda p: fnp.sum((p["x"] - 3.0) ** 2))(x)
            u, s = opt.update(g, s, x)
            x = optim.apply_updates(x, u)
        np.testing.assert_allclose(x["x"], 3.0, atol=1e-2)


def test_mismatched_structures():
    params = {"w": np.zeros(3), "b": np.zeros(2)}
    bad = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match=r"(?s)params.*'b'.*updates.*'w'"):
        optim.apply_updates(params, bad)
    with pytest.raises(ValueError, match="shape"):
        optim.apply_updates(params, {"w": np.zeros(3), "b": np.zeros(3)})
    for opt in (optim.sgd(0.1), optim.momentum(0.1), optim.adam(0.1)):
        state = opt.init(params)
        with pytest.raises(ValueError, match=r"(?s)structures.*'b'.*\n.*'w'"):
            opt.update(bad, state, params)


def test_optimizer_is_namedtuple_pair():
    opt = optim.adam(1e-3)
    init, update = opt
    assert init is opt.init and update is opt.update
    assert isinstance(opt, optim.GradientTransformation)
    state = opt.init({"a": np.ones(2)})
    assert isinstance(state, optim.AdamState)
    assert tree_structure(state.mu) == tree_structure({"a": np.ones(2)})


# ------------------------------------------------- errors that teach (bad input) ---

MAKERS = {"sgd": lambda lr: optim.sgd(lr), "momentum": lambda lr: optim.momentum(lr),
          "adam": lambda lr: optim.adam(lr)}


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("lr", [None, "a", 1 + 2j, True, np.array(["a"]), [0.1]])
def test_bad_lr_type_raises_at_construction(name, lr):
    with pytest.raises(TypeError, match=rf"^{name}: lr must be a real number .*or a schedule"):
        MAKERS[name](lr)


@pytest.mark.parametrize("name", list(MAKERS))
def test_bad_lr_value_raises_at_construction(name):
    with pytest.raises(ValueError, match=rf"^{name}: lr must be a scalar.*shape \(3,\)"):
        MAKERS[name](np.ones(3))
    with pytest.raises(ValueError, match=rf"^{name}: lr must be finite, got nan"):
        MAKERS[name](float("nan"))


@pytest.mark.parametrize("lr", [0.1, 1, np.float32(0.1), np.int64(1), np.array(0.1),
                                np.array(0.1, np.float32), lambda t: 0.1 / (1 + t)])
def test_accepted_lr_kinds(lr):
    params = make_params()
    for make in MAKERS.values():
        opt = make(lr)
        updates, _ = opt.update(grad_at(0, params), opt.init(params), params)
        assert tree_structure(updates) == tree_structure(params)


def test_lr_may_be_traced_when_the_optimizer_is_built_inside_a_transformation():
    g = {"a": np.ones(2)}
    step = lambda lr: optim.sgd(lr).update(g, optim.sgd(lr).init(g))[0]["a"]  # noqa: E731
    np.testing.assert_allclose(fg.jit(step)(0.1), [-0.1, -0.1])
    np.testing.assert_allclose(fg.vmap(step)(np.array([0.1, 0.2])), [[-0.1, -0.1], [-0.2, -0.2]])


@pytest.mark.parametrize("make, match", [
    (lambda: optim.momentum(0.1, beta=None), r"^momentum: beta must be a real number.*NoneType"),
    (lambda: optim.momentum(0.1, beta=1.5), r"^momentum: beta must be in \[0, 1\], got 1\.5"),
    (lambda: optim.adam(0.1, b1=1.0), r"^adam: b1 must be in \[0, 1\), got 1\.0"),
    (lambda: optim.adam(0.1, b2=-0.1), r"^adam: b2 must be in \[0, 1\), got -0\.1"),
    (lambda: optim.adam(0.1, eps=-1e-8), r"^adam: eps must be in \[0, inf\)"),
    (lambda: optim.adam(0.1, eps="x"), r"^adam: eps must be a real number.*str"),
    (lambda: optim.adam(0.1, b1=np.ones(2)), r"^adam: b1 must be a scalar"),
])
def test_bad_hyperparameters_raise_at_construction(make, match):
    with pytest.raises((TypeError, ValueError), match=match) as info:
        make()
    assert info.type is (TypeError if "real number" in match else ValueError)


@pytest.mark.parametrize("name", list(MAKERS))
def test_bad_schedule_value_is_named_at_update(name):
    opt = MAKERS[name](lambda t: None)
    params = make_params()
    with pytest.raises(TypeError, match=rf"^{name}\.update: the schedule's value lr\(count\) must "
                                        r"be a real number.*NoneType"):
        opt.update(grad_at(0, params), opt.init(params), params)


@pytest.mark.parametrize("name, cls", [("sgd", "SgdState"), ("momentum", "MomentumState"),
                                       ("adam", "AdamState")])
def test_update_rejects_a_foreign_state(name, cls):
    params = make_params()
    g = grad_at(0, params)
    opt = MAKERS[name](0.1)
    other = "sgd" if name == "adam" else "adam"
    wrong = MAKERS[other](0.1).init(params)
    expect = rf"^{name}\.update: state must be the {cls} created by this optimiser's init " \
             rf"\(state = {name}\(\.\.\.\)\.init\(params\)\), got "
    with pytest.raises(TypeError, match=expect + rf"{type(wrong).__name__} \(made by {other}"):
        opt.update(g, wrong, params)
    with pytest.raises(TypeError, match=expect + "None"):
        opt.update(g, None, params)
    with pytest.raises(TypeError, match=expect + rf"tuple.*{cls}\(\*state\)"):
        opt.update(g, tuple(opt.init(params)), params)
    with pytest.raises(TypeError, match=expect + "dict.*swapped.*update\\(grads, state, params\\)"):
        opt.update(opt.init(params), g, params)
