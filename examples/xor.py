"""XOR, the lecture's story in one script.

1. A perceptron (a hyperplane) cannot fit XOR: the perceptron algorithm never
   stops making mistakes, and no line classifies more than 3 of the 4 points.
2. The slide's hand-set two-layer ReLU network reproduces (-1, 1, 1, -1).
3. The same 2-2-1 architecture, trained from a random start with
   ``fg.value_and_grad`` and a functional ``tree_map`` update, reaches 100%
   sign accuracy (a network this small can get stuck in a poor local minimum;
   the script then restarts from the next seed and says so).
4. A decision-boundary plot is saved when matplotlib is installed.

Run:  python examples/xor.py            (python examples/xor.py --help for options)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import funcgrad as fg
from funcgrad import nn
from funcgrad.tree_util import tree_map

# the lecture's data: X = {(0,0), (0,1), (1,0), (1,1)}, y = {-1, 1, 1, -1}
X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([-1.0, 1.0, 1.0, -1.0])

# the slide's weights: z = U x + c, h = relu(z), y_hat = <h, w> + b
U = np.array([[1.0, 1.0], [1.0, 1.0]])
C = np.array([0.0, -1.0])
W_OUT = np.array([2.0, -4.0])
B_OUT = -1.0


def sign_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.sign(scores) == labels))


# ---------------------------------------------------------------- 1. perceptron ---

def perceptron(x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[np.ndarray, float, int]:
    """Rosenblatt's algorithm: on every mistake, w += y x and b += y."""
    w, b = np.zeros(x.shape[1]), 0.0
    mistakes = 0
    for _ in range(epochs):
        mistakes = 0
        for xi, yi in zip(x, y):
            if yi * (w @ xi + b) <= 0:
                w, b = w + yi * xi, b + yi
                mistakes += 1
        if mistakes == 0:
            break
    return w, b, mistakes


def best_random_hyperplane(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> float:
    """The best accuracy of ``n`` random hyperplanes sign(w.x + b)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, 2))
    b = rng.normal(size=(n, 1))
    acc = np.mean(np.sign(w @ x.T + b) == y, axis=1)
    return float(acc.max())


# ----------------------------------------------------------- 2. hand-set network ---

def hand_set_params() -> list[dict]:
    """The slide's network as funcgrad MLP layers (``x @ W + b``, so W is U transposed)."""
    return [{"W": U.T.copy(), "b": C.copy()},
            {"W": W_OUT.reshape(2, 1), "b": np.array([B_OUT])}]


def show_hand_set() -> np.ndarray:
    params = hand_set_params()
    print("\n2. The slide's two-layer ReLU network:  U = [[1, 1], [1, 1]], c = (0, -1), "
          "w = (2, -4), b = -1")
    out = nn.mlp(params, X)[:, 0]
    for x, y, yhat in zip(X, Y, out):
        z = U @ x + C
        h = np.maximum(z, 0)
        print(f"   x = {tuple(int(v) for v in x)}  y = {int(y):+d}  ->  z = {tuple(int(v) for v in z)}"
              f"  h = {tuple(int(v) for v in h)}  ->  y_hat = {yhat:+.0f}  "
              f"{'ok' if np.sign(yhat) == y else 'WRONG'}")
    return out


# ------------------------------------------------------------------ 3. training ---

def loss(params: list[dict], x: np.ndarray, y: np.ndarray) -> float:
    """The lecture's squared loss (y_hat - y)^2, averaged over the training set."""
    return nn.mse(nn.mlp(params, x)[:, 0], y)


def train(seed: int, hidden: int, steps: int, lr: float, print_every: int) -> tuple[list, bool]:
    """Gradient descent Theta <- Theta - lr * grad L(Theta), written functionally."""
    params = nn.init_mlp([2, hidden, 1], seed=seed)
    loss_and_grad = fg.jit(fg.value_and_grad(loss))     # traced once, rerun every step
    checkpoint = np.inf
    for step in range(steps + 1):
        value, grads = loss_and_grad(params, X, Y)
        acc = sign_accuracy(nn.mlp(params, X)[:, 0], Y)
        if print_every and (step % print_every == 0 or step == steps):
            print(f"   step {step:5d}   loss {float(value):.5f}   sign accuracy {acc:.0%}")
        if acc == 1.0 and value < 1e-3:
            if print_every and step % print_every:
                print(f"   step {step:5d}   loss {float(value):.5f}   sign accuracy {acc:.0%}  (done)")
            return params, True
        if step % 500 == 0 and step:                     # no progress for 500 steps: stuck
            if checkpoint - value < 1e-7:
                if print_every and step % print_every:
                    print(f"   step {step:5d}   loss {float(value):.5f}   sign accuracy {acc:.0%}")
                return params, False
            checkpoint = value
        if step < steps:
            params = tree_map(lambda p, g: p - lr * g, params, grads)
    return params, sign_accuracy(nn.mlp(params, X)[:, 0], Y) == 1.0


# --------------------------------------------------------------------- 4. plot ---

def plot(trained: list[dict], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib is not installed: skipping the decision-boundary plot; "
              "pip install matplotlib to get it)")
        return
    g = np.linspace(-0.5, 1.5, 201)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, params, title in [(axes[0], hand_set_params(), "hand-set (slide)"),
                              (axes[1], trained, "trained from random init")]:
        z = nn.mlp(params, grid)[:, 0].reshape(gx.shape)
        ax.contourf(gx, gy, np.sign(z), levels=[-2, 0, 2], colors=["#f4b6b6", "#b6d4f4"])
        ax.contour(gx, gy, z, levels=[0], colors="k", linewidths=1.5)
        for label, marker, color in [(-1, "o", "#c0392b"), (1, "s", "#2c6fbb")]:
            pts = X[Y == label]
            ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=120, c=color, edgecolors="k",
                       label=f"y = {label:+d}")
        ax.set_title(title)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_aspect("equal")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.suptitle("XOR with a two-layer ReLU network (black line: output = 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nSaved the decision boundaries to {path}")


# ---------------------------------------------------------------------- main ---

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="gradient steps per attempt (default 2000)")
    ap.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    ap.add_argument("--hidden", type=int, default=2, help="hidden units (default 2, as on the slide)")
    ap.add_argument("--seed", type=int, default=0, help="first random seed (default 0)")
    ap.add_argument("--restarts", type=int, default=10,
                    help="new random starts to try if training gets stuck (default 10)")
    ap.add_argument("--perceptron-epochs", type=int, default=100, help="perceptron epochs (default 100)")
    ap.add_argument("--print-every", type=int, default=250, help="progress interval in steps (0: quiet)")
    ap.add_argument("--out", default="xor_decision_boundary.png", help="where to save the plot")
    ap.add_argument("--no-plot", action="store_true", help="do not draw the decision boundaries")
    args = ap.parse_args(argv)

    print("XOR: X = (0,0) (0,1) (1,0) (1,1),  y = -1 +1 +1 -1")

    print(f"\n1. The perceptron ({args.perceptron_epochs} epochs of Rosenblatt's algorithm):")
    w, b, mistakes = perceptron(X, Y, args.perceptron_epochs)
    acc = sign_accuracy(X @ w + b, Y)
    print(f"   still {mistakes} mistake(s) in the last epoch; final accuracy {acc:.0%}")
    best = best_random_hyperplane(X, Y, 20000, args.seed)
    print(f"   best of 20000 random hyperplanes: {best:.0%}  -> no line separates XOR (underfits)")

    out = show_hand_set()
    assert np.array_equal(out, Y), "the slide's network should reproduce (-1, 1, 1, -1)"

    print(f"\n3. The same 2-{args.hidden}-1 ReLU network from random init, "
          f"gradient descent with lr = {args.lr}:")
    trained, ok = None, False
    for attempt in range(args.restarts + 1):
        seed = args.seed + attempt
        print(f"   -- seed {seed}")
        trained, ok = train(seed, args.hidden, args.steps, args.lr, args.print_every)
        if ok:
            break
        print("   stuck: the loss stopped improving at a poor local minimum (a ReLU that is off "
              "for an input passes no gradient back for it; tiny networks are prone to this). "
              "Restarting from a new random init.")
    scores = nn.mlp(trained, X)[:, 0]
    print(f"   predictions {np.round(scores, 3)}  signs {np.sign(scores).astype(int)}  "
          f"sign accuracy {sign_accuracy(scores, Y):.0%}")
    if not ok:
        print("   did not reach 100% (try more --steps, --hidden 4 or another --seed)")

    if not args.no_plot:
        plot(trained, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
