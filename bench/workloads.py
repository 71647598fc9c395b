"""The benchmark workloads: each builds a NumPy reference and its competitors.

Every workload is a builder ``build(ctx) -> Workload``; the first implementation
is the hand-written NumPy reference that every other one is compared with (for
correctness first, then speed).  Models are written with ``funcgrad.numpy``
directly, and with the same code shape for autograd and JAX (their NumPy
namespaces); PyTorch gets the idiomatic equivalent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from harness import Impl, Row, Target, median

import funcgrad as fg
import funcgrad.numpy as fnp

# ------------------------------------------------------------------ peers ---


class Peers:
    """The optional comparison libraries that are importable (``None`` when absent)."""

    def __init__(self, enabled: bool = True):
        self.autograd = self.anp = self.jax = self.jnp = self.torch = None
        self.versions: dict[str, str] = {}
        if not enabled:
            return
        try:
            import autograd
            import autograd.numpy as anp
            import autograd.scipy.special as asp
            self.autograd, self.anp, self.asp = autograd, anp, asp
            self.versions["autograd"] = _version("autograd")
        except ImportError:
            pass
        try:
            import jax
            jax.config.update("jax_enable_x64", True)   # float64 workloads stay float64
            import jax.numpy as jnp
            import jax.scipy.special as jsp
            self.jax, self.jnp, self.jsp = jax, jnp, jsp
            self.versions["jax"] = jax.__version__
            self.versions["jax_backend"] = jax.default_backend()
        except ImportError:
            pass
        try:
            import torch
            torch.set_num_threads(max(1, int(_env_threads())))
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
            self.torch = torch
            self.versions["torch"] = torch.__version__
            self.versions["torch_threads"] = str(torch.get_num_threads())
        except ImportError:
            pass


def _version(dist: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _env_threads() -> str:
    import os
    return os.environ.get("OMP_NUM_THREADS", "1")


@dataclass
class Context:
    peers: Peers
    quick: bool
    clock: str = "wall"


@dataclass
class Workload:
    """One benchmark: implementations (the first is the reference) and targets.

    ``metric`` is what the targets are about ("ratio" by default); ``ops`` turns
    times into microseconds per elementwise op; ``post`` may add derived
    values to the rows; ``measure`` replaces interleaved timing entirely (for
    one-shot costs such as a first call).
    """

    name: str
    description: str
    impls: list[Impl]
    targets: list[Target] = field(default_factory=list)
    ops: int | None = None
    post: Callable[[dict[str, Row]], None] | None = None
    measure: Callable[[Context], list[Row]] | None = None
    check_dtype: bool = True


# ------------------------------------------------------- generic helpers ---

def _jax_block(x: Any) -> Any:
    import jax
    return jax.block_until_ready(x)


def _jax_tree(jnp: Any, tree: Any) -> Any:
    if isinstance(tree, (list, tuple)):
        return type(tree)(_jax_tree(jnp, t) for t in tree)
    return jnp.asarray(tree)


def _torch_tree(torch: Any, tree: Any, requires_grad: bool = False) -> Any:
    if isinstance(tree, (list, tuple)):
        return type(tree)(_torch_tree(torch, t, requires_grad) for t in tree)
    t = torch.from_numpy(np.array(tree))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _flat(tree: Any) -> list:
    if isinstance(tree, (list, tuple)):
        return [x for t in tree for x in _flat(t)]
    return [tree]


def _unflat_like(tree: Any, leaves: list) -> Any:
    it = iter(leaves)

    def build(t: Any) -> Any:
        if isinstance(t, (list, tuple)):
            return type(t)(build(x) for x in t)
        return next(it)
    return build(tree)


def sgd(params: Any, grads: Any, lr: float) -> list:
    """Plain SGD on a list of (W, b) layers (works with any array library)."""
    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, grads)]


def init_mlp(sizes: list[int], dtype: Any, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(dtype),
             (0.1 * rng.standard_normal(n)).astype(dtype))
            for m, n in zip(sizes[:-1], sizes[1:])]


# --------------------------------------------------------- MLP + softmax CE ---

def make_mlp_loss(m: Any, act: Callable, lse: Callable) -> Callable:
    """Mean softmax cross-entropy (integer labels) of an MLP, for NumPy-like module ``m``."""
    def loss(params, x, y, rows):
        for W, b in params[:-1]:
            x = act(x @ W + b)
        W, b = params[-1]
        logits = x @ W + b
        return m.mean(lse(logits, axis=1) - logits[rows, y])
    return loss


def np_mlp_grads(params: list, x: np.ndarray, y: np.ndarray, act: str) -> list:
    """Hand-written forward and backward pass of ``make_mlp_loss`` (the reference)."""
    hs, zs = [x], []
    for W, b in params[:-1]:
        z = hs[-1] @ W + b
        zs.append(z)
        hs.append(np.maximum(z, 0) if act == "relu" else np.tanh(z))
    W, b = params[-1]
    logits = hs[-1] @ W + b
    n = x.shape[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    d = e / e.sum(axis=1, keepdims=True)
    d[np.arange(n), y] -= 1
    d /= n
    grads = []
    for i in range(len(params) - 1, -1, -1):
        W = params[i][0]
        grads.append((hs[i].T @ d, d.sum(axis=0)))
        if i:
            dh = d @ W.T
            d = dh * (zs[i - 1] > 0) if act == "relu" else dh * (1 - hs[i] * hs[i])
    return grads[::-1]


def _torch_mlp_loss(torch: Any, act: str) -> Callable:
    F = torch.nn.functional
    actf = torch.relu if act == "relu" else torch.tanh

    def loss(params, x, y):
        for W, b in params[:-1]:
            x = actf(x @ W + b)
        W, b = params[-1]
        return F.cross_entropy(x @ W + b, y)
    return loss


def mlp_step_workload(ctx: Context, name: str, description: str, params: list, x: np.ndarray,
                      y: np.ndarray, act: str, lr: float, targets: list[Target]) -> Workload:
    """A workload of one SGD step of an MLP with softmax cross-entropy, in every library."""
    rows = np.arange(x.shape[0])
    relu = (lambda z: fnp.maximum(z, 0.0)) if act == "relu" else fnp.tanh
    loss = make_mlp_loss(fnp, relu, fnp.logsumexp)
    impls = [Impl("numpy", lambda: sgd(params, np_mlp_grads(params, x, y, act), lr),
                  lambda: np_mlp_grads(params, x, y, act))]
    g = fg.grad(loss)
    impls.append(Impl("funcgrad", lambda: sgd(params, g(params, x, y, rows), lr),
                      lambda: g(params, x, y, rows)))

    def step(params, x, y, rows):
        return sgd(params, fg.grad(loss)(params, x, y, rows), lr)
    jstep = fg.jit(step)
    jg = fg.jit(fg.grad(loss))
    impls.append(Impl("funcgrad_jit", lambda: jstep(params, x, y, rows),
                      lambda: jg(params, x, y, rows)))
    impls += _peer_mlp_impls(ctx.peers, params, x, y, act, lr)
    return Workload(name, description, impls, targets)


def _peer_mlp_impls(p: Peers, params: list, x: np.ndarray, y: np.ndarray, act: str,
                    lr: float) -> list[Impl]:
    out: list[Impl] = []
    rows = np.arange(x.shape[0])
    if p.autograd:
        anp = p.anp
        actf = (lambda z: anp.maximum(z, 0.0)) if act == "relu" else anp.tanh
        aloss = make_mlp_loss(anp, actf, p.asp.logsumexp)
        ag = p.autograd.grad(aloss)
        out.append(Impl("autograd", lambda: sgd(params, ag(params, x, y, rows), lr),
                        lambda: ag(params, x, y, rows)))
    if p.jax:
        jax, jnp = p.jax, p.jnp
        actf = jax.nn.relu if act == "relu" else jnp.tanh
        jloss = make_mlp_loss(jnp, actf, p.jsp.logsumexp)
        jp, jx, jy, jrows = _jax_tree(jnp, params), jnp.asarray(x), jnp.asarray(y), jnp.asarray(rows)
        jgrad = jax.grad(jloss)
        out.append(Impl("jax", lambda: _jax_block(sgd(jp, jgrad(jp, jx, jy, jrows), lr)),
                        lambda: jgrad(jp, jx, jy, jrows)))
        jstep = jax.jit(lambda prm, a, b, r: sgd(prm, jax.grad(jloss)(prm, a, b, r), lr))
        jjg = jax.jit(jgrad)
        out.append(Impl("jax_jit", lambda: _jax_block(jstep(jp, jx, jy, jrows)),
                        lambda: jjg(jp, jx, jy, jrows)))
    if p.torch:
        torch = p.torch
        tloss = _torch_mlp_loss(torch, act)
        tp = _torch_tree(torch, params, requires_grad=True)
        tflat = _flat(tp)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

        def tgrads():
            return _unflat_like(tp, list(torch.autograd.grad(tloss(tp, tx, ty), tflat)))

        def tstep():
            gr = tgrads()
            with torch.no_grad():
                return sgd(tp, gr, lr)
        out.append(Impl("torch", tstep, tgrads))
    return out


# -------------------------------------------------------------- workloads ---

def build_xor(ctx: Context) -> Workload:
    """(a) One gradient-descent step of the XOR 2-2-1 MLP (ReLU, squared loss, 4 examples)."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([-1.0, 1.0, 1.0, -1.0])
    rng = np.random.default_rng(0)
    params = (rng.standard_normal((2, 2)), 0.1 + 0.1 * rng.standard_normal(2),
              rng.standard_normal(2), np.float64(0.1))
    lr = 0.1

    def make_loss(m, relu):
        def loss(params, X, y):
            U, c, w, b = params
            h = relu(X @ U + c)
            r = h @ w + b - y
            return m.mean(r * r)
        return loss

    def np_grads(params):
        U, c, w, b = params
        z = X @ U + c
        h = np.maximum(z, 0.0)
        r = h @ w + b - y
        dp = (2.0 / len(y)) * r
        dz = dp[:, None] * w * (z > 0)
        return (X.T @ dz, dz.sum(axis=0), h.T @ dp, dp.sum())

    def upd(params, grads):
        return tuple(p - lr * g for p, g in zip(params, grads))

    impls = [Impl("numpy", lambda: upd(params, np_grads(params)), lambda: np_grads(params))]
    loss = make_loss(fnp, lambda z: fnp.maximum(z, 0.0))
    g = fg.grad(loss)
    impls.append(Impl("funcgrad", lambda: upd(params, g(params, X, y)), lambda: g(params, X, y)))
    jstep = fg.jit(lambda prm, X, y: upd(prm, fg.grad(loss)(prm, X, y)))
    jg = fg.jit(g)
    impls.append(Impl("funcgrad_jit", lambda: jstep(params, X, y), lambda: jg(params, X, y)))
    p = ctx.peers
    if p.autograd:
        ag = p.autograd.grad(make_loss(p.anp, lambda z: p.anp.maximum(z, 0.0)))
        impls.append(Impl("autograd", lambda: upd(params, ag(params, X, y)),
                          lambda: ag(params, X, y)))
    if p.jax:
        jax, jnp = p.jax, p.jnp
        jl = make_loss(jnp, jax.nn.relu)
        jp, jX, jy = _jax_tree(jnp, params), jnp.asarray(X), jnp.asarray(y)
        jgrad = jax.grad(jl)
        impls.append(Impl("jax", lambda: _jax_block(upd(jp, jgrad(jp, jX, jy))),
                          lambda: jgrad(jp, jX, jy)))
        jjs = jax.jit(lambda prm, a, b: upd(prm, jax.grad(jl)(prm, a, b)))
        jjg = jax.jit(jgrad)
        impls.append(Impl("jax_jit", lambda: _jax_block(jjs(jp, jX, jy)),
                          lambda: jjg(jp, jX, jy)))
    if p.torch:
        torch = p.torch
        tl = make_loss(torch, torch.relu)
        tp = _torch_tree(torch, params, requires_grad=True)
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)

        def tgrads():
            return torch.autograd.grad(tl(tp, tX, ty), tp)

        def tstep():
            gr = tgrads()
            with torch.no_grad():
                return upd(tp, gr)
        impls.append(Impl("torch", tstep, tgrads))
    targets = [Target("funcgrad", "ratio", 6.0, source="#3"),
               Target("funcgrad_jit", "ratio", 1.2, source="#5")]
    return Workload("xor", "GD step, XOR 2-2-1 MLP, ReLU, squared loss, 4 examples, float64",
                    impls, targets)


def build_digits(ctx: Context) -> Workload:
    """(b) SGD step of a 64-128-10 tanh MLP, softmax cross-entropy, batch 128, float64."""
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x = (d.data[:128] / 16.0).astype(np.float64)
        y = d.target[:128].astype(np.int64)
        src = "sklearn digits"
    except ImportError:
        rng = np.random.default_rng(1)
        x = rng.random((128, 64))
        y = rng.integers(0, 10, 128)
        src = "random data (scikit-learn not installed)"
    params = init_mlp([64, 128, 10], np.float64, seed=2)
    return mlp_step_workload(
        ctx, "digits", f"SGD step, MLP 64-128-10 tanh, softmax CE, batch 128, float64, {src}",
        params, x, y, "tanh", 0.1, [Target("funcgrad_jit", "ratio", 1.1, source="#5")])


def _big_data() -> tuple[list, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 784)).astype(np.float32)
    y = rng.integers(0, 10, 256).astype(np.int64)
    return init_mlp([784, 512, 512, 10], np.float32, seed=4), x, y


def build_big_mlp(ctx: Context) -> Workload:
    """(c) SGD step of a 784-512-512-10 ReLU MLP, softmax cross-entropy, batch 256, float32."""
    params, x, y = _big_data()
    return mlp_step_workload(
        ctx, "big_mlp", "SGD step, MLP 784-512-512-10 ReLU, softmax CE, batch 256, float32",
        params, x, y, "relu", 0.01, [Target("funcgrad_jit", "ratio", 1.05, source="#5")])


CHAIN_CYCLES = 60   # 5 ops each: sin, mul, add, exp, tanh -> 300 ops


def _transform_impls(ctx: Context, x0: np.ndarray, make: Callable, name: str) -> list[Impl]:
    """funcgrad (eager and jit), autograd and JAX (eager and jit) applying the transformation
    ``name`` ("grad" or "hessian") to ``make(m)``, a function of one array written with ``m``."""
    f = getattr(fg, name)(make(fnp))
    jf = fg.jit(f)
    out = [Impl("funcgrad", lambda: f(x0)), Impl("funcgrad_jit", lambda: jf(x0))]
    p = ctx.peers
    if p.autograd:
        af = getattr(p.autograd, name)(make(p.anp))
        out.append(Impl("autograd", lambda: af(x0)))
    if p.jax:
        xf = getattr(p.jax, name)(make(p.jnp))
        jjf = p.jax.jit(xf)
        jx = p.jnp.asarray(x0)
        out.append(Impl("jax", lambda: _jax_block(xf(jx))))
        out.append(Impl("jax_jit", lambda: _jax_block(jjf(jx))))
    return out


def build_chain(ctx: Context) -> Workload:
    """(d) grad of a chain of 300 elementwise ops on a length-16 vector (us per op)."""
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal(16)
    a = 0.5 + 0.5 * rng.random(16)
    b = 0.2 * rng.standard_normal(16)

    def make_chain(m, a=a, b=b):
        def f(x):
            for _ in range(CHAIN_CYCLES):
                x = m.tanh(m.exp(m.sin(x) * a + b))
            return m.sum(x)
        return f

    def np_grad():
        x = x0
        saved = []
        for _ in range(CHAIN_CYCLES):
            e = np.exp(np.sin(x) * a + b)
            t = np.tanh(e)
            saved.append((x, e, t))
            x = t
        g = np.ones_like(x)
        for x, e, t in reversed(saved):
            g = g * (1.0 - t * t)
            g = g * e
            g = g * a
            g = g * np.cos(x)
        return g

    impls = [Impl("numpy", np_grad)]
    impls += _transform_impls(ctx, x0, make_chain, "grad")
    p = ctx.peers
    if p.torch:
        torch = p.torch
        tf = make_chain(torch, torch.from_numpy(a), torch.from_numpy(b))
        tx = torch.from_numpy(x0.copy()).requires_grad_(True)
        impls.append(Impl("torch", lambda: torch.autograd.grad(tf(tx), tx)[0]))
    targets = [Target("funcgrad", "us_per_op", 5.0, source="#3"),
               Target("funcgrad_jit", "us_per_op", 1.1, source="#5")]
    return Workload("chain", "grad of 300 elementwise ops (sin, mul, add, exp, tanh) on a length-16 "
                    "vector, float64", impls, targets, ops=5 * CHAIN_CYCLES)


def build_hessian(ctx: Context) -> Workload:
    """(e) Hessian of the 10-d Rosenbrock function vs the analytic NumPy Hessian."""
    x0 = np.linspace(-1.2, 1.5, 10)

    def make_rosen(m):
        def f(x):
            return m.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
        return f

    def np_hess():
        x = x0
        H = np.diag(-400.0 * x[:-1], 1) + np.diag(-400.0 * x[:-1], -1)
        d = np.zeros_like(x)
        d[0] = 1200.0 * x[0] ** 2 - 400.0 * x[1] + 2.0
        d[-1] = 200.0
        d[1:-1] = 202.0 + 1200.0 * x[1:-1] ** 2 - 400.0 * x[2:]
        return H + np.diag(d)

    impls = [Impl("numpy", np_hess)]
    impls += _transform_impls(ctx, x0, make_rosen, "hessian")
    p = ctx.peers
    if p.torch:
        torch = p.torch
        th = torch.func.hessian(make_rosen(torch))
        tx = torch.from_numpy(x0.copy())
        impls.append(Impl("torch", lambda: th(tx), note="torch.func.hessian"))
    targets = [Target("funcgrad", "ratio", 100.0, source="#3"),
               Target("funcgrad_jit", "ratio", 3.0, source="#5")]
    return Workload("hessian", "Hessian of the 10-d Rosenbrock function, float64", impls, targets)


def build_per_example(ctx: Context) -> Workload:
    """(f) Per-example gradients of a 784-128-10 MLP loss, batch 64, float32."""
    rng = np.random.default_rng(6)
    params = init_mlp([784, 128, 10], np.float32, seed=7)
    X = rng.standard_normal((64, 784)).astype(np.float32)
    Y = rng.integers(0, 10, 64).astype(np.int64)

    def make_loss(m, relu, lse):
        def loss(params, x, y):
            (W1, b1), (W2, b2) = params
            h = relu(x @ W1 + b1)
            logits = h @ W2 + b2
            return lse(logits) - logits[y]
        return loss

    def np_per_example():
        (W1, b1), (W2, b2) = params
        z = X @ W1 + b1
        h = np.maximum(z, 0.0)
        logits = h @ W2 + b2
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        d = e / e.sum(axis=1, keepdims=True)
        d[np.arange(len(Y)), Y] -= 1
        dz = (d @ W2.T) * (z > 0)
        # einsum's outer-product loop is about 2x faster here than X[:, :, None] * dz[:, None, :]
        return [(np.einsum("ni,nj->nij", X, dz), dz), (np.einsum("ni,nj->nij", h, d), d)]

    def np_one(x, y):
        """One example's gradients, hand-written: the loop below with no framework cost."""
        (W1, b1), (W2, b2) = params
        z = x @ W1 + b1
        h = np.maximum(z, 0.0)
        logits = h @ W2 + b2
        e = np.exp(logits - logits.max())
        d = e / e.sum()
        d[y] -= 1
        dz = (W2 @ d) * (z > 0)
        return [(np.outer(x, dz), dz), (np.outer(h, d), d)]

    def np_loop():
        gs = [np_one(X[i], Y[i]) for i in range(len(Y))]
        return [(np.stack([q[k][0] for q in gs]), np.stack([q[k][1] for q in gs]))
                for k in range(2)]

    impls = [Impl("numpy", np_per_example),
             Impl("numpy_loop", np_loop, note="loop of hand-written one-example grads")]
    loss = make_loss(fnp, lambda z: fnp.maximum(z, 0.0), fnp.logsumexp)
    vg = fg.vmap(fg.grad(loss), in_axes=(None, 0, 0))
    impls.append(Impl("funcgrad_vmap", lambda: vg(params, X, Y)))
    jvg = fg.jit(vg)
    impls.append(Impl("funcgrad_vmap_jit", lambda: jvg(params, X, Y)))
    g = fg.grad(loss)

    def loop():
        gs = [g(params, X[i], Y[i]) for i in range(len(Y))]
        return [(np.stack([q[k][0] for q in gs]), np.stack([q[k][1] for q in gs]))
                for k in range(2)]
    impls.append(Impl("funcgrad_loop", loop))
    p = ctx.peers
    if p.jax:
        jax, jnp = p.jax, p.jnp
        jl = make_loss(jnp, jax.nn.relu, p.jsp.logsumexp)
        jvgf = jax.vmap(jax.grad(jl), in_axes=(None, 0, 0))
        jp, jX, jY = _jax_tree(jnp, params), jnp.asarray(X), jnp.asarray(Y)
        impls.append(Impl("jax", lambda: _jax_block(jvgf(jp, jX, jY))))
        jj = jax.jit(jvgf)
        impls.append(Impl("jax_jit", lambda: _jax_block(jj(jp, jX, jY))))
    if p.torch:
        torch = p.torch
        def tl(params, x, y):   # logits[y] would need .item() under torch.func.vmap
            (W1, b1), (W2, b2) = params
            logits = torch.relu(x @ W1 + b1) @ W2 + b2
            return torch.logsumexp(logits, dim=-1) - logits.gather(0, y.unsqueeze(0))[0]
        tvg = torch.func.vmap(torch.func.grad(tl), in_dims=(None, 0, 0))
        tp = _torch_tree(torch, params)
        tX, tY = torch.from_numpy(X), torch.from_numpy(Y)
        impls.append(Impl("torch_func", lambda: tvg(tp, tX, tY), note="torch.func.vmap(grad)"))

    def post(rows: dict[str, Row]) -> None:
        loop_row = rows.get("funcgrad_loop")
        for k in ("funcgrad_vmap", "funcgrad_vmap_jit", "numpy"):
            r = rows.get(k)
            if r and loop_row and r.seconds and loop_row.seconds:
                r.extra["speedup"] = loop_row.seconds / r.seconds

    targets = [Target("funcgrad_vmap", "ratio", 2.0, source="#4"),
               Target("funcgrad_vmap_jit", "ratio", 1.5, source="#4"),
               Target("funcgrad_vmap", "speedup", 10.0, ">=", source="#4")]
    return Workload("per_example", "per-example grads, MLP 784-128-10 ReLU, softmax CE, batch 64, "
                    "float32", impls, targets, post=post)


def build_first_call(ctx: Context) -> Workload:
    """(g) First call of fg.jit on the big MLP step: trace + optimise + compile + one run."""
    params, x, y = _big_data()
    rows_idx = np.arange(x.shape[0])
    loss = make_mlp_loss(fnp, lambda z: fnp.maximum(z, 0.0), fnp.logsumexp)

    def step(params, x, y, rows):
        return sgd(params, fg.grad(loss)(params, x, y, rows), 0.01)

    def measure(ctx: Context) -> list[Row]:
        reps = 2 if ctx.quick else 7
        args = (params, x, y, rows_idx)
        np_step = lambda: sgd(params, np_mlp_grads(params, x, y, "relu"), 0.01)  # noqa: E731
        np_step()
        t_np = median([_once(np_step, ctx.clock) for _ in range(reps + 2)])
        out: list[Row] = [Row("first_call", "numpy", t_np, 1.0, extra={"ms": t_np * 1e3})]
        firsts, overheads, parts = [], [], []
        for _ in range(reps):
            f = fg.jit(step)
            firsts.append(_once(lambda: f(*args), ctx.clock))
            overheads.append(firsts[-1] - _once(lambda: f(*args), ctx.clock))
            parts.append(_first_call_parts(step, args))
        t = median(firsts)
        extra = {"ms": t * 1e3, "steps": t / t_np, "overhead_ms": median(overheads) * 1e3}
        for k in parts[0]:
            extra[k] = median([p_[k] for p_ in parts])
        out.append(Row("first_call", "funcgrad_jit", t, t / t_np, extra=extra,
                       targets=[Target("funcgrad_jit", "ms", 50.0, source="#5")]))
        p = ctx.peers
        if p.jax:
            jax, jnp = p.jax, p.jnp
            jl = make_loss_jax(p)
            jargs = (_jax_tree(jnp, params), jnp.asarray(x), jnp.asarray(y), jnp.asarray(rows_idx))
            ts, ov = [], []
            for k in range(reps):
                lr = 0.01 + 1e-9 * k   # a new function each time: no cache hit

                def jstep(prm, a, b, r, lr=lr):
                    return sgd(prm, jax.grad(jl)(prm, a, b, r), lr)
                jf = jax.jit(jstep)
                ts.append(_once(lambda jf=jf: _jax_block(jf(*jargs)), ctx.clock))
                ov.append(ts[-1] - _once(lambda jf=jf: _jax_block(jf(*jargs)), ctx.clock))
            tj = median(ts)
            out.append(Row("first_call", "jax_jit", tj, tj / t_np,
                           extra={"ms": tj * 1e3, "steps": tj / t_np,
                                  "overhead_ms": median(ov) * 1e3}))
        return out

    return Workload("first_call", "first call of jit(big MLP step): trace + optimise + compile + "
                    "run; 'steps' = first call / NumPy step", [], measure=measure)


def make_loss_jax(p: Peers) -> Callable:
    return make_mlp_loss(p.jnp, p.jax.nn.relu, p.jsp.logsumexp)


def _once(fn: Callable[[], Any], clock: str = "wall") -> float:
    timer = time.process_time if clock == "cpu" else time.perf_counter
    t0 = timer()
    fn()
    return timer() - t0


def _first_call_parts(step: Callable, args: tuple) -> dict[str, float]:
    """Where a first jit call goes: trace (make_jaxpr), optimise, compile to Python."""
    from funcgrad.jit import compile_jaxpr
    from funcgrad.passes import optimize
    t0 = time.perf_counter()
    jaxpr = fg.make_jaxpr(step)(*args)
    t1 = time.perf_counter()
    opt = optimize(jaxpr)
    t2 = time.perf_counter()
    compile_jaxpr(opt)
    t3 = time.perf_counter()
    return {"trace_ms": (t1 - t0) * 1e3, "optimize_ms": (t2 - t1) * 1e3,
            "compile_ms": (t3 - t2) * 1e3, "eqns": float(len(jaxpr.eqns)),
            "eqns_opt": float(len(opt.eqns))}


def _facade_workload(name: str, np_fn: Callable, fnp_fn: Callable, args: tuple) -> Workload:
    def post(rows: dict[str, Row]) -> None:
        ref, r = rows.get("numpy"), rows.get("funcgrad")
        if ref and r and ref.seconds and r.seconds:
            r.extra["us_per_call"] = (r.seconds - ref.seconds) * 1e6
    return Workload(f"facade_{name}",
                    f"eager overhead: fnp.{name} vs np.{name} on arrays of shape "
                    f"{np.shape(args[0])}", [Impl("numpy", lambda: np_fn(*args)),
                                             Impl("funcgrad", lambda: fnp_fn(*args))],
                    [Target("funcgrad", "us_per_call", 1.0, source="#2")], post=post)


def build_facade_sin(ctx: Context) -> Workload:
    """(h) Eager facade overhead of fnp.sin."""
    return _facade_workload("sin", np.sin, fnp.sin, (np.linspace(0, 1, 8),))


def build_facade_add(ctx: Context) -> Workload:
    """(h) Eager facade overhead of fnp.add."""
    return _facade_workload("add", np.add, fnp.add, (np.linspace(0, 1, 8), np.linspace(1, 2, 8)))


def build_facade_sum(ctx: Context) -> Workload:
    """(h) Eager facade overhead of fnp.sum."""
    return _facade_workload("sum", np.sum, fnp.sum, (np.linspace(0, 1, 8),))


WORKLOADS: dict[str, Callable[[Context], Workload]] = {
    "xor": build_xor,
    "digits": build_digits,
    "big_mlp": build_big_mlp,
    "chain": build_chain,
    "hessian": build_hessian,
    "per_example": build_per_example,
    "first_call": build_first_call,
    "facade_sin": build_facade_sin,
    "facade_add": build_facade_add,
    "facade_sum": build_facade_sum,
}
