"""Per-example gradients with fg.vmap(fg.grad(loss)), checked against a Python loop.

``grad`` of the mean loss gives one gradient for the whole batch.  Some
methods need the gradient of every example separately (gradient-norm
clipping as in differentially private SGD, influence and outlier scores,
variance estimates).  Writing the loss for ONE example and mapping
``grad`` over the batch gives all of them at once, with no loop.

Run:  python examples/per_example_grads.py      (--help for options)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import nn
from funcgrad.tree_util import tree_leaves, tree_map


def example_loss(params: list[dict], x: np.ndarray, y: np.ndarray) -> float:
    """Cross-entropy of ONE example: x has shape (d,), y is an integer class."""
    return nn.softmax_cross_entropy(nn.mlp(params, x, activation=nn.tanh), y)


def batch_loss(params: list[dict], x: np.ndarray, y: np.ndarray) -> float:
    return nn.softmax_cross_entropy(nn.mlp(params, x, activation=nn.tanh), y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="examples in the batch (default 256)")
    ap.add_argument("--dim", type=int, default=10, help="input dimension (default 10)")
    ap.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    ap.add_argument("--classes", type=int, default=3, help="number of classes (default 3)")
    ap.add_argument("--clip", type=float, default=4.0, help="per-example gradient norm bound (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.n, args.dim))
    y = rng.integers(0, args.classes, size=args.n)
    params = nn.init_mlp([args.dim, args.hidden, args.classes], seed=args.seed, activation=nn.tanh)

    # all per-example gradients at once: the leading axis of every leaf indexes the example
    per_example = fg.jit(fg.vmap(fg.grad(example_loss), in_axes=(None, 0, 0)))
    grads = per_example(params, x, y)                  # first call traces and compiles
    t0 = time.perf_counter()
    grads = per_example(params, x, y)
    t_vmap = time.perf_counter() - t0
    print(f"{args.n} examples, MLP {[args.dim, args.hidden, args.classes]}:")
    for i, layer in enumerate(grads):
        print(f"  layer {i}: W grads {layer['W'].shape}, b grads {layer['b'].shape}")

    # the same with a Python loop over examples
    g1 = fg.jit(fg.grad(example_loss))
    g1(params, x[0], y[0])
    t0 = time.perf_counter()
    looped = [g1(params, x[i], y[i]) for i in range(args.n)]
    t_loop = time.perf_counter() - t0
    stacked = tree_map(lambda *gs: np.stack(gs), *looped)
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(tree_leaves(grads), tree_leaves(stacked)))
    print(f"vmap(grad): {t_vmap * 1e3:.1f} ms   loop of grad: {t_loop * 1e3:.1f} ms   "
          f"max difference {err:.1e}")

    # the mean of the per-example gradients is the batch gradient
    full = fg.grad(batch_loss)(params, x, y)
    err_mean = max(float(np.max(np.abs(a.mean(axis=0) - b)))
                   for a, b in zip(tree_leaves(grads), tree_leaves(full)))
    print(f"mean of per-example gradients vs grad of the mean loss: max difference {err_mean:.1e}")

    # a use: clip every example's gradient to norm <= clip before averaging (DP-SGD style)
    norms = np.sqrt(sum(np.sum(g.reshape(args.n, -1) ** 2, axis=1) for g in tree_leaves(grads)))
    factor = np.minimum(1.0, args.clip / np.maximum(norms, 1e-12))
    clipped = tree_map(lambda g: fnp.mean(g * factor.reshape((-1,) + (1,) * (g.ndim - 1)), axis=0),
                       grads)
    order = np.argsort(norms)[::-1]
    print(f"per-example gradient norms: median {np.median(norms):.3f}, largest {norms[order[0]]:.3f} "
          f"(example {order[0]}); {int(np.sum(norms > args.clip))} of {args.n} clipped to "
          f"{args.clip}")
    print(f"clipped mean gradient: W0 {clipped[0]['W'].shape}, norm "
          f"{np.sqrt(sum(np.sum(g ** 2) for g in tree_leaves(clipped))):.4f}")
    ok = err < 1e-10 and err_mean < 1e-10
    print("per-example gradients match the loop" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
