"""A JAX program running on funcgrad: only the imports differ.

Everything below the import block is written exactly as one writes it for
JAX (jax.numpy code, jax.grad, jax.value_and_grad, jax.jit, jax.vmap,
jax.make_jaxpr, jax.nn, tree_map, x.at[i].set).  To run it on JAX, swap the
three funcgrad imports for the commented JAX ones.  The data and the initial
weights come from NumPy, which both libraries accept.

Run:  python examples/jax_port.py        (--help for options)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

# --- the only lines that differ from the JAX version -------------------------------
import funcgrad as jax  # import jax
import funcgrad.numpy as jnp  # import jax.numpy as jnp
from funcgrad.tree_util import tree_map  # from jax.tree_util import tree_map

# ------------------------------------------------------------------------------------


def make_spirals(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals: not linearly separable, easy for a small MLP."""
    t = np.sqrt(rng.uniform(0.05, 1.0, size=n_per_class)) * 3 * np.pi
    a = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([a, -a]) + rng.normal(scale=0.03, size=(2 * n_per_class, 2))
    y = np.concatenate([np.zeros(n_per_class, int), np.ones(n_per_class, int)])
    return x, y


def init_params(sizes, rng):
    return [(rng.normal(size=(m, n)) * np.sqrt(2.0 / m), np.zeros(n))
            for m, n in zip(sizes[:-1], sizes[1:])]


def predict(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(jnp.dot(x, w) + b)
    w, b = params[-1]
    return jnp.dot(x, w) + b


def loss(params, x, y):
    logits = predict(params, x)
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.sum(log_probs * jax.nn.one_hot(y, 2), axis=-1))


def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(predict(params, x), axis=-1) == y)


def make_update(lr):
    @jax.jit
    def update(params, velocity, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        velocity = tree_map(lambda v, g: 0.9 * v + g, velocity, grads)
        params = tree_map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity, value
    return update


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    ap.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x, y = make_spirals(200, rng)
    params = init_params([2, 32, 32, 2], rng)
    velocity = tree_map(jnp.zeros_like, params)
    update = make_update(args.lr)

    print(jax.make_jaxpr(predict)([(jnp.ones((2, 3)), jnp.zeros(3)),
                                   (jnp.ones((3, 2)), jnp.zeros(2))], jnp.ones((1, 2))))
    for step in range(args.steps + 1):
        params, velocity, value = update(params, velocity, x, y)
        if step % max(args.steps // 5, 1) == 0:
            print(f"step {step:5d}  loss {float(value):.4f}  accuracy {float(accuracy(params, x, y)):.3f}")

    # per-example gradients: vmap over the batch of a single-example loss
    def single_loss(params, xi, yi):
        return loss(params, xi[None], yi[None])
    per_example = jax.vmap(jax.grad(single_loss), in_axes=(None, 0, 0))(params, x[:8], y[:8])
    print("per-example gradient shapes:", [w.shape for w, _ in per_example])

    # functional updates instead of in-place assignment
    @jax.jit
    def set_entry(z, i, v):
        return z.at[i].set(v)
    print("z.at[i].set(v):", set_entry(jnp.zeros(5), 2, 1.0))

    acc = float(accuracy(params, x, y))
    print(f"final training accuracy {acc:.3f}")
    return 0 if acc >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
